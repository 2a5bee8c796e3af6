"""The original AnimateDiff motion-module layout (guoyww/AnimateDiff ``.ckpt`` releases, and the single
files ComfyUI and A1111 AnimateDiff load).

motionkit's internal keys are these names already, so conversion only unwraps the container, drops
the fixed ``pos_encoder.pe`` tables (rebuilt from the sinusoid) and works out the config.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any, Mapping

import torch

from motionkit.errors import FormatError
from motionkit.formats.layout import (
    LATENT_CHANNELS,
    Converted,
    animatediff_version,
    complete_config,
    infer_layout,
    pia_image_cond_weight,
    pia_note,
)
from motionkit.modules.position import sinusoidal_table

PE_SUFFIX = ".pos_encoder.pe"
# AnimateLCM's own code names the same sinusoid table ``pos_encoder.pos_encoding`` (and makes it 64 frames long).
ANIMATELCM_PE_SUFFIX = ".pos_encoder.pos_encoding"
ANIMATELCM_TABLE = 64
_PE_KEY = re.compile(r"\.attention_blocks\.\d+\.pos_encoder\.(pe|pos_encoding)$")
_SD15_CHANNELS = (320, 640, 1280, 1280)


# The metadata key of an AnimateDiff file motionkit wrote: its whole config, so motionkit reads it back exactly.
METADATA_CONFIG_KEY = "motionkit_config"


def unwrap(obj: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a loaded checkpoint into its state dict and the other entries.

    Training runs save ``{"epoch", "global_step", "state_dict"}``; some releases add an
    ``animatediff_config`` entry. Both are read past, as the original loader does.
    """
    extras: dict[str, Any] = {}
    inner = obj
    # SparseCtrl releases may nest their weights under "controlnet".
    wrapper = next((k for k in ("state_dict", "controlnet") if isinstance(obj.get(k), Mapping)), None)
    if wrapper is not None:
        inner = obj[wrapper]
        extras.update({k: v for k, v in obj.items() if k != wrapper})
    tensors: dict[str, Any] = {}
    for key, value in inner.items():
        if isinstance(value, torch.Tensor):
            tensors[key] = value
        else:
            extras[key] = value
    # DataParallel-era training checkpoints prefix every key.
    if tensors and all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    return tensors, extras


def is_original_layout(keys: list[str]) -> bool:
    return any(".temporal_transformer." in k or ".temporal_conv." in k for k in keys if ".motion_modules." in k)


def _config_hints(extras: Mapping[str, Any], metadata: Mapping[str, str]) -> dict[str, Any]:
    """Config fields a file states about itself: motionkit's own metadata, or an ``animatediff_config``."""
    hints: dict[str, Any] = {}
    raw = metadata.get(METADATA_CONFIG_KEY)
    if raw:
        try:
            hints.update(json.loads(raw))
        except json.JSONDecodeError:
            pass
    cfg = extras.get("animatediff_config")
    if isinstance(cfg, Mapping):
        # Either the inference yaml as a dict or just its motion_module_kwargs.
        unet_kwargs = cfg.get("unet_additional_kwargs", cfg)
        kwargs = unet_kwargs.get("motion_module_kwargs", unet_kwargs) if isinstance(unet_kwargs, Mapping) else {}
        if isinstance(kwargs, Mapping):
            if isinstance(kwargs.get("num_attention_heads"), int):
                hints.setdefault("num_attention_heads", kwargs["num_attention_heads"])
            if isinstance(kwargs.get("temporal_position_encoding_max_len"), int):
                hints.setdefault("max_seq_length", kwargs["temporal_position_encoding_max_len"])
    return hints


