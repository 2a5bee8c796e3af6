"""Key renames between motionkit's state-dict layout and diffusers' ``MotionAdapter`` layout.

motionkit keys follow the original AnimateDiff names inside each module
(``motion_modules.J.temporal_transformer.transformer_blocks.K.attention_blocks.A...``);
diffusers drops ``temporal_transformer`` and numbers attentions and norms from one
(``attn1``/``attn2``, ``norm1``/``norm2``, with ``ff_norm`` as ``norm3``).
"""

from __future__ import annotations

import re

import torch

_TT = ".temporal_transformer."


def motionkit_to_diffusers_key(key: str, attentions_per_block: int = 2) -> str:
    key = key.replace(_TT, ".")
    key = re.sub(r"\.attention_blocks\.(\d+)\.", lambda m: f".attn{int(m.group(1)) + 1}.", key)
    key = re.sub(r"\.norms\.(\d+)\.", lambda m: f".norm{int(m.group(1)) + 1}.", key)
    return key.replace(".ff_norm.", f".norm{attentions_per_block + 1}.")


def diffusers_to_motionkit_key(key: str, attentions_per_block: int = 2) -> str:
    key = re.sub(r"(\.motion_modules\.\d+)\.", rf"\1{_TT}", key)
    key = key.replace(f".norm{attentions_per_block + 1}.", ".ff_norm.")
    key = re.sub(r"\.attn(\d+)\.", lambda m: f".attention_blocks.{int(m.group(1)) - 1}.", key)
    return re.sub(r"(transformer_blocks\.\d+)\.norm(\d+)\.", lambda m: f"{m.group(1)}.norms.{int(m.group(2)) - 1}.", key)


def to_diffusers_state_dict(state_dict: dict[str, torch.Tensor], attentions_per_block: int = 2) -> dict[str, torch.Tensor]:
    return {motionkit_to_diffusers_key(k, attentions_per_block): v for k, v in state_dict.items()}


def from_diffusers_state_dict(state_dict: dict[str, torch.Tensor], attentions_per_block: int = 2) -> dict[str, torch.Tensor]:
    return {
        diffusers_to_motionkit_key(k, attentions_per_block): v
        for k, v in state_dict.items()
        if not k.endswith("pos_embed.pe")
    }
