"""Training checkpoints: one folder per step, written atomically, enough to continue bit for bit.

``checkpoints/checkpoint-00001000/``
- ``trainable.safetensors``: the trained tensors (the whole adapter, or only the LoRA factors);
- ``adapter_config.json``: the adapter's config, so a checkpoint's weights can be rebuilt alone;
- ``training_state.pt``: optimizer, LR scheduler, EMA and loss-scaler states;
- ``rng_state_<rank>.pt``: python, numpy, torch (and CUDA) RNG states of each process, plus named generators;
- ``state.json``: step, data position (epoch, next batch of the epoch's order) and the run's config;
- ``zero/`` (``distributed.strategy zero2|zero3`` only): DeepSpeed's partitioned state (``zero.py``).

The folder is built under a temporary name and renamed into place, so a killed job leaves either the
previous checkpoint set or the new one, never a half-written folder that ``resume_from="latest"`` picks.
The temporaries a killed writer leaves behind are removed on resume and before every checkpoint write
(``clean_checkpoint_temps``; only those whose writer process is gone).
"""

from __future__ import annotations

import io
import json
import logging
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from motionkit.errors import MotionkitError
from motionkit.utils.atomic import atomic_path, clean_stale_temps

logger = logging.getLogger(__name__)

PREFIX = "checkpoint-"


@dataclass(frozen=True)
class Position:
    """Where training stands: optimizer steps done, and the next global batch of epoch ``epoch``."""

    step: int = 0
    epoch: int = 0
    batch: int = 0


def checkpoint_dirs(root: Path) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first (temporaries are hidden and skipped)."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and p.name[len(PREFIX):].isdigit()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX):]))


def resolve_resume(root: Path, resume_from: str | None) -> Path | None:
    """``"latest"`` -> newest checkpoint under ``root`` (None when there is none yet); a path -> itself."""
    if not resume_from:
        return None
    if resume_from == "latest":
        found = checkpoint_dirs(root)
        return found[-1] if found else None
    path = Path(resume_from)
    if not (path / "state.json").is_file():
        raise MotionkitError(f"{path}: not a training checkpoint (no state.json); pass a checkpoint-N folder or 'latest'")
    return path


def clean_checkpoint_temps(root: Path) -> list[Path]:
    """Remove half-written checkpoint folders of killed writers under ``root`` (live writers' are kept)."""
    removed = clean_stale_temps(root)
    for entry in removed:
        logger.warning("removed %s, a checkpoint a killed run left half-written", entry)
    return removed


# -- RNG -----------------------------------------------------------------------------------------


def capture_rng(generators: dict[str, torch.Generator] | None = None) -> dict[str, Any]:
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"name": name, "keys": torch.from_numpy(keys.copy()), "pos": pos, "has_gauss": has_gauss, "gauss": gauss},
        "torch": torch.get_rng_state(),
        "generators": {k: g.get_state() for k, g in (generators or {}).items()},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def serialized_rng(generators: dict[str, torch.Generator] | None = None) -> bytes:
    """``capture_rng`` as ``torch.save`` bytes: what processes exchange (object gathers choke on tensors)."""
    buffer = io.BytesIO()
    torch.save(capture_rng(generators), buffer)
    return buffer.getvalue()


def restore_rng(state: dict[str, Any], generators: dict[str, torch.Generator] | None = None) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy(), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    for key, generator in (generators or {}).items():
        if key in state["generators"]:
            generator.set_state(state["generators"][key])


# -- save / load ---------------------------------------------------------------------------------


def save_checkpoint(
    root: Path,
    position: Position,
    *,
    trainable: dict[str, torch.Tensor],
    adapter_config: dict[str, Any],
    training_state: dict[str, Any],
    rng_states: list[bytes],
    config: dict[str, Any],
    keep: int,
    folders: dict[str, Path] | None = None,
) -> Path:
    """Write ``checkpoint-<step>`` atomically, then drop all but the newest ``keep``. Main process only.
    ``folders``: ``name -> folder`` already written (by several processes) to move into the checkpoint."""
    from safetensors.torch import save_file

    target = root / f"{PREFIX}{position.step:08d}"
    clean_checkpoint_temps(root)
    with atomic_path(target, is_dir=True) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in trainable.items()}, str(tmp / "trainable.safetensors"))
        (tmp / "adapter_config.json").write_text(json.dumps(adapter_config, indent=2, default=list), encoding="utf-8")
        torch.save(training_state, tmp / "training_state.pt")
        for rank, blob in enumerate(rng_states):
            (tmp / f"rng_state_{rank}.pt").write_bytes(blob)
        state = {"step": position.step, "epoch": position.epoch, "batch": position.batch, "config": config}
        (tmp / "state.json").write_text(json.dumps(state, indent=2), encoding="utf-8")
        for name, folder in (folders or {}).items():
            os.replace(folder, tmp / name)  # same filesystem: a rename, inside the not yet visible folder
    for old in checkpoint_dirs(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return target


@dataclass
class Checkpoint:
    path: Path
    position: Position
    trainable: dict[str, torch.Tensor]
    training_state: dict[str, Any]
    rng_states: list[dict[str, Any]]
    config: dict[str, Any]


def load_checkpoint(path: Path) -> Checkpoint:
    """Read a checkpoint folder (tensors with ``weights_only=True``: nothing is unpickled)."""
    from safetensors.torch import load_file

    try:
        state = json.loads((path / "state.json").read_text(encoding="utf-8"))
        trainable = load_file(str(path / "trainable.safetensors"))
        training_state = torch.load(path / "training_state.pt", map_location="cpu", weights_only=True)
        files = sorted(path.glob("rng_state_*.pt"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
        rng_states = [torch.load(f, map_location="cpu", weights_only=True) for f in files]
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise MotionkitError(f"{path}: unreadable checkpoint ({err}); resume from an earlier checkpoint folder") from None
    position = Position(int(state["step"]), int(state["epoch"]), int(state["batch"]))
    return Checkpoint(path, position, trainable, training_state, rng_states, state.get("config", {}))
