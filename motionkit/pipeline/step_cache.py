"""Step caching (DeepCache): reuse the UNet's deep features across neighbouring denoising steps.

Neighbouring steps of a sampler change the UNet's deep, low-resolution features little, while the
shallow, high-resolution layers carry the detail that moves. The UNet's skip branches pair each feature
the down path keeps (``conv_in``'s output is branch 0, then every down layer's and downsampler's, in
order) with the up layer that consumes it (branch 0: the very last one). On a *full* step the whole UNet
runs, exactly as without caching, and the feature entering the up layer of skip branch ``branch`` is
kept; on a *cached* step only the layers that make branches ``0..branch`` and the up layers that consume
them run, with the kept feature standing in for everything deeper. The motion modules hang on those
layers (``motionkit.injection``), so the shallow ones run on every step and the deep ones on full steps.

``branch`` 0 (default): a cached step runs ``conv_in``, the last up layer and ``conv_out`` only, the
cheapest. A larger ``branch`` recomputes more of the UNet on cached steps: slower, closer to exact.
Only SD-style blocks (``CrossAttnDownBlock2D``, ``DownBlock2D``, ``CrossAttnUpBlock2D``, ``UpBlock2D``:
SD 1.x, 2.x and SDXL) can be cut between layers; other UNets are refused.

Schedule: full steps every ``interval`` steps, step 0 always full (``"uniform"``); ``"quadratic"``
spaces the same number of full steps densely at the start of the schedule, where the layout forms,
and sparsely towards the end. Kept features are per UNet call site: per context window and per
guidance batch (both halves of classifier-free guidance run in one call and are kept together), and
live for one denoising pass only (each ``__call__``, each FreeInit pass, starts with none).

ControlNet / SparseCtrl residuals are applied to the skip features a cached step computes; the mid-block
residual acts through the kept feature of the last full step. Everything else the pipeline hands the
UNet (SDXL's added conditioning, IP-Adapter image embeddings, per-frame prompts, the image-conditioning
branch on ``conv_in``) goes through the shallow blocks unchanged.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Callable

import torch
from diffusers import UNet2DConditionModel
from diffusers.utils.peft_utils import apply_lora_scale

from motionkit.errors import MotionkitError

SCHEDULES = ("uniform", "quadratic")
# The blocks whose layers run one by one here: each layer a resnet, then (cross-attention blocks) a transformer.
DOWN_BLOCKS = ("CrossAttnDownBlock2D", "DownBlock2D")
UP_BLOCKS = ("CrossAttnUpBlock2D", "UpBlock2D")


def _down_stages(unet: UNet2DConditionModel) -> list[tuple[int, int | None]]:
    """``(down block, layer)`` of every down feature after ``conv_in``'s, in order; layer ``None``: the downsampler."""
    stages: list[tuple[int, int | None]] = []
    for index, block in enumerate(unet.down_blocks):
        stages += [(index, layer) for layer in range(len(block.resnets))]
        if block.downsamplers:
            stages.append((index, None))
    return stages


def _up_layers(unet: UNet2DConditionModel) -> list[tuple[int, int]]:
    """``(up block, layer)`` of every up layer in order; the one at position ``p`` of ``P`` takes skip branch ``P - 1 - p``."""
    return [(index, layer) for index, block in enumerate(unet.up_blocks) for layer in range(len(block.resnets))]


def skip_branches(unet: UNet2DConditionModel) -> int:
    """How many skip branches the UNet has; refuses UNets whose layers cannot be cut one by one."""
    kinds = [type(b).__name__ for b in unet.down_blocks if type(b).__name__ not in DOWN_BLOCKS]
    kinds += [type(b).__name__ for b in unet.up_blocks if type(b).__name__ not in UP_BLOCKS]
    branches = 1 + len(_down_stages(unet))
    if kinds or branches != len(_up_layers(unet)):
        found = f"has {', '.join(sorted(set(kinds)))} blocks" if kinds else "pairs its skip features unevenly"
        raise MotionkitError(f"step caching runs SD-style UNets only and this one {found}: sample without cache_interval")
    return branches


def _layer_output(output: Any) -> torch.Tensor:
    """A resnet's or transformer's output (transformers return ``(sample,)`` with ``return_dict=False``)."""
    if isinstance(output, torch.Tensor):
        return output
    return output[0] if isinstance(output, tuple) else output.sample


def _last_module(block: torch.nn.Module, layer: int) -> torch.nn.Module:
    """The module whose output ends ``layer`` of ``block`` (where the motion module hangs, too)."""
    attentions = getattr(block, "attentions", None)
    return attentions[layer] if attentions else block.resnets[layer]


@dataclass(frozen=True)
class StepCacheSettings:
    """How a call caches: a full step every ``interval`` steps, the deep feature at skip ``branch``."""

    interval: int
    branch: int = 0
    schedule: str = "uniform"

    def full_steps(self, num_steps: int) -> set[int]:
        """Indices of the steps that run the whole UNet; step 0 is always one."""
        if self.schedule == "uniform":
            return set(range(0, num_steps, self.interval))
        count = max(1, math.ceil(num_steps / self.interval))
        # Squared spacing: full steps crowd the start, where coarse structure is still forming; as many as uniform.
        steps: list[int] = []
        for k in range(count):
            steps.append(max(int((k / count) ** 2 * num_steps), steps[-1] + 1 if steps else 0))
        return {step for step in steps if step < num_steps}


