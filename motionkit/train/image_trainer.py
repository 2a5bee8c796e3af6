"""Training a small text-to-image model (VAE, text encoder + UNet, personalized fine-tune) on captioned images.

One ``ImageTrainer`` runs one stage of ``ImageTrainConfig`` (see ``image_config`` for the stages). The images
are small, so they live in memory (and, for the diffusion stages, are encoded by the frozen VAE once).
Every random draw of step ``s`` (batch indices, posterior sample, noise, timesteps, caption dropout) comes
from a generator seeded by ``(seed, s)``: a resumed run computes what an uninterrupted one does.
Checkpoints are ``motionkit.train.checkpoint``'s atomic folders; accelerate places models and optimizer.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

from motionkit.errors import MotionkitError
from motionkit.noise_prior import with_noise_offset
from motionkit.train.checkpoint import Position, load_checkpoint, resolve_resume, save_checkpoint, serialized_rng
from motionkit.train.image_config import ImageTrainConfig
from motionkit.train.losses import diffusion_loss, prediction_target

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
_WORD = re.compile(r"[a-z]+")  # the letter runs CLIP's pre-tokenizer keeps whole


@dataclass
class ImageTrainResult:
    steps: int
    history: list[dict[str, float]]
    output: Path  # the VAE folder (stage vae) or the pipeline folder


# -- data ------------------------------------------------------------------------------------------


def load_captioned_images(folders: Iterable[str | Path], size: int) -> tuple[torch.Tensor, list[str]]:
    """Every image of ``folders`` with its ``.txt`` caption, resized to ``size`` square: uint8 ``[N, 3, S, S]``."""
    from PIL import Image

    files: list[Path] = []
    for folder in [folders] if isinstance(folders, (str, Path)) else folders:
        root = Path(folder)
        if not root.is_dir():
            raise MotionkitError(f"{root}: no such image folder; point data at a folder of images with .txt captions")
        found = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise MotionkitError(f"{root}: no images ({', '.join(IMAGE_SUFFIXES)}) in it")
        files += found
    pixels, captions = [], []
    for path in files:
        image = Image.open(path).convert("RGB")
        if image.size != (size, size):
            image = image.resize((size, size), Image.BICUBIC)
        pixels.append(np.asarray(image))
        sidecar = path.with_suffix(".txt")
        captions.append(sidecar.read_text(encoding="utf-8").strip() if sidecar.is_file() else "")
    return torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).contiguous(), captions


def to_model_range(pixels: torch.Tensor) -> torch.Tensor:
    return pixels.float() / 127.5 - 1.0


# -- text ------------------------------------------------------------------------------------------


def word_tokenizer(captions: Iterable[str], max_length: int) -> Any:
    """A CLIP BPE tokenizer whose merges spell every word of ``captions`` as one token (other text falls
    back to characters). A small text encoder learns far faster from words than from letters."""
    import tempfile

    from transformers import CLIPTokenizer

    from motionkit.tiny import byte_chars

    words = sorted({w for text in captions for w in _WORD.findall(text.lower()) if len(w) > 1})
    chars = byte_chars()
    tokens = chars + [c + "</w>" for c in chars]
    merges = _learn_merges(words)
    tokens += [a + b for a, b in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    with tempfile.TemporaryDirectory() as tmp:
        vocab, merges_file = Path(tmp, "vocab.json"), Path(tmp, "merges.txt")
        vocab.write_text(json.dumps({t: i for i, t in enumerate(tokens)}), encoding="utf-8")
        merges_file.write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
        return CLIPTokenizer(str(vocab), str(merges_file), model_max_length=max_length)


def _learn_merges(words: list[str]) -> list[tuple[str, str]]:
    """BPE learned on ``words`` until each is one symbol: the most frequent adjacent pair merges first (ties
    by name). Applying merges by this rank replays the learning, so every word comes back as one token."""
    from collections import Counter

    spelled = [list(w[:-1]) + [w[-1] + "</w>"] for w in words]
    merges: list[tuple[str, str]] = []
    while True:
        pairs = Counter(pair for symbols in spelled for pair in zip(symbols, symbols[1:]))
        if not pairs:
            return merges
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        merges.append(best)
        for k, symbols in enumerate(spelled):
            out, i = [], 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    out.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    out.append(symbols[i])
                    i += 1
            spelled[k] = out


def _text_encoder(tokenizer: Any, options: dict[str, Any], seed: int) -> nn.Module:
    from transformers import CLIPTextConfig, CLIPTextModel

    defaults = dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_hidden_layers=2)
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **{**defaults, **options},
    )
    torch.manual_seed(seed)
    return CLIPTextModel(config)


def _token_ids(tokenizer: Any, prompts: list[str]) -> torch.Tensor:
    return tokenizer(
        prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids


# -- the trainer -----------------------------------------------------------------------------------


class ImageTrainer:
    """Run one stage of ``config``; ``train()`` returns where the model was written."""

    def __init__(self, config: ImageTrainConfig) -> None:
        self.config = config
        self.output_dir = Path(config.output_dir)
        self.checkpoint_root = self.output_dir / "checkpoints"
        self.history: list[dict[str, float]] = []
        self.position = Position()
        self.accelerator: Any = None

    # ------------------------------------------------------------------ setup

    def setup(self) -> "ImageTrainer":
        if self.accelerator is not None:
            return self
        from accelerate import Accelerator
        from diffusers.optimization import get_scheduler

        cfg = self.config
        self.accelerator = Accelerator(cpu=cfg.cpu)
        torch.manual_seed(cfg.seed)
        self.pixels, self.captions = load_captioned_images(cfg.data, cfg.size)
        self.modules: dict[str, nn.Module] = {}  # every model of the stage, trained or not
        if cfg.stage == "vae":
            self._setup_vae()
        else:
            self._setup_diffusion()
        groups = [
            {"params": [p for p in module.parameters() if p.requires_grad], "lr": self._lr(name)}
            for name, module in self.trained.items()
        ]
        self.optimizer = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.adam_weight_decay)
        self.lr_scheduler = get_scheduler(
            cfg.lr_scheduler, self.optimizer, num_warmup_steps=cfg.lr_warmup_steps, num_training_steps=max(cfg.max_steps, 1)
        )
        names = list(self.trained)
        prepared = self.accelerator.prepare(*self.trained.values(), self.optimizer)
        self.trained = dict(zip(names, prepared[:-1]))
        self.optimizer = prepared[-1]
        self._resume()
        return self

    def _lr(self, name: str) -> float:
        cfg = self.config
        return cfg.text_lr if name == "text_encoder" and cfg.text_lr is not None else cfg.lr

    def _setup_vae(self) -> None:
        from diffusers import AutoencoderKL

        options = {"in_channels": 3, "out_channels": 3, "latent_channels": 4, "sample_size": self.config.size}
        options.update(self.config.vae_config)
        blocks = len(options.get("block_out_channels", (64,)))
        options.setdefault("down_block_types", ("DownEncoderBlock2D",) * blocks)
        options.setdefault("up_block_types", ("UpDecoderBlock2D",) * blocks)
        self.modules["vae"] = AutoencoderKL(**options).train()
        self.trained = {"vae": self.modules["vae"]}

    def _setup_diffusion(self) -> None:
        from diffusers import DDPMScheduler

        cfg = self.config
        if cfg.stage == "text_unet":
            from diffusers import AutoencoderKL, UNet2DConditionModel

            vae = AutoencoderKL.from_pretrained(cfg.vae, local_files_only=True, torch_dtype=torch.float32)
            tokenizer = word_tokenizer(self.captions, cfg.max_text_length)
            text_encoder = _text_encoder(tokenizer, dict(cfg.text_config), cfg.seed + 1)
            options = {"in_channels": vae.config.latent_channels, "out_channels": vae.config.latent_channels}
            factor = 2 ** (len(vae.config.block_out_channels) - 1)
            options.update(sample_size=cfg.size // factor, **cfg.unet_config)
            options["cross_attention_dim"] = text_encoder.config.hidden_size
            torch.manual_seed(cfg.seed)
            unet = UNet2DConditionModel(**options)
            self.trained = {"unet": unet.train(), "text_encoder": text_encoder.train()}
        else:
            from motionkit.pipeline.loading import load_base

            base = load_base(Path(cfg.base), dtype=torch.float32)
            vae, tokenizer, text_encoder, unet = base["vae"], base["tokenizer"], base["text_encoder"], base["unet"]
            text_encoder.requires_grad_(False).eval()
            self.trained = {"unet": unet.train()}
        vae.requires_grad_(False).eval()
        self.modules.update(vae=vae, text_encoder=text_encoder, unet=unet)
        self.tokenizer = tokenizer
        self.noise_scheduler = DDPMScheduler(
            num_train_timesteps=cfg.num_train_timesteps,
            beta_start=cfg.beta_start,
            beta_end=cfg.beta_end,
            beta_schedule="linear",
            prediction_type="epsilon",
        )
        self.token_ids = _token_ids(tokenizer, self.captions)
        self.empty_ids = _token_ids(tokenizer, [""])[0]
        self.latent_mean, self.latent_std = self._encode_all(vae)

    @torch.no_grad()
    def _encode_all(self, vae: nn.Module, chunk: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
        """The VAE posterior (mean, std) of every image, once: the diffusion stages never run the encoder again."""
        means, stds = [], []
        for start in range(0, len(self.pixels), chunk):
            dist = vae.encode(to_model_range(self.pixels[start : start + chunk])).latent_dist
            means.append(dist.mean)
            stds.append(dist.std)
        return torch.cat(means), torch.cat(stds)

    def _resume(self) -> None:
        path = resolve_resume(self.checkpoint_root, self.config.resume_from)
        if path is None:
            return
        ckpt = load_checkpoint(path)
        params = {f"{name}.{k}": p for name, m in self.trained.items() for k, p in _unwrap(m).named_parameters()}
        if set(ckpt.trainable) != set(params):
            raise MotionkitError(f"{path}: its weights do not match this stage's models; resume with the config it was written with")
        with torch.no_grad():
            for key, tensor in ckpt.trainable.items():
                params[key].copy_(tensor)
        self.optimizer.load_state_dict(ckpt.training_state["optimizer"])
        self.lr_scheduler.load_state_dict(ckpt.training_state["lr_scheduler"])
        self.position = ckpt.position
        self.history = [e for e in ckpt.training_state.get("history", []) if e["step"] <= ckpt.position.step]
        logger.info("resumed from %s at step %d", path, ckpt.position.step)

    # ------------------------------------------------------------------ one step

    def _generator(self, step: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.config.seed * 1_000_003 + step)

    def compute_loss(self, step: int) -> torch.Tensor:
        """The loss of step ``step``'s batch (all randomness from ``step``'s generator)."""
        cfg = self.config
        g = self._generator(step)
        index = torch.randint(0, len(self.pixels), (cfg.batch_size,), generator=g)
        device = self.accelerator.device
        if cfg.stage == "vae":
            pixels = self.pixels[index]
            if cfg.vae_crop:
                top, left = (int(v) for v in torch.randint(0, cfg.size - cfg.vae_crop + 1, (2,), generator=g))
                pixels = pixels[:, :, top : top + cfg.vae_crop, left : left + cfg.vae_crop]
            return self._vae_loss(to_model_range(pixels).to(device), g)
        eps = torch.randn(self.latent_mean[index].shape, generator=g)
        scale = self.modules["vae"].config.scaling_factor
        latents = ((self.latent_mean[index] + self.latent_std[index] * eps) * scale).to(device)
        noise = torch.randn(latents.shape, generator=g)
        timesteps = torch.randint(0, cfg.num_train_timesteps, (cfg.batch_size,), generator=g).to(device)
        dropped = torch.rand(cfg.batch_size, generator=g) < cfg.caption_dropout
        # Drawn last, so an offset leaves every other draw of the step as it was.
        noise = with_noise_offset(noise, cfg.noise_offset, g).to(device)
        ids = torch.where(dropped[:, None], self.empty_ids[None], self.token_ids[index]).to(device)
        text_encoder = self.trained.get("text_encoder", self.modules["text_encoder"])
        hidden = text_encoder(ids)[0]
        noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
        prediction = self.trained["unet"](noisy, timesteps, hidden).sample
        return diffusion_loss(prediction, prediction_target(self.noise_scheduler, latents, noise, timesteps))

    def _vae_loss(self, pixels: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        vae = self.trained["vae"]
        dist = vae.encode(pixels).latent_dist
        z = dist.mean + dist.std * torch.randn(dist.mean.shape, generator=g).to(pixels.device)
        recon = vae.decode(z).sample
        # L1 keeps edges sharp, MSE penalises the rare large error; the KL only keeps the latent bounded.
        kl = dist.kl().mean() / dist.mean[0].numel()
        return (recon - pixels).abs().mean() + ((recon - pixels) ** 2).mean() + self.config.kl_weight * kl

    # ------------------------------------------------------------------ the loop

    def train(self) -> ImageTrainResult:
        from tqdm.auto import tqdm

        self.setup()
        cfg, acc = self.config, self.accelerator
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        progress = tqdm(total=cfg.max_steps, initial=self.position.step, desc=f"train {cfg.stage}", unit="step")
        try:
            while self.position.step < cfg.max_steps:
                step = self.position.step + 1
                loss = self.compute_loss(step)
                if not torch.isfinite(loss):
                    raise MotionkitError(f"loss became {loss.item()} at step {step}: lower lr and resume from the last checkpoint")
                acc.backward(loss)
                if cfg.max_grad_norm > 0:
                    acc.clip_grad_norm_(params, cfg.max_grad_norm)
                self.optimizer.step()
                self.lr_scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.position = Position(step)
                self.history.append({"step": step, "loss": loss.item()})
                progress.update(1)
                if step % cfg.log_every == 0 or step == cfg.max_steps:
                    recent = [e["loss"] for e in self.history[-cfg.log_every :]]
                    progress.set_postfix(loss=f"{sum(recent) / len(recent):.4f}")
                    logger.info("step %d loss %.4f", step, sum(recent) / len(recent))
                if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                    self.save_checkpoint()
        finally:
            progress.close()
        self.save_checkpoint()
        output = self.export()
        (self.output_dir / "history.json").write_text(json.dumps(self.history), encoding="utf-8")
        return ImageTrainResult(self.position.step, list(self.history), output)

    def save_checkpoint(self) -> Path:
        trainable = {f"{name}.{k}": p.detach() for name, m in self.trained.items() for k, p in _unwrap(m).named_parameters()}
        return save_checkpoint(
            self.checkpoint_root,
            self.position,
            trainable=trainable,
            adapter_config={name: _config_dict(_unwrap(m)) for name, m in self.trained.items()},
            training_state={
                "optimizer": self.optimizer.state_dict(),
                "lr_scheduler": self.lr_scheduler.state_dict(),
                "history": self.history,
            },
            rng_states=[serialized_rng()],
            config=self.config.to_dict(),
            keep=self.config.keep_checkpoints,
        )

    # ------------------------------------------------------------------ outputs

    @torch.no_grad()
    def export(self) -> Path:
        """The VAE folder (stage vae, with its measured scaling_factor) or the whole pipeline folder."""
        dtype = torch.float16 if self.config.save_dtype == "float16" else torch.float32
        if self.config.stage == "vae":
            vae = _unwrap(self.trained["vae"]).eval()
            vae.register_to_config(scaling_factor=self.latent_scale(vae))
            target = self.output_dir / "vae"
            nn.Module.to(vae, dtype=dtype).save_pretrained(target)
            return target
        pipe = self.pipeline()
        if self.config.sample_prompts:
            sample_grid(pipe, list(self.config.sample_prompts), seed=self.config.seed).save(self.output_dir / "samples.png")
        target = self.output_dir / "pipeline"
        for name in ("unet", "vae"):
            # The text encoder stays float32 (it is tiny): transformers loads weights in their stored dtype,
            # diffusers in float32, and a pipeline loaded without torch_dtype must agree with itself.
            nn.Module.to(getattr(pipe, name), dtype=dtype)
        pipe.save_pretrained(target)
        return target

    @torch.no_grad()
    def latent_scale(self, vae: nn.Module, limit: int = 512) -> float:
        """1 / std of the VAE's latents on the data (SD's 0.18215, measured here): unit-variance latents."""
        dist = vae.encode(to_model_range(self.pixels[:limit]).to(self.accelerator.device)).latent_dist
        return float(1.0 / dist.sample(generator=torch.Generator().manual_seed(0)).std())

    def pipeline(self) -> Any:
        """The trained components as a diffusers ``StableDiffusionPipeline`` (DDIM, AnimateDiff's settings)."""
        from diffusers import StableDiffusionPipeline

        from motionkit.tiny import tiny_scheduler

        parts = {**self.modules, **{k: _unwrap(v) for k, v in self.trained.items()}}
        for module in parts.values():
            module.eval()
        return StableDiffusionPipeline(
            vae=parts["vae"],
            text_encoder=parts["text_encoder"],
            tokenizer=self.tokenizer,
            unet=parts["unet"],
            scheduler=tiny_scheduler(),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )


def _config_dict(module: nn.Module) -> dict[str, Any]:
    config = module.config  # diffusers: a FrozenDict; transformers: a PretrainedConfig
    return config.to_dict() if hasattr(config, "to_dict") else dict(config)


def _unwrap(module: nn.Module) -> nn.Module:
    return getattr(module, "module", module)  # accelerate wraps models under DDP


@torch.no_grad()
def sample_grid(pipe: Any, prompts: list[str], seed: int = 0, per_prompt: int = 4, steps: int = 25) -> Any:
    """A PIL grid: one row of ``per_prompt`` samples per prompt (guidance 4, DDIM)."""
    from PIL import Image

    pipe.set_progress_bar_config(disable=True)
    rows = []
    for i, prompt in enumerate(prompts):
        images = pipe(
            [prompt] * per_prompt,
            num_inference_steps=steps,
            guidance_scale=4.0,
            generator=torch.Generator().manual_seed(seed + i),
            output_type="np",
        ).images
        rows.append(np.concatenate(list(images), axis=1))
    grid = (np.concatenate(rows, axis=0) * 255).round().clip(0, 255).astype(np.uint8)
    return Image.fromarray(grid)


def train_image(config: ImageTrainConfig) -> ImageTrainResult:
    """``ImageTrainer(config).train()``."""
    return ImageTrainer(config).train()
