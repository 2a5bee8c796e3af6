"""``motionkit app``: a Gradio page that animates an image (or a prompt) with the models of one folder.

The models folder (``--models-dir DIR``; default ``motionkit/assets/tiny-family`` when shipped)::

    DIR/bases/<name>/                 diffusers pipeline folder (model_index.json), or
    DIR/bases/<name>.safetensors      single-file SD 1.x/2.x/SDXL checkpoint (.safetensors / .ckpt)
    DIR/adapters/<name>[.safetensors] motion adapter: folder or file (AnimateDiff, diffusers, motionkit)
    DIR/loras/<name>.safetensors      MotionLoRA (optional)
    DIR/image-loras/<name>.safetensors  image LoRA for the base (optional)
    DIR/encoders/<name>[.safetensors] SparseCtrl keyframe encoder: folder or file (optional)
    DIR/controlnets/<name>[.safetensors] ControlNet: folder or file (optional)
    DIR/ip-adapters/<name>.safetensors IP-Adapter (h94 layout; optional), its CLIP encoder in ip-adapters/image_encoder/

The page offers exactly these names; the server resolves a name by looking it up in a fresh listing,
so no text from the browser ever becomes a path. Models are loaded once and kept (``ModelCache``);
requests are checked against ``Limits`` (frames, size, steps, upload bytes and pixels) and refused
with a one-line message when over them. ``write_demo_models(DIR)`` writes a tiny random folder.

Modules: ``models`` (the folder), ``limits`` (request and upload checks), ``cache`` (loaded models),
``presets`` (the few-step presets a folder can run), ``service`` (one generation, no Gradio), ``ui`` (the
page and ``launch``; imports gradio).
"""

from __future__ import annotations

from typing import Any

from motionkit.app.limits import Limits
from motionkit.app.models import DEFAULT_MODELS_DIR, ModelsFolder, write_demo_models

__all__ = ["DEFAULT_MODELS_DIR", "Limits", "ModelsFolder", "build_app", "launch", "write_demo_models"]


def __getattr__(name: str) -> Any:
    # gradio is an optional extra: importing motionkit.app for write_demo_models must not need it.
    if name in ("build_app", "launch"):
        from motionkit.app import ui

        return getattr(ui, name)
    raise AttributeError(f"module 'motionkit.app' has no attribute {name!r}")
