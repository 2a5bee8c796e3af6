"""One motion module: the unit injected after each (resnet[, attention]) pair of a UNet block."""

from __future__ import annotations

import torch
from torch import nn

from motionkit.modules.compiled import CompiledForward
from motionkit.modules.recompute import check_recompute, selective_checkpoint
from motionkit.modules.temporal_conv import TemporalConvBlock
from motionkit.modules.temporal_transformer import TemporalTransformer


class MotionModule(nn.Module):
    """Temporal convolution (optional) then temporal transformer (optional); starts as the identity."""

    def __init__(
        self,
        channels: int,
        heads: int,
        *,
        transformer_layers: int = 1,
        attentions_per_block: int = 2,
        max_seq_length: int = 32,
        norm_num_groups: int = 32,
        temporal_norm: str = "per_frame",
        use_temporal_attention: bool = True,
        use_temporal_conv: bool = False,
        temporal_conv_kernel_size: int = 3,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.temporal_conv = (
            TemporalConvBlock(channels, temporal_conv_kernel_size, norm_num_groups, temporal_norm, dropout)
            if use_temporal_conv
            else None
        )
        self.temporal_transformer = None
        if use_temporal_attention:
            self.temporal_transformer = TemporalTransformer(
                channels,
                heads=heads,
                num_layers=transformer_layers,
                num_attentions=attentions_per_block,
                max_seq_length=max_seq_length,
                norm_num_groups=norm_num_groups,
                temporal_norm=temporal_norm,
                dropout=dropout,
            )
            # A new module must leave the UNet unchanged (diffusers does not zero this; AnimateDiff does).
            nn.init.zeros_(self.temporal_transformer.proj_out.weight)
            nn.init.zeros_(self.temporal_transformer.proj_out.bias)
        self.gradient_checkpointing = False
        # What backward reruns instead of keeping (motionkit.modules.recompute); full checkpointing wins.
        self.recompute = "none"
        # ``_forward`` through torch.compile (compile_motion()); checkpointing and recompute run eagerly.
        self._compiled: CompiledForward | None = None

    def compile_motion(self) -> None:
        """Run forward through inductor from the next call on (see ``motionkit.modules.compiled``)."""
        self._compiled = CompiledForward(self._forward)

    @property
    def is_compiled(self) -> bool:
        return self._compiled is not None

    def set_recompute(self, mode: str) -> None:
        self.recompute = check_recompute(mode)

    def _forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        if self.temporal_conv is not None:
            x = self.temporal_conv(x, num_frames)
        if self.temporal_transformer is not None:
            x = self.temporal_transformer(x, num_frames)
        return x

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        if torch.is_grad_enabled() and self.gradient_checkpointing:
            return torch.utils.checkpoint.checkpoint(self._forward, x, num_frames, use_reentrant=False)
        if torch.is_grad_enabled() and self.recompute != "none":
            return selective_checkpoint(self._forward, x, num_frames, mode=self.recompute)
        if self._compiled is not None:
            return self._compiled(x, num_frames)
        return self._forward(x, num_frames)
