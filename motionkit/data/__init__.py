"""Training data: clip decoding (``decode``), curation into manifests (``curate``) and torch datasets
(``datasets``). Import the submodules directly; this package stays light so ``motionkit curate`` does
not load torch."""
