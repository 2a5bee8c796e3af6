"""The tiny family's folder layout: find its parts, or write a random stand-in with the same layout.

A models folder laid out as the shipped family (``motionkit/assets/tiny-family``) is::

    bases/tiny-base/  bases/tiny-personalized/   diffusers pipeline folders
    adapters/tiny-motion[/ or .safetensors]      motion adapter with an image-conditioning branch
    examples/conditioning.png                    the frame to animate (its caption, if any: conditioning.txt)

and optionally (``None`` on ``TinyFamily`` when absent)::

    encoders/tiny-sparsectrl-rgb/                SparseCtrl RGB keyframe encoder (diffusers folder)
    controlnets/tiny-controlnet-depth/           depth ControlNet (diffusers folder)
    loras/tiny-zoom-in.safetensors               zoom-in MotionLoRA
    examples/conditioning-personalized.png       the same frame in the personalized variant's style (same caption)

``motionkit demo``, the examples and the tests all reach the family through ``TinyFamily``.

``world_reference_clips`` gives real clips of the family's world to measure generated videos against: the
example frame's own source clip when the example is one (the shipped family's is), else clips of unseen seeds.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from motionkit.errors import MotionkitError

BASE, PERSONALIZED, ADAPTER = "tiny-base", "tiny-personalized", "tiny-motion"
ENCODER, CONTROLNET, MOTION_LORA = "tiny-sparsectrl-rgb", "tiny-controlnet-depth", "tiny-zoom-in"
CONDITIONING = Path("examples") / "conditioning.png"
# The example frame as the personalized variant draws its world: what its users animate (a still it made).
PERSONALIZED_CONDITIONING = Path("examples") / "conditioning-personalized.png"
# The world style the personalized variant was fine-tuned on (examples/tiny_family/personalized.yaml).
PERSONALIZED_STYLE = "neon"
# The shipped example frame is frame 0 of the world clip whose spec a numpy generator with this seed draws
# (scripts/make_tiny_family.sh renders it at 64 px): a red boat on a calm sea under the sun, the camera panning.
# No training clip comes from this generator.
EXAMPLE_WORLD_SEED = 3
# The motion adapter trains on frames this far apart in the world's clips (examples/tiny_family/motion.yaml).
TRAINING_STRIDE = 2
# Fresh generators for reference clips when the example is not a world frame: seeds no training set used.
UNSEEN_WORLD_SEEDS = (1001, 1002, 1003)


@dataclass(frozen=True)
class TinyFamily:
    """Paths of a models folder laid out as the tiny family is (see the module docstring)."""

    root: Path
    base: Path
    personalized: Path
    adapter: Path
    conditioning: Path
    prompt: str
    encoder: Path | None = None
    controlnet: Path | None = None
    motion_lora: Path | None = None
    personalized_conditioning: Path | None = None

    @classmethod
    def find(cls, models_dir: str | Path | None = None) -> "TinyFamily":
        """``models_dir`` when given, else the family shipped with motionkit."""
        return cls.at(models_dir if models_dir is not None else shipped_family_dir())

    @classmethod
    def at(cls, root: str | Path) -> "TinyFamily":
        """Look the entries up; refuse, in one line, a folder that lacks one."""
        from motionkit.models_folder import ModelsFolder

        root = Path(root)
        if not root.is_dir():
            raise MotionkitError(f"{root}: no such models folder; pass --models-dir DIR (layout: bases/, adapters/, examples/)")
        models = ModelsFolder(root)
        conditioning = root / CONDITIONING
        if not conditioning.is_file():
            raise MotionkitError(f"{root}: no {CONDITIONING.as_posix()}; put the frame to animate there")
        # Without a caption the image alone conditions the video (an empty prompt is what training drops to).
        caption = conditioning.with_suffix(".txt")
        prompt = caption.read_text(encoding="utf-8").strip() if caption.is_file() else ""

        def entry(kind: str, name: str) -> Path:
            found = models.listing(kind).get(name)
            if found is None:
                folder = "bases" if kind == "base" else "adapters"
                raise MotionkitError(f"{root}: no {folder}/{name} (a folder or file); the tiny family's layout needs it")
            return found

        personal = root / PERSONALIZED_CONDITIONING
        return cls(
            root=root,
            base=entry("base", BASE),
            personalized=entry("base", PERSONALIZED),
            adapter=entry("adapter", ADAPTER),
            conditioning=conditioning,
            prompt=prompt,
            encoder=models.listing("encoder").get(ENCODER),
            controlnet=models.listing("controlnet").get(CONTROLNET),
            motion_lora=models.listing("lora").get(MOTION_LORA),
            personalized_conditioning=personal if personal.is_file() else None,
        )


def shipped_family_dir() -> Path:
    """Where the tiny family ships inside the package; a one-line error when this install lacks it."""
    from motionkit.assets import tiny_family_path

    return tiny_family_path()


def write_stand_in_family(root: str | Path, seed: int = 0) -> TinyFamily:
    """A random models folder with the tiny family's layout, for tests and for trying the tools without it.

    Built on ``motionkit.models_folder.write_demo_models`` (base, adapter, MotionLoRA, SparseCtrl encoder,
    ControlNet, all shaped for its UNet): the base and the optional entries take the family's names, a nudged
    copy of its UNet plays the personalized variant, and the adapter gains a small random image branch.
    Untrained: its videos are coloured noise, so only the mechanics can be checked with it.
    """
    import torch
    from diffusers import UNet2DConditionModel
    from PIL import Image, ImageOps

    from motionkit.adapter import MotionAdapter
    from motionkit.models_folder import write_demo_models
    from motionkit.formats import load_adapter, save_adapter

    models = write_demo_models(root, seed=seed)
    root = models.root
    base = root / "bases" / BASE
    (root / "bases" / "tiny-sd").rename(base)
    # write_demo_models writes one entry of each optional kind; they become the family's.
    for kind, name in (("encoder", ENCODER), ("controlnet", CONTROLNET), ("lora", MOTION_LORA)):
        (found,) = models.listing(kind).values()
        found.rename(found.with_name(name + found.suffix))
    personalized = root / "bases" / PERSONALIZED
    shutil.copytree(base, personalized)
    unet = UNet2DConditionModel.from_pretrained(personalized / "unet")
    generator = torch.Generator().manual_seed(seed + 2)
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.01 * p.std().nan_to_num())
    unet.save_pretrained(personalized / "unet")

    plain = root / "adapters" / "tiny-motion.safetensors"
    motion = load_adapter(plain)
    conditioned = MotionAdapter.from_config({**motion.config, "image_cond_channels": 5})
    conditioned.load_state_dict(motion.state_dict(), strict=False)
    with torch.no_grad():
        conditioned.image_cond_conv.weight.normal_(0.0, 0.02, generator=generator)
    save_adapter(conditioned, root / "adapters" / ADAPTER)
    plain.unlink()  # one adapter named tiny-motion, as in the real family

    (root / CONDITIONING).parent.mkdir(parents=True, exist_ok=True)
    example = Path(__file__).resolve().parent / "assets" / "examples" / "red-ball.png"
    shutil.copyfile(example, root / CONDITIONING)
    # The personalized variant's "own style": the example with its colours inverted.
    ImageOps.invert(Image.open(example).convert("RGB")).save(root / PERSONALIZED_CONDITIONING)
    (root / "MODEL_CARD.md").write_text(
        "# Stand-in tiny family\n\nRandom, untrained weights with the tiny family's layout, for tests.\n", encoding="utf-8"
    )
    return TinyFamily.at(root)


def world_reference_clips(
    conditioning: str | Path, frames: int, *, stride: int = TRAINING_STRIDE, size: int | None = None
) -> tuple[list["np.ndarray"], str]:
    """Real world clips of ``frames`` frames ``stride`` apart, uint8 ``[F, H, W, 3]``, and where they come from.

    When ``conditioning`` is frame 0 of the clip drawn from ``EXAMPLE_WORLD_SEED`` in any of the world's
    styles (the shipped examples are), that clip alone, in that style, at the image's size: what the example
    really went on to show. Otherwise one clip per
    ``UNSEEN_WORLD_SEEDS`` at ``size`` px (default: the image's short side): clips no model of the family
    saw, as a reference for how much a real clip changes after its first frame.
    """
    import numpy as np
    from PIL import Image

    from motionkit.data.world import KINDS, STYLES, random_spec, render_clip

    if frames < 1 or stride < 1:
        raise MotionkitError(f"reference clips need frames >= 1 and stride >= 1, got {frames} and {stride}")
    with Image.open(conditioning) as opened:
        image = np.asarray(opened.convert("RGB"))
    height, width = image.shape[:2]

    def clip(seed: int, side: int, length: int, kinds: tuple[str, ...] = KINDS, style: str = "natural") -> np.ndarray:
        # The spec's draws depend on neither its length, size nor style: frame 0 is the same scene for any.
        spec = random_spec(np.random.default_rng(seed), style=style, frames=length, size=side, kinds=kinds)
        return render_clip(spec)[::stride]

    # A family rendered before landscapes joined the world drew its example from the pattern scenes alone.
    for kinds in (KINDS, ("pattern",)):
        for style in STYLES:
            if height == width and np.array_equal(clip(EXAMPLE_WORLD_SEED, height, 1, kinds, style)[0], image):
                source = clip(EXAMPLE_WORLD_SEED, height, (frames - 1) * stride + 1, kinds, style)
                named = "" if style == "natural" else f", {style} style"
                return [source], f"the example's source clip (world seed {EXAMPLE_WORLD_SEED}{named})"
    side = size or min(height, width)
    seeds = ", ".join(map(str, UNSEEN_WORLD_SEEDS))
    clips = [clip(seed, side, (frames - 1) * stride + 1) for seed in UNSEEN_WORLD_SEEDS]
    return clips, f"unseen world clips (seeds {seeds})"
