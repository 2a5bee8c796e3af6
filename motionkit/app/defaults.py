"""What the page opens with, read from the models themselves and from an optional ``motionkit-app.json``.

Without a declaration every default comes from the models: the size from the base's configs, the frames
from the adapter (``motionkit.model_defaults``, which ``motionkit animate`` shares), and generic sampling
settings. A models folder may declare better ones beside its models, in ``DIR/motionkit-app.json`` (the
schema is in ``motionkit.model_defaults``); what is the page's alone lives here: the ``about`` text shown at
its top, and the examples. Example images are paths inside the models folder; an example's other keys
override the defaults for that example only. The file is read when the page is built; a broken one is
refused in one line.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from motionkit.app.models import ModelsFolder
from motionkit.errors import MotionkitError
from motionkit.pipeline.image_familiarity import DECLARED_KEY
from motionkit.model_defaults import (  # noqa: F401  (re-exported: the app's names for them)
    DECLARATION,
    DECLARED,
    FALLBACK_FRAMES,
    FALLBACK_SIZE,
    adapter_config,
    checked,
    native_size,
    read_declaration,
    training_frames,
)


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
    # How the image enters guidance (motionkit.pipeline.conditioning): PIA's unless declared.
    image_guidance: str = "pia"
    # Share of each frame's starting noise from the image's DDIM inversion (motionkit.pipeline.inversion): off unless declared.
    image_inversion: float = 0.0
    # Correlation of the starting noise between frames (motionkit.noise_prior): 0, independent, unless declared.
    noise_correlation: float = 0.0
    # Text-to-video's frame noise means (motionkit.noise_prior.with_frame_means): as drawn unless declared.
    frame_noise_means: str = "drawn"
    # Text-to-video's FreeInit passes (motionkit.pipeline.free_init): 0, off, unless declared.
    free_init: int = 0
    fps: float = 8.0
    negative_prompt: str = ""
    seed: int = 0
    about: str = ""
    examples: tuple[Example, ...] = ()
    # The declaration's settings for images unlike the models' world (motionkit.pipeline.image_familiarity).
    unfamiliar_rule: dict[str, Any] | None = None

    def settings(self) -> dict[str, Any]:
        """The per-request settings (no text about the models, no examples); ``unfamiliar_images``, whether the
        declared rule for unfamiliar images applies, is on when the folder declares one."""
        skip = {"about", "examples", "negative_prompt", "unfamiliar_rule"}
        found = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}
        return {**found, "unfamiliar_images": self.unfamiliar_rule is not None}


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


def page_defaults(models: ModelsFolder, base: str | None = None) -> PageDefaults:
    """The defaults for ``models`` with the base named ``base`` (None: its first, which the page opens with):
    measured from that base and the first adapter, then the declaration on top, with that base's own settings."""
    bases, adapters = models.listing("base"), models.listing("adapter")
    base = base if base is not None else next(iter(bases), None)
    found: dict[str, Any] = {}
    if base in bases:
        size = native_size(bases[base])
        if size:
            found["width"] = found["height"] = size
    if adapters:
        found["frames"] = training_frames(adapter_config(next(iter(adapters.values()))))
    declaration = read_declaration(models.root)
    examples: tuple[Example, ...] = ()
    if declaration is not None:
        found.update(declaration.for_base(base))
        if DECLARED_KEY in found:
            found["unfamiliar_rule"] = found.pop(DECLARED_KEY)
        examples = tuple(
            _example(models.root, entry, f"{declaration.path} example {i + 1}") for i, entry in enumerate(declaration.examples)
        )
    defaults = replace(PageDefaults(), **found)
    return replace(defaults, examples=examples)


def base_settings(models: ModelsFolder, name: str) -> dict[str, Any]:
    """The settings the page sets when the base ``name`` is chosen: every setting some base of the declaration
    sets for itself (``bases``), at its value for ``name``, so a base without its own gets the folder's back."""
    from motionkit.model_defaults import BASES_KEY

    declaration = read_declaration(models.root)
    own = declaration.settings.get(BASES_KEY, {}) if declaration is not None else {}
    fields = {key for settings in own.values() for key in settings}
    values = page_defaults(models, name).settings()
    return {key: values[key] for key in sorted(fields) if key in values}


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
    settings = checked(entry, where, {k: v for k, v in DECLARED.items() if k not in ("about", "unfamiliar_images")})
    return Example(path, prompt, settings)
