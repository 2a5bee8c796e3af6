"""Defaults read from the models themselves and from a models folder's optional ``motionkit-app.json``.

What the models say: the base's native size from a diffusers folder's configs (the UNet's ``sample_size``
times the VAE's downsampling), and the adapter's training length (a recorded ``training_frames`` in its
config, within its position table). What a models folder may declare beside its models, in
``DIR/motionkit-app.json``::

    {
      "frames": 8, "steps": 25, "guidance": 4.0, "scheduler": "ddim", "strength": 0.5,
      "anchor_first_frame": true, "image_guidance": "svd", "image_inversion": 0.3, "noise_correlation": 0.5,
      "frame_noise_means": "shared", "free_init": 2, "fps": 8, "negative_prompt": "",
      "unfamiliar_images": {"denoising_error_above": 0.067, "image_inversion": 0.5, "guidance": 2.0},
      "bases": {"my-personalized": {"strength": 0.7, "image_inversion": 0.2}},
      "about": "Markdown shown at the top of the page: what these models can and cannot draw.",
      "examples": [{"image": "examples/conditioning.png", "prompt": "...", "frames": 8, "seed": 1}]
    }

``unfamiliar_images`` (``motionkit.pipeline.image_familiarity``): the settings for an image the image model
denoises worse than the limit (one number, or one per base name), one unlike the models' own world. ``bases``
gives one base (by its name in ``DIR/bases/``) settings of its own over the folder's, for a checkpoint that
animates best otherwise (``Declaration.for_base``). Every key
is optional. A broken declaration is refused in one line, so a typo does not silently fall back to unsuited
defaults. The app (``motionkit.app.defaults``) opens its page with these, ``motionkit animate``
fills the settings a user did not give from them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from motionkit.errors import MotionkitError, check_each
from motionkit.models_folder import KINDS, ModelsFolder

DECLARATION = "motionkit-app.json"
FALLBACK_SIZE = 512  # single-file checkpoints carry no config: SD 1.x's native size
FALLBACK_FRAMES = 16  # AnimateDiff's motion modules train on 16 frames
# Keys that name the training length in adapter configs: motionkit's own first, then other tools' spellings.
TRAINING_FRAMES_KEYS = ("training_frames", "train_frames", "num_frames")

# Keys a declaration may set, with the type each must have.
DECLARED: dict[str, tuple[type, ...]] = {
    "frames": (int,), "width": (int,), "height": (int,), "steps": (int,), "guidance": (int, float),
    "scheduler": (str,), "strength": (int, float), "anchor_first_frame": (bool,), "image_guidance": (str,),
    "image_inversion": (int, float), "noise_correlation": (int, float),
    "frame_noise_means": (str,), "free_init": (int,), "fps": (int, float),
    "negative_prompt": (str,), "seed": (int,), "about": (str,),
    "unfamiliar_images": (dict,), "bases": (dict,),
}
# What one base may set over the folder's settings: the sampling ones (its text and image rules are the folder's).
PER_BASE = {k: kinds for k, kinds in DECLARED.items() if k not in ("about", "unfamiliar_images", "bases")}
BASES_KEY = "bases"


@dataclass(frozen=True)
class Declaration:
    """A models folder's ``motionkit-app.json``: its checked settings and its examples as written."""

    path: Path
    settings: dict[str, Any]
    examples: tuple[Any, ...] = ()

    def for_base(self, name: str | None) -> dict[str, Any]:
        """The settings for the base ``name`` (None: no base in particular): the folder's, with that base's own
        (``bases``) on top; without the ``bases`` table itself."""
        own = self.settings.get(BASES_KEY, {}).get(name, {}) if name is not None else {}
        return {**{k: v for k, v in self.settings.items() if k != BASES_KEY}, **own}


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``, or one line saying why it is not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise MotionkitError(f"{path}: not readable JSON ({str(err)[:80]}); fix or remove it") from None
    if not isinstance(data, dict):
        raise MotionkitError(f"{path}: must hold a JSON object of settings")
    return data


def checked(data: dict[str, Any], where: str, allowed: dict[str, tuple[type, ...]]) -> dict[str, Any]:
    """``data`` when every key is in ``allowed`` with a value of its type; else one line naming the first fault."""
    for key, value in data.items():
        if key not in allowed:
            raise MotionkitError(f"{where}: unknown key {key!r}; use {', '.join(sorted(allowed))}")
        kinds = allowed[key]
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            raise MotionkitError(f"{where}: {key} must be {' or '.join(k.__name__ for k in kinds)}, got {value!r}")
    return data


