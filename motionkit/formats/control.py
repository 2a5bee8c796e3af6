"""Loading ControlNet and SparseCtrl condition encoders as diffusers models, offline.

``load_control_model`` reads every file kind ``control_layout`` recognises and returns diffusers'
``ControlNetModel`` or ``SparseControlNetModel``:

- diffusers folders (``config.json`` + ``diffusion_pytorch_model.safetensors``/``.bin``);
- ControlNet single files in the original LDM layout (``control_v11p_sd15_openpose.pth``,
  ``control_sd15_canny.pth`` with its whole SD model, files without the ``control_model.`` prefix) or in
  diffusers' layout (SDXL ControlNets ship so), renamed by diffusers' ``convert_controlnet_checkpoint``;
- SparseCtrl single files in the original AnimateDiff layout (``v3_sd15_sparsectrl_rgb.ckpt``,
  ``v3_sd15_sparsectrl_scribble.ckpt``) or diffusers' layout.

Single files carry no config: the structure is read off the weights and the rest comes from the shipped
UNet config of their family, as the base-model loader does; nothing is fetched. Pickles are read with
``torch.load(weights_only=True)``. Every weight must be present and used (strict loading).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from motionkit.errors import FormatError
from motionkit.formats.control_layout import (
    CONTROLNET,
    FAMILY_NAMES,
    LDM_CONTROL_PREFIX,
    SPARSECTRL,
    control_kind,
    encoder_config,
    family_of,
    infer_encoder_config,
    is_original_sparsectrl,
    ldm_layers_per_block,
    sparsectrl_to_diffusers,
)

_UNET_CONFIGS = Path(__file__).resolve().parent.parent / "configs"
_KIND_NAMES = {CONTROLNET: "ControlNet", SPARSECTRL: "SparseCtrl encoder"}
# Where each kind goes on the command line (``motionkit animate``).
CLI_FLAGS = {CONTROLNET: "--controlnet", SPARSECTRL: "--sparsectrl"}


@dataclass
class ControlCheckpoint:
    """A condition encoder's weights under diffusers' names, with the config to build it from."""

    kind: str
    model_class: type
    config: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    family: str
    key_layout: str  # "original" or "diffusers"
    notes: list[str] = field(default_factory=list)

    @property
    def variant(self) -> str | None:
        """SparseCtrl's condition: ``rgb`` (a latent through one convolution), ``scribble`` (an image through
        the convolution tower), or the channel count for anything else."""
        if self.kind != SPARSECTRL:
            return None
        channels = self.config["conditioning_channels"]
        simplified = self.config["use_simplified_condition_embedding"]
        if (simplified, channels) == (True, 4):
            return "rgb"
        if (simplified, channels) == (False, 3):
            return "scribble"
        return f"{channels}-channel {'latent' if simplified else 'image'}"


def _classes() -> dict[str, type]:
    from diffusers import ControlNetModel, SparseControlNetModel

    return {CONTROLNET: ControlNetModel, SPARSECTRL: SparseControlNetModel}


def _family_unet_config(family: str) -> dict[str, Any]:
    folder = "sd15" if family == "custom" else family
    return json.loads((_UNET_CONFIGS / folder / "unet" / "config.json").read_text(encoding="utf-8"))


def _from_folder(kind: str, cls: type, tensors: dict[str, Any], config: Mapping[str, Any]) -> ControlCheckpoint:
    structure = infer_encoder_config(tensors, kind)
    fields = cls.extract_init_dict(dict(config))[0]
    return ControlCheckpoint(kind, cls, dict(fields), tensors, family_of(structure), "diffusers")


def _from_single_file(kind: str, cls: type, tensors: dict[str, Any]) -> ControlCheckpoint:
    notes: list[str] = []
    key_layout = "diffusers"
    if kind == CONTROLNET and "time_embedding.linear_1.weight" not in tensors:
        from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint

        bare = {k[len(LDM_CONTROL_PREFIX) :]: v for k, v in tensors.items() if k.startswith(LDM_CONTROL_PREFIX)}
        bare = bare or tensors  # files without the prefix (e.g. SD 2.x ControlNets)
        skipped = len(tensors) - len(bare)
        if skipped:
            notes.append(f"kept the control_model.* weights, skipped {skipped} others (the SD model it was trained with)")
        converted = convert_controlnet_checkpoint(bare, {"layers_per_block": ldm_layers_per_block(bare)})
        # diffusers' converter names a weight it did not find as None; those show up as missing below.
        tensors = {k: v for k, v in converted.items() if v is not None}
        key_layout = "original"
    elif kind == SPARSECTRL and is_original_sparsectrl(list(tensors)):
        tensors = sparsectrl_to_diffusers(tensors)
        key_layout = "original"
    structure = infer_encoder_config(tensors, kind)
    family = family_of(structure)
    config = encoder_config(cls, _family_unet_config(family), structure)
    return ControlCheckpoint(kind, cls, config, tensors, family, key_layout, notes)


def read_control_checkpoint(ckpt: Any, kind: str) -> ControlCheckpoint:
    """``ckpt`` (from ``detect.read_checkpoint``) as a ``ControlCheckpoint`` of ``kind``."""
    cls = _classes()[kind]
    where = str(ckpt.path)
    try:
        if ckpt.config is not None:
            return _from_folder(kind, cls, ckpt.tensors, ckpt.config)
        return _from_single_file(kind, cls, ckpt.tensors)
    except FormatError as err:
        message = str(err)
        raise FormatError(message if message.startswith(where) else f"{where}: {message}") from None
    except KeyError as err:
        raise FormatError(f"{where}: the {_KIND_NAMES[kind]} lacks the weight {err.args[0]!r}: the file is incomplete") from None


def describe(kind: str, key_layout: str, container: str) -> str:
    """``"SparseCtrl encoder (original AnimateDiff layout)"`` and the like, for messages."""
    layouts = {
        (CONTROLNET, "original"): "original LDM layout",
        (SPARSECTRL, "original"): "original AnimateDiff layout",
    }
    where = "diffusers folder" if container == "folder" else layouts.get((kind, key_layout), "diffusers layout")
    return f"{_KIND_NAMES[kind]} ({where})"


def not_an_adapter_message(ckpt: Any, kind: str) -> str:
    """The one-line refusal ``load_adapter`` gives a condition encoder."""
    return (
        f"{ckpt.path}: this is a {_KIND_NAMES[kind]}, not a motion adapter: pass it with {CLI_FLAGS[kind]} "
        "(in Python, motionkit.formats.load_control_model)"
    )


def _build(control: ControlCheckpoint, where: str, torch_dtype: torch.dtype | None) -> Any:
    from motionkit.utils.meta_load import empty_model, load_into

    fix = f"pass config= with the {control.model_class.__name__} config it was trained with"
    try:
        model = empty_model(control.model_class, control.config)
    except (ValueError, TypeError) as err:
        raise FormatError(f"{where}: the config does not build a {control.model_class.__name__} ({err}): {fix}") from None
    state = dict(control.state_dict)
    for name, table in model.named_buffers():
        # Files without position tables (AnimateDiff's loader drops them) get the model's own sinusoid.
        if name.endswith(".pos_embed.pe"):
            state.setdefault(name, table)
    load_into(model, state, where, fix, allow_extra=False)
    leftover = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if leftover:
        raise FormatError(f"{where}: no weights for {', '.join(leftover[:3])}: the checkpoint is incomplete")
    if torch_dtype is not None:
        model.to(torch_dtype)
    return model.eval()


def _load(path: str | Path, wanted: str | None, torch_dtype: torch.dtype | None, config: Mapping[str, Any] | None) -> Any:
    from motionkit.formats.checkpoint import read_checkpoint

    ckpt = read_checkpoint(path, mmap=True)
    kind = control_kind(list(ckpt.tensors), ckpt.config)
    if kind is None:
        raise FormatError(
            f"{ckpt.path}: not a ControlNet or SparseCtrl encoder (no controlnet_cond_embedding, zero convolutions or "
            "control_model weights): point at a ControlNet or SparseCtrl file or diffusers folder"
        )
    if wanted is not None and kind != wanted:
        raise FormatError(
            f"{ckpt.path}: this is a {_KIND_NAMES[kind]}, not a {_KIND_NAMES[wanted]}: pass it with {CLI_FLAGS[kind]}"
        )
    control = read_control_checkpoint(ckpt, kind)
    if config:
        control.config = {**control.config, **config}
    return _build(control, str(ckpt.path), torch_dtype)


def load_control_model(
    path: str | Path, torch_dtype: torch.dtype | None = None, *, config: Mapping[str, Any] | None = None
) -> Any:
    """A ``diffusers.ControlNetModel`` or ``diffusers.SparseControlNetModel`` from any file or folder that
    holds one (see the module docstring), without touching the network.

    ``config`` overrides fields of the model config (what weights cannot show, e.g. ``attention_head_dim``
    of an encoder trained with other heads than its family). Weights keep the file's dtype unless
    ``torch_dtype`` is given. The model is in eval mode on the CPU.
    """
    return _load(path, None, torch_dtype, config)


def load_controlnet(
    path: str | Path, torch_dtype: torch.dtype | None = None, *, config: Mapping[str, Any] | None = None
) -> Any:
    """``load_control_model`` for ControlNets only: a SparseCtrl file is refused in one line."""
    return _load(path, CONTROLNET, torch_dtype, config)


def load_sparsectrl(
    path: str | Path, torch_dtype: torch.dtype | None = None, *, config: Mapping[str, Any] | None = None
) -> Any:
    """``load_control_model`` for SparseCtrl encoders only: a ControlNet file is refused in one line."""
    return _load(path, SPARSECTRL, torch_dtype, config)


def describe_control(ckpt: Any, kind: str) -> Any:
    """``FormatInfo`` for a ControlNet or SparseCtrl file or folder (used by ``detect_format``)."""
    from motionkit.formats.checkpoint import FormatInfo, main_dtype

    control = read_control_checkpoint(ckpt, kind)
    cfg = control.config
    family = FAMILY_NAMES[control.family]
    notes = [describe(kind, control.key_layout, ckpt.container), *control.notes]
    if kind == SPARSECTRL:
        motion = cfg.get("motion_max_seq_length", 32)
        extra = "" if cfg.get("concat_conditioning_mask", True) is False else " + 1 mask"
        notes.append(f"condition: {cfg['conditioning_channels']} channels{extra}; own motion modules (up to {motion} frames)")
    else:
        notes.append(f"condition: {cfg.get('conditioning_channels', 3)}-channel image")
    notes.append(f"pass it with {CLI_FLAGS[kind]}")
    return FormatInfo(
        path=str(ckpt.path),
        format=kind,
        container=ckpt.container,
        version=control.variant or family,
        layout=f"{family} encoder, blocks {list(cfg['block_out_channels'])}",
        dtype=main_dtype(ckpt.tensors),
        # Position tables are fixed sinusoids, not parameters.
        parameters=sum(t.numel() for k, t in control.state_dict.items() if not k.endswith(".pos_embed.pe")),
        tensors=len(ckpt.tensors),
        max_frames=cfg.get("motion_max_seq_length") if kind == SPARSECTRL else None,
        config=cfg,
        notes=notes,
    )

