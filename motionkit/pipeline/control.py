"""Control of the frozen UNet at every resolution: ControlNet videos and SparseCtrl keyframes.

Both run diffusers' own models (``ControlNetModel``, ``MultiControlNetModel``, ``SparseControlNetModel``)
and hand their residuals to the UNet as ``down_block_additional_residuals`` /
``mid_block_additional_residual``, batched as ``MotionUNet`` flattens frames (video-major, ``[B*F, ...]``).
The numerics follow diffusers' ``AnimateDiffControlNetPipeline`` and ``AnimateDiffSparseControlNetPipeline``:

- ControlNet: one control frame per output frame, pixels in [0, 1]; the control frames are the same for
  every video of the batch and for both guidance branches. Each net's scale is multiplied per step by
  diffusers' ``controlnet_keep``: 0 while ``i / n < start`` or ``(i + 1) / n > end``, else 1 (``n``: the
  steps of the pass, so FreeInit's shorter passes and img2img's shortened schedule keep their fractions).
- SparseCtrl: conditioning on any subset of frames (``controlnet_frame_indices``), with its mask channel;
  RGB models (``use_simplified_condition_embedding``) take the keyframes' VAE latents, scribble models their
  pixels. Frames without a keyframe carry zeros and mask 0.
- ``guess_mode`` under guidance: the control model sees the conditional half only and the unconditional
  half gets zero residuals (as diffusers' image ControlNet pipelines; its AnimateDiff ones do not pad and
  fail there).

Context windows: every window takes its own frames of the control video; for SparseCtrl a window sees the
keyframes that fall inside it at their window-relative positions, and a window holding no keyframe runs
without SparseCtrl (plain text-to-video there; the overlaps blend it with its controlled neighbours).
Control frames are resized to cover the output size and centre-cropped, as motionkit's conditioning image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
import PIL.Image
import torch
from diffusers import ControlNetModel, SparseControlNetModel
from diffusers.image_processor import VaeImageProcessor
from diffusers.models.controlnets.multicontrolnet import MultiControlNetModel

from motionkit.errors import MotionkitError
from motionkit.pipeline.image_input import load_image

ControlModel = Union[ControlNetModel, MultiControlNetModel, SparseControlNetModel]
# A control video: a list of frames (paths, PIL images, [H, W, C] arrays, [C, H, W] tensors in [0, 1]),
# a [F, H, W, C] array or a [F, C, H, W] tensor in [0, 1], or a video file / frame folder path.
ControlVideo = Union[str, Path, Sequence[Any], np.ndarray, torch.Tensor]
# Maps VAE-normalised pixels [N, 3, H, W] in [-1, 1] to latents [N, C, h, w] x scaling_factor.
EncodeLatents = Callable[[torch.Tensor], torch.Tensor]


# -- the pipeline component -------------------------------------------------------------------------


def as_control_model(controlnet: Any) -> ControlModel | None:
    """The pipeline's ``controlnet`` component: lists of ControlNets become a ``MultiControlNetModel``."""
    if controlnet is None or isinstance(controlnet, (ControlNetModel, SparseControlNetModel)):
        return controlnet
    nets = list(controlnet.nets) if isinstance(controlnet, MultiControlNetModel) else controlnet
    if not isinstance(nets, (list, tuple)):
        raise MotionkitError(
            f"controlnet must be a ControlNetModel, a list of them or a SparseControlNetModel, got {type(controlnet).__name__}"
        )
    for net in nets:
        if isinstance(net, SparseControlNetModel):
            raise MotionkitError(
                "a SparseControlNetModel cannot be combined with other control models: pass it alone as controlnet="
            )
        if not isinstance(net, ControlNetModel):
            raise MotionkitError(f"controlnet lists hold ControlNetModels, got a {type(net).__name__}")
    if not nets:
        raise MotionkitError("controlnet is an empty list: pass at least one ControlNetModel, or None")
    return controlnet if isinstance(controlnet, MultiControlNetModel) else MultiControlNetModel(list(nets))


