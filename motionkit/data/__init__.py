"""Training data: clip decoding (``decode``), curation into manifests (``curate``, with ``analysis``,
``engines``, ``manifest``, ``sources``, ``refilter``), torch datasets (``datasets``), WebDataset shards
(``shards``) and the streaming dataset over them (``stream``). Import the submodules directly; this
package stays light so ``motionkit curate`` does not load torch."""
