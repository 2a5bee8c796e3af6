"""``MotionPipelineXL``: ``MotionPipeline`` for SDXL checkpoints (AnimateDiff SDXL motion adapters).

Only prompt encoding differs from SD 1.x/2.x, so this subclass changes only that: two text encoders
(``StableDiffusionXLPipeline.encode_prompt``, called as is, ``force_zeros_for_empty_prompt`` included),
the pooled embedding of the second encoder, and the size/crop micro-conditioning ids, all handed to the
UNet as ``added_cond_kwargs`` batched like the latents. Denoising, image-to-video, context windows and
FreeInit and control (SDXL ControlNets get the pooled embeddings and ids too) are ``MotionPipeline``'s. Text-to-video follows diffusers' ``AnimateDiffSDXLPipeline`` step for
step, so equal weights give equal videos.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import AutoencoderKL, StableDiffusionXLPipeline, UNet2DConditionModel
from diffusers.loaders import StableDiffusionXLLoraLoaderMixin
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from transformers import (
    CLIPImageProcessor,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    CLIPVisionModelWithProjection,
)

from motionkit.adapter import MotionAdapter
from motionkit.errors import MotionkitError
from motionkit.pipeline.control import ControlModel
from motionkit.pipeline.motion_pipeline import MotionPipeline, MotionPipelineOutput, _PromptRequest, _TextConditioning

Size = tuple[int, int]


# The SDXL LoRA loader comes first so that load_lora_weights also fills text_encoder_2.
class MotionPipelineXL(StableDiffusionXLLoraLoaderMixin, MotionPipeline):
    """Text- and image-to-video with a ``MotionAdapter`` injected into a frozen SDXL UNet."""

    family = "sdxl"
    # SDXL's VAE overflows in float16 unless it is the fp16-fixed one (whose config clears force_upcast).
    upcast_fp16_vae = True
    model_cpu_offload_seq = "text_encoder->text_encoder_2->image_encoder->unet->vae"
    # An SDXL refiner-style base has only the second encoder.
    _optional_components = [
        "tokenizer", "text_encoder", "tokenizer_2", "text_encoder_2", "controlnet", "image_encoder", "feature_extractor"
    ]
    # add_text_embeds / add_time_ids: the batched pooled embeddings and micro-conditioning ids.
    _callback_tensor_inputs = ["latents", "prompt_embeds", "add_text_embeds", "add_time_ids"]

    encode_prompt = StableDiffusionXLPipeline.encode_prompt
    _get_add_time_ids = StableDiffusionXLPipeline._get_add_time_ids

    def __init__(
        self,
        vae: AutoencoderKL,
        text_encoder: CLIPTextModel | None,
        text_encoder_2: CLIPTextModelWithProjection | None,
        tokenizer: CLIPTokenizer | None,
        tokenizer_2: CLIPTokenizer | None,
        unet: UNet2DConditionModel,
        scheduler: SchedulerMixin,
        adapter: MotionAdapter,
        controlnet: ControlModel | list | None = None,
        image_encoder: CLIPVisionModelWithProjection | None = None,
        feature_extractor: CLIPImageProcessor | None = None,
        force_zeros_for_empty_prompt: bool = True,
    ):
        # MotionPipeline.__init__ registers SD's components only; the shared setup takes any set.
        super(MotionPipeline, self).__init__()
        self._setup(
            vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tokenizer,
            tokenizer_2=tokenizer_2, unet=unet, scheduler=scheduler, adapter=adapter, controlnet=controlnet,
            image_encoder=image_encoder, feature_extractor=feature_extractor,
        )
        # SDXL was trained with all-zero negative conditioning for an empty negative prompt.
        self.register_to_config(force_zeros_for_empty_prompt=force_zeros_for_empty_prompt)

    def _can_encode_text(self) -> bool:
        return self.tokenizer_2 is not None and self.text_encoder_2 is not None

    def _encode_text(
        self,
        request: _PromptRequest,
        *,
        prompt_2: str | list[str] | None,
        negative_prompt_2: str | list[str] | None,
        pooled_prompt_embeds: torch.Tensor | None,
        negative_pooled_prompt_embeds: torch.Tensor | None,
        original_size: Size | None,
        crops_coords_top_left: Size,
        target_size: Size | None,
        negative_original_size: Size | None,
        negative_crops_coords_top_left: Size | None,
        negative_target_size: Size | None,
    ) -> _TextConditioning:
        """SDXL's conditioning; the SDXL arguments always come from ``__call__``, which holds their defaults."""
        r = request
        if r.prompt_embeds is not None and pooled_prompt_embeds is None:
            raise MotionkitError("prompt_embeds need pooled_prompt_embeds on SDXL (text_encoder_2's pooled output)")
        if r.negative_prompt_embeds is not None and negative_pooled_prompt_embeds is None:
            raise MotionkitError("negative_prompt_embeds need negative_pooled_prompt_embeds on SDXL")
        positive, negative, pooled, negative_pooled = self.encode_prompt(
            prompt=r.prompt,
            prompt_2=prompt_2,
            device=r.device,
            num_images_per_prompt=r.num_videos_per_prompt,
            do_classifier_free_guidance=r.do_cfg,
            negative_prompt=r.negative_prompt,
            negative_prompt_2=negative_prompt_2,
            prompt_embeds=r.prompt_embeds,
            negative_prompt_embeds=r.negative_prompt_embeds,
            pooled_prompt_embeds=pooled_prompt_embeds,
            negative_pooled_prompt_embeds=negative_pooled_prompt_embeds,
            lora_scale=r.lora_scale,
            clip_skip=r.clip_skip,
        )
        batch = positive.shape[0]
        original = tuple(original_size or (r.height, r.width))
        crops = tuple(crops_coords_top_left)
        target = tuple(target_size or (r.height, r.width))
        time_ids = self._time_ids(original, crops, target, positive.dtype, pooled).repeat(batch, 1)
        text_embeds = pooled
        embeds = positive
        if r.do_cfg:
            # Micro-conditioning the negative branch leaves unset is the positive one, as in diffusers.
            negative_ids = self._time_ids(
                tuple(negative_original_size or original),
                tuple(negative_crops_coords_top_left or crops),
                tuple(negative_target_size or target),
                positive.dtype,
                pooled,
            ).repeat(batch, 1)
            embeds = torch.cat([negative, positive])
            text_embeds = torch.cat([negative_pooled, pooled])
            time_ids = torch.cat([negative_ids, time_ids])
        added = {"text_embeds": text_embeds.to(r.device), "time_ids": time_ids.to(r.device)}
        return _TextConditioning(embeds.to(r.device), batch, added)

    def _time_ids(self, original: Size, crops: Size, target: Size, dtype: torch.dtype, pooled: torch.Tensor) -> torch.Tensor:
        """SDXL's ``[original h, w, crop top, left, target h, w]`` ids, ``[1, 6]``, checked against the UNet."""
        projection = (
            int(pooled.shape[-1]) if self.text_encoder_2 is None else self.text_encoder_2.config.projection_dim
        )
        try:
            return self._get_add_time_ids(original, crops, target, dtype=dtype, text_encoder_projection_dim=projection)
        except ValueError as err:
            raise MotionkitError(f"the text encoders do not fit this SDXL UNet's added conditioning: {err}") from None

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        negative_prompt: str | list[str] | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        *,
        prompt_2: str | list[str] | None = None,
        negative_prompt_2: str | list[str] | None = None,
        pooled_prompt_embeds: torch.Tensor | None = None,
        negative_pooled_prompt_embeds: torch.Tensor | None = None,
        original_size: Size | None = None,
        crops_coords_top_left: Size = (0, 0),
        target_size: Size | None = None,
        negative_original_size: Size | None = None,
        negative_crops_coords_top_left: Size | None = None,
        negative_target_size: Size | None = None,
        **kwargs: Any,
    ) -> MotionPipelineOutput | tuple:
        """``MotionPipeline.__call__`` (every argument of it goes through ``kwargs``) plus SDXL's prompt inputs.

        ``prompt_2`` / ``negative_prompt_2``: text for the second encoder (default: ``prompt`` / ``negative_prompt``).
        ``pooled_prompt_embeds`` / ``negative_pooled_prompt_embeds``: needed with ``prompt_embeds``.
        ``original_size``, ``crops_coords_top_left``, ``target_size`` (and ``negative_*``): SDXL's
        micro-conditioning as ``(height, width)`` / ``(top, left)``; sizes default to the output size.
        Without a negative prompt the negative conditioning is zeros (``force_zeros_for_empty_prompt``).
        """
        return super().__call__(
            prompt,
            negative_prompt,
            prompt_embeds,
            negative_prompt_embeds,
            prompt_2=prompt_2,
            negative_prompt_2=negative_prompt_2,
            pooled_prompt_embeds=pooled_prompt_embeds,
            negative_pooled_prompt_embeds=negative_pooled_prompt_embeds,
            original_size=original_size,
            crops_coords_top_left=crops_coords_top_left,
            target_size=target_size,
            negative_original_size=negative_original_size,
            negative_crops_coords_top_left=negative_crops_coords_top_left,
            negative_target_size=negative_target_size,
            **kwargs,
        )