def control_nets(model: ControlModel) -> list[ControlNetModel] | list[SparseControlNetModel]:
    return list(model.nets) if isinstance(model, MultiControlNetModel) else [model]


def check_control_fits(model: ControlModel | None, unet: Any, family: str) -> None:
    """Refuse a control model made for another base family than ``unet`` (``"sd"`` or ``"sdxl"``)."""
    if model is None:
        return
    width = unet.config.cross_attention_dim
    for net in control_nets(model):
        kind = type(net).__name__
        if isinstance(net, SparseControlNetModel) and family == "sdxl":
            raise MotionkitError("SparseCtrl models exist for SD 1.x/2.x only: use a ControlNet with SDXL bases")
        net_family = "sdxl" if net.config.get("addition_embed_type") == "text_time" else "sd"
        if net_family != family:
            raise MotionkitError(
                f"this {kind} is made for {net_family.upper()} but the base is {family.upper()}: "
                f"use a {family.upper()} {kind}"
            )
        if net.config.cross_attention_dim != width:
            raise MotionkitError(
                f"this {kind} takes {net.config.cross_attention_dim}-wide text embeddings but the UNet {width}: "
                "use a control model made for this base model (SD 1.x: 768, SD 2.x: 1024, SDXL: 2048)"
            )


# -- what one call prepares ---------------------------------------------------------------------------


def _keep(step: int, num_steps: int, start: float, end: float) -> float:
    """diffusers' ``controlnet_keep``: whether a net is on at ``step`` of ``num_steps``."""
    return 1.0 - float(step / num_steps < start or (step + 1) / num_steps > end)


@dataclass
class _ModelInputs:
    """What the control model sees for one window, with frames flattened video-major."""

    sample: torch.Tensor  # [N, C, Fw, h, w]
    embeds: torch.Tensor  # [N*Fw, T, D]
    added_cond_kwargs: dict[str, torch.Tensor] | None  # SDXL's, per frame
    pad_unconditional: bool  # guess mode under guidance: zeros for the negative half


def _model_inputs(
    model_input: torch.Tensor,
    embeds: torch.Tensor,
    added_cond_kwargs: dict[str, torch.Tensor] | None,
    do_cfg: bool,
    guess_mode: bool,
) -> _ModelInputs:
    conditional_only = guess_mode and do_cfg
    if conditional_only:  # the positive half: the latents scaled exactly as the UNet's input
        model_input = model_input.chunk(2)[1]
        embeds = embeds.chunk(2)[1]
        added_cond_kwargs = {k: v.chunk(2)[1] for k, v in (added_cond_kwargs or {}).items()} or None
    frames = model_input.shape[2]

    def per_frame(t: torch.Tensor) -> torch.Tensor:  # prompt travel gives per-frame tensors already
        return t if t.shape[0] == model_input.shape[0] * frames else t.repeat_interleave(frames, dim=0)

    added = {k: per_frame(v) for k, v in (added_cond_kwargs or {}).items()} or None
    return _ModelInputs(model_input, per_frame(embeds), added, conditional_only)


def _unet_kwargs(down: Sequence[torch.Tensor], mid: torch.Tensor, pad_unconditional: bool) -> dict[str, Any]:
    if pad_unconditional:
        down = [torch.cat([torch.zeros_like(d), d]) for d in down]
        mid = torch.cat([torch.zeros_like(mid), mid])
    return {"down_block_additional_residuals": list(down), "mid_block_additional_residual": mid}