def _is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_step_cache(
    interval: Any,
    branch: Any = 0,
    schedule: str = "uniform",
    unet: UNet2DConditionModel | None = None,
    name: str = "cache_interval",
) -> StepCacheSettings | None:
    """The call's cache settings, or ``None`` when caching is off (``interval`` ``None`` or 1); ``name``: what
    the caller calls the interval in its errors (the CLI's flag)."""
    if interval is not None and (not _is_whole(interval) or interval < 1):
        raise MotionkitError(
            f"{name} must be a whole number of at least 1 (1 or None: no caching, 2: a full step every 2nd), got {interval!r}"
        )
    if schedule not in SCHEDULES:
        raise MotionkitError(f"cache_schedule {schedule!r} is not one of {', '.join(SCHEDULES)}")
    off = interval is None or interval == 1
    # Only a UNet that caches must be cut between layers: with caching off any UNet samples as before.
    branches = skip_branches(unet) if unet is not None and not off else None
    if not _is_whole(branch) or branch < 0 or (branches is not None and branch >= branches):
        span = f"0 to {branches - 1}" if branches is not None else "at least 0"
        raise MotionkitError(f"cache_branch must be a whole number from {span} (0: the shallowest, fastest), got {branch!r}")
    if off:
        return None
    return StepCacheSettings(interval, branch, schedule)


