"""Files shipped inside the package: example conditioning images and the tiny model family.

``tiny-family/`` is a complete, trained model family small enough for the repository (see its
``MODEL_CARD.md``): ``bases/tiny-base`` and ``bases/tiny-personalized`` (diffusers pipeline folders),
``adapters/tiny-motion`` (a motion adapter with an image-conditioning branch), ``loras/`` and
``examples/conditioning.png``. ``scripts/make_tiny_family.sh`` rebuilds it.
"""

from __future__ import annotations

from pathlib import Path

from motionkit.errors import MotionkitError

ASSETS_DIR = Path(__file__).resolve().parent
TINY_FAMILY_PARTS = ("bases/tiny-base", "bases/tiny-personalized", "adapters/tiny-motion")


def tiny_family_path() -> Path:
    """The shipped tiny family's folder; a one-line error when it (or a part of it) is missing."""
    root = ASSETS_DIR / "tiny-family"
    missing = [part for part in TINY_FAMILY_PARTS if not (root / part).is_dir()]
    if missing:
        raise MotionkitError(
            f"the tiny model family is missing ({root / missing[0]}): rebuild it with scripts/make_tiny_family.sh"
        )
    return root
