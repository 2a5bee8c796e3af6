"""ControlNet and SparseCtrl files: what kind a checkpoint is, its keys in diffusers' layout, and the
encoder config its weights imply.

Both are the encoder half of an image UNet (``conv_in``, ``time_embedding``, ``down_blocks``,
``mid_block``) plus zero convolutions (``controlnet_down_blocks``, ``controlnet_mid_block``) and a
condition embedding:

- ControlNet (lllyasviel releases): the original LDM layout (``input_blocks``, ``zero_convs``,
  ``input_hint_block``, with or without a ``control_model.`` prefix), or diffusers' ``ControlNetModel``.
  The LDM names are renamed by diffusers' own ``convert_controlnet_checkpoint``.
- SparseCtrl (AnimateDiff v3 ``v3_sd15_sparsectrl_{rgb,scribble}.ckpt``): diffusers-style names already,
  with AnimateDiff motion modules in every down block (one temporal self-attention each). RGB embeds a
  4-channel latent + mask with one convolution (``controlnet_cond_embedding.weight``); scribble embeds a
  3-channel image + mask through ControlNet's convolution tower (``controlnet_cond_embedding.conv_in``).

What weights cannot tell (attention heads, norm groups, epsilons) comes from the shipped UNet config
of the family the encoder belongs to (``motionkit/configs/<family>/unet``).
"""

from __future__ import annotations

import inspect
import re
from typing import Any, Mapping

from motionkit.errors import FormatError
from motionkit.formats.layout import largest_divisor

CONTROLNET = "controlnet"
SPARSECTRL = "sparsectrl"
_CLASSES = {"ControlNetModel": CONTROLNET, "SparseControlNetModel": SPARSECTRL}

LDM_CONTROL_PREFIX = "control_model."
_LDM_MARKERS = ("input_hint_block.0.weight", "zero_convs.0.0.weight", "middle_block_out.0.weight")
_SIMPLIFIED_EMBEDDING = "controlnet_cond_embedding.weight"
_EMBEDDING_TOWER = "controlnet_cond_embedding.conv_in.weight"
_ZERO_CONV = "controlnet_down_blocks.0.weight"

# Original AnimateDiff motion-module names inside a SparseCtrl, and diffusers' (scripts/
# convert_animatediff_sparsectrl_to_diffusers.py): one attention per block, so the FF norm is ``norm3``.
_MOTION_RENAMES = (
    (".temporal_transformer.", "."),
    (".attention_blocks.0.pos_encoder.", ".pos_embed."),
    (".attention_blocks.0.", ".attn1."),
    (".norms.0.", ".norm1."),
    (".ff_norm.", ".norm3."),
)

