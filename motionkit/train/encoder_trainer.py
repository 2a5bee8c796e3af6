"""Training a condition encoder (``TrainConfig.encoder``) against a frozen base UNet and a frozen motion
adapter: the same loop, data order, per-clip generators, checkpoints, frozen-weight check and exact resume
as ``Trainer``; only the trained module, its condition, the model call and the export differ, per
``encoder.kind``:

- ``sparsectrl_rgb``: a ``SparseControlNetModel`` (``motionkit.train.encoder``). Keyframes per clip (frame 0
  mostly, sometimes frame 0 and the last, else random subsets; noised); exported to ``output_dir/encoder``,
  loadable by ``SparseControlNetModel.from_pretrained`` and diffusers' ``AnimateDiffSparseControlNetPipeline``.
- ``controlnet``: a per-frame ``ControlNetModel`` (``motionkit.train.controlnet``) on control maps paired
  with the clips (``motionkit.data.control_maps``); exported to ``output_dir/controlnet``, loadable by
  ``ControlNetModel.from_pretrained``, ``motionkit.formats.load_control_model`` and ``--controlnet``.

Per step: clips -> latents -> noise and timestep (``timestep_sampling``) -> the condition (condition and
caption dropout, separately and together) -> encoder residuals -> frozen motion UNet -> weighted MSE.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from motionkit.errors import MotionkitError
from motionkit.train.base import BaseModels, weight_hashes
from motionkit.train.config import EncoderConfig, TrainConfig
from motionkit.train.image_cond import joint_dropout
from motionkit.train.sampler import position_generator
from motionkit.train.trainer import Trainer


@dataclass(frozen=True)
class EncoderKind:
    """What one ``encoder.kind`` trains and how: ``build(base, config, adapter)`` -> the encoder;
    ``condition(batch, latents, config, generators)`` -> the encoder's inputs (each ``[B, ...]``);
    ``residuals``: the model call ``EncoderDenoiser`` makes; ``export_name``: the exported folder."""

    build: Callable[[BaseModels, EncoderConfig, nn.Module], nn.Module]
    condition: Callable[[dict[str, Any], torch.Tensor, EncoderConfig, list[torch.Generator]], tuple[torch.Tensor, ...]]
    residuals: Callable[..., dict[str, Any]]
    export_name: str


def _build_sparsectrl(base: BaseModels, config: EncoderConfig, adapter: nn.Module) -> nn.Module:
    from motionkit.train.encoder import sparse_controlnet_from_unet

    return sparse_controlnet_from_unet(
        base.unet, load_weights=config.init_from_unet, motion_max_seq_length=adapter.config.max_seq_length
    )


def _keyframes(
    batch: dict[str, Any], latents: torch.Tensor, config: EncoderConfig, generators: list[torch.Generator]
) -> tuple[torch.Tensor, ...]:
    from motionkit.train.encoder import training_keyframes

    cond, mask, _ = training_keyframes(latents, config, generators)
    return cond, mask


def _build_controlnet(base: BaseModels, config: EncoderConfig, adapter: nn.Module) -> nn.Module:
    from motionkit.train.controlnet import controlnet_from_unet

    return controlnet_from_unet(base.unet, config, 2 ** (len(base.vae.config.block_out_channels) - 1))


def _control_maps(
    batch: dict[str, Any], latents: torch.Tensor, config: EncoderConfig, generators: list[torch.Generator]
) -> tuple[torch.Tensor, ...]:
    from motionkit.train.controlnet import training_control

    if "control" not in batch:
        raise MotionkitError(
            "encoder.kind controlnet needs control maps in every batch: build the data from data.folder, manifest or "
            "csv with encoder.control_dir"
        )
    control, _ = training_control(batch["control"].to(latents.device, torch.float32), config, generators)
    return (control,)


def encoder_kind(name: str) -> EncoderKind:
    """The ``EncoderKind`` of ``encoder.kind`` ``name`` (a name ``EncoderConfig`` accepted)."""
    from motionkit.train.controlnet import controlnet_residuals
    from motionkit.train.encoder import encoder_residuals

    kinds = {
        "sparsectrl_rgb": EncoderKind(_build_sparsectrl, _keyframes, encoder_residuals, "encoder"),
        "controlnet": EncoderKind(_build_controlnet, _control_maps, controlnet_residuals, "controlnet"),
    }
    return kinds[name]


def load_encoder_weights(encoder: nn.Module, path: str) -> None:
    """Start ``encoder`` from the trained one in the diffusers folder ``path`` (same class and shapes)."""
    model_class = type(encoder)
    if not (Path(path) / "config.json").is_file():
        raise MotionkitError(f"encoder.init_from {path}: no {model_class.__name__} folder there (config.json missing)")
    trained = model_class.from_pretrained(path, torch_dtype=torch.float32)
    theirs, ours = trained.state_dict(), encoder.state_dict()
    misfits = [k for k in ours if k not in theirs or theirs[k].shape != ours[k].shape] + [k for k in theirs if k not in ours]
    if misfits:
        raise MotionkitError(
            f"encoder.init_from {path}: {len(misfits)} tensors do not fit the {model_class.__name__} built from this base "
            f"(first: {misfits[0]}); start from an encoder trained for this base, or drop encoder.init_from"
        )
    encoder.load_state_dict(theirs)


class EncoderTrainer(Trainer):
    """Train ``config.encoder``'s condition encoder; the UNet, VAE, text encoder and motion adapter stay frozen
    (their weights are hashed before and checked after training)."""

    def _setup_models(self) -> None:
        from motionkit.formats import load_adapter
        from motionkit.injection import inject
        from motionkit.train.encoder import EncoderDenoiser

        cfg = self.config
        device = self.accelerator.device
        self.kind = encoder_kind(cfg.encoder.kind)
        self.base = self._load_base()
        self.base.freeze(device, self.weight_dtype)
        self.adapter = load_adapter(cfg.encoder.motion_adapter, torch_dtype=self.weight_dtype)
        self.adapter.requires_grad_(False).eval()
        self.motion_unet = inject(self.base.unet, self.adapter)
        self.encoder = self.kind.build(self.base, cfg.encoder, self.adapter)
        if cfg.encoder.init_from:
            load_encoder_weights(self.encoder, cfg.encoder.init_from)
        nn.Module.to(self.encoder, device=device, dtype=torch.float32)
        self.encoder.requires_grad_(True).train()
        self.trainable = list(self.encoder.parameters())
        self._check_frozen_layout()
        self.denoiser = EncoderDenoiser(self.encoder, self.motion_unet, cfg.encoder.conditioning_scale, self.kind.residuals)
        if cfg.gradient_checkpointing:
            self.encoder.enable_gradient_checkpointing()
            self.motion_unet.enable_gradient_checkpointing()
        self.frozen_hashes = weight_hashes(self._frozen_modules())
        self.noise_scheduler = self._noise_scheduler()

    def _build_dataset(self) -> Dataset:
        dataset = super()._build_dataset()
        if self.config.encoder.kind != "controlnet":
            return dataset
        from motionkit.data.control_maps import ControlMapDataset

        return ControlMapDataset(dataset, self.config.encoder.control_dir)

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
        cfg = self.config
        device = self.accelerator.device
        generators = [position_generator(cfg.seed, epoch, p) for p in positions]
        if "latents" in batch:
            latents = batch["latents"].to(device, torch.float32)
        else:
            latents = self.base.encode_frames(batch["pixel_values"].to(device), generators).float()
        noise, timesteps = self._noise_and_timesteps(latents, generators)
        condition = self.kind.condition(batch, latents, cfg.encoder, generators)
        prompts, dropped = joint_dropout(list(batch["prompt"]), generators, cfg.encoder.joint_dropout)
        if any(dropped):
            keep = torch.tensor([0.0 if d else 1.0 for d in dropped], device=device).view(-1, 1, 1, 1, 1)
            condition = tuple(c * keep for c in condition)
        noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
        hidden, added = self._encode_prompts(prompts, latents)
        model = model if model is not None else self.model
        prediction = model(noisy.to(self.weight_dtype), timesteps, hidden, *condition, added_cond_kwargs=added)
        return self._loss(prediction, latents, noise, timesteps)

    def validate(self, step: int) -> list:
        self._log("validation skipped: a condition encoder samples with control inputs, not MotionPipeline's prompts alone")
        return []

    def export(self) -> dict[str, str]:
        """``output_dir/<export_name>``: the encoder (EMA weights when EMA is on) as a diffusers folder."""
        from motionkit.utils.atomic import atomic_path

        if self.ema is not None:
            self.ema.store(self.trainable)
            self.ema.copy_to(self.trainable)
        try:
            target = self.output_dir / self.kind.export_name
            if self.accelerator.is_main_process:
                with atomic_path(target, is_dir=True) as tmp:
                    self.encoder.save_pretrained(tmp, safe_serialization=True)
            return {self.kind.export_name: str(target)}
        finally:
            if self.ema is not None:
                self.ema.restore(self.trainable)


def trainer_for(config: TrainConfig, **kwargs: Any) -> Trainer:
    """The trainer ``config`` asks for: ``EncoderTrainer`` when ``config.encoder.enabled``, else ``Trainer``."""
    return EncoderTrainer(config, **kwargs) if config.encoder.enabled else Trainer(config, **kwargs)
