"""Step caching (DeepCache): reuse the UNet's deep features across neighbouring denoising steps.

Neighbouring steps of a sampler change the UNet's deep, low-resolution features little, while the
shallow, high-resolution blocks carry the detail that moves. So on a *full* step the whole UNet runs
(exactly as without caching) and the feature entering up block ``n - 1 - branch`` is kept; on a
*cached* step only ``conv_in``, down blocks ``0..branch`` and up blocks ``n - 1 - branch..n - 1`` run,
with the kept feature standing in for everything deeper. The motion modules hang on those blocks
(``motionkit.injection``), so the shallow ones run on every step and the deep ones on full steps only.

``branch`` 0 (default) keeps the shallowest skip branch only: the cheapest cached step. A larger
``branch`` recomputes more of the UNet on cached steps: slower, closer to exact sampling.

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

from motionkit.errors import MotionkitError

SCHEDULES = ("uniform", "quadratic")


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
    levels = len(unet.up_blocks) if unet is not None else None
    if not _is_whole(branch) or branch < 0 or (levels is not None and branch >= levels):
        span = f"0 to {levels - 1}" if levels is not None else "at least 0"
        raise MotionkitError(f"cache_branch must be a whole number from {span} (0: the shallowest, fastest), got {branch!r}")
    if interval is None or interval == 1:
        return None
    return StepCacheSettings(interval, branch, schedule)


class StepCache:
    """The kept deep features of one denoising pass, and the UNet calls that make and use them."""

    def __init__(self, settings: StepCacheSettings, unet: UNet2DConditionModel, num_steps: int):
        self.settings = settings
        self.unet = unet
        # The up block whose input is kept: it consumes the shallowest ``branch + 1`` skip levels.
        self.entry = len(unet.up_blocks) - 1 - settings.branch
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
        if kwargs.get("down_intrablock_additional_residuals") is not None:
            raise MotionkitError("step caching does not take T2I-Adapter residuals: sample without cache_interval")
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
        """Run the whole UNet and keep the input of the entry up block (a read-only hook: outputs are untouched)."""

        def keep(_block: torch.nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
            self._features[key] = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]

        handle = self.unet.up_blocks[self.entry].register_forward_pre_hook(keep, with_kwargs=True)
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
    """``UNet2DConditionModel.forward``'s signature, computing only the blocks of skip levels ``0..branch``,
    with ``feature`` (kept on a full step) as the input of up block ``n - 1 - branch``. Returns ``(sample,)``."""
    if attention_mask is not None or encoder_attention_mask is not None or down_intrablock_additional_residuals is not None:
        raise MotionkitError("step caching does not take attention masks or T2I-Adapter residuals: sample without cache_interval")
    if cross_attention_kwargs is not None and cross_attention_kwargs.get("gligen") is not None:
        raise MotionkitError("step caching does not take GLIGEN inputs: sample without cache_interval")
    # Sizes that the up blocks cannot reach by doubling get the skip feature's size handed down, as in the full forward.
    factor = 2 ** unet.num_upsamplers
    forward_upsample_size = any(dim % factor for dim in sample.shape[-2:])
    sample, emb, states = _embeddings(unet, sample, timestep, encoder_hidden_states, added_cond_kwargs, timestep_cond, class_labels)
    attention = dict(encoder_hidden_states=states, cross_attention_kwargs=cross_attention_kwargs)

    hidden = unet.conv_in(sample)
    skips: tuple[torch.Tensor, ...] = (hidden,)
    for block in unet.down_blocks[: branch + 1]:
        if getattr(block, "has_cross_attention", False):
            hidden, res = block(hidden_states=hidden, temb=emb, **attention)
        else:
            hidden, res = block(hidden_states=hidden, temb=emb)
        skips += res
    first = len(unet.up_blocks) - 1 - branch
    kept_up = unet.up_blocks[first:]
    # The deepest computed down block also downsamples for the skipped levels; that output goes unused.
    skips = skips[: sum(len(block.resnets) for block in kept_up)]
    if down_block_additional_residuals is not None:
        skips = tuple(s + r for s, r in zip(skips, down_block_additional_residuals))

    hidden = feature
    upsample_size = None
    for index, block in enumerate(kept_up, start=first):
        used = len(block.resnets)
        res, skips = skips[-used:], skips[:-used]
        if index < len(unet.up_blocks) - 1 and forward_upsample_size:
            upsample_size = skips[-1].shape[2:]
        if getattr(block, "has_cross_attention", False):
            hidden = block(hidden_states=hidden, temb=emb, res_hidden_states_tuple=res, upsample_size=upsample_size, **attention)
        else:
            hidden = block(hidden_states=hidden, temb=emb, res_hidden_states_tuple=res, upsample_size=upsample_size)
    if unet.conv_norm_out:
        hidden = unet.conv_act(unet.conv_norm_out(hidden))
    return (unet.conv_out(hidden),)