@dataclass
class ControlNetVideos:
    """ControlNet conditioning of one call: one control video per net, scales and schedule fractions."""

    model: ControlNetModel | MultiControlNetModel
    videos: list[torch.Tensor]  # per net [F, 3, H, W] in [0, 1]
    scales: list[float]
    starts: list[float]
    ends: list[float]
    guess_mode: bool

    def residuals(
        self,
        step: int,
        num_steps: int,
        model_input: torch.Tensor,
        timestep: torch.Tensor,
        frames: list[int],
        embeds: torch.Tensor,
        added_cond_kwargs: dict[str, torch.Tensor] | None,
        do_cfg: bool,
    ) -> dict[str, Any]:
        """The UNet's residual kwargs for ``model_input`` ``[N, C, Fw, h, w]`` holding ``frames``; ``{}`` when every net is off."""
        scales = [scale * _keep(step, num_steps, s, e) for scale, s, e in zip(self.scales, self.starts, self.ends)]
        if not any(scales):
            return {}  # adding zero residuals changes nothing: skip the nets
        inputs = _model_inputs(model_input, embeds, added_cond_kwargs, do_cfg, self.guess_mode)
        n, c, f, h, w = inputs.sample.shape
        flat = inputs.sample.transpose(1, 2).reshape(n * f, c, h, w)
        index = torch.tensor(frames, device=self.videos[0].device)
        # The same control frames for every video and branch, video-major as the latents are flattened.
        conds = [video.index_select(0, index).repeat(n, 1, 1, 1) for video in self.videos]
        multi = isinstance(self.model, MultiControlNetModel)
        down, mid = self.model(
            flat,
            timestep,
            encoder_hidden_states=inputs.embeds,
            controlnet_cond=conds if multi else conds[0],
            conditioning_scale=scales if multi else scales[0],
            added_cond_kwargs=inputs.added_cond_kwargs,
            guess_mode=self.guess_mode,
            return_dict=False,
        )
        return _unet_kwargs(down, mid, inputs.pad_unconditional)


@dataclass
class SparseKeyframes:
    """SparseCtrl conditioning of one call: keyframe conditions and mask over every frame."""

    model: SparseControlNetModel
    cond: torch.Tensor  # [1, C, F, h or H, w or W], zeros off the keyframes
    mask: torch.Tensor  # [1, 1, F, ...], 1 on the keyframes
    frame_indices: list[int]  # non-negative, sorted
    scale: float
    start: float
    end: float
    guess_mode: bool

    def residuals(
        self,
        step: int,
        num_steps: int,
        model_input: torch.Tensor,
        timestep: torch.Tensor,
        frames: list[int],
        embeds: torch.Tensor,
        added_cond_kwargs: dict[str, torch.Tensor] | None,
        do_cfg: bool,
    ) -> dict[str, Any]:
        scale = self.scale * _keep(step, num_steps, self.start, self.end)
        if not scale or not set(frames) & set(self.frame_indices):
            return {}  # off at this step, or no keyframe inside this window
        inputs = _model_inputs(model_input, embeds, added_cond_kwargs, do_cfg, self.guess_mode)
        index = torch.tensor(frames, device=self.cond.device)
        # Batch 1, broadcast over the videos inside the model, as diffusers passes it.
        down, mid = self.model(
            inputs.sample,
            timestep,
            encoder_hidden_states=inputs.embeds,
            controlnet_cond=self.cond.index_select(2, index),
            conditioning_mask=self.mask.index_select(2, index),
            conditioning_scale=scale,
            guess_mode=self.guess_mode,
            return_dict=False,
        )
        return _unet_kwargs(down, mid, inputs.pad_unconditional)


Control = Union[ControlNetVideos, SparseKeyframes]


# -- preparing inputs ---------------------------------------------------------------------------------


def load_control_video(path: str | Path) -> np.ndarray:
    """A control video file or folder of frames as uint8 ``[F, H, W, 3]`` (``motionkit.video_io``)."""
    from motionkit.video_io import read_video

    if not Path(path).exists():
        raise MotionkitError(f"control video {path} does not exist: give a video file or a folder of frames")
    return read_video(path)


