"""``MotionAdapter``: the trainable temporal layers for every block of an image UNet, as one file.

A diffusers ``ModelMixin`` + ``ConfigMixin``: ``save_pretrained`` / ``from_pretrained`` write and read
``config.json`` plus safetensors. The adapter itself has no forward: ``motionkit.injection`` runs its
modules inside a UNet.
"""

from __future__ import annotations

from typing import Any, Iterator

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.loaders.peft import PeftAdapterMixin
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from motionkit.errors import MotionkitError
from motionkit.kernels.dispatch import check_backend
from motionkit.modules import MotionModule, TemporalAttention
from motionkit.modules.compiled import compile_refusal
from motionkit.modules.norm import TEMPORAL_NORMS
from motionkit.presets import preset_config
from motionkit.unet_layout import Layout, unet_layout

# How the conditioning mask marks frames: PIA's per-distance coefficients (1 on the conditioning frame,
# 0.2-0.9 elsewhere, chosen by motion_scale) or one-hot (1 on the conditioning frame, 0 elsewhere).
# The adapter records the one it was trained with, so sampling feeds the same.
IMAGE_COND_MASKS = ("pia", "one_hot")


# Bounds on config values, far beyond any released adapter: a config that says max_seq_length 1e12 or a
# million layers is damaged, and building it would hang or exhaust memory instead of failing.
MAX_FRAMES = 1024
_INT_RANGES = {
    "block_out_channels": (1, 16384),
    "layers_per_block": (1, 16),
    "mid_block_layers": (1, 16),
    "num_attention_heads": (1, 1024),
    "transformer_layers_per_block": (1, 16),
    "attentions_per_block": (1, 16),
    "max_seq_length": (1, MAX_FRAMES),
    "norm_num_groups": (1, 16384),
    "temporal_conv_kernel_size": (1, 63),
    "image_cond_channels": (0, 64),
    "training_frames": (1, MAX_FRAMES),
}
# Ints that may also be None: not recorded (adapters from before the record, or from other tools).
_OPTIONAL_INTS = ("training_frames",)
_MAX_BLOCKS = 8


