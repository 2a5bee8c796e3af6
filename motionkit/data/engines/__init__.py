"""Curation engines: where the per-video analysis (:mod:`motionkit.data.analysis`) runs.

An engine turns ``(video, manifest_path)`` jobs into :class:`~motionkit.data.analysis.FileResult` s,
yielded in job order; everything after that (near-duplicates, captions, the durable manifest writes,
resume) is shared, so every engine writes the same manifest.

- ``local``: this process, or a pool of processes on this machine (no extra dependency);
- ``ray``: a Ray Data pipeline, on this machine or a Ray cluster (``motionkit[ray]``).
"""

ENGINES = ("local", "ray")
