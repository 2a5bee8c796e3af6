"""The training loop: a motion adapter (or a MotionLoRA) learns to denoise video clips through a
frozen image model, on one process or many (accelerate launches them; ``distributed.strategy``: DDP
replicas, FSDP2 shards through ``sharding.py``, or DeepSpeed ZeRO-2/3 through ``zero.py``).

Per step: clips -> VAE latents (x scaling_factor, or read from the latent cache) -> DDPM forward noise
at a random timestep -> the injected UNet predicts epsilon (or v) -> MSE -> AdamW on the adapter only.

Reproducibility: every random draw of a clip (VAE posterior sample, noise, timestep, image-conditioning
choices) comes from a generator seeded by the clip's position in the epoch order (``sampler.py``), so
N processes with batch B compute exactly what one process with batch N*B computes, and a resumed run
computes exactly what an uninterrupted one does (bitwise on CPU).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset

from motionkit.errors import MotionkitError
from motionkit.noise_prior import correlate_frames, with_noise_offset
from motionkit.train import zero
from motionkit.train.base import BaseModels, load_base, weight_hashes
from motionkit.train.checkpoint import (
    Position,
    checkpoint_dirs,
    clean_checkpoint_temps,
    load_checkpoint,
    resolve_resume,
    restore_rng,
    save_checkpoint,
    serialized_rng,
)
from motionkit.train.config import TrainConfig
from motionkit.train.image_cond import IMAGE_COND_CHANNELS, clean_conditioning_frames, joint_dropout, training_image_cond
from motionkit.train.launch import check_engine, check_launch, check_strategy
from motionkit.train.losses import diffusion_loss, prediction_target
from motionkit.train.sampler import ResumableBatchSampler, position_generator
from motionkit.train.sharding import (
    full_optimizer_state,
    full_state,
    load_full_into,
    local_view,
    shard_motion_unet,
    shard_optimizer_state,
)
from motionkit.train.timesteps import loss_weights, sample_timestep
from motionkit.utils.atomic import atomic_write
from motionkit.utils.worker_processes import loader_context

logger = logging.getLogger(__name__)

EVAL_EPOCH = -1  # generator namespace of ``evaluate``: never collides with a training epoch
WEIGHT_DTYPES = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class TrainingDivergedError(MotionkitError):
    """The loss or the trained weights stopped being finite numbers; nothing after it was saved."""


class FrozenWeightsChangedError(MotionkitError):
    """A weight that must stay frozen (VAE, text encoder, UNet, LoRA base) changed during training."""


@dataclass
class TrainResult:
    steps: int
    history: list[dict[str, float]]
    output_dir: Path
    exported: dict[str, str] = field(default_factory=dict)
    frozen_hashes: dict[str, str] = field(default_factory=dict)
    adapter_sha256: str = ""


def collate_clips(items: list[dict[str, Any]]) -> dict[str, Any]:
    batch: dict[str, Any] = {"prompt": [item["prompt"] for item in items]}
    for key in ("pixel_values", "latents", "control"):
        if key in items[0]:
            batch[key] = torch.stack([item[key] for item in items])
    return batch


def state_sha256(tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for key, tensor in sorted(tensors.items()):
        digest.update(key.encode("utf-8"))
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class Trainer:
    """Train a motion adapter as ``config`` says.

    ``base``: already-loaded base components (a dict with unet, vae, text_encoder, tokenizer, ...) instead
    of ``config.base``; ``dataset``: any dataset of ``VideoClipDataset`` items instead of ``config.data``.
    ``setup()`` builds everything (``train()`` calls it when needed); ``evaluate()`` measures the loss on
    fixed batches with fixed noise.
    """

    def __init__(
        self, config: TrainConfig, *, base: BaseModels | dict[str, Any] | None = None, dataset: Dataset | None = None
    ) -> None:
        self.config = config
        self._given_base = base
        self._given_dataset = dataset
        self.history: list[dict[str, float]] = []
        self.position = Position()
        self.accelerator: Any = None
        self.shards = False  # distributed.strategy fsdp2, set by setup()
        self.deepspeed = False  # distributed.strategy zero2/zero3: DeepSpeed's engine runs the model; set by setup()
        self.last_checkpoint: Path | None = None

    # ------------------------------------------------------------------ setup

    @property
    def output_dir(self) -> Path:
        return Path(self.config.output_dir)

    @property
    def checkpoint_root(self) -> Path:
        return self.output_dir / "checkpoints"

    def setup(self) -> "Trainer":
        """Accelerator, models, optimizer and data, then the checkpoint to resume from (if any)."""
        if self.accelerator is not None:
            return self
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        cfg = self.config
        if cfg.mixed_precision == "fp16" and (cfg.cpu or not torch.cuda.is_available()):
            raise MotionkitError("mixed_precision fp16 needs a CUDA GPU: use bf16 or no on this machine")
        check_engine(cfg.distributed.strategy, cpu=cfg.cpu)
        self.deepspeed = cfg.distributed.uses_deepspeed
        plugin = None
        if self.deepspeed:
            zero.ensure_process_group_env()
            plugin = zero.deepspeed_plugin(
                cfg.distributed.strategy,
                batch_size=cfg.batch_size,
                gradient_accumulation_steps=cfg.gradient_accumulation_steps,
                max_grad_norm=cfg.max_grad_norm,
            )
        self.accelerator = Accelerator(
            gradient_accumulation_steps=cfg.gradient_accumulation_steps,
            mixed_precision=cfg.mixed_precision,
            log_with=self._trackers() or None,
            project_dir=str(self.output_dir),
            cpu=cfg.cpu,
            deepspeed_plugin=plugin,
        )
        check_launch(self.accelerator)
        check_strategy(cfg.distributed.strategy, self.accelerator)
        self.shards = cfg.distributed.shards
        set_seed(cfg.seed)  # the same on every process: replicas start identical
        self.weight_dtype = WEIGHT_DTYPES[cfg.mixed_precision]
        self._setup_models()
        self._setup_optimization()
        self._setup_data()
        self._resume()
        if self.accelerator.log_with:  # trackers exist only after init_trackers (main process only)
            self.accelerator.init_trackers("motionkit", config=_flat(cfg.to_dict()))
        return self

    def _setup_models(self) -> None:
        from motionkit.injection import inject

        device = self.accelerator.device
        self.base = self._load_base()
        self.base.freeze(device, self.weight_dtype)
        self.adapter = self._build_adapter()
        self.motion_unet = inject(self.base.unet, self.adapter)
        # The trained weights stay fp32 under mixed precision (autocast computes in half precision).
        nn.Module.to(self.adapter, device=device, dtype=torch.float32)
        self.trainable = [p for p in self.adapter.parameters() if p.requires_grad]
        self._check_frozen_layout()
        if self.config.gradient_checkpointing:
            self.motion_unet.enable_gradient_checkpointing()
        self.adapter.set_recompute(self.config.recompute)
        if self.config.compile_motion_modules:
            refusal = self.adapter.compile_motion_modules()
            if refusal is not None:
                logger.warning("compile_motion_modules skipped: %s", refusal)
        self.frozen_hashes = weight_hashes(self._frozen_modules())
        self.noise_scheduler = self._noise_scheduler()

    def _setup_optimization(self) -> None:
        from diffusers.optimization import get_scheduler

        cfg = self.config
        if self.shards:
            # fully_shard swaps every parameter for a sharded one: the optimizer must see the new ones.
            shard_motion_unet(self.motion_unet, self.accelerator.device)
            self.trainable = [p for p in self.trained_module.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            self.trainable,
            lr=cfg.lr,
            betas=(cfg.adam_beta1, cfg.adam_beta2),
            weight_decay=cfg.adam_weight_decay,
            eps=cfg.adam_epsilon,
        )
        # Stepped once per optimizer step by the loop itself: accelerate's wrapper would step it once per
        # process, which ties the schedule to the process count.
        self.lr_scheduler = get_scheduler(
            cfg.lr_scheduler, self.optimizer, num_warmup_steps=cfg.lr_warmup_steps, num_training_steps=max(cfg.max_steps, 1)
        )
        self.ema = None
        if cfg.ema:
            from diffusers.training_utils import EMAModel

            self.ema = EMAModel(self.trainable, decay=cfg.ema_decay)
        if self.shards:  # sharded by motionkit: accelerate only wraps the optimizer (accumulation steps)
            self.model, self.optimizer = self.motion_unet, self.accelerator.prepare(self.optimizer)
        else:  # DDP, or DeepSpeed's engine (self.model) with its ZeRO optimizer around AdamW
            self.model, self.optimizer = self.accelerator.prepare(self.denoiser_module(), self.optimizer)

    def _setup_data(self) -> None:
        cfg, acc = self.config, self.accelerator
        self.dataset = self._given_dataset if self._given_dataset is not None else self._build_dataset()
        # Worker seeds come from this generator, not the global RNG, so resuming mid-epoch draws nothing extra.
        self.loader_generator = torch.Generator().manual_seed(cfg.seed)
        workers = cfg.data.num_workers
        loading = dict(num_workers=workers, collate_fn=collate_clips, pin_memory=acc.device.type == "cuda",
                       multiprocessing_context=loader_context(workers))
        if isinstance(self.dataset, IterableDataset):  # data.shards: the stream orders and splits its own batches
            self.sampler = self.dataset
            self.loader = DataLoader(self.dataset, batch_size=cfg.batch_size, **loading)
            return
        self.sampler = ResumableBatchSampler(
            len(self.dataset),
            cfg.batch_size,
            seed=cfg.seed,
            shuffle=cfg.data.shuffle,
            rank=acc.process_index,
            world_size=acc.num_processes,
        )
        self.loader = DataLoader(self.dataset, batch_sampler=self.sampler, generator=self.loader_generator, **loading)

    def _trackers(self) -> list[str]:
        from accelerate.utils import is_tensorboard_available, is_wandb_available

        available = {"tensorboard": is_tensorboard_available(), "wandb": is_wandb_available()}
        missing = [t for t in self.config.log_with if not available[t]]
        if missing:
            logger.warning("logging to %s skipped: install %s to enable it", ", ".join(missing), " and ".join(missing))
        return [t for t in self.config.log_with if available[t]]

    def _load_base(self) -> BaseModels:
        given = self._given_base
        if isinstance(given, BaseModels):
            return given
        if isinstance(given, dict):
            return BaseModels.from_components(given)
        # Loaded in fp32 and cast by freeze(): the VAE stays exact where it is kept in fp32.
        return load_base(self.config.base, config=self.config.base_config)

    def _build_adapter(self) -> nn.Module:
        from motionkit.adapter import MotionAdapter
        from motionkit.presets import PRESETS

        cfg = self.config
        if cfg.lora.enabled:
            from motionkit.formats import load_adapter
            from motionkit.train.motion_lora import add_trainable_lora

            adapter = load_adapter(cfg.lora.base_adapter, torch_dtype=torch.float32)
            add_trainable_lora(adapter, cfg.lora.rank, cfg.lora.alpha)
            return adapter
        cond = (
            {
                "image_cond_channels": IMAGE_COND_CHANNELS,
                "image_cond_mask": cfg.image_cond.mask,
                "clean_conditioning_frame": cfg.image_cond.clean_frame,
            }
            if cfg.image_cond.enabled
            else {}
        )
        if cfg.adapter in PRESETS:
            adapter = MotionAdapter.from_unet(self.base.unet, cfg.adapter, **{**cfg.adapter_overrides, **cond})
        else:
            adapter = _continue_adapter(
                cfg.adapter,
                cfg.image_cond.mask if cfg.image_cond.enabled else None,
                cfg.adapter_overrides,
                clean_frame=cfg.image_cond.clean_frame,
            )
        # Recorded in the config, so every checkpoint and export says how many frames it was trained on
        # (what ``motionkit animate`` and the app default to).
        adapter.register_to_config(training_frames=cfg.data.n_frames)
        return adapter.requires_grad_(True).train()

    def _frozen_modules(self) -> dict[str, nn.Module]:
        modules = self.base.frozen_modules()
        if self.config.lora.enabled:
            modules["adapter"] = self.adapter
        return modules

    def _check_frozen_layout(self) -> None:
        leaking = [
            f"{name}.{p}" for name, module in self.base.frozen_modules().items()
            for p, param in module.named_parameters() if param.requires_grad
        ]
        if leaking:
            raise MotionkitError(f"base weights would train ({leaking[0]}, ...): only adapter weights may train")
        if not self.trainable:
            raise MotionkitError("nothing to train: the adapter has no trainable parameters")

    def _noise_scheduler(self) -> Any:
        from diffusers import DDPMScheduler

        cfg = self.config
        prediction = cfg.prediction_type
        if prediction == "auto":
            base_scheduler = self.base.scheduler
            prediction = getattr(getattr(base_scheduler, "config", None), "prediction_type", None) or "epsilon"
        if prediction not in ("epsilon", "v_prediction"):
            raise MotionkitError(f"the base predicts {prediction!r}: set prediction_type to epsilon or v_prediction")
        return DDPMScheduler(
            num_train_timesteps=cfg.num_train_timesteps,
            beta_start=cfg.beta_start,
            beta_end=cfg.beta_end,
            beta_schedule=cfg.beta_schedule,
            prediction_type=prediction,
        )

    def _build_dataset(self) -> Dataset:
        from motionkit.data.datasets import LatentCacheDataset, VideoClipDataset

        data = self.config.data
        if not data.has_source:
            raise MotionkitError("no training data: set data.manifest, data.folder, data.csv or data.shards in the config")
        if data.shards:
            from motionkit.data.stream import ShardStream

            return ShardStream(
                data.shards, batch_size=self.config.batch_size, seed=self.config.seed,
                rank=self.accelerator.process_index, world_size=self.accelerator.num_processes, shuffle=data.shuffle,
                n_frames=data.n_frames, stride=data.stride, size=(data.size, data.size),
                flip_prob=data.flip_prob, caption_dropout=data.caption_dropout,
            )
        options = dict(
            n_frames=data.n_frames,
            stride=data.stride,
            size=(data.size, data.size),
            flip_prob=data.flip_prob,
            caption_dropout=data.caption_dropout,
            seed=self.config.seed,
            caption_contains=data.caption_contains,
            caption_remove=data.caption_remove,
        )
        if data.manifest:
            dataset = VideoClipDataset.from_manifest(data.manifest, **options)
        elif data.folder:
            dataset = VideoClipDataset.from_folder(data.folder, **options)
        else:
            dataset = VideoClipDataset.from_csv(data.csv, data.video_dir, **options)
        if data.latent_cache:
            if data.num_workers:
                self._log("note: data.latent_cache encodes missing latents in the loader workers; fill it with num_workers 0")
            return LatentCacheDataset(dataset, data.latent_cache, encode=self._encode_for_cache)
        return dataset

    def _encode_for_cache(self, pixels: torch.Tensor) -> torch.Tensor:
        """One clip ``[F, 3, H, W]`` -> its posterior mean ``[4, F, h, w]`` (a cache must not hold one draw)."""
        return self.base.encode_frames(pixels[None].to(self.accelerator.device), None)[0]

    def _resume(self) -> None:
        if self.accelerator.is_main_process:
            clean_checkpoint_temps(self.checkpoint_root)
        path = resolve_resume(self.checkpoint_root, self.config.resume_from)
        if path is None:
            if self.config.resume_from == "latest":
                self._log(f"no checkpoint under {self.checkpoint_root} yet: starting from step 0")
            elif checkpoint_dirs(self.checkpoint_root):
                raise MotionkitError(
                    f"{self.output_dir} already holds checkpoints of a run: resume it with --resume latest "
                    "or pick another output_dir"
                )
            self.history = self._history_until(0)
            return
        ckpt = load_checkpoint(path)
        params = dict(self.trained_module.named_parameters())
        names = {n for n, p in params.items() if p.requires_grad}
        if set(ckpt.trainable) != names:
            odd = sorted(set(ckpt.trainable) ^ names)
            raise MotionkitError(
                f"{path}: its trained weights do not match this run's adapter (e.g. {odd[0]!r}): "
                "resume with the config the checkpoint was written with"
            )
        state = ckpt.training_state
        strategy = self.config.distributed.strategy
        if self.deepspeed:  # DeepSpeed loads the trained weights and its optimizer partitions itself
            zero.load_engine_state(self.model, path, state.get("zero"), strategy, self.accelerator.num_processes)
        elif state.get("zero") is not None:
            raise MotionkitError(
                f"{path}: written by a distributed.strategy {state['zero']['strategy']} run, whose optimizer state is "
                f"DeepSpeed's partitions: resume it with distributed.strategy {state['zero']['strategy']}, not {strategy}"
            )
        else:
            load_full_into(params, ckpt.trainable)
            # Checkpoints hold whole tensors whatever the strategy: a sharded run takes its own part of each.
            optimizer_state = shard_optimizer_state(state["optimizer"], self.trainable) if self.shards else state["optimizer"]
            self.optimizer.load_state_dict(optimizer_state)
        self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        self._apply_lr_override(path)
        self._apply_optimizer_settings(path)
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        if state.get("data_stream") is not None and hasattr(self.dataset, "load_state_dict"):
            self.dataset.load_state_dict(state["data_stream"])
        scaler = getattr(self.accelerator, "scaler", None)
        if scaler is not None and state.get("scaler") is not None:
            scaler.load_state_dict(state["scaler"])
        rank = self.accelerator.process_index
        if rank < len(ckpt.rng_states):
            restore_rng(ckpt.rng_states[rank], {"loader": self.loader_generator})
        else:
            self._log(f"{path} has RNG states of {len(ckpt.rng_states)} processes; process {rank} keeps its seed")
        self.position = ckpt.position
        self.history = self._history_until(ckpt.position.step)
        self.last_checkpoint = path
        self._log(f"resumed from {path} at step {ckpt.position.step} (epoch {ckpt.position.epoch}, batch {ckpt.position.batch})")

    def _apply_lr_override(self, path: Path) -> None:
        """A resumed run trains with ``config.lr``: the optimizer's and the scheduler's saved states carry the
        checkpoint's lr, so every lr they hold is rescaled by new / saved (the schedule's position is kept)."""
        saved = float(self.lr_scheduler.base_lrs[0])
        if saved == self.config.lr:
            return
        ratio = self.config.lr / saved
        self.lr_scheduler.base_lrs = [lr * ratio for lr in self.lr_scheduler.base_lrs]
        self.lr_scheduler._last_lr = [lr * ratio for lr in self.lr_scheduler.get_last_lr()]
        for group in self.optimizer.param_groups:
            group["lr"] = group["lr"] * ratio
            if "initial_lr" in group:
                group["initial_lr"] = group["initial_lr"] * ratio
        self._log(f"lr {self.config.lr:g} overrides the checkpoint's {saved:g} ({path.name}); the schedule continues from its step")

    def _apply_optimizer_settings(self, path: Path) -> None:
        """AdamW's betas, weight decay and epsilon come from the config too (a loaded optimizer state carries
        the checkpoint's)."""
        cfg = self.config
        wanted = {"betas": (cfg.adam_beta1, cfg.adam_beta2), "weight_decay": cfg.adam_weight_decay, "eps": cfg.adam_epsilon}
        for group in self.optimizer.param_groups:
            saved = {**group, "betas": tuple(group["betas"])}
            changed = [k for k, v in wanted.items() if saved[k] != v]
            if changed:
                self._log(f"{', '.join(changed)} from the config override the checkpoint's ({path.name})")
                group.update(wanted)

    # ------------------------------------------------------------------ one batch

    def compute_loss(self, batch: dict[str, Any], epoch: int, positions: list[int], model: nn.Module | None = None) -> torch.Tensor:
        """The mean denoising loss of ``batch``; ``positions`` (the clips' places in epoch ``epoch``'s
        order) seed every random draw."""
        cfg = self.config
        device = self.accelerator.device
        generators = [position_generator(cfg.seed, epoch, p) for p in positions]
        if "latents" in batch:
            latents = batch["latents"].to(device, torch.float32)
        else:
            latents = self.base.encode_frames(batch["pixel_values"].to(device), generators).float()
        noise, timesteps = self._noise_and_timesteps(latents, generators)
        prompts = list(batch["prompt"])
        image_cond = None
        if cfg.image_cond.enabled:
            image_cond = training_image_cond(latents, cfg.image_cond, generators)
            prompts, dropped = joint_dropout(prompts, generators, cfg.image_cond.joint_dropout)
            if any(dropped):
                keep = torch.tensor([0.0 if d else 1.0 for d in dropped], device=device, dtype=image_cond.dtype)
                image_cond = image_cond * keep.view(-1, 1, 1, 1, 1)
        noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
        model_timesteps, frame_mask = timesteps, None
        if image_cond is not None and cfg.image_cond.clean_frame:
            noisy, model_timesteps, frame_mask = clean_conditioning_frames(noisy, timesteps, image_cond)
        hidden, added = self._encode_prompts(prompts, latents)
        model = model if model is not None else self.model
        with self._forward_precision():
            prediction = model(
                noisy.to(self.weight_dtype),
                model_timesteps,
                hidden,
                added_cond_kwargs=added,
                image_cond=image_cond,
                return_dict=False,
            )[0]
        return self._loss(prediction, latents, noise, timesteps, frame_mask)

    def _forward_precision(self) -> Any:
        """accelerate's prepare autocasts a DDP model's forward; a sharded run's model did not go through it,
        and DeepSpeed's engine casts the weights to half precision but not the inputs."""
        if self.shards:
            return self.accelerator.autocast()
        if self.deepspeed and self.weight_dtype != torch.float32:
            return torch.autocast(self.accelerator.device.type, dtype=self.weight_dtype)
        return contextlib.nullcontext()

    def _noise_and_timesteps(self, latents: torch.Tensor, generators: list[torch.Generator]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-clip noise and timestep, drawn in this order from each clip's generator."""
        shape = latents.shape[1:]
        noise = torch.stack([torch.randn(shape, generator=g) for g in generators]).to(latents.device)
        noise = correlate_frames(noise, self.config.noise_correlation, frame_dim=2)
        total = self.noise_scheduler.config.num_train_timesteps
        timesteps = torch.stack([sample_timestep(self.config, g, total) for g in generators]).to(latents.device)
        # Drawn last, so an offset leaves the timesteps as they were; one value per clip and channel.
        offset = self.config.noise_offset
        noise = torch.stack([with_noise_offset(n, offset, g, channel_dim=0) for n, g in zip(noise, generators)])
        return noise, timesteps

    def _encode_prompts(self, prompts: list[str], latents: torch.Tensor) -> tuple[torch.Tensor, Any]:
        scale = 2 ** (len(self.base.vae.config.block_out_channels) - 1)
        return self.base.encode_prompts(prompts, latents.shape[-2] * scale, latents.shape[-1] * scale)

    def _loss(
        self,
        prediction: torch.Tensor,
        latents: torch.Tensor,
        noise: torch.Tensor,
        timesteps: torch.Tensor,
        frame_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        scheduler = self.noise_scheduler
        weights = loss_weights(self.config, scheduler.alphas_cumprod, timesteps, scheduler.config.prediction_type)
        return diffusion_loss(prediction, prediction_target(scheduler, latents, noise, timesteps), weights, frame_mask)

    @torch.no_grad()
    def evaluate(self, batches: list[dict[str, Any]]) -> float:
        """Mean loss over ``batches`` with noise and timesteps fixed by batch order (not by the run)."""
        self.setup()
        was_training = self.trained_module.training
        self.trained_module.eval()
        losses = []
        for i, batch in enumerate(batches):
            size = len(batch["prompt"])
            positions = list(range(i * size, (i + 1) * size))
            with self.accelerator.autocast():
                losses.append(float(self.compute_loss(batch, EVAL_EPOCH, positions, model=self.denoiser_module())))
        self.trained_module.train(was_training)
        return sum(losses) / len(losses)

    # ------------------------------------------------------------------ the loop

    def train(self) -> TrainResult:
        """Run to ``max_steps`` optimizer steps (from the resumed position), checkpoint, verify, export."""
        from tqdm.auto import tqdm

        self.setup()
        cfg, acc = self.config, self.accelerator
        progress = tqdm(
            total=cfg.max_steps, initial=self.position.step, desc="training", disable=not acc.is_main_process, unit="step"
        )
        self._pending_losses: list[float] = []
        try:
            epoch, start = self.position.epoch, self.position.batch
            while self.position.step < cfg.max_steps:
                self._train_epoch(epoch, start, progress)
                epoch, start = epoch + 1, 0
            if self.last_checkpoint is None or self.last_checkpoint.name != f"checkpoint-{self.position.step:08d}":
                self.save_checkpoint()
            return self._finish()
        finally:
            progress.close()
            acc.end_training()

    def _train_epoch(self, epoch: int, start: int, progress: Any) -> None:
        """Global batches ``start..`` of epoch ``epoch``, until the epoch or ``max_steps`` ends."""
        cfg, acc = self.config, self.accelerator
        self.sampler.set_position(epoch, start)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        for batch_index, batch in enumerate(self.loader, start=start):
            with acc.accumulate(self.model):
                loss = self.compute_loss(batch, epoch, self.sampler.positions(batch_index))
                self._pending_losses.append(self._checked(loss, self.position.step + 1, epoch, batch_index))
                acc.backward(loss)
                if acc.sync_gradients and cfg.max_grad_norm > 0:
                    acc.clip_grad_norm_(self.trainable, cfg.max_grad_norm)
                self.optimizer.step()  # accelerate's wrapper steps only when gradients are synced
                self.optimizer.zero_grad(set_to_none=True)
            if not acc.sync_gradients:
                continue
            self._check_weights(self.position.step + 1, epoch, batch_index)
            if not acc.optimizer_step_was_skipped:
                self.lr_scheduler.step()
            if self.ema is not None:
                self.ema.step(self.trainable)
            step = self.position.step + 1
            self.position = Position(step, epoch, batch_index + 1)
            self._record(step, sum(self._pending_losses) / len(self._pending_losses))
            self._pending_losses = []
            progress.update(1)
            progress.set_postfix(loss=f"{self.history[-1]['loss']:.4f}")
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                self.save_checkpoint()
            if cfg.validation.every and step % cfg.validation.every == 0:
                self.validate(step)
            if step >= cfg.max_steps:
                return

    def _checked(self, loss: torch.Tensor, step: int, epoch: int, batch: int) -> float:
        """The loss averaged over processes; stop every process on NaN/inf before anything is updated."""
        gathered = self.accelerator.gather(loss.detach().float().reshape(1))
        if not torch.isfinite(gathered).all():
            bad = gathered[~torch.isfinite(gathered)][0].item()
            last = self.last_checkpoint or "none written yet"
            raise TrainingDivergedError(
                f"loss became {bad} at step {step} (epoch {epoch}, batch {batch}); nothing was saved after it and the "
                f"last good checkpoint is {last}: resume from it with a lower lr or mixed_precision bf16/no"
            )
        return float(gathered.mean())

    def _check_weights(self, step: int, epoch: int, batch: int) -> None:
        """Stop every process when step ``step``'s update left a non-finite trained weight (an overflowing
        gradient from a finite loss), before the step is recorded or checkpointed."""
        bad, anywhere = self._nonfinite_anywhere()
        if anywhere:
            last = self.last_checkpoint or "none written yet"
            where = f" ({bad})" if bad else " (on another process)"
            raise TrainingDivergedError(
                f"the update of step {step} (epoch {epoch}, batch {batch}) made trained weights non-finite{where}; "
                f"nothing was saved after it and the last good checkpoint is {last}: resume from it with a lower lr or "
                "mixed_precision bf16/no"
            )

    def _nonfinite_anywhere(self) -> tuple[str | None, bool]:
        """This process's first non-finite trained weight (or None), and whether any process has one: every
        process must call it, so all of them stop together (a sharded run's shards differ per process)."""
        bad = self._nonfinite_weight()
        flags = self.accelerator.gather(torch.tensor([0.0 if bad is None else 1.0], device=self.accelerator.device))
        return bad, bool(flags.any())

    def _nonfinite_weight(self) -> str | None:
        """The name of the first trained weight holding NaN or inf (in this process's shard), or None when all
        are finite."""
        part = zero.local_part if self.deepspeed else local_view
        state = {n: part(p).detach() for n, p in self.trained_module.named_parameters() if p.requires_grad}
        finite = torch.stack([torch.isfinite(t).all() for t in state.values()])
        if bool(finite.all()):  # one device sync for all tensors
            return None
        return next(name for name, ok in zip(state, finite.tolist()) if not ok)

    def _record(self, step: int, loss: float) -> None:
        entry = {"step": step, "loss": loss, "lr": float(self.lr_scheduler.get_last_lr()[0])}
        self.history.append(entry)
        if step % self.config.log_every == 0 or step == self.config.max_steps:
            if self.accelerator.trackers:
                self.accelerator.log({"train/loss": loss, "train/lr": entry["lr"]}, step=step)
        if self.accelerator.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            with open(self.output_dir / "history.jsonl", "a", encoding="utf-8") as handle:
                handle.write(json.dumps(entry) + "\n")

    def _history_until(self, step: int) -> list[dict[str, float]]:
        """The logged steps up to ``step``; later lines (steps redone after a resume) are dropped on disk."""
        path = self.output_dir / "history.jsonl"
        if not self.accelerator.is_main_process or not path.is_file():
            return []  # the main process owns the file (and the history the summary reports)
        text = path.read_text(encoding="utf-8")
        lines = [line for line in text.splitlines() if line.strip()]
        entries, torn = [], False
        for number, line in enumerate(lines, start=1):
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                if number < len(lines):
                    raise MotionkitError(
                        f"{path}: line {number} is not JSON; fix or delete that line to resume"
                    ) from None
                torn = True  # a kill mid-write leaves the last line cut: that step is redone anyway
                logger.warning("%s: dropped its last line, cut by an interrupted write: %r", path, line[:80])
        kept = [e for e in entries if e["step"] <= step]
        if torn or len(kept) != len(entries) or (text and not text.endswith("\n")):
            with atomic_write(path) as handle:
                handle.write("".join(json.dumps(e) + "\n" for e in kept))
        return kept

    # ------------------------------------------------------------------ checkpoints, validation, export

    def denoiser_module(self) -> nn.Module:
        """The module a step runs (unwrapped): the motion UNet here."""
        return self.motion_unet

    @property
    def trained_module(self) -> nn.Module:
        """The module whose trainable parameters this run updates (checkpointed, exported)."""
        return self.adapter

    def trained_config(self) -> dict[str, Any]:
        """The trained module's config, written next to each checkpoint's weights."""
        from motionkit.formats.motionkit_format import plain_config

        return plain_config(self.adapter)

    def trainable_state(self, keep: bool = True) -> dict[str, torch.Tensor]:
        """The trained tensors, whole (gathered onto CPU in a sharded run: every process must call it then;
        ``keep=False`` there: this process only helps gather and gets an empty dict; a DeepSpeed run gives
        every process the whole fp32 master copy)."""
        if self.deepspeed:  # DeepSpeed's fp32 master copy (the module may hold half-precision or partitioned weights)
            return zero.full_trained_state(self.trained_module)
        named = [(n, p.detach()) for n, p in self.trained_module.named_parameters() if p.requires_grad]
        return full_state(named, keep) if self.shards else dict(named)

    def whole_adapter(self) -> nn.Module | None:
        """A sharded (fsdp2) or DeepSpeed run's adapter gathered into a plain module on the main process (None
        on the others): what ``export`` writes. Every process must call it."""
        from motionkit.adapter import MotionAdapter
        from motionkit.formats.motionkit_format import plain_config

        main = self.accelerator.is_main_process
        if self.deepspeed:
            state = zero.full_module_state(self.adapter, keep=main)
        else:
            state = full_state(self.adapter.state_dict().items(), keep=main)
        if not main:
            return None
        # The same structure rebuilt unsharded: the preset's layout from the config, or the LoRA'd base adapter.
        whole = self._build_adapter() if self.config.lora.enabled else MotionAdapter(**plain_config(self.adapter))
        whole.load_state_dict(state, strict=True)
        return whole

    def save_checkpoint(self) -> Path | None:
        """Write a checkpoint of the current step (every process must call it: RNG states are gathered)."""
        from accelerate.utils import gather_object

        acc = self.accelerator
        bad, anywhere = self._nonfinite_anywhere()
        if anywhere:  # a checkpoint must only ever hold weights a resume can continue from
            last = self.last_checkpoint or "none written yet"
            raise TrainingDivergedError(
                f"not writing the checkpoint of step {self.position.step}: trained weight {bad or '(on another process)'} "
                f"is not finite; the last good checkpoint is {last}"
            )
        rng_states = gather_object([serialized_rng({"loader": self.loader_generator})])
        # Gathers (collectives in a sharded run): every process takes part, only the main one keeps and writes.
        main = acc.is_main_process
        trainable = self.trainable_state(keep=main)
        folders = {}
        if self.deepspeed:  # DeepSpeed's partitions stay partitioned: each process writes its own (a collective)
            optimizer_state = None
            folders[zero.ZERO_DIR] = zero.write_engine_state(self.model, self.checkpoint_root, acc)
        elif self.shards:
            optimizer_state = full_optimizer_state(self.optimizer, keep=main)
        else:
            optimizer_state = self.optimizer.state_dict()
        path = None
        try:
            path = self._write_checkpoint(trainable, optimizer_state, rng_states, folders) if main else None
        finally:
            for folder in folders.values():  # moved into the checkpoint unless the write failed
                if main and folder.exists():
                    shutil.rmtree(folder, ignore_errors=True)
        acc.wait_for_everyone()
        self.last_checkpoint = self.checkpoint_root / f"checkpoint-{self.position.step:08d}"
        return path

    def _write_checkpoint(
        self, trainable: dict[str, torch.Tensor], optimizer_state: Any, rng_states: list[bytes], folders: dict[str, Path]
    ) -> Path:
        """The main process's part of ``save_checkpoint``: the training state and the checkpoint folder."""
        acc = self.accelerator
        scaler = getattr(acc, "scaler", None)
        training_state = {
            "optimizer": optimizer_state,
            "lr_scheduler": self.lr_scheduler.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "zero": zero.saved_layout(self.config.distributed.strategy, acc.num_processes) if self.deepspeed else None,
            "scaler": scaler.state_dict() if scaler is not None else None,
            "data_stream": (
                self.dataset.state_dict(self.position.epoch, self.position.batch)
                if isinstance(self.dataset, IterableDataset) and hasattr(self.dataset, "state_dict")
                else None
            ),
        }
        path = save_checkpoint(
            self.checkpoint_root,
            self.position,
            trainable=trainable,
            adapter_config=self.trained_config(),
            training_state=training_state,
            rng_states=list(rng_states),
            config=self.config.to_dict(),
            keep=self.config.keep_checkpoints,
            folders=folders,
        )
        return path

    def validate(self, step: int) -> list[Path]:
        """Sample the validation prompts with the current weights (main process; others wait)."""
        written: list[Path] = []
        if self.accelerator.is_main_process:
            try:
                from motionkit.pipeline.motion_pipeline import MotionPipeline
            except ImportError:
                self._log("validation skipped: motionkit.pipeline.motion_pipeline is not available")
            else:
                written = self._sample_videos(MotionPipeline, step)
        self.accelerator.wait_for_everyone()
        return written

    @torch.no_grad()
    def _sample_videos(self, pipeline_cls: Any, step: int) -> list[Path]:
        from motionkit.video_io import write_video

        val = self.config.validation
        # The pipeline injects the adapter itself (casting it to the UNet's dtype): lend it the plain UNet and
        # keep an exact copy of the fp32 weights to put back.
        saved = {k: v.detach().clone() for k, v in self.adapter.state_dict().items()}
        self.adapter.eval()
        self.motion_unet.eject()
        written = []
        try:
            pipe = pipeline_cls.from_components(self._pipeline_components(), self.adapter)
            pipe.set_progress_bar_config(disable=True)
            try:
                for i, prompt in enumerate(val.prompts):
                    frames = pipe(
                        prompt,
                        num_frames=val.num_frames,
                        height=self.config.data.size,
                        width=self.config.data.size,
                        num_inference_steps=val.num_inference_steps,
                        guidance_scale=val.guidance_scale,
                        generator=torch.Generator().manual_seed(val.seed + i),
                        output_type="np",
                    ).frames[0]
                    path = self.output_dir / "validation" / f"step-{step:08d}-{i}.mp4"
                    written.append(write_video(frames, path, fps=8, metadata={"prompt": prompt, "step": step}))
            finally:
                pipe.eject()
        finally:
            self.motion_unet.attach()
            nn.Module.to(self.adapter, dtype=torch.float32)
            self.adapter.load_state_dict(saved)
            self.adapter.train()
        if self.accelerator.trackers:
            self.accelerator.log({"validation/videos": len(written)}, step=step)
        self._log(f"validation: wrote {len(written)} videos to {self.output_dir / 'validation'}")
        return written

    def _pipeline_components(self) -> dict[str, Any]:
        from diffusers import DDIMScheduler

        base = self.base
        components = {
            "vae": base.vae,
            "text_encoder": base.text_encoder,
            "tokenizer": base.tokenizer,
            "unet": base.unet,
            "scheduler": DDIMScheduler.from_config(self.noise_scheduler.config, clip_sample=False),
        }
        if base.text_encoder_2 is not None:
            components.update(text_encoder_2=base.text_encoder_2, tokenizer_2=base.tokenizer_2)
        return components

    def _finish(self) -> TrainResult:
        acc = self.accelerator
        after = self._frozen_hashes()
        changed = [name for name, digest in self.frozen_hashes.items() if after.get(name) != digest]
        if changed:
            raise FrozenWeightsChangedError(
                f"frozen weights changed during training ({', '.join(changed)}): a trainable flag or optimizer "
                "group is wrong; do not use this run's outputs"
            )
        from accelerate.utils import gather_object

        digest = state_sha256(self.trainable_state())
        replicas = gather_object([digest])
        if len(set(replicas)) != 1:
            raise MotionkitError(f"the {len(replicas)} replicas ended with different weights: check the distributed setup")
        exported: dict[str, str] = {}
        whole = self.whole_adapter() if self.shards or self.deepspeed else None
        if acc.is_main_process:
            exported = self.export(whole) if whole is not None else self.export()
            summary = {
                "steps": self.position.step,
                "final_loss": self.history[-1]["loss"] if self.history else None,
                "frozen_hashes": self.frozen_hashes,
                "frozen_unchanged": True,
                "adapter_sha256": digest,
                "replica_sha256": list(replicas),
                "processes": acc.num_processes,
                "strategy": self.config.distributed.strategy,
                # relative to output_dir, so the summary stays right wherever the run folder moves
                "exported": {fmt: os.path.relpath(p, self.output_dir) for fmt, p in exported.items()},
            }
            with atomic_write(self.output_dir / "summary.json") as handle:
                handle.write(json.dumps(summary, indent=2))
        acc.wait_for_everyone()
        return TrainResult(self.position.step, list(self.history), self.output_dir, exported, self.frozen_hashes, digest)

    def export(self, adapter: nn.Module | None = None) -> dict[str, str]:
        """Write the trained weights (EMA weights when EMA is on) in every format of ``export_formats``;
        ``adapter``: the module to write instead of the trained one (a sharded run's ``whole_adapter``)."""
        from motionkit.formats import save_adapter

        adapter = self.adapter if adapter is None else adapter
        out: dict[str, str] = {}
        if self.ema is not None:
            self.ema.store(self.trainable)
            self.ema.copy_to(self.trainable)
        try:
            if self.config.lora.enabled:
                from motionkit.train.motion_lora import save_trained_lora

                out["motion_lora"] = str(save_trained_lora(adapter, self.output_dir / "motion_lora.safetensors"))
                return out
            targets = {
                "motionkit": self.output_dir / "adapter",
                "diffusers": self.output_dir / "adapter-diffusers",
                "animatediff": self.output_dir / "adapter-animatediff.safetensors",
            }
            for fmt in self.config.export_formats:
                out[fmt] = str(save_adapter(adapter, targets[fmt], format=fmt))
            return out
        finally:
            if self.ema is not None:
                self.ema.restore(self.trainable)

    def _frozen_hashes(self) -> dict[str, str]:
        """``weight_hashes`` of the frozen modules, each gathered whole for its turn under ZeRO-3."""
        hashes = {}
        for name, module in self._frozen_modules().items():
            with zero.gathered(module) if self.deepspeed else contextlib.nullcontext():
                hashes.update(weight_hashes({name: module}))
        return hashes

    def _log(self, message: str) -> None:
        if self.accelerator is None or self.accelerator.is_main_process:
            logger.info(message)


def _continue_adapter(
    path: str, image_cond_mask: str | None, overrides: dict[str, Any], clean_frame: bool = False
) -> nn.Module:
    """Load an adapter to train further; give it a fresh (zero) image-conditioning branch if asked and absent.

    ``image_cond_mask`` (None: no image conditioning) and ``clean_frame`` are recorded in the adapter's
    config, so sampling feeds the mask and the clean frame as the branch is trained with."""
    from motionkit.adapter import MotionAdapter
    from motionkit.formats import load_adapter
    from motionkit.formats.motionkit_format import plain_config

    adapter = load_adapter(path, torch_dtype=torch.float32, **overrides)
    if image_cond_mask is None:
        return adapter
    if adapter.image_cond_conv is None:
        grown = MotionAdapter(
            **{
                **plain_config(adapter),
                "image_cond_channels": IMAGE_COND_CHANNELS,
                "image_cond_mask": image_cond_mask,
                "clean_conditioning_frame": clean_frame,
            }
        )
        missing, unexpected = grown.load_state_dict(adapter.state_dict(), strict=False)
        if unexpected or not all(k.startswith("image_cond_conv") for k in missing):
            raise MotionkitError(f"{path}: could not add an image-conditioning branch to this adapter")
        return grown
    adapter.register_to_config(image_cond_mask=image_cond_mask, clean_conditioning_frame=clean_frame)
    return adapter


def _flat(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Trackers take scalars: nested sections become dotted keys, lists become strings."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat(value, f"{name}."))
        else:
            out[name] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return out


def train(config: TrainConfig, **kwargs: Any) -> TrainResult:
    """``Trainer(config, **kwargs).train()``."""
    return Trainer(config, **kwargs).train()
