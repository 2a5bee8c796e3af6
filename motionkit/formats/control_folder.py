"""Control models (ControlNet, SparseCtrl) from diffusers-format folders.

A folder holds ``config.json`` (whose ``_class_name`` says which model) and the weights
(``diffusion_pytorch_model.safetensors``); diffusers' own ``from_pretrained`` reads it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from motionkit.errors import FormatError

CONTROL_CLASSES = ("ControlNetModel", "SparseControlNetModel")


def load_control_model(path: str | Path) -> Any:
    """A ``ControlNetModel`` or ``SparseControlNetModel`` from a diffusers folder, on CPU in its saved dtype."""
    import diffusers

    folder = Path(path)
    if not folder.exists():
        raise FileNotFoundError(f"{folder}: no such control model; give a ControlNet or SparseCtrl folder")
    config_file = folder / "config.json"
    if not folder.is_dir() or not config_file.is_file():
        raise FormatError(f"{folder} is not a diffusers control model folder (no config.json): give a folder saved with save_pretrained")
    try:
        class_name = json.loads(config_file.read_text(encoding="utf-8")).get("_class_name")
    except (OSError, ValueError, AttributeError):
        raise FormatError(f"{config_file} is not a readable JSON config: re-save the control model") from None
    if class_name not in CONTROL_CLASSES:
        raise FormatError(
            f"{folder} holds a {class_name or 'model without _class_name'}, not a control model: "
            f"give a {' or '.join(CONTROL_CLASSES)} folder"
        )
    return getattr(diffusers, class_name).from_pretrained(folder, use_safetensors=True).eval()
