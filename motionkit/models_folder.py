"""A models folder: what it lists, how a listed name becomes a path, and a tiny demo folder.

The app serves one; the tiny family (``motionkit.family``) is laid out as one.

Layout (every entry's name is what the page shows)::

    DIR/bases/<name>/                 a diffusers pipeline folder (holds model_index.json)
    DIR/bases/<name>.safetensors      a single-file checkpoint (.safetensors or .ckpt)
    DIR/adapters/<name>/              a motion adapter folder (motionkit or diffusers layout)
    DIR/adapters/<name>.safetensors   a motion adapter file (.safetensors, .ckpt, .pt, .pth, .bin)
    DIR/loras/<name>.safetensors      a MotionLoRA (.safetensors or .ckpt)
    DIR/image-loras/<name>.safetensors  an image LoRA for the base (style, character; .safetensors or .ckpt)
    DIR/encoders/<name>/              a SparseCtrl keyframe encoder (diffusers folder, or a single file)
    DIR/controlnets/<name>/           a ControlNet (diffusers folder, or a single file)
    DIR/ip-adapters/<name>.safetensors  an IP-Adapter (h94 layout, .safetensors or .bin), with its CLIP image
                                      encoder in DIR/ip-adapters/image_encoder/ (h94's models/ folder as it comes)
    DIR/motionkit-app.json            the page's defaults and examples (optional; see ``motionkit.model_defaults``)

Files are listed under their stem (``dreamshaper.safetensors`` -> ``dreamshaper``) unless two entries
share it. Names from the page are looked up in a fresh listing: nothing the user sends is ever joined
onto a path, so ``../`` and absolute paths are refused like any other unknown name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from motionkit.errors import MotionkitError, echo

DEFAULT_MODELS_DIR = Path(__file__).resolve().parent / "assets" / "tiny-family"
MODEL_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
KINDS: dict[str, tuple[str, tuple[str, ...]]] = {
    # kind -> (subfolder, file suffixes it accepts); folders are accepted for every kind but LoRAs
    "base": ("bases", (".safetensors", ".ckpt")),
    "adapter": ("adapters", MODEL_SUFFIXES),
    "lora": ("loras", (".safetensors", ".ckpt")),
    "image_lora": ("image-loras", (".safetensors", ".ckpt")),
    "encoder": ("encoders", MODEL_SUFFIXES),
    "controlnet": ("controlnets", MODEL_SUFFIXES),
    "ip_adapter": ("ip-adapters", (".safetensors", ".bin")),
}
# The IP-Adapters' CLIP image encoder: one folder beside their files, as h94/IP-Adapter lays them out.
IP_ENCODER_FOLDER = "image_encoder"

FOLDER_KINDS = ("adapter", "encoder", "controlnet")


def _accepts(kind: str, entry: Path) -> bool:
    if entry.name.startswith("."):
        return False
    if entry.is_dir():
        if kind == "base":
            return (entry / "model_index.json").is_file()
        return kind in FOLDER_KINDS
    return entry.is_file() and entry.suffix.lower() in KINDS[kind][1]


def entry_name(entry: Path) -> str:
    """The name a models folder lists ``entry`` by: a file's stem, a folder's name (``listing`` adds the suffix
    only where two entries share a stem)."""
    return entry.stem if entry.is_file() else entry.name


@dataclass(frozen=True)
class ModelsFolder:
    """A models folder laid out as the module docstring says."""

    root: Path

    def listing(self, kind: str) -> dict[str, Path]:
        """Name -> path of every usable entry of ``kind`` (one of ``KINDS``), sorted by name."""
        if kind not in KINDS:
            raise MotionkitError(f"unknown model kind {kind!r}: choose one of {', '.join(KINDS)}")
        folder = self.root / KINDS[kind][0]
        entries = sorted(e for e in folder.iterdir() if _accepts(kind, e)) if folder.is_dir() else []
        stems = [entry_name(e) for e in entries]
        return {
            (stem if stems.count(stem) == 1 else entry.name): entry for stem, entry in zip(stems, entries)
        }

    def names(self, kind: str) -> list[str]:
        return list(self.listing(kind))

    def resolve(self, kind: str, name: object) -> Path:
        """The path of the listed entry ``name``; anything else (``../x``, a path, a typo) is refused."""
        listing = self.listing(kind)
        if isinstance(name, str) and name in listing:
            return listing[name]
        shown = echo(name)
        choices = ", ".join(listing) or f"none: put some in {KINDS[kind][0]}/"
        raise MotionkitError(f"unknown {kind.replace('_', ' ')} {shown}: choose one listed by this server ({choices})")

    def check(self) -> None:
        """Refuse, in one line, a folder the app cannot serve anything from."""
        if not self.root.is_dir():
            raise MotionkitError(f"{self.root}: no such models folder; pass --models-dir DIR (see docs/app.md)")
        for kind in ("base", "adapter"):
            if not self.listing(kind):
                sub = KINDS[kind][0]
                raise MotionkitError(
                    f"{self.root}: no {kind} in {sub}/; put at least one there (layout: bases/, adapters/, loras/; see docs/app.md)"
                )


def write_demo_models(root: str | Path, seed: int = 0) -> ModelsFolder:
    """Write a tiny, random models folder (one base, one adapter, one MotionLoRA, one image LoRA, one SparseCtrl
    encoder, one ControlNet) for tests and trying the UI.

    The models are untrained: videos are coloured noise, but every part of the app runs. Returns the folder.
    """
    import torch
    from diffusers import StableDiffusionPipeline

    from motionkit.adapter import MotionAdapter
    from motionkit.formats import MotionLoRA, save_adapter, save_motion_lora
    from motionkit.tiny import randomize_, tiny_pipeline_components

    root = Path(root)
    components = tiny_pipeline_components(seed=seed)
    StableDiffusionPipeline(
        **components, safety_checker=None, feature_extractor=None, requires_safety_checker=False
    ).save_pretrained(root / "bases" / "tiny-sd")
    # Small random weights: a zero-initialised adapter is the identity and would not show it is in the path.
    adapter = randomize_(MotionAdapter.from_unet(components["unet"]), seed=seed, std=0.02)
    (root / "adapters").mkdir(parents=True, exist_ok=True)
    save_adapter(adapter, root / "adapters" / "tiny-motion.safetensors")

    generator = torch.Generator().manual_seed(seed + 1)
    down, up = {}, {}
    for name, module in adapter.named_modules():
        if name.endswith((".to_q", ".to_k", ".to_v", ".to_out.0")) and isinstance(module, torch.nn.Linear):
            down[name] = torch.randn(2, module.in_features, generator=generator) * 0.2
            up[name] = torch.randn(module.out_features, 2, generator=generator) * 0.2
    (root / "loras").mkdir(parents=True, exist_ok=True)
    save_motion_lora(MotionLoRA(down, up), root / "loras" / "tiny-pan.safetensors")
    write_demo_image_lora(components, root / "image-loras" / "tiny-style.safetensors", seed=seed + 2)
    write_demo_control_models(components["unet"], root, seed=seed + 3)
    return ModelsFolder(root)


def write_demo_control_models(unet: Any, root: Path, seed: int = 0) -> tuple[Path, Path]:
    """A random RGB SparseCtrl encoder (``encoders/tiny-sparsectrl/``) and a random ControlNet
    (``controlnets/tiny-controlnet/``) shaped for ``unet``, as diffusers folders.

    Every weight is random, zero convolutions included: freshly made control models add nothing and
    would not show that they are in the path.
    """
    from diffusers import ControlNetModel

    from motionkit.tiny import randomize_
    from motionkit.train.encoder import sparse_controlnet_from_unet

    encoder = randomize_(sparse_controlnet_from_unet(unet), seed=seed, std=0.05).eval()
    controlnet = randomize_(ControlNetModel.from_unet(unet), seed=seed + 1, std=0.05).eval()
    paths = root / KINDS["encoder"][0] / "tiny-sparsectrl", root / KINDS["controlnet"][0] / "tiny-controlnet"
    for model, path in zip((encoder, controlnet), paths):
        model.save_pretrained(path)
    return paths


def write_demo_image_lora(components: dict, path: Path, seed: int = 0, rank: int = 2) -> Path:
    """A random rank-``rank`` image LoRA in the diffusers/peft layout on the base's first self-attention
    query and its text encoder's first query projection."""
    import torch
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(seed)

    def module(model: Any, suffix: str) -> Any:
        # Found by suffix: transformers releases nest the CLIP text model differently.
        return next(m for name, m in model.named_modules() if name.endswith(suffix))

    targets = {
        "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q": module(
            components["unet"], "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"
        ),
        "text_encoder.text_model.encoder.layers.0.self_attn.q_proj": module(
            components["text_encoder"], "layers.0.self_attn.q_proj"
        ),
    }
    tensors = {}
    for name, layer in targets.items():
        tensors[f"{name}.lora_A.weight"] = torch.randn(rank, layer.in_features, generator=generator) * 0.5
        tensors[f"{name}.lora_B.weight"] = torch.randn(layer.out_features, rank, generator=generator) * 0.5
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    return path