def read_declaration(root: Path) -> Declaration | None:
    """The declaration of the models folder ``root`` (None when it has none), checked."""
    path = root / DECLARATION
    if not path.is_file():
        return None
    data = read_json(path)
    examples = data.pop("examples", [])
    if not isinstance(examples, list):
        raise MotionkitError(f"{path}: examples must be a list of objects, each with a 'prompt'")
    settings = checked(data, str(path), DECLARED)
    from motionkit.noise_prior import check_frame_noise_means, check_noise_correlation
    from motionkit.pipeline.conditioning import check_image_guidance
    from motionkit.pipeline.free_init import check_free_init
    from motionkit.pipeline.image_familiarity import DECLARED_KEY, unfamiliar_images_rule
    from motionkit.pipeline.inversion import check_image_inversion

    checks = {"noise_correlation": check_noise_correlation, "frame_noise_means": check_frame_noise_means,
              "image_guidance": check_image_guidance, "image_inversion": check_image_inversion, "free_init": check_free_init}
    check_each(settings, checks, str(path))
    own_settings = settings.get(BASES_KEY, {})
    listed = ModelsFolder(root).names("base") if own_settings else []
    for name, own in own_settings.items():
        where = f"{path}: bases: {name}"
        if name not in listed:  # a misspelt name would otherwise leave that base on the folder's settings unseen
            raise MotionkitError(f"{where}: no base of that name in bases/; use one of {', '.join(listed) or 'none listed'}")
        if not isinstance(own, dict):
            raise MotionkitError(f"{where} must be an object of settings, e.g. {{\"strength\": 0.7}}")
        check_each(checked(own, where, PER_BASE), checks, where)
    if DECLARED_KEY in settings:
        unfamiliar_images_rule(settings[DECLARED_KEY], str(path), folder=root)
    return Declaration(path, settings, tuple(examples))


def models_folder_of(base: Path) -> Path | None:
    """The models folder a base lies in (``DIR/bases/NAME`` with a declaration in ``DIR``), else None."""
    parent = Path(base).absolute().parent
    if parent.name != KINDS["base"][0] or not (parent.parent / DECLARATION).is_file():
        return None
    return parent.parent


def native_size(base: Path) -> int | None:
    """The base's native side in pixels from a diffusers folder's configs (None for single files)."""
    unet, vae = base / "unet" / "config.json", base / "vae" / "config.json"
    if not (unet.is_file() and vae.is_file()):
        return None
    sample_size = read_json(unet).get("sample_size")
    blocks = read_json(vae).get("block_out_channels")
    if not isinstance(sample_size, int) or not isinstance(blocks, list) or not blocks:
        return None
    return sample_size * 2 ** (len(blocks) - 1)


def adapter_config(path: Path) -> dict[str, Any]:
    """The adapter's config as far as it can be read without loading weights ({} when it cannot).

    A diffusers folder written by motionkit keeps motionkit's whole config under a private key; its
    entries are merged in, so what diffusers' config has no field for (training frames, the image branch)
    still reads."""
    if path.is_dir():
        from motionkit.formats.diffusers_format import PRIVATE_CONFIG_KEY

        file = path / "config.json"
        config = read_json(file) if file.is_file() else {}
        private = config.get(PRIVATE_CONFIG_KEY)
        return {**config, **private} if isinstance(private, dict) else config
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
    from motionkit.formats.animatediff import METADATA_CONFIG_KEY

    # motionkit's own single file keeps its config under "config", an AnimateDiff file motionkit wrote under its own key.
    raw = metadata.get("config", metadata.get(METADATA_CONFIG_KEY))
    if raw is not None:
        try:
            config = json.loads(raw)
            return config if isinstance(config, dict) else {}
        except ValueError:
            return {}
    return {"image_cond_channels": cond_shape[1]} if cond_shape else {}


def _position_table(config: dict[str, Any]) -> int | None:
    table = config.get("max_seq_length", config.get("motion_max_seq_length"))
    return table if isinstance(table, int) and not isinstance(table, bool) and table > 0 else None


def recorded_training_frames(config: dict[str, Any]) -> int | None:
    """Frames the adapter was trained on as its config records them, within its position table (None: not recorded)."""
    for key in TRAINING_FRAMES_KEYS:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            table = _position_table(config)
            return min(value, table) if table else value
    return None


def training_frames(config: dict[str, Any]) -> int:
    """Frames the adapter was trained on, as recorded in its config, else AnimateDiff's 16 (within its table)."""
    recorded = recorded_training_frames(config)
    if recorded is not None:
        return recorded
    table = _position_table(config)
    return min(FALLBACK_FRAMES, table) if table else FALLBACK_FRAMES
