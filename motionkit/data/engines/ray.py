"""The Ray engine: the per-video analysis as a streaming Ray Data pipeline.

``from_items(jobs) -> map(detect) -> map(measure) -> iter_rows()``: two CPU stages (probe, decode check
and scene cuts; then decoding and optical flow per shot), each a Ray task per block with
``max_retries`` for tasks lost to a dead worker or node. Rows stream back in job order
(``preserve_order``), so the caller writes the manifest as results arrive and a killed run resumes like
a local one. A GPU stage (a captioner, say) would be one more ``map_batches(..., num_gpus=1)`` between
``measure`` and the output.

Ray is started on this machine (``ray.init()``) unless ``address`` names a cluster to attach to
(``auto``, ``ray://head:10001``); a Ray already initialised in this process is used as it is. The
workers need motionkit importable (the same environment, or a Ray ``runtime_env``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from typing import Any

from motionkit.data.analysis import CurateOptions, FileResult, Shots, detect_shots, failure_reason, measure_shots
from motionkit.errors import MotionkitError

# Tasks retried when their worker dies (segfaulting decoder, lost node); a bad file never raises.
MAX_RETRIES = 3


def _detect(row: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    opts = CurateOptions(**options)
    try:
        shots = detect_shots(row["video"], opts)
        return {**row, "shots": json.dumps(asdict(shots)), "error": ""}
    except Exception as err:  # noqa: BLE001 - the reason travels with the row
        return {**row, "shots": "", "error": failure_reason(err, row["video"])}


def _measure(row: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    opts = CurateOptions(**options)
    if row["error"]:
        result = FileResult(row["name"], error=row["error"])
    else:
        data = json.loads(row["shots"])
        shots = Shots(**{**data, "scenes": tuple(tuple(s) for s in data["scenes"])})
        try:
            result = measure_shots(row["video"], shots, opts, row["name"])
        except Exception as err:  # noqa: BLE001
            result = FileResult(row["name"], error=failure_reason(err, row["video"]))
    return {"index": row["index"], "result": json.dumps(result.to_dict())}


def _start_ray(address: str | None, num_cpus: int | None) -> bool:
    """Initialise Ray if needed; True when this call started it (and should shut it down)."""
    try:
        import ray
    except ImportError:
        raise MotionkitError("--engine ray needs Ray Data: pip install 'motionkit[ray]'") from None
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    if address:
        kwargs["address"] = address
    elif num_cpus is not None:
        kwargs["num_cpus"] = num_cpus
    try:
        ray.init(**kwargs)
    except ConnectionError as err:
        raise MotionkitError(f"--ray-address {address}: cannot reach a Ray cluster ({err}); start one with 'ray start --head'") from None
    return True


def ray_results(
    jobs: Sequence[tuple[str, str]],
    options: CurateOptions,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
) -> Iterable[FileResult]:
    """Analyse ``(video, manifest_string)`` jobs on Ray, yielding results in job order."""
    if not jobs:
        return
    started = _start_ray(address, num_cpus)
    import ray
    from ray.data import DataContext

    try:
        context = DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        items = [{"index": i, "video": video, "name": name} for i, (video, name) in enumerate(jobs)]
        # One block per video up to a bound: a slow video holds back only its own block.
        blocks = min(len(items), 4096)
        options_dict = asdict(options)
        dataset = (
            ray.data.from_items(items, override_num_blocks=blocks)
            .map(_detect, fn_kwargs={"options": options_dict}, num_cpus=1, max_retries=MAX_RETRIES)
            .map(_measure, fn_kwargs={"options": options_dict}, num_cpus=1, max_retries=MAX_RETRIES)
        )
        expected = 0
        for row in dataset.iter_rows():
            if int(row["index"]) != expected:  # preserve_order guarantees this; a wrong order would mis-dedup
                raise MotionkitError(f"Ray returned video {row['index']} where {expected} was due; rerun to resume")
            expected += 1
            yield FileResult.from_dict(json.loads(row["result"]))
    finally:
        if started:
            ray.shutdown()