def from_original(tensors: dict[str, Any], extras: Mapping[str, Any], metadata: Mapping[str, str]) -> Converted:
    notes: list[str] = []
    conv_in = tensors.get("conv_in.weight")
    # PIA (pia.ckpt, and PIA training runs) widens conv_in to 9 channels: the extra ones are its image branch.
    pia = conv_in is not None and len(conv_in.shape) == 4 and conv_in.shape[1] > LATENT_CHANNELS
    if conv_in is not None and any(".resnets." in k for k in tensors):
        # A whole-UNet training checkpoint: the motion modules are the adapter, the rest is the image model.
        dropped = sum(1 for k in tensors if ".motion_modules." not in k and not (pia and k.startswith("conv_in.")))
        notes.append(f"whole-UNet checkpoint: kept the motion modules, skipped {dropped} image-UNet tensors")
        tensors = {k: v for k, v in tensors.items() if ".motion_modules." in k}
    if pia:
        tensors = {k: v for k, v in tensors.items() if k not in ("conv_in.weight", "conv_in.bias")}
        tensors["image_cond_conv.weight"] = pia_image_cond_weight(conv_in)
        notes.append(pia_note(conv_in))
    tables = {k: v for k, v in tensors.items() if _PE_KEY.search(k)}
    state = {k: v for k, v in tensors.items() if not _PE_KEY.search(k)}
    lengths = {v.shape[1] for v in tables.values() if v.ndim == 3}
    if len(lengths) > 1:
        raise FormatError(f"pos_encoder.pe tables disagree on length ({sorted(lengths)}); the file is inconsistent")
    table_length = lengths.pop() if lengths else None
    inferred = infer_layout(state)
    animatelcm = any(k.endswith(ANIMATELCM_PE_SUFFIX) for k in tables) or table_length == ANIMATELCM_TABLE
    version = "animatelcm" if animatelcm else animatediff_version(inferred, table_length)
    hints = _config_hints(extras, metadata)
    defaults = {
        "max_seq_length": table_length or 32,
        # SD1.5 releases and Hotshot-XL normalise each frame; the SDXL beta's module normalises across frames.
        "temporal_norm": "across_frames" if version == "sdxl-beta" else "per_frame",
    }
    if table_length:
        hints.pop("max_seq_length", None)  # the table in the file is what its modules were trained with
    config = complete_config(inferred, hints, defaults)
    if pia:
        return Converted(state, config, "pia", "original", notes)
    is_motionkit = inferred.get("use_temporal_conv") or inferred.get("image_cond_channels")
    fmt = "motionkit" if is_motionkit else "animatediff"
    return Converted(state, config, fmt, None if is_motionkit else version, notes)


def to_original(adapter: Any) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Original-layout tensors (with ``pos_encoder.pe`` tables, which ComfyUI and A1111 read the frame
    limit from) and metadata carrying motionkit's config so motionkit reads it back exactly."""
    from motionkit.formats.motionkit_format import plain_config

    cfg = adapter.config
    if cfg.use_temporal_conv or not cfg.use_temporal_attention:
        raise FormatError(
            "this adapter has temporal convolutions, which the AnimateDiff layout cannot hold: save with format='motionkit'"
        )
    if cfg.image_cond_channels:
        raise FormatError(
            "this adapter has an image-conditioning branch, which the AnimateDiff layout cannot hold: "
            "save with format='motionkit' or 'diffusers'"
        )
    state = adapter.state_dict()
    out: dict[str, torch.Tensor] = dict(state)
    dtype = next(iter(state.values())).dtype
    for key, value in state.items():
        m = re.match(r"^(.*\.attention_blocks\.\d+)\.to_q\.weight$", key)
        if m:
            table = sinusoidal_table(cfg.max_seq_length, value.shape[0]).unsqueeze(0)
            out[m.group(1) + PE_SUFFIX] = table.to(dtype)
    heads = cfg.num_attention_heads
    if heads != 8 and tuple(cfg.block_out_channels) == _SD15_CHANNELS:
        warnings.warn(
            f"AnimateDiff loaders assume 8 attention heads; this adapter uses {heads}, so only motionkit reads it correctly",
            stacklevel=3,
        )
    sdxl = len(cfg.block_out_channels) == 3
    if (cfg.temporal_norm == "across_frames") != sdxl:
        warnings.warn(
            f"this adapter normalises {cfg.temporal_norm.replace('_', ' ')} but AnimateDiff loaders normalise "
            f"{'across frames' if sdxl else 'per frame'} for this layout; motionkit keeps the setting in the file metadata",
            stacklevel=3,
        )
    return out, {"format": "pt", METADATA_CONFIG_KEY: json.dumps(plain_config(adapter))}


def save_animatediff(adapter: Any, path: str | Path) -> None:
    from motionkit.formats.safe_load import save_safetensors

    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        raise FormatError(f"{path}: AnimateDiff-layout files are written as .safetensors: give a path ending in .safetensors")
    tensors, metadata = to_original(adapter)
    save_safetensors(tensors, path, metadata)