class StepCache:
    """The kept deep features of one denoising pass, and the UNet calls that make and use them."""

    def __init__(self, settings: StepCacheSettings, unet: UNet2DConditionModel, num_steps: int):
        self.settings = settings
        self.unet = unet
        ups = _up_layers(unet)
        # The up layer whose input is kept: it consumes skip branch ``branch``.
        self.entry = ups[len(ups) - 1 - settings.branch]
        self._full = settings.full_steps(num_steps)
        self._features: dict[tuple[tuple[int, ...], int], torch.Tensor] = {}
        self.full_calls = 0
        self.cached_calls = 0

    def is_full(self, step: int) -> bool:
        return step in self._full

    def runner(self, motion_unet: Callable[..., Any], step: int, frames: list[int]) -> Callable[..., Any]:
        """``motion_unet`` for the window ``frames`` at ``step``: takes and returns what ``motion_unet`` does."""
        return functools.partial(self._run, motion_unet, step, tuple(frames))

    def _run(self, motion_unet: Callable[..., Any], step: int, frames: tuple[int, ...], sample: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        # The guidance batch is part of the key: a window's call with and without CFG keeps separate features.
        key = (frames, int(sample.shape[0]))
        feature = None if self.is_full(step) else self._features.get(key)
        if feature is None:
            with self._keeping(key):
                out = motion_unet(sample, *args, **kwargs)
            self.full_calls += 1
            return out
        with self._shallow(feature):
            out = motion_unet(sample, *args, **kwargs)
        self.cached_calls += 1
        return out

    @contextlib.contextmanager
    def _keeping(self, key: tuple[tuple[int, ...], int]) -> Iterator[None]:
        """Run the whole UNet and keep the input of the entry up layer (read-only hooks: outputs are untouched).

        A block's first layer takes the block's input; a later one the output of the layer before, read after
        the motion module hooked there has run (hooks run in the order they were added)."""
        block_index, layer = self.entry
        block = self.unet.up_blocks[block_index]

        def keep_input(_block: torch.nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
            self._features[key] = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]

        def keep_output(_module: torch.nn.Module, _args: tuple, output: Any) -> None:
            self._features[key] = _layer_output(output)

        if layer == 0:
            handle = block.register_forward_pre_hook(keep_input, with_kwargs=True)
        else:
            handle = _last_module(block, layer - 1).register_forward_hook(keep_output)
        try:
            yield
        finally:
            handle.remove()

    @contextlib.contextmanager
    def _shallow(self, feature: torch.Tensor) -> Iterator[None]:
        """Swap the UNet's forward for the shallow one while ``MotionUNet`` calls it, so its frame flattening,
        per-frame conditioning and image-conditioning hook stay the one implementation."""
        unet = self.unet
        previous = unet.__dict__.get("forward")  # accelerate's offload hooks wrap forward on the instance
        unet.forward = functools.partial(shallow_forward, unet, feature, self.settings.branch)
        try:
            yield
        finally:
            if previous is None:
                del unet.forward
            else:
                unet.forward = previous


def _embeddings(
    unet: UNet2DConditionModel,
    sample: torch.Tensor,
    timestep: torch.Tensor | float | int,
    encoder_hidden_states: torch.Tensor,
    added_cond_kwargs: dict[str, Any] | None,
    timestep_cond: torch.Tensor | None,
    class_labels: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """The (possibly centred) sample, the time embedding and the cross-attention states, as the full forward makes them."""
    if unet.config.center_input_sample:
        sample = 2 * sample - 1.0
    emb = unet.time_embedding(unet.get_time_embed(sample=sample, timestep=timestep), timestep_cond)
    class_emb = unet.get_class_embed(sample=sample, class_labels=class_labels)
    if class_emb is not None:
        emb = torch.cat([emb, class_emb], dim=-1) if unet.config.class_embeddings_concat else emb + class_emb
    if unet.config.addition_embed_type == "image_hint":
        raise MotionkitError("step caching does not take image_hint UNets: sample without cache_interval")
    aug_emb = unet.get_aug_embed(emb=emb, encoder_hidden_states=encoder_hidden_states, added_cond_kwargs=added_cond_kwargs)
    if aug_emb is not None:
        emb = emb + aug_emb
    if unet.time_embed_act is not None:
        emb = unet.time_embed_act(emb)
    states = unet.process_encoder_hidden_states(encoder_hidden_states=encoder_hidden_states, added_cond_kwargs=added_cond_kwargs)
    return sample, emb, states


def _run_layer(block: torch.nn.Module, layer: int, hidden: torch.Tensor, emb: torch.Tensor, attention: dict[str, Any]) -> torch.Tensor:
    """One layer of an SD-style block: its resnet, then its transformer where the block has them."""
    hidden = block.resnets[layer](hidden, emb)
    attentions = getattr(block, "attentions", None)
    if attentions:
        hidden = attentions[layer](hidden, **attention, return_dict=False)[0]
    return hidden


@apply_lora_scale("cross_attention_kwargs")  # LoRA scales as the full forward applies them
def shallow_forward(
    unet: UNet2DConditionModel,
    feature: torch.Tensor,
    branch: int,
    sample: torch.Tensor,
    timestep: torch.Tensor | float | int,
    encoder_hidden_states: torch.Tensor,
    class_labels: torch.Tensor | None = None,
    timestep_cond: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    cross_attention_kwargs: dict[str, Any] | None = None,
    added_cond_kwargs: dict[str, Any] | None = None,
    down_block_additional_residuals: tuple[torch.Tensor, ...] | None = None,
    mid_block_additional_residual: torch.Tensor | None = None,
    down_intrablock_additional_residuals: tuple[torch.Tensor, ...] | None = None,
    encoder_attention_mask: torch.Tensor | None = None,
    return_dict: bool = True,
) -> tuple[torch.Tensor]:
    """``UNet2DConditionModel.forward``'s signature, computing only the layers of skip branches ``0..branch``,
    with ``feature`` (kept on a full step) as the input of the up layer of branch ``branch``. Returns ``(sample,)``.

    ControlNet residuals are added to the branches computed here; the mid-block residual acted on ``feature``."""
    if attention_mask is not None or encoder_attention_mask is not None or down_intrablock_additional_residuals is not None:
        raise MotionkitError("step caching does not take attention masks or T2I-Adapter residuals: sample without cache_interval")
    if cross_attention_kwargs is not None and cross_attention_kwargs.get("gligen") is not None:
        raise MotionkitError("step caching does not take GLIGEN inputs: sample without cache_interval")
    if any(getattr(block, "b1", None) is not None for block in unet.up_blocks):
        raise MotionkitError("step caching does not take FreeU: disable_freeu() or sample without cache_interval")
    # Sizes that the up path cannot reach by doubling get the skip feature's size handed down, as in the full forward.
    forward_upsample_size = any(dim % 2**unet.num_upsamplers for dim in sample.shape[-2:])
    sample, emb, states = _embeddings(unet, sample, timestep, encoder_hidden_states, added_cond_kwargs, timestep_cond, class_labels)
    attention = dict(encoder_hidden_states=states, cross_attention_kwargs=cross_attention_kwargs)

    hidden = unet.conv_in(sample)
    skips = [hidden]
    for block_index, layer in _down_stages(unet)[:branch]:
        block = unet.down_blocks[block_index]
        if layer is None:
            for downsampler in block.downsamplers:
                hidden = downsampler(hidden)
        else:
            hidden = _run_layer(block, layer, hidden, emb, attention)
        skips.append(hidden)
    if down_block_additional_residuals is not None:
        skips = [skip + residual for skip, residual in zip(skips, down_block_additional_residuals)]

    ups = _up_layers(unet)
    last = len(ups) - 1
    hidden = feature
    for position in range(last - branch, last + 1):
        block_index, layer = ups[position]
        block = unet.up_blocks[block_index]
        hidden = _run_layer(block, layer, torch.cat([hidden, skips[last - position]], dim=1), emb, attention)
        if layer == len(block.resnets) - 1 and block.upsamplers:
            # The size of the skip the next block's first layer takes, as the full forward hands it down.
            size = skips[last - position - 1].shape[2:] if forward_upsample_size else None
            for upsampler in block.upsamplers:
                hidden = upsampler(hidden, size)
    if unet.conv_norm_out:
        hidden = unet.conv_act(unet.conv_norm_out(hidden))
    return (unet.conv_out(hidden),)
