"""``MotionPipeline``: animate any SD 1.x / 2.x checkpoint with a motion adapter, from text or an image.

A diffusers ``DiffusionPipeline`` whose components are the base model's (vae, text_encoder,
tokenizer, unet, scheduler) plus a motionkit ``MotionAdapter``. The adapter runs inside the plain
UNet through ``motionkit.injection``; ``eject()`` hands the untouched UNet back. Text-to-video follows
diffusers' ``AnimateDiffPipeline`` step for step (same noise convention, same guidance), so equal
weights give equal videos.

SDXL bases get ``MotionPipelineXL`` (``motion_pipeline_xl``), a subclass that only changes prompt
encoding (two text encoders, pooled embeddings, size/crop micro-conditioning); ``from_pretrained``,
``from_single_file`` and ``from_components`` pick it for SDXL UNets.

Image-to-video has two modes, picked from the adapter:

- training-free (any adapter): the image's latent is frame 0. At every step it is re-noised to the
  current noise level and substituted for frame 0, and the final frame 0 is the clean latent, so the
  first frame reproduces the image up to the VAE's own reconstruction error. Every frame starts,
  img2img-style, from the image latent noised to the first timestep of a schedule shortened by
  ``strength`` (1.0: the full schedule, 0.5: its second half).
- trained (adapters with ``image_cond_channels == 5``, PIA's layout): the UNet also gets
  ``cat([mask, cond_latent])`` on every frame through the adapter's conditioning branch; the mask
  follows PIA's ``motion_scale`` presets.

How the image enters classifier-free guidance (``image_guidance``):

- ``"pia"`` (default): the image conditions both branches, as diffusers' ``PIAPipeline`` does, so
  guidance acts on the text alone and cannot extrapolate the image out of the latents' range;
- ``"svd"``: Stable Video Diffusion's convention, a zero image in the unconditional branch, so guidance
  also pushes towards the image; guidance is ramped over frames (from ``min_guidance_scale``, default
  1.0, at frame 0 to ``guidance_scale``) because a constant high scale oversaturates.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import PIL.Image
import torch
from diffusers import AutoencoderKL, DiffusionPipeline, StableDiffusionPipeline, UNet2DConditionModel
from diffusers.image_processor import VaeImageProcessor
from diffusers.loaders import IPAdapterMixin, StableDiffusionLoraLoaderMixin, TextualInversionLoaderMixin
from diffusers.pipelines.pipeline_utils import StableDiffusionMixin
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from diffusers.video_processor import VideoProcessor
from transformers import CLIPImageProcessor, CLIPTextModel, CLIPTokenizer, CLIPVisionModelWithProjection

from motionkit.adapter import MotionAdapter
from motionkit.errors import MotionkitError
from motionkit.injection import MotionUNet, image_model_alone, inject
from motionkit.noise_prior import check_noise_correlation, default_frame_noise_means, noise_prior
from motionkit.pipeline.conditioning import check_image_guidance, check_strength
from motionkit.pipeline.conditioning import image_cond as pia_image_cond
from motionkit.pipeline.families import folder_family, pipeline_class, pipeline_family, register_pipeline
from motionkit.pipeline.context import ContextWindows, check_frames_fit, fuse_windows
from motionkit.pipeline.control import Control, ControlModel, as_control_model, check_control_fits, prepare_control
from motionkit.pipeline.free_init import FreeInit
from motionkit.pipeline.free_noise import FreeNoise, set_motion_windows
from motionkit.pipeline.image_familiarity import DEFAULT_DRAWS, DEFAULT_TIMESTEP, denoising_error
from motionkit.pipeline.image_input import ImageInput, prepare_image
from motionkit.pipeline.inversion import NoisePredictor, check_image_inversion, invert_image, mix_inverted
from motionkit.pipeline.ip_adapter import IPConditioning, prepare_ip_adapter
from motionkit.pipeline.motion_strength import check_motion_strength
from motionkit.pipeline.prompt_schedule import Interpolator, PromptKey, PromptSchedule, as_schedule, encode_schedule
from motionkit.pipeline.step_cache import StepCache, StepCacheSettings, check_step_cache
from motionkit.pipeline.video_input import VideoInput, encode_video, video_frames, video_length

logger = logging.getLogger(__name__)

OUTPUT_TYPES = ("pil", "np", "pt", "latent")


@dataclass
class MotionPipelineOutput(BaseOutput):
    """``frames``: a list (per video) of PIL lists, np ``[B, F, H, W, 3]``, pt ``[B, F, 3, H, W]`` or latents."""

    frames: list[list[PIL.Image.Image]] | np.ndarray | torch.Tensor


@dataclass
class _PromptRequest:
    """A call's prompt inputs, as every family's ``_encode_text`` takes them."""

    prompt: str | list[str] | None
    negative_prompt: str | list[str] | None
    prompt_embeds: torch.Tensor | None
    negative_prompt_embeds: torch.Tensor | None
    num_videos_per_prompt: int
    do_cfg: bool
    lora_scale: float | None
    clip_skip: int | None
    height: int  # the output size: SDXL's default size conditioning
    width: int
    device: torch.device


@dataclass
class _TextConditioning:
    """What the prompt gives the UNet, batched as the latents are (negative half first under guidance)."""

    embeds: torch.Tensor  # [B or 2B, N, D], or per frame [(B or 2B) * F, N, D] (prompt travel)
    batch: int  # videos per call: prompts x num_videos_per_prompt
    # SDXL's pooled text embeddings and size/crop ids, under the UNet's names (text_embeds, time_ids).
    added_cond_kwargs: dict[str, torch.Tensor] = field(default_factory=dict)
    frames: int | None = None  # set when the tensors hold one entry per frame

    def for_frames(self, index: torch.Tensor | slice) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
        """The embeddings and added conditioning of the frames at ``index`` (a context window's)."""
        added = self.added_cond_kwargs or None
        if self.frames is None or isinstance(index, slice):
            return self.embeds, added

        def pick(t: torch.Tensor) -> torch.Tensor:
            per_video = t.reshape(-1, self.frames, *t.shape[1:]).index_select(1, index)
            return per_video.reshape(-1, *t.shape[1:])

        return pick(self.embeds), {k: pick(v) for k, v in added.items()} if added else None

    def callback_tensors(self) -> dict[str, torch.Tensor]:
        # diffusers' callback names: prompt_embeds, add_text_embeds, add_time_ids.
        return {"prompt_embeds": self.embeds, **{f"add_{k}": v for k, v in self.added_cond_kwargs.items()}}

    def update(self, tensors: dict[str, torch.Tensor]) -> None:
        self.embeds = tensors.pop("prompt_embeds", self.embeds)
        for key in list(self.added_cond_kwargs):
            self.added_cond_kwargs[key] = tensors.pop(f"add_{key}", self.added_cond_kwargs[key])


@dataclass
class _ImageConditioning:
    latent: torch.Tensor  # [B, C, h, w], x scaling_factor: what frame 0 must decode to
    unet_cond: torch.Tensor | None  # [2B or B, 5, F, h, w] for adapters with a conditioning branch
    anchor: bool  # substitute frame 0 with the (re-noised) latent at every step
    # Adapters trained with ``clean_conditioning_frame``: frame 0 enters every step clean, at timestep 0
    # (``model_latent``: the latent with its noise augmentation; ``guided``: whether the unconditional
    # half gets it too, PIA's convention, or frame 0 re-noised as in training's image dropout, SVD's).
    clean: bool = False
    model_latent: torch.Tensor | None = None
    guided: bool = True


class MotionPipeline(
    DiffusionPipeline, StableDiffusionMixin, TextualInversionLoaderMixin, StableDiffusionLoraLoaderMixin, IPAdapterMixin
):
    """Text- and image-to-video with a ``MotionAdapter`` injected into a frozen SD UNet."""

    family = "sd"
    # SD 1.x/2.x VAEs are fine in float16 (diffusers' AnimateDiffPipeline never upcasts them); SDXL's are not.
    upcast_fp16_vae = False
    model_cpu_offload_seq = "text_encoder->image_encoder->unet->vae"
    # The adapter only runs inside the UNet's forward, so it cannot get an offload hook of its own: keep it on device.
    _exclude_from_cpu_offload = ["adapter"]
    # controlnet: a ControlNetModel, MultiControlNetModel or SparseControlNetModel (see ``control``).
    # image_encoder / feature_extractor: IP-Adapter's CLIP image encoder (``load_ip_adapter``, ``ip_adapter``).
    _optional_components = ["tokenizer", "text_encoder", "controlnet", "image_encoder", "feature_extractor"]
    # prompt_embeds: the batched [negative, positive] embeddings when guidance is on.
    _callback_tensor_inputs = ["latents", "prompt_embeds"]

    # Prompt encoding is exactly Stable Diffusion's (textual inversion, LoRA scale, clip_skip included).
    encode_prompt = StableDiffusionPipeline.encode_prompt
    # IP-Adapter image prompts are Stable Diffusion's too (see ``motionkit.pipeline.ip_adapter``).
    encode_image = StableDiffusionPipeline.encode_image
    prepare_ip_adapter_image_embeds = StableDiffusionPipeline.prepare_ip_adapter_image_embeds

    def __init__(
        self,
        vae: AutoencoderKL,
        text_encoder: CLIPTextModel | None,
        tokenizer: CLIPTokenizer | None,
        unet: UNet2DConditionModel,
        scheduler: SchedulerMixin,
        adapter: MotionAdapter,
        controlnet: ControlModel | list | None = None,
        image_encoder: CLIPVisionModelWithProjection | None = None,
        feature_extractor: CLIPImageProcessor | None = None,
    ):
        super().__init__()
        self._setup(
            vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler, adapter=adapter,
            controlnet=controlnet, image_encoder=image_encoder, feature_extractor=feature_extractor,
        )

    def _setup(self, **modules: Any) -> None:
        """Register the components and inject the adapter; shared by every family's ``__init__``."""
        unet, adapter, vae = modules["unet"], modules["adapter"], modules["vae"]
        if pipeline_family(unet) != self.family:
            fit = "MotionPipelineXL" if pipeline_family(unet) == "sdxl" else "MotionPipeline"
            raise MotionkitError(
                f"this is an {pipeline_family(unet).upper()} UNet, which {type(self).__name__} does not take: use {fit} "
                "(MotionPipeline.from_components, from_pretrained and from_single_file pick it)"
            )
        modules["controlnet"] = as_control_model(modules.get("controlnet"))
        check_control_fits(modules["controlnet"], unet, self.family)
        self.register_modules(**modules)
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor)
        self.video_processor = VideoProcessor(do_resize=False, vae_scale_factor=self.vae_scale_factor)
        self.motion_unet: MotionUNet | None = inject(unet, adapter)
        self.free_init: FreeInit | None = None
        self.free_noise: FreeNoise | None = None
        self._free_noise_interpolation: Interpolator | None = None

    # -- construction -----------------------------------------------------------------------------

    @staticmethod
    def _as_adapter(adapter: MotionAdapter | str | Path) -> MotionAdapter:
        if isinstance(adapter, (str, Path)):
            from motionkit.formats import load_adapter

            return load_adapter(adapter)
        return adapter

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | Path, adapter: MotionAdapter | str | Path | None = None, **kwargs: Any
    ) -> "MotionPipeline":
        """A base model's diffusers folder (``model_index.json``) plus ``adapter`` (object or adapter file/folder).

        A folder written by ``MotionPipeline.save_pretrained`` already holds its adapter (and control model).
        An SDXL base gives a ``MotionPipelineXL``. ``controlnet=``: a control model (see ``__init__``).
        """
        target = cls._class_for(folder_family(pretrained_model_name_or_path))
        if target is not cls:
            return target.from_pretrained(pretrained_model_name_or_path, adapter=adapter, **kwargs)
        if adapter is not None:
            kwargs["adapter"] = cls._as_adapter(adapter)
        if kwargs.get("controlnet") is not None:
            kwargs["controlnet"] = as_control_model(kwargs["controlnet"])
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    @classmethod
    def from_single_file(
        cls,
        path: str | Path,
        adapter: MotionAdapter | str | Path,
        config: str | Path | None = None,
        controlnet: ControlModel | list | None = None,
        **kwargs: Any,
    ) -> "MotionPipeline":
        """A single-file base checkpoint (``.safetensors`` / ``.ckpt``), read offline, plus ``adapter``
        (and optionally a control model). SDXL checkpoints give a ``MotionPipelineXL``.
        """
        from motionkit.pipeline.loading import load_base  # owned by base loading; imported on use

        return cls.from_components(load_base(path, config=config, **kwargs), adapter, controlnet=controlnet)

    @classmethod
    def from_components(
        cls,
        components: Mapping[str, Any],
        adapter: MotionAdapter | str | Path,
        controlnet: ControlModel | list | None = None,
    ) -> "MotionPipeline":
        """A pipeline from base components (``load_base`` output, a diffusers pipeline's ``.components``) plus
        ``adapter``; called on ``MotionPipeline``, an SDXL UNet gives a ``MotionPipelineXL``. Extra entries are
        ignored. ``controlnet`` (ControlNet(s) or SparseCtrl model) replaces any the components hold."""
        target = cls._class_for(pipeline_family(components["unet"]))
        names, _ = target._get_signature_keys(target)
        modules = {name: components.get(name) for name in names if name != "adapter"}
        if controlnet is not None:
            modules["controlnet"] = controlnet
        return target(**modules, adapter=cls._as_adapter(adapter))

    @classmethod
    def _class_for(cls, family: str | None) -> type["MotionPipeline"]:
        """``cls``, except that plain ``MotionPipeline`` hands other families' bases to their pipeline class."""
        if cls is MotionPipeline and family is not None and family != cls.family:
            return pipeline_class(family)
        return cls

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        register_pipeline(cls)

    def eject(self) -> UNet2DConditionModel:
        """Detach the adapter: the base UNet comes back exactly as it was; the pipeline can no longer sample."""
        if self.motion_unet is not None:
            self.motion_unet.eject()
            self.motion_unet = None
        return self.unet

    # -- switches ---------------------------------------------------------------------------------

    def enable_free_init(
        self,
        num_iters: int = 3,
        use_fast_sampling: bool = False,
        method: str = "butterworth",
        order: int = 4,
        spatial_stop_frequency: float = 0.25,
        temporal_stop_frequency: float = 0.25,
    ) -> None:
        """Sample ``num_iters`` times, each pass starting from the last one's low frequencies (see ``free_init``);
        diffusers' ``FreeInitMixin.enable_free_init`` arguments."""
        self.free_init = FreeInit(
            iterations=num_iters, filter=method, order=order, spatial_stop_frequency=spatial_stop_frequency,
            temporal_stop_frequency=temporal_stop_frequency, fast_sampling=use_fast_sampling,
        )

    @property
    def free_init_enabled(self) -> bool:
        return self.free_init is not None

    def disable_free_init(self) -> None:
        self.free_init = None

    def enable_free_noise(
        self,
        context_length: int | None = 16,
        context_stride: int = 4,
        weighting_scheme: str = "pyramid",
        noise_type: str = "shuffle_context",
        prompt_interpolation_callback: Interpolator | None = None,
    ) -> None:
        """FreeNoise for long videos, as diffusers' ``AnimateDiffPipeline.enable_free_noise``: rescheduled noise and
        motion modules that attend over windows of ``context_length`` frames (default: the adapter's table),
        ``context_stride`` apart (see ``free_noise``). ``prompt_interpolation_callback(start, end, start_embeds,
        end_embeds)`` replaces the linear interpolation of prompt schedules."""
        table = self.position_table
        length = context_length or table or 16
        if table is not None and length > table:
            raise MotionkitError(
                f"FreeNoise context_length {length} exceeds the adapter's position table of {table}: use at most {table}"
            )
        self.free_noise = FreeNoise(length, context_stride, weighting_scheme, noise_type)
        self._free_noise_interpolation = prompt_interpolation_callback
        set_motion_windows(self.adapter, self.free_noise.motion_windows())

    def disable_free_noise(self) -> None:
        self.free_noise = None
        set_motion_windows(self.adapter, None)

    @property
    def free_noise_enabled(self) -> bool:
        return self.free_noise is not None

    # -- pieces of a call -------------------------------------------------------------------------

    @property
    def position_table(self) -> int | None:
        """The most frames the adapter attends over at once (``None``: convolution-only, no limit)."""
        cfg = self.adapter.config
        return int(cfg.max_seq_length) if cfg.use_temporal_attention else None

    def _check_size(self, height: int, width: int) -> None:
        multiple = self.vae_scale_factor
        if height % multiple or width % multiple or height <= 0 or width <= 0:
            raise MotionkitError(
                f"height and width must be positive multiples of {multiple}, got {height}x{width}: "
                f"use e.g. {max(multiple, height // multiple * multiple)}x{max(multiple, width // multiple * multiple)}"
            )

    def _set_timesteps(self, num_inference_steps: int, strength: float, device: torch.device) -> torch.Tensor:
        """The schedule, shortened img2img-style to its last ``strength`` fraction."""
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        if strength >= 1.0:
            return self.scheduler.timesteps
        kept = min(int(num_inference_steps * strength), num_inference_steps)
        if kept < 1:
            raise MotionkitError(
                f"strength {strength} keeps no step of {num_inference_steps}: raise strength or num_inference_steps"
            )
        start = (num_inference_steps - kept) * self.scheduler.order
        if hasattr(self.scheduler, "set_begin_index"):
            self.scheduler.set_begin_index(start)
        return self.scheduler.timesteps[start:]

    @contextlib.contextmanager
    def _vae_precision(self) -> Iterator[None]:
        """Run the VAE in float32 while it is float16 and the family's VAE overflows there (SDXL's, flagged
        ``force_upcast`` in its config), as diffusers' SDXL pipelines do; a no-op otherwise."""
        upcast = self.upcast_fp16_vae and self.vae.dtype == torch.float16 and self.vae.config.get("force_upcast", False)
        if not upcast:
            yield
            return
        self.vae.to(dtype=torch.float32)
        try:
            yield
        finally:
            self.vae.to(dtype=torch.float16)

    def _encode_image(self, image: ImageInput, batch: int, height: int, width: int, device, dtype) -> torch.Tensor:
        pixels = prepare_image(image, height, width, self.image_processor).to(device=device)
        return self._encode_pixels(pixels).to(dtype).expand(batch, -1, -1, -1)

    def _image_model_noise(self, text: _TextConditioning, do_cfg: bool) -> NoisePredictor:
        """The image model's noise prediction for one frame per video (motion modules off, no image branch),
        on the positive prompt of frame 0: what ``invert_image`` walks the image back to noise with."""
        embeds, added = text.embeds, dict(text.added_cond_kwargs)
        if text.frames is not None:  # per-frame embeddings (prompt travel): frame 0's
            embeds = embeds.reshape(-1, text.frames, *embeds.shape[1:])[:, 0]
            added = {k: v.reshape(-1, text.frames, *v.shape[1:])[:, 0] for k, v in added.items()}
        if do_cfg:  # the negative half comes first
            embeds, added = embeds.chunk(2)[1], {k: v.chunk(2)[1] for k, v in added.items()}
        v_prediction = self.scheduler.config.get("prediction_type") == "v_prediction"
        alphas = self.scheduler.alphas_cumprod

        def predict(x: torch.Tensor, t: int) -> torch.Tensor:
            timestep = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
            with image_model_alone(self.motion_unet) as unet:
                out = unet(x.unsqueeze(2), timestep, encoder_hidden_states=embeds, added_cond_kwargs=added or None).sample[:, :, 0]
            if not v_prediction:
                return out
            alpha = alphas[t].to(x)  # v = sqrt(a) eps - sqrt(1 - a) x0, so eps = sqrt(a) v + sqrt(1 - a) x_t
            return alpha.sqrt() * out + (1.0 - alpha).sqrt() * x

        return predict

    @torch.no_grad()
    def image_denoising_error(
        self,
        image: ImageInput,
        height: int | None = None,
        width: int | None = None,
        timestep: int = DEFAULT_TIMESTEP,
        draws: int = DEFAULT_DRAWS,
        seed: int = 0,
    ) -> float:
        """How unfamiliar ``image`` is to the image model (``motionkit.pipeline.image_familiarity``): the mean
        squared error of the image model's noise prediction (motion modules off, empty prompt) for the image's
        latent at the pipeline's size (default: the native one) noised to ``timestep``, over ``draws`` seeded draws."""
        native = self.unet.config.sample_size * self.vae_scale_factor
        height, width = height or native, width or native
        self._check_size(height, width)
        device = self._execution_device
        request = _PromptRequest("", None, None, None, 1, False, None, None, height, width, device)
        text = self._encode_text(request)
        latent = self._encode_image(image, 1, height, width, device, text.embeds.dtype)
        return denoising_error(self._image_model_noise(text, False), latent, self.scheduler.alphas_cumprod, timestep, draws, seed)

    def _encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` pixels in [-1, 1] to latents x scaling_factor, in the VAE's dtype."""
        with self._vae_precision():
            # The distribution's mode: a deterministic latent, so frame 0 reproduces the image exactly.
            latent = self.vae.encode(pixels.to(dtype=self.vae.dtype)).latent_dist.mode()
        return latent * self.vae.config.scaling_factor

    def _image_conditioning(
        self,
        image: ImageInput,
        batch: int,
        num_frames: int,
        height: int,
        width: int,
        noise_aug_strength: float,
        motion_scale: int | None,
        anchor_first_frame: bool | None,
        image_guidance: str,
        do_cfg: bool,
        generator,
        device,
        dtype,
    ) -> _ImageConditioning:
        latent = self._encode_image(image, batch, height, width, device, dtype)
        augmented = latent
        if noise_aug_strength > 0:
            noise = randn_tensor(latent.shape, generator=generator, device=device, dtype=dtype)
            augmented = latent + noise_aug_strength * noise
        trained = self.adapter.config.image_cond_channels == 5
        mask = getattr(self.adapter.config, "image_cond_mask", "pia")
        unet_cond = None
        if trained:
            if mask == "one_hot" and motion_scale is not None:
                logger.warning("motion_scale picks PIA mask presets; this adapter was trained with a one-hot mask")
            unet_cond = pia_image_cond(augmented, num_frames, motion_scale or 0, mask=mask)
            if do_cfg:
                # Negative half first, as the text embeddings are batched.
                negative = unet_cond if image_guidance == "pia" else torch.zeros_like(unet_cond)
                unet_cond = torch.cat([negative, unet_cond])
        elif motion_scale is not None:
            logger.warning("motion_scale only acts on adapters with an image-conditioning branch; ignored")
        clean = bool(getattr(self.adapter.config, "clean_conditioning_frame", False))
        if clean:
            if anchor_first_frame is False:
                logger.warning("this adapter reads frame 0 as the clean image: anchor_first_frame=False is ignored")
            return _ImageConditioning(
                latent=latent, unet_cond=unet_cond, anchor=True, clean=True, model_latent=augmented,
                guided=image_guidance == "pia",
            )
        anchor = (not trained) if anchor_first_frame is None else anchor_first_frame
        return _ImageConditioning(latent=latent, unet_cond=unet_cond, anchor=anchor)

    def _guidance(
        self, guidance_scale: float, min_guidance_scale: float | None, max_guidance_scale: float | None, num_frames: int, device
    ) -> float | torch.Tensor:
        """A scalar, or with a min/max a per-frame ramp (SVD's frame-ramped guidance), shape ``[F]``."""
        if min_guidance_scale is None and max_guidance_scale is None:
            return float(guidance_scale)
        low = 1.0 if min_guidance_scale is None else min_guidance_scale
        high = guidance_scale if max_guidance_scale is None else max_guidance_scale
        return torch.linspace(low, high, num_frames, device=device)

    def decode_latents(self, latents: torch.Tensor, decode_chunk_size: int = 16) -> torch.Tensor:
        """``[B, C, F, h, w]`` latents to ``[B, 3, F, H, W]`` float32 pixels in [-1, 1], ``decode_chunk_size`` frames at a time."""
        b, c, f, h, w = latents.shape
        frames = (latents / self.vae.config.scaling_factor).transpose(1, 2).reshape(b * f, c, h, w)
        with self._vae_precision():
            decoded = [
                self.vae.decode(chunk.to(self.vae.dtype)).sample.float()
                for chunk in frames.split(max(1, decode_chunk_size))
            ]
        video = torch.cat(decoded)
        return video.reshape(b, f, *video.shape[1:]).transpose(1, 2)

    def _extra_step_kwargs(self, generator, eta: float) -> dict[str, Any]:
        accepted = set(inspect.signature(self.scheduler.step).parameters)
        kwargs: dict[str, Any] = {}
        if "eta" in accepted:
            kwargs["eta"] = eta
        if "generator" in accepted:
            kwargs["generator"] = generator
        return kwargs

    def _check_inputs(
        self, prompt, prompt_embeds, negative_prompt, negative_prompt_embeds, output_type, num_frames, tensor_inputs
    ) -> None:
        if (prompt is None) == (prompt_embeds is None):
            raise MotionkitError("give exactly one of prompt and prompt_embeds")
        if prompt is not None and not isinstance(prompt, (str, list, dict, PromptSchedule)):
            raise MotionkitError(
                f"prompt must be a string, a list of strings or a schedule {{frame: prompt}}, got {type(prompt).__name__}"
            )
        if negative_prompt is not None and negative_prompt_embeds is not None:
            raise MotionkitError("give at most one of negative_prompt and negative_prompt_embeds")
        if prompt is not None and not self._can_encode_text():
            raise MotionkitError("this pipeline has no text encoder: pass prompt_embeds instead of prompt")
        if output_type not in OUTPUT_TYPES:
            raise MotionkitError(f"output_type {output_type!r} is not one of {', '.join(OUTPUT_TYPES)}")
        if num_frames < 1:
            raise MotionkitError(f"num_frames must be at least 1, got {num_frames}")
        unknown = [k for k in tensor_inputs if k not in self._callback_tensor_inputs]
        if unknown:
            raise MotionkitError(
                f"callback tensor inputs {unknown} are not available: choose from {self._callback_tensor_inputs}"
            )

    def _can_encode_text(self) -> bool:
        return self.tokenizer is not None and self.text_encoder is not None

    def _encode_text(self, request: _PromptRequest, **family_kwargs: Any) -> _TextConditioning:
        """The prompt's conditioning; ``family_kwargs`` are the arguments only some families take (SDXL's)."""
        if family_kwargs:
            raise TypeError(f"{type(self).__name__}.__call__() got unexpected keyword arguments: {', '.join(sorted(family_kwargs))}")
        r = request
        positive, negative = self.encode_prompt(
            r.prompt, r.device, r.num_videos_per_prompt, r.do_cfg, r.negative_prompt,
            prompt_embeds=r.prompt_embeds, negative_prompt_embeds=r.negative_prompt_embeds,
            lora_scale=r.lora_scale, clip_skip=r.clip_skip,
        )
        # Negative first, as diffusers batches classifier-free guidance.
        return _TextConditioning(torch.cat([negative, positive]) if r.do_cfg else positive, positive.shape[0])

    def _encode_schedule(
        self,
        request: _PromptRequest,
        schedule: PromptSchedule | None,
        negative: PromptSchedule | None,
        num_frames: int,
        interpolation: str | Interpolator,
        family_kwargs: dict[str, Any],
    ) -> _TextConditioning:
        """Per-frame conditioning of a prompt schedule (``motionkit.pipeline.prompt_schedule``)."""
        if request.prompt_embeds is not None or request.negative_prompt_embeds is not None:
            raise MotionkitError("prompt schedules are encoded from text: pass prompt / negative_prompt, not *_embeds")
        if schedule is None:
            if not isinstance(request.prompt, str):
                raise MotionkitError("a negative prompt schedule takes one prompt (text or a schedule), not a list of prompts")
            schedule = PromptSchedule(((PromptKey(0, request.prompt)),))
        if negative is None and request.negative_prompt is not None and not isinstance(request.negative_prompt, str):
            raise MotionkitError("a prompt schedule takes one negative prompt (text or a schedule), not a list")
        if self.free_noise is not None and interpolation == "linear" and self._free_noise_interpolation is not None:
            interpolation = self._free_noise_interpolation
        embeds, added = encode_schedule(
            lambda r: self._encode_text(r, **family_kwargs), request, schedule, negative, num_frames, interpolation
        )
        return _TextConditioning(embeds, request.num_videos_per_prompt, added, frames=num_frames)

    def _context(
        self, num_frames: int, context_length: int | None, context_overlap: int, context_stride: int, context_loop: bool
    ) -> ContextWindows | None:
        table = self.position_table
        if self.free_noise is not None:
            # FreeNoise windows the motion modules instead; a loop wraps those windows around.
            set_motion_windows(self.adapter, self.free_noise.motion_windows(loop=context_loop and context_length is None))
            if context_length is None:
                return None
        if context_length is None and table is not None and num_frames > table:
            context_length = table
            logger.warning(
                "%d frames exceed the adapter's position table of %d: sampling with context windows of %d frames "
                "(overlap %d); set context_length to choose",
                num_frames, table, table, min(context_overlap, table - 1),
            )
            context_overlap = min(context_overlap, table - 1)
        context = None
        if context_length is not None:
            context = ContextWindows(context_length, context_overlap, context_stride, context_loop)
        if table is not None:
            check_frames_fit(num_frames, table, context)
        return context

    # -- sampling ---------------------------------------------------------------------------------

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        negative_prompt: str | list[str] | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        image: ImageInput | None = None,
        num_frames: int | None = None,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = 25,
        guidance_scale: float = 7.5,
        num_videos_per_prompt: int = 1,
        eta: float = 0.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        strength: float = 1.0,
        noise_aug_strength: float = 0.0,
        min_guidance_scale: float | None = None,
        max_guidance_scale: float | None = None,
        motion_scale: int | None = None,
        anchor_first_frame: bool | None = None,
        image_guidance: str = "pia",
        context_length: int | None = None,
        context_overlap: int = 4,
        context_stride: int = 1,
        context_loop: bool = False,
        prompt_interpolation: str | Interpolator = "linear",
        motion_strength: float = 1.0,
        noise_correlation: float = 0.0,
        frame_noise_means: str | None = None,
        image_inversion: float = 0.0,
        conditioning_frames: Any = None,
        video: VideoInput | None = None,
        ip_adapter_image: Any = None,
        ip_adapter_image_embeds: list[torch.Tensor] | None = None,
        ip_adapter_scale: Any = None,
        controlnet_conditioning_scale: float | list[float] = 1.0,
        control_guidance_start: float | list[float] = 0.0,
        control_guidance_end: float | list[float] = 1.0,
        controlnet_frame_indices: list[int] | None = None,
        guess_mode: bool = False,
        decode_chunk_size: int = 16,
        callback_on_step_end: Callable[["MotionPipeline", int, torch.Tensor, dict], dict] | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ["latents"],
        cross_attention_kwargs: dict[str, Any] | None = None,
        clip_skip: int | None = None,
        cache_interval: int | None = None,
        cache_branch: int = 0,
        cache_schedule: str = "uniform",
        return_dict: bool = True,
        **family_kwargs: Any,
    ) -> MotionPipelineOutput | tuple:
        """Sample ``num_frames`` frames from ``prompt`` (or ``prompt_embeds``), optionally from ``image``.

        Image-to-video: ``image`` (path, PIL, array or tensor; resized and centre-cropped), ``strength``
        (fraction of the schedule run, starting from the noised image latent), ``noise_aug_strength``
        (noise on the conditioning latent the model sees, never on the anchored frame 0),
        ``motion_scale`` (PIA preset 0-8, adapters with a conditioning branch), ``anchor_first_frame``
        (default: on for training-free, off for trained conditioning), ``image_guidance`` (``"pia"``: the
        image conditions both guidance branches; ``"svd"``: a zero image in the unconditional one, with
        guidance ramped over frames).
        Guidance: ``guidance_scale``, or a per-frame ramp from ``min_guidance_scale`` (default 1.0) to
        ``max_guidance_scale`` (default ``guidance_scale``).
        Long videos: ``context_length`` frames per window, ``context_overlap``, ``context_stride``
        (dilation levels), ``context_loop``; defaults to the adapter's position table when needed.
        Control (the ``controlnet`` component, as diffusers' AnimateDiff ControlNet / SparseCtrl pipelines):
        ``conditioning_frames`` (ControlNet: one control frame per output frame, a list of such videos for
        several nets; SparseCtrl: the keyframe images), ``controlnet_frame_indices`` (SparseCtrl: the frame
        of each keyframe, default ``[0]``, negative counts from the end), ``controlnet_conditioning_scale``,
        ``control_guidance_start`` / ``control_guidance_end`` (fractions of the schedule; one value or one
        per net) and ``guess_mode``. See ``motionkit.pipeline.control``.
        Video-to-video (diffusers' ``AnimateDiffVideoToVideoPipeline``): ``video`` (see ``video_input``: a
        ``read_source_video`` clip, a path, frames, an array or a tensor) is encoded ``decode_chunk_size``
        frames at a time and noised to the first step of the schedule ``strength`` keeps; ``num_frames``
        defaults to the video's length (fewer: its first frames).
        IP-Adapter (after ``load_ip_adapter``, as diffusers): ``ip_adapter_image`` / ``ip_adapter_image_embeds``;
        ``ip_adapter_image={frame: image}`` and ``ip_adapter_scale={frame: scale}`` (or a number) schedule them
        over frames, a list holds one per adapter (see ``motionkit.pipeline.ip_adapter``).
        Prompt travel: ``prompt`` (and ``negative_prompt``) as a schedule ``{frame: text}`` (keys: frames, negative
        from the end, fractions; see ``motionkit.pipeline.prompt_schedule``), interpolated per frame by
        ``prompt_interpolation`` (``"linear"``, ``"slerp"`` or a callable); works with every other option.
        ``motion_strength``: scale on the motion modules' residuals (1.0 as trained, 0.0 the image model alone,
        in between less motion, above 1 more).
        ``noise_correlation``: correlation of the starting noise between frames (``motionkit.noise_prior``,
        PYoCo's mixed noise; 0.0 independent, as diffusers); the drawn noise only, never given ``latents``.
        Adapters trained with a ``noise_correlation`` sample best with the same.
        ``frame_noise_means``: what each frame's per-channel spatial noise mean becomes (``motionkit.noise_prior.
        with_frame_means``): ``"drawn"`` as drawn, ``"shared"`` frame 0's for every frame (frames keep one
        brightness), ``"zero"`` none (frames keep the image's mean colour); default ``"zero"`` from an image,
        ``"drawn"`` otherwise, as diffusers; the drawn noise only, never given ``latents``.
        ``image_inversion``: image-to-video only, the share (0-1) of each frame's starting-noise variance taken
        from the DDIM inversion of the image by the image model (``motionkit.pipeline.inversion``): the image's
        layout in every frame's start (0, default: independent noise, as diffusers; 1: every frame the same);
        the drawn noise only, never given ``latents``.
        Step caching (DeepCache, ``motionkit.pipeline.step_cache``): ``cache_interval`` N runs the whole UNet every
        Nth step and only its shallow blocks in between, on the deep features of the last full step (``None`` or 1:
        off, exact); ``cache_branch`` the skip level kept (0, default: the shallowest, fastest); ``cache_schedule``
        ``"uniform"`` or ``"quadratic"`` (full steps crowded at the start).
        ``family_kwargs``: prompt arguments of other families (``MotionPipelineXL``'s ``prompt_2``, sizes, ...).
        """
        if self.motion_unet is None:
            raise MotionkitError("the adapter was ejected from this pipeline: build a new MotionPipeline to sample")
        source = None
        if video is not None:
            if image is not None:
                raise MotionkitError("give a conditioning image or a source video, not both")
            source = video_frames(video)
            num_frames = video_length(len(source), num_frames)
        num_frames = 16 if num_frames is None else num_frames
        self._check_inputs(
            prompt, prompt_embeds, negative_prompt, negative_prompt_embeds, output_type, num_frames,
            callback_on_step_end_tensor_inputs,
        )
        default_size = self.unet.config.sample_size * self.vae_scale_factor
        height, width = height or default_size, width or default_size
        self._check_size(height, width)
        if image is None and (noise_aug_strength or motion_scale is not None or (strength != 1.0 and video is None)):
            raise MotionkitError(
                "strength, noise_aug_strength and motion_scale need a conditioning image (strength: or a video): pass image"
            )
        image_inversion = check_image_inversion(image_inversion)
        if image_inversion and image is None:
            raise MotionkitError("image_inversion inverts the conditioning image: pass image, or leave it at 0")
        if image_inversion and (ip_adapter_image is not None or ip_adapter_image_embeds is not None):
            raise MotionkitError("image_inversion does not run with an IP-Adapter image yet: leave one of them out")
        check_strength(strength)
        motion_strength = check_motion_strength(motion_strength)
        noise_correlation = check_noise_correlation(noise_correlation)
        frame_noise_means = default_frame_noise_means(frame_noise_means, conditioned=image is not None)
        step_cache = check_step_cache(cache_interval, cache_branch, cache_schedule, self.unet)
        check_image_guidance(image_guidance)
        if image is not None and image_guidance == "svd" and min_guidance_scale is None and max_guidance_scale is None:
            min_guidance_scale = 1.0  # SVD's ramp: 1.0 at frame 0, guidance_scale at the last frame
        context = self._context(num_frames, context_length, context_overlap, context_stride, context_loop)
        device = self._execution_device

        guidance = self._guidance(guidance_scale, min_guidance_scale, max_guidance_scale, num_frames, device)
        do_cfg = float(guidance.max() if isinstance(guidance, torch.Tensor) else guidance) > 1.0
        lora_scale = (cross_attention_kwargs or {}).get("scale")
        request = _PromptRequest(
            prompt, negative_prompt, prompt_embeds, negative_prompt_embeds, num_videos_per_prompt, do_cfg,
            lora_scale, clip_skip, height, width, device,
        )
        schedule, negative_schedule = as_schedule(prompt), as_schedule(negative_prompt, "negative prompt")
        if schedule is not None or negative_schedule is not None:
            text = self._encode_schedule(request, schedule, negative_schedule, num_frames, prompt_interpolation, family_kwargs)
        else:
            text = self._encode_text(request, **family_kwargs)
        batch, dtype = text.batch, text.embeds.dtype

        control = prepare_control(
            self.controlnet, conditioning_frames, num_frames=num_frames, height=height, width=width,
            scale=controlnet_conditioning_scale, start=control_guidance_start, end=control_guidance_end,
            guess_mode=guess_mode, frame_indices=controlnet_frame_indices,
            window=context.length if context is not None else num_frames, encode_latents=self._encode_pixels,
            device=device,
        )
        ip = prepare_ip_adapter(
            self, ip_adapter_image, ip_adapter_image_embeds, ip_adapter_scale, num_frames, batch, do_cfg, device,
            (height // self.vae_scale_factor, width // self.vae_scale_factor),
        )
        cond = None
        if image is not None:
            cond = self._image_conditioning(
                image, batch, num_frames, height, width, noise_aug_strength, motion_scale, anchor_first_frame,
                image_guidance, do_cfg, generator, device, dtype,
            )

        timesteps = self._set_timesteps(num_inference_steps, strength, device)
        shape = (batch, self.unet.config.in_channels, num_frames, height // self.vae_scale_factor, width // self.vae_scale_factor)
        if self.free_noise is not None:
            noise = self.free_noise.noise(shape, generator, device, dtype, latents)
        else:
            noise = latents.to(device, dtype) if latents is not None else randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        # FreeInit's fresh high frequencies follow the same prior as the first pass's noise: independent ones
        # would undo what correlated, mean-shared noise holds together.
        fresh_prior = None if latents is not None else (lambda draw: noise_prior(draw, noise_correlation, frame_noise_means))
        if latents is None:
            noise = noise_prior(noise, noise_correlation, frame_noise_means)
            if image_inversion and cond is not None:
                inverted = invert_image(self._image_model_noise(text, do_cfg), cond.latent, self.scheduler.alphas_cumprod, timesteps)
                noise = mix_inverted(noise, inverted, image_inversion)
        if source is not None:
            # Video-to-video: every frame starts from its own source latent noised to the first timestep.
            start = encode_video(source[:num_frames], height, width, self._encode_pixels, decode_chunk_size, device)
            latents = self.scheduler.add_noise(start.to(dtype).expand_as(noise), noise, timesteps[:1].repeat(batch))
        elif cond is None:
            latents = noise * self.scheduler.init_noise_sigma
        else:
            # Every frame starts from the image latent noised to the first timestep (img2img).
            seed = cond.latent.unsqueeze(2).expand_as(noise)
            latents = self.scheduler.add_noise(seed, noise, timesteps[:1].repeat(batch))

        extra_step_kwargs = self._extra_step_kwargs(generator, eta)
        free_init = self.free_init
        passes = free_init.iterations if free_init is not None else 1
        # Every call sets the strength it samples with, so one that failed half-way leaves no stale value behind.
        self.motion_unet.motion_strength = motion_strength
        for iteration in range(passes):
            if iteration > 0:
                steps = free_init.steps(iteration, num_inference_steps)
                timesteps = self._set_timesteps(steps, strength, device)
                latents = free_init.reinitialise(latents, noise, self.scheduler, timesteps[0], generator, fresh_prior)
            elif free_init is not None and free_init.fast_sampling:
                timesteps = self._set_timesteps(free_init.steps(0, num_inference_steps), strength, device)
            with ip.processor_scales(self.unet) if ip is not None else contextlib.nullcontext():
                latents = self._denoise(
                    latents, timesteps, text, guidance, do_cfg, cond, control, noise, context, extra_step_kwargs,
                    cross_attention_kwargs, callback_on_step_end, callback_on_step_end_tensor_inputs, ip, step_cache,
                )
        self.motion_unet.motion_strength = 1.0

        if output_type == "latent":
            video = latents
        else:
            pixels = self.decode_latents(latents, decode_chunk_size)
            video = self.video_processor.postprocess_video(video=pixels, output_type=output_type)
        self.maybe_free_model_hooks()
        return MotionPipelineOutput(frames=video) if return_dict else (video,)

    def _denoise(
        self,
        latents: torch.Tensor,
        timesteps: torch.Tensor,
        text: _TextConditioning,
        guidance: float | torch.Tensor,
        do_cfg: bool,
        cond: _ImageConditioning | None,
        control: Control | None,
        noise: torch.Tensor,
        context: ContextWindows | None,
        extra_step_kwargs: dict[str, Any],
        cross_attention_kwargs: dict[str, Any] | None,
        callback: Callable | None,
        callback_inputs: list[str],
        ip: IPConditioning | None = None,
        step_cache: StepCacheSettings | None = None,
    ) -> torch.Tensor:
        """One full pass over ``timesteps``; returns the clean latents (a callback may replace ``text``'s tensors)."""
        num_frames = latents.shape[2]
        # Kept deep features live for this pass only.
        cache = StepCache(step_cache, self.unet, len(timesteps)) if step_cache is not None else None
        anchor = cond is not None and cond.anchor
        self._num_timesteps = len(timesteps)
        with self.progress_bar(total=len(timesteps)) as progress:
            for i, t in enumerate(timesteps):
                if anchor:
                    first = cond.latent.unsqueeze(2) if cond.clean else self._noised(cond.latent, noise, t)
                    latents = self._with_first_frame(latents, first)
                model_input = torch.cat([latents] * 2) if do_cfg else latents
                model_input = self.scheduler.scale_model_input(model_input, t)
                clean_frame = None
                if anchor and cond.clean:
                    # The clean frame is unscaled: at timestep 0 every scheduler's input scale is 1.
                    model_input, clean_frame = self._clean_first_frame(model_input, cond, noise, t, do_cfg)

                def predict(frames: list[int]) -> torch.Tensor:
                    every = len(frames) == num_frames
                    index = slice(None) if every else torch.tensor(frames, device=latents.device)
                    unet_cond = cond.unet_cond if cond is not None else None
                    window_input = model_input[:, :, index]
                    embeds, added_cond_kwargs = text.for_frames(index)
                    residuals = {} if control is None else control.residuals(
                        i, len(timesteps), window_input, t, frames, embeds, added_cond_kwargs, do_cfg
                    )
                    unet_added, unet_cross = (added_cond_kwargs, cross_attention_kwargs) if ip is None else (
                        ip.unet_kwargs(frames, added_cond_kwargs, cross_attention_kwargs)
                    )
                    unet = self.motion_unet if cache is None else cache.runner(self.motion_unet, i, frames)
                    out = unet(
                        window_input,
                        t if clean_frame is None else self._frame_timesteps(t, clean_frame, frames),
                        encoder_hidden_states=embeds,
                        added_cond_kwargs=unet_added,
                        cross_attention_kwargs=unet_cross,
                        image_cond=unet_cond[:, :, index] if unet_cond is not None else None,
                        **residuals,
                    ).sample
                    if not do_cfg:
                        return out
                    uncond, conditioned = out.chunk(2)
                    scale = guidance if not isinstance(guidance, torch.Tensor) else guidance[index].view(1, 1, -1, 1, 1)
                    return uncond + scale * (conditioned - uncond)

                if context is None:
                    noise_pred = predict(list(range(num_frames)))
                else:
                    noise_pred = fuse_windows(predict, num_frames, context)
                latents = self.scheduler.step(noise_pred, t, latents, **extra_step_kwargs).prev_sample
                # One reduction per step: NaN/inf would otherwise decode to an all-black or garbage video.
                if not bool(torch.isfinite(latents).all()):
                    raise MotionkitError(
                        f"the latents turned NaN or infinite at step {i + 1} of {len(timesteps)}, so the video would be "
                        "black or garbage: sample in float32, or lower the guidance or the LoRA scales"
                    )

                if callback is not None:
                    values = {"latents": latents, **text.callback_tensors()}
                    outputs = callback(self, i, t, {k: values[k] for k in callback_inputs}) or {}
                    latents = outputs.pop("latents", latents)
                    text.update(outputs)
                progress.update()
        if anchor:
            latents = self._with_first_frame(latents, cond.latent.unsqueeze(2))
        return latents

    def _clean_first_frame(
        self, model_input: torch.Tensor, cond: _ImageConditioning, noise: torch.Tensor, t: torch.Tensor, do_cfg: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``model_input`` with frame 0 the clean conditioning latent, and which of its videos got it clean
        (bool ``[batch]``: with SVD's convention the unconditional half keeps frame 0 re-noised)."""
        first = cond.model_latent.unsqueeze(2)
        clean = torch.ones(model_input.shape[0], dtype=torch.bool, device=model_input.device)
        if do_cfg:
            unconditional = first if cond.guided else self.scheduler.scale_model_input(self._noised(cond.latent, noise, t), t)
            first = torch.cat([unconditional, first])
            clean[: clean.shape[0] // 2] = cond.guided
        return self._with_first_frame(model_input, first), clean

    @staticmethod
    def _frame_timesteps(t: torch.Tensor, clean: torch.Tensor, frames: list[int]) -> torch.Tensor:
        """Per-frame timesteps ``[batch * len(frames)]`` (frame-major per video, as ``MotionUNet`` flattens):
        ``t`` everywhere but 0 on frame 0 of the videos that see it clean."""
        steps = t.reshape(1, 1).to(clean.device).expand(clean.shape[0], len(frames)).clone()
        if 0 in frames:
            steps[clean, frames.index(0)] = 0
        return steps.reshape(-1)

    def _noised(self, latent: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The clean conditioning latent ``[B, C, h, w]`` at timestep ``t``'s noise level, as ``[B, C, 1, h, w]``."""
        return self.scheduler.add_noise(latent.unsqueeze(2), noise[:, :, :1], t.reshape(1).repeat(latent.shape[0]))

    @staticmethod
    def _with_first_frame(latents: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
        return torch.cat([first.to(latents.dtype), latents[:, :, 1:]], dim=2)


register_pipeline(MotionPipeline)