# Layout families by the text encoder width the encoder cross-attends to.
_FAMILY_BY_CONTEXT = {768: "sd15", 1024: "sd2", 2048: "sdxl"}
FAMILY_NAMES = {"sd15": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL", "custom": "custom"}


# --------------------------------------------------------------------------------------------- kind


def control_kind(keys: list[str], config: Mapping[str, Any] | None = None) -> str | None:
    """``"controlnet"``, ``"sparsectrl"`` or ``None`` (not a condition encoder) from keys or a folder's config."""
    if config is not None and config.get("_class_name") in _CLASSES:
        return _CLASSES[config["_class_name"]]
    names = set(keys)
    if any(k.startswith(LDM_CONTROL_PREFIX) for k in keys) or any(m in names for m in _LDM_MARKERS):
        return CONTROLNET
    if _SIMPLIFIED_EMBEDDING in names:
        return SPARSECTRL
    if _ZERO_CONV in names or _EMBEDDING_TOWER in names:
        # The scribble SparseCtrl shares ControlNet's embedding tower; its motion modules tell them apart.
        return SPARSECTRL if any(".motion_modules." in k for k in keys) else CONTROLNET
    return None


def is_original_sparsectrl(keys: list[str]) -> bool:
    return any(".motion_modules." in k and ".temporal_transformer." in k for k in keys)


def sparsectrl_to_diffusers(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """An original-layout SparseCtrl state dict under ``SparseControlNetModel``'s names."""
    out: dict[str, Any] = {}
    for key, value in state_dict.items():
        if ".motion_modules." in key:
            if ".attention_blocks.1." in key:
                raise FormatError(
                    f"{key}: a second temporal attention per block; SparseCtrl (and diffusers' SparseControlNetModel) "
                    "has one, so this is a motion adapter or another model"
                )
            for old, new in _MOTION_RENAMES:
                key = key.replace(old, new)
        out[key] = value
    return out


def ldm_layers_per_block(state_dict: Mapping[str, Any]) -> int:
    """Resnets per down block of an LDM-layout ControlNet: the first downsampler's index, less one."""
    indices = {int(m.group(1)) for k in state_dict if (m := re.match(r"input_blocks\.(\d+)\.", k))}
    if not indices:
        raise FormatError("no input_blocks weights: not a ControlNet in the original layout")
    downsamplers = sorted(int(m.group(1)) for k in state_dict if (m := re.match(r"input_blocks\.(\d+)\.0\.op\.weight$", k)))
    return downsamplers[0] - 1 if downsamplers else max(indices)


# --------------------------------------------------------------------------------------------- config


def _shape(value: Any) -> tuple[int, ...]:
    return tuple(value.shape)


def _count(keys: list[str], pattern: str) -> int:
    found = {int(m.group(1)) for k in keys if (m := re.match(pattern, k))}
    return max(found) + 1 if found else 0


def _embedding_channels(shapes: Mapping[str, tuple[int, ...]]) -> tuple[int, ...]:
    """ControlNet's condition tower: ``conv_in``, then pairs (same width, then stride-2 wider) in ``blocks``."""
    channels = [shapes[_EMBEDDING_TOWER][0]]
    for j in range(1, _count(list(shapes), r"controlnet_cond_embedding\.blocks\.(\d+)\.weight$"), 2):
        channels.append(shapes[f"controlnet_cond_embedding.blocks.{j}.weight"][0])
    return tuple(channels)


def infer_encoder_config(state_dict: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """The structural config fields of a diffusers-layout ControlNet / SparseCtrl, from its keys and shapes."""
    shapes = {k: _shape(v) for k, v in state_dict.items()}
    keys = list(shapes)
    if "conv_in.weight" not in shapes:
        raise FormatError("no conv_in.weight: the encoder's input convolution is missing, so the file is incomplete")
    blocks = _count(keys, r"down_blocks\.(\d+)\.")
    if not blocks:
        raise FormatError("no down_blocks weights: the file is incomplete")
    layers = _count(keys, r"down_blocks\.0\.resnets\.(\d+)\.")
    channels, types, depth, context, linear = [], [], [], None, None
    for i in range(blocks):
        conv = shapes.get(f"down_blocks.{i}.resnets.0.conv2.weight")
        if conv is None:
            raise FormatError(f"down_blocks.{i} has no resnets.0.conv2 weight: the file is incomplete")
        channels.append(conv[0])
        cross = _count(keys, rf"down_blocks\.{i}\.attentions\.0\.transformer_blocks\.(\d+)\.")
        types.append("CrossAttnDownBlock2D" if cross else "DownBlock2D")
        depth.append(cross or 1)
        if cross:
            context = context or shapes[f"down_blocks.{i}.attentions.0.transformer_blocks.0.attn2.to_k.weight"][1]
            if linear is None:
                linear = len(shapes[f"down_blocks.{i}.attentions.0.proj_in.weight"]) == 2
    config: dict[str, Any] = {
        "in_channels": shapes["conv_in.weight"][1],
        "block_out_channels": tuple(channels),
        "layers_per_block": layers,
        "down_block_types": tuple(types),
        "transformer_layers_per_block": depth[0] if len(set(depth)) == 1 else tuple(depth),
    }
    if context is not None:
        config["cross_attention_dim"] = context
    if linear is not None:
        config["use_linear_projection"] = linear
    mid = _count(keys, r"mid_block\.attentions\.0\.transformer_blocks\.(\d+)\.")
    if kind == SPARSECTRL and mid and mid != depth[-1]:
        config["transformer_layers_per_mid_block"] = mid
    if "add_embedding.linear_1.weight" in shapes:
        config["addition_embed_type"] = "text_time"
        config["projection_class_embeddings_input_dim"] = shapes["add_embedding.linear_1.weight"][1]

    if kind == SPARSECTRL:
        simplified = _SIMPLIFIED_EMBEDDING in shapes
        first = shapes[_SIMPLIFIED_EMBEDDING if simplified else _EMBEDDING_TOWER]
        # The mask channel is concatenated to the condition (concat_conditioning_mask, on in every release).
        config["conditioning_channels"] = first[1] - 1
        config["use_simplified_condition_embedding"] = simplified
        if not simplified:
            config["conditioning_embedding_out_channels"] = _embedding_channels(shapes)
        config["down_block_types"] = tuple(t.replace("2D", "Motion") for t in types)
        tables = [v for k, v in shapes.items() if k.endswith(".pos_embed.pe")]
        if tables:
            config["motion_max_seq_length"] = tables[0][1]
        temporal = _count(keys, r"down_blocks\.0\.motion_modules\.0\.transformer_blocks\.(\d+)\.")
        if not temporal:
            raise FormatError("a SparseCtrl without motion modules in down_blocks.0: the file is incomplete")
        config["temporal_transformer_layers_per_block"] = temporal
    else:
        if _EMBEDDING_TOWER not in shapes:
            raise FormatError("no controlnet_cond_embedding.conv_in weight: the condition embedding is missing")
        config["conditioning_channels"] = shapes[_EMBEDDING_TOWER][1]
        config["conditioning_embedding_out_channels"] = _embedding_channels(shapes)
    return config


def family_of(structure: Mapping[str, Any]) -> str:
    """``sd15``, ``sd2``, ``sdxl`` or ``custom`` from the inferred structure."""
    family = _FAMILY_BY_CONTEXT.get(structure.get("cross_attention_dim"), "custom")
    channels = tuple(structure["block_out_channels"])
    if family == "sdxl" and (channels != (320, 640, 1280) or structure.get("addition_embed_type") != "text_time"):
        return "custom"
    if family in ("sd15", "sd2") and channels != (320, 640, 1280, 1280):
        return "custom"
    return family


def _init_fields(cls: type) -> set[str]:
    return {name for name in inspect.signature(cls.__init__).parameters if name != "self"}


def _fit_heads(value: Any, channels: tuple[int, ...]) -> Any:
    """Head counts that divide the widths (the family's own where they do)."""
    if isinstance(value, int):
        return largest_divisor(value, channels)
    per_block = list(value) if len(value) == len(channels) else [value[-1]] * len(channels)
    return tuple(largest_divisor(h, (c,)) for h, c in zip(per_block, channels))


def encoder_config(cls: type, base_unet_config: Mapping[str, Any], structure: Mapping[str, Any]) -> dict[str, Any]:
    """``cls``'s config: the family UNet's fields ``cls`` takes, then what the weights showed.

    Heads and norm groups the family uses are lowered to divisors of the widths when the weights are
    not of the family's size (small test models, custom encoders).
    """
    fields = _init_fields(cls)
    config = {k: v for k, v in base_unet_config.items() if k in fields and not k.startswith("_")}
    config.update(structure)
    channels = tuple(config["block_out_channels"])
    config["norm_num_groups"] = largest_divisor(config.get("norm_num_groups") or 32, channels)
    config["attention_head_dim"] = _fit_heads(config.get("attention_head_dim", 8), channels)
    if "motion_num_attention_heads" in fields:
        config["motion_num_attention_heads"] = largest_divisor(config.get("motion_num_attention_heads", 8), channels)
    embedding = config.get("conditioning_embedding_out_channels")
    if embedding is not None:
        config["conditioning_embedding_out_channels"] = tuple(embedding)
    for key, value in list(config.items()):
        if isinstance(value, list):
            config[key] = tuple(value)
    unknown = sorted(set(config) - fields)
    if unknown:
        raise FormatError(f"{cls.__name__} has no option {unknown[0]!r}: the file is not a {cls.__name__}")
    return config
