"""What the page opens with, read from the models themselves and from an optional ``motionkit-app.json``.

Without a declaration every default comes from the models: the size from the base's configs (the UNet's
``sample_size`` times the VAE's downsampling), the frames from the adapter (a recorded ``training_frames``
in its config, else 16, AnimateDiff's training length, within the adapter's position table), and
generic sampling settings. A models folder may declare better ones beside its models, in
``DIR/motionkit-app.json``::

    {
      "frames": 8, "steps": 25, "guidance": 4.0, "scheduler": "ddim", "strength": 0.5,
      "anchor_first_frame": true, "fps": 8, "negative_prompt": "",
      "about": "Markdown shown at the top of the page: what these models can and cannot draw.",
      "examples": [{"image": "examples/conditioning.png", "prompt": "...", "frames": 8, "seed": 1}]
    }

Every key is optional. Example images are paths inside the models folder; an example's other keys
override the defaults for that example only. The file is read when the page is built; a broken one is
refused in one line, so a typo does not silently fall back to unsuited defaults.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from motionkit.app.models import ModelsFolder
from motionkit.errors import MotionkitError

DECLARATION = "motionkit-app.json"
FALLBACK_SIZE = 512  # single-file checkpoints carry no config: SD 1.x's native size
FALLBACK_FRAMES = 16  # AnimateDiff's motion modules train on 16 frames


@dataclass(frozen=True)
class Example:
    """One example of the page: an image inside the models folder (or none), a prompt, and its settings."""

    image: Path | None
    prompt: str
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PageDefaults:
    """The settings the page opens with (and a request's settings start from)."""

    frames: int = FALLBACK_FRAMES
    width: int = FALLBACK_SIZE
    height: int = FALLBACK_SIZE
    steps: int = 25
    guidance: float = 7.5
    scheduler: str = "ddim"
    # Image-to-video that holds the image: half the schedule from the noised image, frame 0 pinned to it.
    strength: float = 0.5
    anchor_first_frame: bool = True
    fps: float = 8.0
    negative_prompt: str = ""
    seed: int = 0
    about: str = ""
    examples: tuple[Example, ...] = ()

    def settings(self) -> dict[str, Any]:
        """The per-request settings (no text about the models, no examples)."""
        skip = {"about", "examples", "negative_prompt"}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}


# Keys a declaration may set, with the type each must have.
_DECLARED: dict[str, tuple[type, ...]] = {
    "frames": (int,), "width": (int,), "height": (int,), "steps": (int,), "guidance": (int, float),
    "scheduler": (str,), "strength": (int, float), "anchor_first_frame": (bool,), "fps": (int, float),
    "negative_prompt": (str,), "seed": (int,), "about": (str,),
}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise MotionkitError(f"{path}: not readable JSON ({str(err)[:80]}); fix or remove it") from None
    if not isinstance(data, dict):
        raise MotionkitError(f"{path}: must hold a JSON object of settings")
    return data


def _checked(data: dict[str, Any], where: str, allowed: dict[str, tuple[type, ...]]) -> dict[str, Any]:
    for key, value in data.items():
        if key not in allowed:
            raise MotionkitError(f"{where}: unknown key {key!r}; use {', '.join(sorted(allowed))}")
        kinds = allowed[key]
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            raise MotionkitError(f"{where}: {key} must be {' or '.join(k.__name__ for k in kinds)}, got {value!r}")
    return data


def native_size(base: Path) -> int | None:
    """The base's native side in pixels from a diffusers folder's configs (None for single files)."""
    unet, vae = base / "unet" / "config.json", base / "vae" / "config.json"
    if not (unet.is_file() and vae.is_file()):
        return None
    sample_size = _read_json(unet).get("sample_size")
    blocks = _read_json(vae).get("block_out_channels")
    if not isinstance(sample_size, int) or not isinstance(blocks, list) or not blocks:
        return None
    return sample_size * 2 ** (len(blocks) - 1)


def adapter_config(path: Path) -> dict[str, Any]:
    """The adapter's config as far as it can be read without loading weights ({} when it cannot)."""
    if path.is_dir():
        config = path / "config.json"
        return _read_json(config) if config.is_file() else {}
    if path.suffix.lower() != ".safetensors":
        return {}
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            keys = set(handle.keys())
            cond = "image_cond_conv.weight"
            cond_shape = handle.get_slice(cond).get_shape() if cond in keys else None
    except Exception:  # not our business here: loading it reports a bad file properly
        return {}
    if "config" in metadata:
        try:
            config = json.loads(metadata["config"])
            return config if isinstance(config, dict) else {}
        except ValueError:
            return {}
    return {"image_cond_channels": cond_shape[1]} if cond_shape else {}


def training_frames(config: dict[str, Any]) -> int:
    """Frames the adapter was trained on, as recorded in its config, else AnimateDiff's 16 (within its table)."""
    for key in ("training_frames", "train_frames", "num_frames"):
        if isinstance(config.get(key), int) and config[key] > 0:
            return config[key]
    table = config.get("max_seq_length")
    return min(FALLBACK_FRAMES, table) if isinstance(table, int) and table > 0 else FALLBACK_FRAMES


def motion_scale_support(config: dict[str, Any]) -> str | None:
    """None when PIA's motion-scale presets act on this adapter; otherwise why they do not."""
    channels = config.get("image_cond_channels", 0)
    if channels != 5:
        return "this adapter has no image-conditioning branch (PIA layout: image_cond_channels 5), so motion scale has nothing to act on"
    if config.get("image_cond_mask", "pia") != "pia":
        return (
            f"this adapter's image branch was trained with a {config['image_cond_mask']!r} mask, not PIA's "
            "distance presets, so motion scale would not change anything"
        )
    return None


def page_defaults(models: ModelsFolder) -> PageDefaults:
    """The defaults for ``models``: measured from its first base and adapter, then its declaration on top."""
    bases, adapters = models.listing("base"), models.listing("adapter")
    found: dict[str, Any] = {}
    if bases:
        size = native_size(next(iter(bases.values())))
        if size:
            found["width"] = found["height"] = size
    if adapters:
        found["frames"] = training_frames(adapter_config(next(iter(adapters.values()))))
    declaration = models.root / DECLARATION
    examples: tuple[Example, ...] = ()
    if declaration.is_file():
        data = _read_json(declaration)
        raw_examples = data.pop("examples", [])
        found.update(_checked(data, str(declaration), _DECLARED))
        examples = tuple(_example(models.root, entry, f"{declaration} example {i + 1}") for i, entry in enumerate(raw_examples))
    defaults = replace(PageDefaults(), **found)
    return replace(defaults, examples=examples)


def _example(root: Path, entry: Any, where: str) -> Example:
    if not isinstance(entry, dict) or not isinstance(entry.get("prompt"), str):
        raise MotionkitError(f"{where}: an example is an object with a 'prompt' (and optionally 'image' and settings)")
    entry = dict(entry)
    prompt, image = entry.pop("prompt"), entry.pop("image", None)
    path = None
    if image is not None:
        path = (root / str(image)).resolve()
        if not path.is_file() or root.resolve() not in path.parents:
            raise MotionkitError(f"{where}: image {image!r} is not a file inside the models folder")
    settings = _checked(entry, where, {k: v for k, v in _DECLARED.items() if k != "about"})
    return Example(path, prompt, settings)
