"""The AnimateDiff temporal transformer: attention over frames at every spatial position.

GroupNorm -> proj_in -> blocks -> proj_out -> residual, where each block is, for every attention,
LayerNorm -> + sinusoidal frame position -> self-attention over frames -> residual, then
LayerNorm -> GEGLU feed-forward -> residual. Key names follow the original AnimateDiff layout
(``attention_blocks.N``, ``norms.N``, ``ff_norm``, ``ff.net``) so those files load without renames.
"""

from typing import Callable, Optional

import torch
from diffusers.models.attention import FeedForward
from torch import nn

from motionkit.errors import MotionkitError
from motionkit.modules.attention import TemporalAttention
from motionkit.modules.norm import frame_group_norm_5d
from motionkit.modules.position import sinusoidal_table
from motionkit.modules.recompute import feed_forward_region

# Without autograd on CPU, sequences run through the blocks in chunks of about this many token
# elements (rows x channels), so each chunk's activations stay in cache between operators.
CPU_CHUNK_ELEMENTS = 1 << 17


class TemporalTransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, num_attentions: int = 2, dropout: float = 0.0):
        super().__init__()
        self.attention_blocks = nn.ModuleList(TemporalAttention(dim, heads, dropout) for _ in range(num_attentions))
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(num_attentions))
        self.ff_norm = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, dropout=dropout, activation_fn="geglu")

    def forward(self, x: torch.Tensor, positions: torch.Tensor, frame_windows: Optional[Callable] = None) -> torch.Tensor:
        """``x``: ``[N, F, C]``; ``positions``: ``[F, C]`` (or a window's), added after the norm (both references agree).

        ``frame_windows`` (FreeNoise, ``motionkit.pipeline.free_noise.MotionWindows``): the attentions run per
        window of frames and the windows are blended per frame before the feed-forward, as diffusers'
        ``FreeNoiseTransformerBlock`` does.
        """

        def attend(frames: torch.Tensor) -> torch.Tensor:
            at = positions[: frames.shape[1]]
            for norm, attention in zip(self.norms, self.attention_blocks):
                frames = frames + attention(norm(frames) + at)
            return frames

        x = attend(x) if frame_windows is None else frame_windows(lambda index: attend(x[:, index]), x.shape[1])
        with feed_forward_region():
            return x + self.ff(self.ff_norm(x))


class TemporalTransformer(nn.Module):
    def __init__(
        self,
        channels: int,
        heads: int = 8,
        num_layers: int = 1,
        num_attentions: int = 2,
        max_seq_length: int = 32,
        norm_num_groups: int = 32,
        temporal_norm: str = "per_frame",
        dropout: float = 0.0,
    ):
        super().__init__()
        self.temporal_norm = temporal_norm
        self.norm = nn.GroupNorm(norm_num_groups, channels, eps=1e-6, affine=True)
        self.proj_in = nn.Linear(channels, channels)
        self.transformer_blocks = nn.ModuleList(
            TemporalTransformerBlock(channels, heads, num_attentions, dropout) for _ in range(num_layers)
        )
        self.proj_out = nn.Linear(channels, channels)
        # Checkpoints carry this table (length 24 or 32); loaders drop it and it is rebuilt here.
        self.register_buffer("pos_table", sinusoidal_table(max_seq_length, channels), persistent=False)
        # FreeNoise's windowed attention (set by the pipeline's enable_free_noise); None attends over every frame.
        self.frame_windows: Optional[Callable] = None
        # Cache-sized chunks of sequences on CPU without autograd (same result; False runs all at once).
        self.chunk_sequences = True

    def _run_blocks(self, tokens: torch.Tensor, positions: torch.Tensor, windows: Optional[Callable]) -> torch.Tensor:
        tokens = self.proj_in(tokens)
        for block in self.transformer_blocks:
            tokens = block(tokens, positions, windows)
        return self.proj_out(tokens)

    def _chunked(self, tokens: torch.Tensor, positions: torch.Tensor, windows: Optional[Callable]) -> torch.Tensor:
        """Every operator in the blocks is per sequence, so chunks of sequences give the same tokens."""
        n, f, c = tokens.shape
        per_chunk = max(1, CPU_CHUNK_ELEMENTS // (f * c))
        if not self.chunk_sequences or tokens.device.type != "cpu" or torch.is_grad_enabled() or n <= per_chunk:
            return self._run_blocks(tokens, positions, windows)
        out = torch.empty_like(tokens)
        for start in range(0, n, per_chunk):
            out[start : start + per_chunk] = self._run_blocks(tokens[start : start + per_chunk], positions, windows)
        return out

    @property
    def max_seq_length(self) -> int:
        return self.pos_table.shape[0]

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        """``x``: ``[B*F, C, H, W]`` with the frames of each video adjacent; returns the same shape."""
        windows = self.frame_windows if self.frame_windows is not None and num_frames > self.frame_windows.length else None
        attended = windows.length if windows is not None else num_frames
        if attended > self.max_seq_length:
            raise MotionkitError(
                f"{attended} frames exceed the adapter's position table of {self.max_seq_length}: "
                f"sample with context windows of at most {self.max_seq_length} frames (context_length)"
            )
        bf, c, h, w = x.shape
        b = bf // num_frames
        normed = frame_group_norm_5d(x, self.norm, num_frames, self.temporal_norm)  # [B, F, C, H, W]
        tokens = normed.permute(0, 3, 4, 1, 2).reshape(b * h * w, num_frames, c)
        positions = self.pos_table[:attended].to(tokens.dtype)
        tokens = self._chunked(tokens, positions, windows)
        # The residual add performs the layout change back, saving a separate contiguous copy.
        update = tokens.view(b, h, w, num_frames, c).permute(0, 3, 4, 1, 2)  # [B, F, C, H, W] view
        return (x.view(b, num_frames, c, h, w) + update).view(bf, c, h, w)
