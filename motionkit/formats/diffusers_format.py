"""diffusers' ``MotionAdapter`` layout: ``config.json`` + ``diffusion_pytorch_model.safetensors``.

Keys drop ``temporal_transformer`` and number attentions and norms from one (see ``keys.py``); every
transformer block carries a persistent ``pos_embed.pe`` table; PIA adapters add a ``conv_in`` whose
first four input channels diffusers replaces with the UNet's own.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any, Mapping

import torch

from motionkit.errors import FormatError
from motionkit.formats.keys import from_diffusers_state_dict, to_diffusers_state_dict
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

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
# motionkit fields diffusers has no slot for ride along under a private key diffusers ignores.
PRIVATE_CONFIG_KEY = "_motionkit_config"

_PE_KEY = re.compile(r"\.transformer_blocks\.\d+\.pos_embed\.pe$")


def is_diffusers_layout(keys: list[str]) -> bool:
    return any(re.search(r"\.motion_modules\.\d+\.transformer_blocks\.\d+\.attn\d+\.", k) for k in keys)


def is_diffusers_config(config: Mapping[str, Any]) -> bool:
    return "motion_layers_per_block" in config or "motion_max_seq_length" in config


def _uniform(value: Any, name: str) -> int | None:
    if value is None or isinstance(value, int):
        return value
    flat = [v for item in value for v in (item if isinstance(item, (list, tuple)) else [item])]
    if len(set(flat)) != 1:
        raise FormatError(f"{name}={value} varies per block, which motionkit adapters cannot represent")
    return flat[0]


def _hints_from_config(config: Mapping[str, Any]) -> dict[str, Any]:
    hints: dict[str, Any] = {
        "block_out_channels": config.get("block_out_channels"),
        "layers_per_block": config.get("motion_layers_per_block"),
        "use_mid_block": config.get("use_motion_mid_block"),
        "mid_block_layers": config.get("motion_mid_block_layers_per_block"),
        "num_attention_heads": config.get("motion_num_attention_heads"),
        "norm_num_groups": config.get("motion_norm_num_groups"),
        "max_seq_length": config.get("motion_max_seq_length"),
        "transformer_layers_per_block": _uniform(
            config.get("motion_transformer_layers_per_block"), "motion_transformer_layers_per_block"
        ),
    }
    if config.get("conv_in_channels"):
        hints["image_cond_channels"] = int(config["conv_in_channels"]) - LATENT_CHANNELS
    private = config.get(PRIVATE_CONFIG_KEY)
    if isinstance(private, Mapping):
        hints.update(private)
    return {k: v for k, v in hints.items() if v is not None}


def from_diffusers(tensors: dict[str, Any], config: Mapping[str, Any] | None) -> Converted:
    notes: list[str] = []
    tensors = dict(tensors)
    conv_in = tensors.pop("conv_in.weight", None)
    tensors.pop("conv_in.bias", None)  # diffusers takes the UNet's conv_in bias, never the adapter's
    tables = {k: v for k, v in tensors.items() if _PE_KEY.search(k)}
    state = from_diffusers_state_dict({k: v for k, v in tensors.items() if k not in tables})
    if conv_in is not None:
        state["image_cond_conv.weight"] = pia_image_cond_weight(conv_in)
        notes.append(pia_note(conv_in))
    lengths = {v.shape[1] for v in tables.values() if v.ndim == 3}
    table_length = max(lengths) if lengths else None
    inferred = infer_layout(state)
    hints = _hints_from_config(config or {})
    defaults = {"max_seq_length": table_length or 32, "temporal_norm": "across_frames"}
    full = complete_config(inferred, hints, defaults)
    if conv_in is not None:
        return Converted(state, full, "pia", "diffusers", notes)
    version = animatediff_version(full, full["max_seq_length"])
    return Converted(state, full, "diffusers", version, notes)


def check_representable(cfg: Any) -> None:
    if cfg.use_temporal_conv or not cfg.use_temporal_attention:
        raise FormatError(
            "this adapter has temporal convolutions, which diffusers' MotionAdapter cannot hold: save with format='motionkit'"
        )
    if cfg.attentions_per_block != 2:
        raise FormatError(
            f"this adapter has {cfg.attentions_per_block} attentions per transformer block but diffusers' "
            "MotionAdapter always has 2: save with format='motionkit'"
        )


def to_diffusers(adapter: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from motionkit.formats.motionkit_format import plain_config

    import diffusers

    cfg = adapter.config
    check_representable(cfg)
    if cfg.temporal_norm == "per_frame":
        warnings.warn(
            "this adapter normalises per frame but diffusers' MotionAdapter normalises across frames, so diffusers "
            "will compute slightly different outputs (motionkit keeps the setting in config.json)",
            stacklevel=3,
        )
    state = adapter.state_dict()
    dtype = next(iter(state.values())).dtype
    tensors = to_diffusers_state_dict({k: v for k, v in state.items() if k != "image_cond_conv.weight"})
    for key, value in list(tensors.items()):
        m = re.match(r"^(.*\.motion_modules\.\d+\.transformer_blocks\.\d+)\.attn1\.to_q\.weight$", key)
        if m:
            tensors[m.group(1) + ".pos_embed.pe"] = sinusoidal_table(cfg.max_seq_length, value.shape[0]).unsqueeze(0).to(dtype)
    conv_in_channels = None
    if cfg.image_cond_channels:
        cond = state["image_cond_conv.weight"]
        zeros = torch.zeros(cond.shape[0], LATENT_CHANNELS, *cond.shape[2:], dtype=cond.dtype)
        tensors["conv_in.weight"] = torch.cat([zeros, cond], dim=1)
        tensors["conv_in.bias"] = torch.zeros(cond.shape[0], dtype=cond.dtype)
        conv_in_channels = LATENT_CHANNELS + cfg.image_cond_channels
    heads = cfg.num_attention_heads
    config = {
        "_class_name": "MotionAdapter",
        "_diffusers_version": diffusers.__version__,
        "block_out_channels": list(cfg.block_out_channels),
        "motion_layers_per_block": cfg.layers_per_block if isinstance(cfg.layers_per_block, int) else list(cfg.layers_per_block),
        "motion_transformer_layers_per_block": cfg.transformer_layers_per_block,
        "motion_mid_block_layers_per_block": cfg.mid_block_layers,
        "motion_transformer_layers_per_mid_block": cfg.transformer_layers_per_block,
        "motion_num_attention_heads": heads if isinstance(heads, int) else list(heads),
        "motion_norm_num_groups": cfg.norm_num_groups,
        "motion_max_seq_length": cfg.max_seq_length,
        "use_motion_mid_block": bool(cfg.use_mid_block),
        "conv_in_channels": conv_in_channels,
        PRIVATE_CONFIG_KEY: plain_config(adapter),
    }
    return tensors, config


def save_diffusers(adapter: Any, path: str | Path) -> None:
    from motionkit.formats.safe_load import save_safetensors
    from motionkit.utils.atomic import atomic_path

    path = Path(path)
    if path.suffix:
        raise FormatError(f"{path}: diffusers adapters are folders: give a path without a file suffix")
    tensors, config = to_diffusers(adapter)
    with atomic_path(path, is_dir=True) as tmp:
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        save_safetensors(tensors, tmp / WEIGHTS_NAME, {"format": "pt"})


def to_diffusers_adapter(adapter: Any) -> Any:
    """The same adapter as a ``diffusers.MotionAdapter`` (attention-only adapters; loaded strictly)."""
    import diffusers

    tensors, config = to_diffusers(adapter)
    reference = diffusers.MotionAdapter(**{k: v for k, v in config.items() if not k.startswith("_")})
    reference.load_state_dict(tensors, strict=True)
    return reference


def to_unet_motion_model(unet: Any, adapter: Any) -> Any:
    """diffusers' ``UNetMotionModel`` holding ``unet`` and ``adapter``: hand a motionkit adapter to diffusers code."""
    from diffusers import UNetMotionModel

    model = UNetMotionModel.from_unet2d(unet, to_diffusers_adapter(adapter))
    if getattr(unet, "add_embedding", None) is not None:
        # from_unet2d leaves SDXL's added-condition embedding at its random init; carry the UNet's over.
        model.add_embedding.load_state_dict(unet.add_embedding.state_dict())
    return model.eval()
