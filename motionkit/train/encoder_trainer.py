"""Training a SparseCtrl condition encoder (``TrainConfig.encoder``) against a frozen base UNet and a frozen
motion adapter: the same loop, data order, per-clip generators, checkpoints and exact resume as
``Trainer``; only the trained module (``SparseControlNetModel``), the model call and the export differ.

Per step: clips -> latents -> noise and timestep (``timestep_sampling``) -> keyframes (``encoder``:
frame 0 mostly, sometimes frame 0 and the last, else random subsets; noised; condition and caption
dropout, separately and together) -> encoder residuals -> frozen motion UNet -> weighted MSE.
The export is a diffusers ``SparseControlNetModel`` folder (``save_pretrained``, safetensors) under
``output_dir/encoder``, loadable by ``SparseControlNetModel.from_pretrained`` and diffusers'
``AnimateDiffSparseControlNetPipeline``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from motionkit.train.base import weight_hashes
from motionkit.train.config import TrainConfig
from motionkit.train.image_cond import joint_dropout
from motionkit.train.sampler import position_generator
from motionkit.train.trainer import Trainer


class EncoderTrainer(Trainer):
    """Train ``config.encoder``'s SparseCtrl encoder; the UNet, VAE, text encoder and motion adapter stay frozen
    (their weights are hashed before and checked after training)."""

    def _setup_models(self) -> None:
        from motionkit.formats import load_adapter
        from motionkit.injection import inject
        from motionkit.train.encoder import EncoderDenoiser, sparse_controlnet_from_unet

        cfg = self.config
        device = self.accelerator.device
        self.base = self._load_base()
        self.base.freeze(device, self.weight_dtype)
        self.adapter = load_adapter(cfg.encoder.motion_adapter, torch_dtype=self.weight_dtype)
        self.adapter.requires_grad_(False).eval()
        self.motion_unet = inject(self.base.unet, self.adapter)
        self.encoder = sparse_controlnet_from_unet(
            self.base.unet, load_weights=cfg.encoder.init_from_unet, motion_max_seq_length=self.adapter.config.max_seq_length
        )
        nn.Module.to(self.encoder, device=device, dtype=torch.float32)
        self.encoder.requires_grad_(True).train()
        self.trainable = list(self.encoder.parameters())
        self._check_frozen_layout()
        self.denoiser = EncoderDenoiser(self.encoder, self.motion_unet, cfg.encoder.conditioning_scale)
        if cfg.gradient_checkpointing:
            self.encoder.enable_gradient_checkpointing()
            self.motion_unet.enable_gradient_checkpointing()
        self.frozen_hashes = weight_hashes(self._frozen_modules())
        self.noise_scheduler = self._noise_scheduler()

    def denoiser_module(self) -> nn.Module:
        return self.denoiser

    @property
    def trained_module(self) -> nn.Module:
        return self.encoder

    def trained_config(self) -> dict[str, Any]:
        return {k: v for k, v in dict(self.encoder.config).items() if not k.startswith("_")}

    def _frozen_modules(self) -> dict[str, nn.Module]:
        return {**self.base.frozen_modules(), "adapter": self.adapter}

    def compute_loss(self, batch: dict[str, Any], epoch: int, positions: list[int], model: nn.Module | None = None) -> torch.Tensor:
        from motionkit.train.encoder import training_keyframes

        cfg = self.config
        device = self.accelerator.device
        generators = [position_generator(cfg.seed, epoch, p) for p in positions]
        if "latents" in batch:
            latents = batch["latents"].to(device, torch.float32)
        else:
            latents = self.base.encode_frames(batch["pixel_values"].to(device), generators).float()
        noise, timesteps = self._noise_and_timesteps(latents, generators)
        cond, mask, _ = training_keyframes(latents, cfg.encoder, generators)
        prompts, dropped = joint_dropout(list(batch["prompt"]), generators, cfg.encoder.joint_dropout)
        if any(dropped):
            keep = torch.tensor([0.0 if d else 1.0 for d in dropped], device=device).view(-1, 1, 1, 1, 1)
            cond, mask = cond * keep, mask * keep
        noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
        hidden, added = self._encode_prompts(prompts, latents)
        model = model if model is not None else self.model
        prediction = model(noisy.to(self.weight_dtype), timesteps, hidden, cond, mask, added_cond_kwargs=added)
        return self._loss(prediction, latents, noise, timesteps)

    def validate(self, step: int) -> list:
        self._log("validation skipped: encoder runs sample through a SparseCtrl pipeline, not MotionPipeline")
        return []

    def export(self) -> dict[str, str]:
        """``output_dir/encoder``: the encoder (EMA weights when EMA is on) as a diffusers folder."""
        from motionkit.utils.atomic import atomic_path

        if self.ema is not None:
            self.ema.store(self.trainable)
            self.ema.copy_to(self.trainable)
        try:
            target = self.output_dir / "encoder"
            if self.accelerator.is_main_process:
                with atomic_path(target, is_dir=True) as tmp:
                    self.encoder.save_pretrained(tmp, safe_serialization=True)
            return {"encoder": str(target)}
        finally:
            if self.ema is not None:
                self.ema.restore(self.trainable)


def trainer_for(config: TrainConfig, **kwargs: Any) -> Trainer:
    """The trainer ``config`` asks for: ``EncoderTrainer`` when ``config.encoder.enabled``, else ``Trainer``."""
    return EncoderTrainer(config, **kwargs) if config.encoder.enabled else Trainer(config, **kwargs)
