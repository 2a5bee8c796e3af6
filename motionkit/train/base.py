"""The frozen image model a motion adapter trains against: VAE, text encoder(s), tokenizer(s), UNet.

``load_base`` reads a diffusers folder (``from_pretrained(local_files_only=True)`` per component) or,
through ``motionkit.pipeline.loading`` when it is installed, a single-file checkpoint. ``BaseModels``
turns pixels into scaled latents and prompts into the UNet's text conditioning, for SD 1.x/2.x
(one CLIP) and SDXL (two CLIPs, pooled embedding and size ids).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from motionkit.errors import MotionkitError

SUBFOLDERS = ("unet", "vae", "text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2", "scheduler")


@dataclass
class BaseModels:
    unet: nn.Module
    vae: nn.Module
    text_encoder: nn.Module
    tokenizer: Any
    scheduler: Any = None  # the base's own scheduler, read for prediction_type
    text_encoder_2: nn.Module | None = None
    tokenizer_2: Any = None

    @classmethod
    def from_components(cls, components: dict[str, Any]) -> "BaseModels":
        missing = [k for k in ("unet", "vae", "text_encoder", "tokenizer") if components.get(k) is None]
        if missing:
            raise MotionkitError(f"the base model lacks {', '.join(missing)}: give a full text-to-image pipeline")
        return cls(**{k: components.get(k) for k in SUBFOLDERS})

    @property
    def is_sdxl(self) -> bool:
        return getattr(self.unet.config, "addition_embed_type", None) == "text_time"

    def frozen_modules(self) -> dict[str, nn.Module]:
        named = {"unet": self.unet, "vae": self.vae, "text_encoder": self.text_encoder, "text_encoder_2": self.text_encoder_2}
        return {k: v for k, v in named.items() if v is not None}

    def freeze(self, device: torch.device, dtype: torch.dtype) -> None:
        """Every base weight frozen, in eval mode, on ``device``; cast to ``dtype`` (the VAE stays fp32
        under fp16, where SD VAEs overflow)."""
        for name, module in self.frozen_modules().items():
            module.requires_grad_(False).eval()
            target = torch.float32 if name == "vae" and dtype == torch.float16 else dtype
            # nn.Module.to: ModelMixin.to warns about fp32-pinned modules on every cast.
            nn.Module.to(module, device=device, dtype=target)

    # -- encoding ---------------------------------------------------------------------------------

    @torch.no_grad()
    def encode_frames(self, pixels: torch.Tensor, generators: list[torch.Generator] | None = None) -> torch.Tensor:
        """``[B, F, 3, H, W]`` in [-1, 1] -> scaled latents ``[B, 4, F, h, w]``: a posterior sample drawn
        with one generator per clip, or the posterior mean when ``generators`` is None."""
        b, f = pixels.shape[:2]
        vae_dtype = next(self.vae.parameters()).dtype
        flat = pixels.reshape(b * f, *pixels.shape[2:]).to(vae_dtype)
        dist = self.vae.encode(flat).latent_dist
        latents = dist.mean
        if generators is not None:
            per_clip = latents.reshape(b, f, *latents.shape[1:])
            eps = torch.stack([torch.randn(per_clip.shape[1:], generator=g) for g in generators])
            latents = latents + dist.std * eps.reshape(latents.shape).to(latents.device, latents.dtype)
        latents = latents * self.vae.config.scaling_factor
        return latents.reshape(b, f, *latents.shape[1:]).transpose(1, 2)

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str], height: int, width: int) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
        """Text conditioning ``[B, N, D]`` (and SDXL's added conditions for ``height x width`` pixels)."""
        if not self.is_sdxl:
            return _hidden_states(self.text_encoder, self.tokenizer, prompts, penultimate=False)[0], None
        if self.text_encoder_2 is None or self.tokenizer_2 is None:
            raise MotionkitError("an SDXL base needs text_encoder_2 and tokenizer_2: load the full SDXL pipeline")
        first, _ = _hidden_states(self.text_encoder, self.tokenizer, prompts, penultimate=True)
        second, pooled = _hidden_states(self.text_encoder_2, self.tokenizer_2, prompts, penultimate=True)
        # SDXL micro-conditioning: original size, crop top-left, target size (no crop, same size).
        time_ids = torch.tensor([[height, width, 0, 0, height, width]] * len(prompts), device=second.device, dtype=second.dtype)
        return torch.cat([first, second], dim=-1), {"text_embeds": pooled, "time_ids": time_ids}


def _hidden_states(encoder: nn.Module, tokenizer: Any, prompts: list[str], penultimate: bool) -> tuple[torch.Tensor, Any]:
    ids = tokenizer(
        prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids.to(next(encoder.parameters()).device)
    out = encoder(ids, output_hidden_states=penultimate)
    hidden = out.hidden_states[-2] if penultimate else out[0]
    pooled = getattr(out, "text_embeds", None)
    return hidden, pooled


def load_base(path: str, dtype: torch.dtype = torch.float32, config: str | None = None) -> BaseModels:
    """A diffusers pipeline folder or a single-file checkpoint (``config``: a diffusers-format config folder
    for unusual single files), loaded offline by ``motionkit.pipeline.loading``."""
    from motionkit.pipeline.loading import load_base as load_components

    if not path:
        raise MotionkitError("no base model: set base to a diffusers folder or a .safetensors checkpoint")
    source = Path(path)
    if not source.exists():
        raise MotionkitError(f"{path}: no such base model; set base to a diffusers folder or checkpoint file")
    return BaseModels.from_components(load_components(source, config=config, dtype=dtype))


# -- frozen-weight fingerprints ---------------------------------------------------------------------


def weight_hashes(modules: dict[str, nn.Module]) -> dict[str, str]:
    """SHA-256 of every frozen tensor (names and bytes) per module: proof the base did not change. Sharded
    tensors are gathered one at a time (every process must call it then), so a sharded run's hashes are
    those of the whole weights, the same as an unsharded run's."""
    from motionkit.train.sharding import full_tensor

    hashes = {}
    for name, module in modules.items():
        digest = hashlib.sha256()
        for key, tensor in sorted(module.state_dict().items()):
            if ".lora_" in key:  # trainable LoRA factors live inside the frozen adapter's layers
                continue
            digest.update(key.encode("utf-8"))
            digest.update(full_tensor(tensor).contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        hashes[name] = digest.hexdigest()
    return hashes