def _frames(video: ControlVideo, what: str) -> list[PIL.Image.Image]:
    """Every frame of ``video`` as an RGB image (control maps are 8-bit images; float frames are rounded to them)."""
    if isinstance(video, (str, Path)):
        video = load_control_video(video)
    if isinstance(video, (np.ndarray, torch.Tensor)):
        if video.ndim != 4:
            raise MotionkitError(
                f"{what} must be a list of frames, [F, H, W, C] array or [F, C, H, W] tensor, got shape {tuple(video.shape)}"
            )
        video = list(video)
    if isinstance(video, PIL.Image.Image) or not isinstance(video, Sequence):
        raise MotionkitError(f"{what} must be a list of frames (one per output frame), got a {type(video).__name__}")
    if not video:
        raise MotionkitError(f"{what} holds no frames: give at least one image")
    return [load_image(frame) for frame in video]


def _pixels(frames: list[PIL.Image.Image], height: int, width: int) -> torch.Tensor:
    """``[F, 3, height, width]`` float32 in [0, 1], each frame resized to cover the size and centre-cropped."""
    processor = VaeImageProcessor(do_convert_rgb=True, do_normalize=False)
    return processor.preprocess(frames, height=height, width=width, resize_mode="crop").float()


def _per_net(value: Any, count: int, name: str) -> list[float]:
    values = list(value) if isinstance(value, (list, tuple)) else [value] * count
    if len(values) != count:
        raise MotionkitError(f"{name} has {len(values)} values for {count} control models: give one value or one per model")
    return [float(v) for v in values]


def _check_schedule(starts: list[float], ends: list[float]) -> None:
    for start, end in zip(starts, ends):
        if not 0.0 <= start < end <= 1.0:
            raise MotionkitError(
                f"control_guidance_start {start} and control_guidance_end {end} must satisfy 0 <= start < end <= 1"
            )


def _frame_indices(indices: Sequence[int], num_frames: int) -> list[int]:
    resolved = []
    for index in indices:
        if not -num_frames <= int(index) < num_frames:
            raise MotionkitError(
                f"controlnet_frame_indices {index} is out of range for {num_frames} frames: use 0 to {num_frames - 1} "
                f"(or -1 to {-num_frames} from the end)"
            )
        resolved.append(int(index) % num_frames)
    if len(set(resolved)) != len(resolved):
        raise MotionkitError(f"controlnet_frame_indices {list(indices)} name a frame twice: give each keyframe once")
    return resolved


def check_window_fits(model: ControlModel | None, window: int) -> None:
    """Refuse a SparseCtrl run whose model calls would exceed its motion modules' position table."""
    if isinstance(model, SparseControlNetModel) and window > model.config.motion_max_seq_length:
        table = model.config.motion_max_seq_length
        raise MotionkitError(
            f"{window} frames per model call exceed the SparseCtrl model's position table of {table}: "
            f"set context_length to at most {table}"
        )