def _check_int(name: str, value: Any) -> None:
    low, high = _INT_RANGES[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise MotionkitError(f"adapter config {name} is {value!r}, not a whole number: fix the config ({low}-{high})")
    if not low <= value <= high:
        raise MotionkitError(f"adapter config {name} is {value}, outside {low}-{high}: fix the config")


def check_config_values(config: dict[str, Any]) -> None:
    """Refuse, in one line, config values of the wrong type or far out of range, before anything is built."""
    if not isinstance(config.get("block_out_channels", ()), (list, tuple)):
        raise MotionkitError(
            f"adapter config block_out_channels is {config['block_out_channels']!r}: give a list, one channel count per block"
        )
    for name in _INT_RANGES:
        if name not in config or (name in _OPTIONAL_INTS and config[name] is None):
            continue
        value = config[name]
        if isinstance(value, (list, tuple)) and name in ("block_out_channels", "layers_per_block", "num_attention_heads"):
            if not 1 <= len(value) <= _MAX_BLOCKS:
                raise MotionkitError(f"adapter config {name} has {len(value)} entries: give 1-{_MAX_BLOCKS}, one per block")
            for item in value:
                _check_int(name, item)
        else:
            _check_int(name, value)
    dropout = config.get("dropout", 0.0)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise MotionkitError(f"adapter config dropout is {dropout!r}: give a number from 0 up to (not including) 1")
    for name in ("use_mid_block", "use_temporal_attention", "use_temporal_conv"):
        if name in config and not isinstance(config[name], bool):
            raise MotionkitError(f"adapter config {name} is {config[name]!r}: give true or false")


def _per_block(value: int | tuple | list, n: int, name: str) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * n
    value = tuple(int(v) for v in value)
    if len(value) != n:
        raise MotionkitError(f"{name} has {len(value)} entries for {n} blocks: give one per block or a single int")
    return value


class MotionBlock(nn.Module):
    """The motion modules of one UNet block (key prefix ``{down,up}_blocks.i.motion_modules.j``)."""

    def __init__(self, modules: list[MotionModule]):
        super().__init__()
        self.motion_modules = nn.ModuleList(modules)


class MotionAdapter(ModelMixin, ConfigMixin, PeftAdapterMixin):
    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280),
        layers_per_block: int | tuple[int, ...] = 2,
        use_mid_block: bool = False,
        mid_block_layers: int = 1,
        num_attention_heads: int | tuple[int, ...] = 8,
        transformer_layers_per_block: int = 1,
        attentions_per_block: int = 2,
        max_seq_length: int = 32,
        norm_num_groups: int = 32,
        temporal_norm: str = "per_frame",
        use_temporal_attention: bool = True,
        use_temporal_conv: bool = False,
        temporal_conv_kernel_size: int = 3,
        image_cond_channels: int = 0,
        image_cond_mask: str = "pia",
        clean_conditioning_frame: bool = False,
        dropout: float = 0.0,
        # Clip length of the training run (the trainer records it): how many frames the adapter animates best.
        training_frames: int | None = None,
    ):
        super().__init__()
        check_config_values(
            dict(
                block_out_channels=block_out_channels, layers_per_block=layers_per_block, use_mid_block=use_mid_block,
                mid_block_layers=mid_block_layers, num_attention_heads=num_attention_heads,
                transformer_layers_per_block=transformer_layers_per_block, attentions_per_block=attentions_per_block,
                max_seq_length=max_seq_length, norm_num_groups=norm_num_groups,
                use_temporal_attention=use_temporal_attention, use_temporal_conv=use_temporal_conv,
                temporal_conv_kernel_size=temporal_conv_kernel_size, image_cond_channels=image_cond_channels,
                dropout=dropout, training_frames=training_frames,
            )
        )
        if temporal_norm not in TEMPORAL_NORMS:
            raise MotionkitError(f"temporal_norm {temporal_norm!r} is not one of {', '.join(TEMPORAL_NORMS)}")
        if image_cond_mask not in IMAGE_COND_MASKS:
            raise MotionkitError(f"image_cond_mask {image_cond_mask!r} is not one of {', '.join(IMAGE_COND_MASKS)}")
        if not (use_temporal_attention or use_temporal_conv):
            raise MotionkitError("an adapter needs temporal attention, temporal convolution, or both: enable one")
        channels = tuple(int(c) for c in block_out_channels)
        n = len(channels)
        # JSON gives lists back: store sequences as tuples so a saved and reloaded config compares equal.
        self.register_to_config(
            block_out_channels=channels,
            layers_per_block=layers_per_block if isinstance(layers_per_block, int) else tuple(layers_per_block),
            num_attention_heads=num_attention_heads if isinstance(num_attention_heads, int) else tuple(num_attention_heads),
        )
        layers = _per_block(layers_per_block, n, "layers_per_block")
        heads = _per_block(num_attention_heads, n, "num_attention_heads")
        for c, h in zip(channels, heads):
            if c % norm_num_groups:
                raise MotionkitError(f"{c} channels do not split into {norm_num_groups} norm groups: set norm_num_groups")
            if use_temporal_attention and c % h:
                raise MotionkitError(f"{c} channels do not split into {h} attention heads: set num_attention_heads")

        def module(c: int, h: int) -> MotionModule:
            return MotionModule(
                c,
                h,
                transformer_layers=transformer_layers_per_block,
                attentions_per_block=attentions_per_block,
                max_seq_length=max_seq_length,
                norm_num_groups=norm_num_groups,
                temporal_norm=temporal_norm,
                use_temporal_attention=use_temporal_attention,
                use_temporal_conv=use_temporal_conv,
                temporal_conv_kernel_size=temporal_conv_kernel_size,
                dropout=dropout,
            )

        self.down_blocks = nn.ModuleList(
            MotionBlock([module(c, h) for _ in range(k)]) for c, h, k in zip(channels, heads, layers)
        )
        # Up blocks mirror the down blocks and hold one more layer each (the skip-connection resnet).
        self.up_blocks = nn.ModuleList(
            MotionBlock([module(c, h) for _ in range(k + 1)])
            for c, h, k in zip(reversed(channels), reversed(heads), reversed(layers))
        )
        self.mid_block = (
            MotionBlock([module(channels[-1], heads[-1]) for _ in range(mid_block_layers)]) if use_mid_block else None
        )
        self.image_cond_conv = None
        if image_cond_channels:
            # Conditioning latent + mask enter beside the frozen conv_in; zero so a fresh branch changes nothing.
            self.image_cond_conv = nn.Conv2d(image_cond_channels, channels[0], 3, padding=1, bias=False)
            nn.init.zeros_(self.image_cond_conv.weight)

    # -- construction -----------------------------------------------------------------------------

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "MotionAdapter":
        """A fresh adapter from a named preset (see ``motionkit.presets.PRESETS``)."""
        return cls(**{**preset_config(name), **overrides})

    @classmethod
    def from_unet(cls, unet: nn.Module, preset: str | None = None, **overrides: Any) -> "MotionAdapter":
        """A fresh adapter whose layout fits ``unet`` (any ``UNet2DConditionModel``, tiny ones included)."""
        layout = unet_layout(unet)
        config = preset_config(preset) if preset else preset_config("motionkit-sd15")
        channels = layout.block_out_channels
        groups = int(getattr(unet.config, "norm_num_groups", 32) or 32)
        wanted_heads = config.get("num_attention_heads", 8)
        wanted_heads = wanted_heads if isinstance(wanted_heads, int) else max(wanted_heads)
        # The largest head count not above the preset's that divides every block's channels.
        heads = next(h for h in range(wanted_heads, 0, -1) if all(c % h == 0 for c in channels))
        config.update(
            block_out_channels=channels,
            layers_per_block=layout.layers_per_block,
            use_mid_block=config.get("use_mid_block", False) and layout.mid_block_layers > 0,
            mid_block_layers=max(layout.mid_block_layers, 1),
            num_attention_heads=heads,
            norm_num_groups=groups,
        )
        config.update(overrides)
        return cls(**config)

    # -- behaviour switches -----------------------------------------------------------------------

    def motion_modules(self) -> Iterator[MotionModule]:
        yield from (m for m in self.modules() if isinstance(m, MotionModule))

    def set_attention_backend(self, name: str) -> None:
        """``auto`` (on CUDA, Triton where the measured decision table ``motionkit/kernels/auto_policy.json`` says it
        beats SDPA on that GPU and shape; on CPU, the short bmm path for short sequences at small head dims; else
        SDPA), ``sdpa``, ``math``, ``xformers`` or ``triton``."""
        check_backend(name)
        for module in self.modules():
            if isinstance(module, TemporalAttention):
                module.set_backend(name)

    @property
    def attention_backend(self) -> str:
        backends = {m.backend for m in self.modules() if isinstance(m, TemporalAttention)}
        return backends.pop() if len(backends) == 1 else "mixed"

    def set_recompute(self, mode: str) -> None:
        """What every motion module reruns in backward instead of keeping: ``none``, ``cheap`` (norms,
        activations, adds and copies) or ``feed_forward`` (also the feed-forward's widening projection).
        Gradients are the same in every mode; see ``motionkit.modules.recompute``."""
        for module in self.motion_modules():
            module.set_recompute(mode)

    def compile_motion_modules(self) -> str | None:
        """Compile every motion module's forward with ``torch.compile`` (inductor), from the next call on.

        Returns ``None`` when done, or one line saying why compiling cannot run here (the modules stay
        eager). Checkpointed or recomputing modules run eagerly all the same. See ``motionkit.modules.compiled``.
        """
        refusal = compile_refusal(next(self.parameters()).device)
        if refusal is not None:
            return refusal
        for module in self.motion_modules():
            module.compile_motion()
        return None

    def _set_gradient_checkpointing(self, enable: bool = True, gradient_checkpointing_func=None) -> None:
        for module in self.motion_modules():
            module.gradient_checkpointing = enable

    # -- description ------------------------------------------------------------------------------

    def layout(self) -> Layout:
        return Layout(
            block_out_channels=tuple(self.config.block_out_channels),
            layers_per_block=tuple(len(b.motion_modules) for b in self.down_blocks),
            mid_block_layers=len(self.mid_block.motion_modules) if self.mid_block is not None else 0,
        )

    def describe(self) -> dict[str, Any]:
        """What ``motionkit inspect`` prints."""
        cfg = self.config
        params = sum(p.numel() for p in self.parameters())
        return {
            "layout": str(self.layout()),
            "parameters": params,
            "temporal_norm": cfg.temporal_norm,
            "max_frames": cfg.max_seq_length if cfg.use_temporal_attention else None,
            "training_frames": cfg.training_frames,
            "temporal_attention": cfg.use_temporal_attention,
            "temporal_conv": cfg.use_temporal_conv,
            "image_cond_channels": cfg.image_cond_channels,
            "dtype": str(next(self.parameters()).dtype).replace("torch.", ""),
        }

    def forward(self, *args: Any, **kwargs: Any) -> None:
        raise MotionkitError("a MotionAdapter runs inside a UNet: use motionkit.injection(unet, adapter)")
