"""``ImageTrainConfig``: one stage of training a small text-to-image model, readable from YAML.

Stages, run in this order to build a base model and its personalized variants:
- ``vae``: an ``AutoencoderKL`` on the images (L1 + MSE reconstruction, a small KL); its
  ``scaling_factor`` is measured on the data (1 / std of the latents) and written into its config.
- ``text_unet``: a ``CLIPTextModel`` (with a tokenizer whose words come from the captions) and a
  ``UNet2DConditionModel`` trained jointly on captioned images through the frozen ``vae``: epsilon MSE,
  DDPM linear betas, captions dropped with ``caption_dropout`` so classifier-free guidance works.
- ``finetune``: the UNet of the pipeline ``base`` fine-tuned on other images (text encoder and VAE frozen):
  a personalized checkpoint of the same family.

``vae`` and ``text_unet`` write diffusers folders; ``text_unet`` and ``finetune`` write whole pipeline
folders (``model_index.json`` plus components) that ``motionkit.pipeline.loading.load_base`` reads.
The section parsing, override syntax and one-line errors are ``TrainConfig``'s (``motionkit.train.config``).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from motionkit.errors import MotionkitError
from motionkit.noise_prior import check_noise_offset
from motionkit.train.config import build_section, plain_value, require, apply_override

STAGES = ("vae", "text_unet", "finetune")
SAVE_DTYPES = ("float32", "float16")
_PATH_KEYS = ("data", "vae", "base", "output_dir", "resume_from")


@dataclass(frozen=True)
class ImageTrainConfig:
    stage: str = ""
    data: tuple[str, ...] = ()  # folders of images, each image with a ``.txt`` caption sidecar
    size: int = 64
    vae: str | None = None  # text_unet: the trained VAE folder
    base: str | None = None  # finetune: the pipeline folder whose UNet is fine-tuned
    # architectures (vae / text_unet): keyword arguments of AutoencoderKL, UNet2DConditionModel, CLIPTextConfig
    vae_config: Mapping[str, Any] = field(default_factory=dict)
    unet_config: Mapping[str, Any] = field(default_factory=dict)
    text_config: Mapping[str, Any] = field(default_factory=dict)
    max_text_length: int = 77
    # objective
    kl_weight: float = 1e-4
    vae_crop: int = 0  # vae: train on random square crops of this size (0: whole images); it is convolutional
    caption_dropout: float = 0.1
    noise_offset: float = 0.0  # text_unet / finetune: offset noise (motionkit.noise_prior.with_noise_offset); 0: off
    num_train_timesteps: int = 1000
    beta_start: float = 0.00085
    beta_end: float = 0.012
    # optimisation
    lr: float = 1e-3
    text_lr: float | None = None  # the text encoder's (text_unet); None: lr
    adam_weight_decay: float = 1e-2
    batch_size: int = 32
    max_steps: int = 1000
    lr_warmup_steps: int = 0
    lr_scheduler: str = "constant"
    max_grad_norm: float = 1.0
    # bookkeeping
    seed: int = 0
    cpu: bool = False
    output_dir: str = "motionkit-out/train-image"
    checkpoint_every: int = 0  # 0: only at the end
    keep_checkpoints: int = 2
    resume_from: str | None = None
    log_every: int = 25
    save_dtype: str = "float32"
    sample_prompts: tuple[str, ...] = ()  # written as samples.png next to the model at the end

    def __post_init__(self) -> None:
        require(self.stage in STAGES, f"stage {self.stage!r} is not one of {', '.join(STAGES)}")
        require(bool(self.data), "data must name a folder (or a list of folders) of images with .txt captions")
        require(self.size >= 8 and self.size % 8 == 0, f"size must be a multiple of 8, got {self.size}")
        require(self.stage != "text_unet" or bool(self.vae), "stage text_unet needs vae: the trained VAE folder")
        require(self.stage != "finetune" or bool(self.base), "stage finetune needs base: the pipeline folder to fine-tune")
        require(self.lr > 0, f"lr must be > 0, got {self.lr}")
        require(self.text_lr is None or self.text_lr > 0, f"text_lr must be > 0, got {self.text_lr}")
        require(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        require(self.max_steps >= 0, f"max_steps must be >= 0, got {self.max_steps}")
        require(
            self.vae_crop == 0 or (8 <= self.vae_crop <= self.size and self.vae_crop % 8 == 0),
            f"vae_crop must be 0 or a multiple of 8 up to size, got {self.vae_crop}",
        )
        require(self.kl_weight >= 0, f"kl_weight must be >= 0, got {self.kl_weight}")
        require(0.0 <= self.caption_dropout <= 1.0, f"caption_dropout must be in [0, 1], got {self.caption_dropout}")
        check_noise_offset(self.noise_offset)
        require(0 < self.beta_start < self.beta_end < 1, "betas must satisfy 0 < beta_start < beta_end < 1")
        require(self.max_text_length >= 8, f"max_text_length must be >= 8, got {self.max_text_length}")
        require(self.checkpoint_every >= 0, "checkpoint_every must be >= 0 (0: only at the end)")
        require(self.keep_checkpoints >= 1, "keep_checkpoints must be >= 1")
        require(self.log_every >= 1, "log_every must be >= 1")
        require(self.save_dtype in SAVE_DTYPES, f"save_dtype {self.save_dtype!r} is not one of {', '.join(SAVE_DTYPES)}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "ImageTrainConfig":
        return build_section(cls, values, "")

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str], overrides: list[str] | None = None) -> "ImageTrainConfig":
        """Read ``path``; its relative paths resolve against the file's folder; ``key=value`` overrides on top."""
        import yaml

        path = Path(path)
        if not path.is_file():
            raise MotionkitError(f"{path}: no such image training config; pass --config with a YAML file")
        try:
            values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError:
            raise MotionkitError(f"{path}: not valid YAML: fix the syntax") from None
        if not isinstance(values, dict):
            raise MotionkitError(f"{path}: an image training config is a mapping of keys to values")
        for key in _PATH_KEYS:
            value = values.get(key)
            if isinstance(value, list):
                values[key] = [_resolve(v, path.parent) for v in value]
            elif isinstance(value, str) and value and not (key == "resume_from" and value == "latest"):
                values[key] = _resolve(value, path.parent)
        for item in overrides or []:
            apply_override(values, item)
        return cls.from_dict(values)

    def to_dict(self) -> dict[str, Any]:
        return plain_value(dataclasses.asdict(self))


def _resolve(value: str, root: Path) -> str:
    """Config-relative paths become absolute, so a config runs the same from any working folder."""
    expanded = Path(os.path.expanduser(str(value)))
    return str(expanded if expanded.is_absolute() else root / expanded)