def prepare_control(
    model: ControlModel | None,
    conditioning_frames: Any,
    *,
    num_frames: int,
    height: int,
    width: int,
    scale: float | list[float],
    start: float | list[float],
    end: float | list[float],
    guess_mode: bool,
    frame_indices: Sequence[int] | None,
    window: int,
    encode_latents: EncodeLatents,
    device: torch.device,
) -> Control | None:
    """A call's control from diffusers' arguments, checked; ``None`` without ``conditioning_frames``.

    ``window``: the most frames one model call holds (the context length, or every frame).
    """
    if conditioning_frames is None:
        if frame_indices is not None:
            raise MotionkitError("controlnet_frame_indices need conditioning_frames: pass the keyframe images")
        return None
    if model is None:
        raise MotionkitError(
            "conditioning_frames need a control model: build the pipeline with controlnet= (a ControlNet or SparseCtrl model)"
        )
    if isinstance(model, SparseControlNetModel):
        check_window_fits(model, min(window, num_frames))
        return _prepare_sparse(
            model, conditioning_frames, num_frames, height, width, scale, start, end, guess_mode,
            frame_indices, encode_latents, device,
        )
    if frame_indices is not None:
        raise MotionkitError(
            "controlnet_frame_indices are for SparseCtrl models; a ControlNet takes one control frame per output frame"
        )
    nets = control_nets(model)
    multi = isinstance(model, MultiControlNetModel)
    videos = list(conditioning_frames) if multi else [conditioning_frames]
    if multi and (len(videos) != len(nets) or isinstance(conditioning_frames, (str, Path, np.ndarray, torch.Tensor))):
        count = len(videos) if isinstance(conditioning_frames, (list, tuple)) else 1
        raise MotionkitError(
            f"{len(nets)} ControlNets need {len(nets)} control videos (a list of them), got {count}"
        )
    prepared = []
    for number, video in enumerate(videos):
        what = f"control video {number + 1}" if multi else "conditioning_frames"
        pixels = _pixels(_frames(video, what), height, width)
        if pixels.shape[0] != num_frames:
            raise MotionkitError(
                f"{what} has {pixels.shape[0]} frames but num_frames is {num_frames}: give one control frame per output frame"
            )
        prepared.append(pixels.to(device=device, dtype=model.dtype))
    scales = _per_net(scale, len(nets), "controlnet_conditioning_scale")
    starts = _per_net(start, len(nets), "control_guidance_start")
    ends = _per_net(end, len(nets), "control_guidance_end")
    _check_schedule(starts, ends)
    guess_mode = guess_mode or bool(nets[0].config.global_pool_conditions)
    return ControlNetVideos(model, prepared, scales, starts, ends, guess_mode)


def _prepare_sparse(
    model: SparseControlNetModel,
    conditioning_frames: Any,
    num_frames: int,
    height: int,
    width: int,
    scale: Any,
    start: Any,
    end: Any,
    guess_mode: bool,
    frame_indices: Sequence[int] | None,
    encode_latents: EncodeLatents,
    device: torch.device,
) -> SparseKeyframes:
    for name, value in (("controlnet_conditioning_scale", scale), ("control_guidance_start", start), ("control_guidance_end", end)):
        if isinstance(value, (list, tuple)):
            raise MotionkitError(f"{name} takes one number for a SparseCtrl model, got a list")
    single = isinstance(conditioning_frames, (str, Path, PIL.Image.Image)) or (
        isinstance(conditioning_frames, (np.ndarray, torch.Tensor)) and conditioning_frames.ndim == 3
    )
    keyframes = _frames([conditioning_frames] if single else conditioning_frames, "conditioning_frames")
    indices = _frame_indices([0] if frame_indices is None else list(frame_indices), num_frames)
    pixels = _pixels(keyframes, height, width)
    if pixels.shape[0] != len(indices):
        raise MotionkitError(
            f"{pixels.shape[0]} keyframe images for {len(indices)} controlnet_frame_indices: give one image per index"
        )
    _check_schedule([float(start)], [float(end)])
    pixels = pixels.to(device)
    if model.config.use_simplified_condition_embedding:  # RGB SparseCtrl: the keyframes' latents
        condition = encode_latents(2 * pixels - 1)
    else:  # scribble SparseCtrl: the pixels themselves
        condition = pixels
    channels = model.config.conditioning_channels
    if condition.shape[1] != channels:
        raise MotionkitError(
            f"the SparseCtrl model takes {channels}-channel conditions but the keyframes give {condition.shape[1]}: "
            "use an RGB SparseCtrl model with this VAE, or a scribble one for pixel conditions"
        )
    dtype = model.dtype
    cond = condition.new_zeros((1, channels, num_frames, *condition.shape[2:]), dtype=dtype)
    mask = condition.new_zeros((1, 1, num_frames, *condition.shape[2:]), dtype=dtype)
    order = torch.tensor(indices, device=cond.device)
    cond[:, :, order] = condition.to(dtype).transpose(0, 1).unsqueeze(0)
    mask[:, :, order] = 1
    guess_mode = guess_mode or bool(model.config.global_pool_conditions)
    return SparseKeyframes(model, cond, mask, sorted(indices), float(scale), float(start), float(end), guess_mode)
