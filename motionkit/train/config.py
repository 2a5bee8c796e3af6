"""``TrainConfig``: everything a training run needs, validated once, readable from YAML.

Defaults follow the AnimateDiff motion-training recipe (``configs/training/v1/training.yaml``): AdamW
lr 1e-4 (0.9, 0.999, wd 1e-2), 16 frames 4 apart at 256 px, batch 4, gradient clip 1.0, linear betas
0.00085-0.012 over 1000 steps, epsilon prediction, caption dropout 0.1, constant LR.

Nested sections (``data``, ``image_cond``, ``encoder``, ``lora``, ``validation``) are frozen dataclasses too, so a
config is a value: it is written next to every checkpoint and compared with ``==``.
Overrides are ``key=value`` strings with dotted keys for sections: ``lr=3e-5``, ``data.size=512``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, get_type_hints

from motionkit.errors import MotionkitError
from motionkit.noise_prior import check_noise_correlation, check_noise_offset

MIXED_PRECISION = ("no", "fp16", "bf16")
PREDICTION_TYPES = ("auto", "epsilon", "v_prediction")
EXPORT_FORMATS = ("motionkit", "diffusers", "animatediff")
TRACKERS = ("tensorboard", "wandb")
TIMESTEP_SAMPLING = ("uniform", "logit_normal", "mixed")
LOSS_WEIGHTING = ("none", "min_snr", "v")
ENCODER_KINDS = ("sparsectrl_rgb", "controlnet")
STRATEGIES = ("ddp", "fsdp2", "zero2", "zero3")
# motionkit.modules.recompute.RECOMPUTE_MODES, named here so reading a config imports no torch.
RECOMPUTE = ("none", "cheap", "feed_forward")


def require(ok: bool, message: str) -> None:
    if not ok:
        raise MotionkitError(message)


def _probability(value: float, name: str) -> None:
    require(0.0 <= value <= 1.0, f"{name} must be a probability in [0, 1], got {value}")


@dataclass(frozen=True)
class DataConfig:
    """Where clips come from (exactly one of ``manifest``, ``folder``, ``csv``, ``shards``) and how they are cut."""

    manifest: str | None = None
    shards: str | None = None  # folder written by ``motionkit shard``: streamed, split by process and worker
    folder: str | None = None
    csv: str | None = None
    video_dir: str | None = None  # the videos a ``csv`` names (WebVid layout)
    n_frames: int = 16
    stride: int = 4
    size: int = 256
    flip_prob: float = 0.5
    caption_dropout: float = 0.1
    latent_cache: str | None = None  # folder of pre-encoded VAE latents (see LatentCacheDataset)
    num_workers: int = 0
    shuffle: bool = True
    caption_contains: str | None = None  # keep only clips whose caption holds this text (any case)
    caption_remove: str | None = None  # take this text out of every caption (a MotionLoRA's move words)

    def __post_init__(self) -> None:
        sources = [s for s in (self.manifest, self.folder, self.csv, self.shards) if s]
        require(len(sources) <= 1, "data: give one of manifest, folder, csv or shards, not several")
        require(not self.csv or bool(self.video_dir), "data.csv needs data.video_dir (the folder of the CSV's videos)")
        require(self.n_frames >= 1, f"data.n_frames must be >= 1, got {self.n_frames}")
        require(self.stride >= 1, f"data.stride must be >= 1, got {self.stride}")
        require(self.size >= 8 and self.size % 8 == 0, f"data.size must be a multiple of 8, got {self.size}")
        require(self.num_workers >= 0, f"data.num_workers must be >= 0, got {self.num_workers}")
        _probability(self.flip_prob, "data.flip_prob")
        _probability(self.caption_dropout, "data.caption_dropout")
        require(
            self.caption_contains is None or bool(self.caption_contains.strip()),
            "data.caption_contains is empty: give the text the kept clips' captions hold, or remove the key",
        )
        require(
            self.caption_remove is None or bool(self.caption_remove.strip()),
            "data.caption_remove is empty: give the text to take out of the captions, or remove the key",
        )
        require(
            not (self.caption_remove and self.shards),
            "data.caption_remove edits manifest, folder and csv captions; shards keep the captions they were written with",
        )
        require(
            not (self.caption_contains and self.shards),
            "data.caption_contains filters manifest, folder and csv sources; shards are filtered when written "
            "(motionkit shard)",
        )

    @property
    def has_source(self) -> bool:
        return bool(self.manifest or self.folder or self.csv or self.shards)


@dataclass(frozen=True)
class ImageCondConfig:
    """Image-to-video training (PIA-style): a random frame of each clip conditions the others.

    ``noise_aug``: the conditioning latent gets ``s * randn`` added with ``s ~ U(noise_aug)`` (SVD's
    conditioning augmentation, moved to latent space); ``cond_dropout``: probability of a zeroed
    condition, which is also what unconditional (text-to-video) sampling feeds (PIA uses 0.2).
    ``mask``: ``one_hot`` (1 on the conditioning frame, 0 elsewhere) or ``pia`` (a random one of PIA's
    ``motion_scale`` presets around the conditioning frame, as ``MotionPipeline`` feeds at sampling time).
    ``first_frame_prob``: probability that frame 0 conditions (sampling always conditions frame 0); the
    rest of the time a uniformly random frame does (0: always random, the original recipe).
    ``joint_dropout``: probability of dropping the caption and the image together, on top of the separate
    ``data.caption_dropout`` and ``cond_dropout``: the no-text, no-image input classifier-free guidance
    queries at every sampling step.
    ``clean_frame``: the conditioning frame also enters the clip itself clean, at timestep 0, and is left
    out of the loss (I2V-Adapter's and Wan's first-frame conditioning): the motion modules learn to carry
    the image to the other frames. Recorded in the adapter (``clean_conditioning_frame``), so sampling
    feeds the clean frame the same way.
    """

    enabled: bool = False
    noise_aug: tuple[float, float] = (0.0, 0.1)
    cond_dropout: float = 0.2
    mask: str = "one_hot"
    first_frame_prob: float = 0.0
    joint_dropout: float = 0.0
    clean_frame: bool = False

    def __post_init__(self) -> None:
        _check_noise_aug(self.noise_aug, "image_cond")
        _probability(self.cond_dropout, "image_cond.cond_dropout")
        _probability(self.first_frame_prob, "image_cond.first_frame_prob")
        _probability(self.joint_dropout, "image_cond.joint_dropout")
        require(self.mask in ("one_hot", "pia"), f"image_cond.mask {self.mask!r} is not one_hot or pia")


def _check_noise_aug(noise_aug: tuple[float, ...], section: str) -> None:
    require(len(noise_aug) == 2, f"{section}.noise_aug must be a range [low, high], got {noise_aug}")
    lo, hi = noise_aug
    require(0.0 <= lo <= hi, f"{section}.noise_aug must be a range [low, high] with 0 <= low <= high, got {noise_aug}")


@dataclass(frozen=True)
class EncoderConfig:
    """Train a condition encoder with the base UNet and the motion adapter ``motion_adapter`` frozen.

    ``kind``:
    - ``sparsectrl_rgb`` (default): diffusers' ``SparseControlNetModel`` (AnimateDiff v3 SparseCtrl, RGB
      variant). It reads VAE latents of sparse keyframes plus a mask channel (1 on keyframes) and adds
      residuals to the frozen UNet's down and mid blocks. Per clip the keyframes are frame 0 alone with
      probability ``first_frame_prob``, frame 0 and the last frame with ``first_last_prob``, else a random
      subset of 1..``max_keyframes`` frames; ``noise_aug``: as in ``image_cond``.
    - ``controlnet``: diffusers' ``ControlNetModel`` run on every frame (frames flattened to ``B*F``), its
      condition a per-frame control map in pixels (depth, edges, ...) read from ``control_dir``: one video
      per clip with the clip's file stem and frame count (``videos/clip_00001.mp4`` pairs with
      ``control_dir/clip_00001.mp4``), cut, resized and flipped exactly as the clip is.
      ``conditioning_embedding_out_channels``: the widths of the convolutions that bring the map down to
      latent size; one stride-2 step between each pair, so their count is log2(VAE factor) + 1 (4 for
      SD's factor 8). ``zero_map_embedding``: the map encoder's last convolution starts at zero (the
      ControlNet paper's and diffusers' init); false starts it random, so the map reaches the blocks from
      the first step (the zero output convolutions alone keep step 0 a no-op): short runs learn to use it.

    Both kinds start their down and mid blocks as copies of the UNet's (``init_from_unet``) and their
    output convolutions at zero (no effect at step 0). ``cond_dropout``: no condition (no keyframes; a
    black control map); ``joint_dropout``: no condition and no caption together.
    ``conditioning_scale``: the residuals' scale, as ``controlnet_conditioning_scale`` feeds at sampling.
    ``init_from``: a trained encoder of the same kind (a diffusers folder: ``SparseControlNetModel`` or
    ``ControlNetModel``) to start from instead, e.g. to train it on against another adapter or recipe; it must
    fit the shape built from the base.
    """

    enabled: bool = False
    kind: str = "sparsectrl_rgb"
    motion_adapter: str | None = None
    init_from_unet: bool = True
    # sparsectrl_rgb: which frames condition
    first_frame_prob: float = 0.7
    first_last_prob: float = 0.15
    max_keyframes: int = 3
    noise_aug: tuple[float, float] = (0.0, 0.05)
    # controlnet: where the control maps are, and the size of the map encoder
    control_dir: str | None = None
    conditioning_embedding_out_channels: tuple[int, ...] = (16, 32, 96, 256)
    zero_map_embedding: bool = True
    # both
    cond_dropout: float = 0.1
    joint_dropout: float = 0.1
    conditioning_scale: float = 1.0
    init_from: str | None = None

    def __post_init__(self) -> None:
        require(
            not self.enabled or bool(self.motion_adapter),
            "encoder.enabled needs encoder.motion_adapter: the frozen motion adapter the encoder trains with",
        )
        _probability(self.first_frame_prob, "encoder.first_frame_prob")
        _probability(self.first_last_prob, "encoder.first_last_prob")
        require(
            self.first_frame_prob + self.first_last_prob <= 1.0,
            "encoder.first_frame_prob + encoder.first_last_prob must be <= 1 (the rest is random subsets)",
        )
        require(self.max_keyframes >= 1, f"encoder.max_keyframes must be >= 1, got {self.max_keyframes}")
        _check_noise_aug(self.noise_aug, "encoder")
        _probability(self.cond_dropout, "encoder.cond_dropout")
        _probability(self.joint_dropout, "encoder.joint_dropout")
        require(self.conditioning_scale > 0, f"encoder.conditioning_scale must be > 0, got {self.conditioning_scale}")
        require(
            self.kind in ENCODER_KINDS, f"encoder.kind {self.kind!r} is not one of {', '.join(ENCODER_KINDS)}"
        )
        if self.kind == "controlnet":
            require(
                not self.enabled or bool(self.control_dir),
                "encoder.kind controlnet needs encoder.control_dir: the folder of control map videos "
                "(one per clip, same file stem)",
            )
        else:
            require(
                self.control_dir is None,
                "encoder.control_dir is read by encoder.kind controlnet only: set kind: controlnet or remove it",
            )
        widths = self.conditioning_embedding_out_channels
        require(
            len(widths) >= 1 and all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in widths),
            f"encoder.conditioning_embedding_out_channels must be a list of positive integers, got {list(widths)}",
        )


@dataclass(frozen=True)
class LoRAConfig:
    """MotionLoRA: train rank-``rank`` updates of the temporal attentions of a frozen ``base_adapter``."""

    enabled: bool = False
    rank: int = 16
    alpha: float = 16.0
    base_adapter: str | None = None

    def __post_init__(self) -> None:
        require(self.rank >= 1, f"lora.rank must be >= 1, got {self.rank}")
        require(self.alpha > 0, f"lora.alpha must be > 0, got {self.alpha}")
        require(
            not self.enabled or bool(self.base_adapter),
            "lora.enabled needs lora.base_adapter: the motion adapter whose temporal attention the LoRA adapts",
        )


@dataclass(frozen=True)
class DistributedConfig:
    """How several processes share a run (``accelerate launch`` starts them; see ``train/sharding.py``).

    ``ddp``: every process holds the whole model and averages gradients (one process: plain training).
    ``fsdp2``: torch's ``fully_shard`` splits the frozen UNet, the adapter, its gradients and AdamW's state
    across the processes (gloo on CPU, NCCL on GPUs); checkpoints and exports hold the gathered weights, so
    they are the same files a ``ddp`` run writes. ``zero2``/``zero3``: DeepSpeed ZeRO through accelerate
    (``train/zero.py``), CUDA GPUs only: ZeRO-2 partitions gradients and AdamW's state, ZeRO-3 the weights
    too; checkpoints add DeepSpeed's own state and resume in the same strategy and process count.
    """

    strategy: str = "ddp"

    def __post_init__(self) -> None:
        require(
            self.strategy in STRATEGIES,
            f"distributed.strategy {self.strategy!r} is not one of {', '.join(STRATEGIES)}",
        )

    @property
    def shards(self) -> bool:
        return self.strategy == "fsdp2"

    @property
    def uses_deepspeed(self) -> bool:
        return self.strategy in ("zero2", "zero3")


@dataclass(frozen=True)
class ValidationConfig:
    """Sample videos every ``every`` steps (0: never) through ``motionkit.pipeline``."""

    every: int = 0
    prompts: tuple[str, ...] = ("a camera panning over a landscape",)
    num_frames: int = 16
    num_inference_steps: int = 25
    guidance_scale: float = 7.5
    seed: int = 0

    def __post_init__(self) -> None:
        require(self.every >= 0, f"validation.every must be >= 0, got {self.every}")
        require(self.num_inference_steps >= 1, "validation.num_inference_steps must be >= 1")


@dataclass(frozen=True)
class TrainConfig:
    # what to train
    base: str = ""  # diffusers folder or single-file checkpoint of the image model
    base_config: str | None = None  # diffusers-format config folder for a single-file base of unusual shape
    adapter: str = "motionkit-sd15"  # preset name, or path of an adapter to continue training
    adapter_overrides: Mapping[str, Any] = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    image_cond: ImageCondConfig = field(default_factory=ImageCondConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    # optimisation
    lr: float = 1e-4
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_weight_decay: float = 1e-2
    adam_epsilon: float = 1e-8
    batch_size: int = 4  # per process; the global batch is batch_size x processes x accumulation
    gradient_accumulation_steps: int = 1
    max_grad_norm: float = 1.0
    lr_scheduler: str = "constant"  # any name diffusers' get_scheduler knows
    lr_warmup_steps: int = 0
    max_steps: int = 100_000
    # noise schedule
    num_train_timesteps: int = 1000
    beta_start: float = 0.00085
    beta_end: float = 0.012
    beta_schedule: str = "linear"
    prediction_type: str = "auto"  # auto: follow the base scheduler (v_prediction for SD 2.x 768-v)
    # which timesteps train, and how much each one's error counts (see motionkit/train/timesteps.py)
    timestep_sampling: str = "uniform"  # uniform | logit_normal | mixed (uniform_share of uniform, rest logit-normal)
    logit_normal_mean: float = 0.0  # > 0 leans towards high noise
    logit_normal_std: float = 1.0
    uniform_share: float = 0.5
    loss_weighting: str = "none"  # none | min_snr | v
    min_snr_gamma: float = 5.0
    max_loss_weight: float = 20.0  # cap of the ``v`` weighting (1 + 1/SNR grows to ~600 at t = 999)
    # correlation of the training noise between a clip's frames (motionkit.noise_prior; sample with the same)
    noise_correlation: float = 0.0
    # offset noise: one random value per clip and channel added to all of its training noise (0: off)
    noise_offset: float = 0.0
    # memory and speed
    mixed_precision: str = "no"
    cpu: bool = False  # run on CPU even beside a GPU; with several processes that is DDP over gloo
    gradient_checkpointing: bool = False
    # what the motion modules rerun in backward instead of keeping (same gradients): none | cheap | feed_forward
    recompute: str = "none"
    # motion modules through torch.compile (inductor; the first steps of each shape compile; same gradients)
    compile_motion_modules: bool = False
    # EMA of the trained weights (exported instead of the raw ones when on)
    ema: bool = False
    ema_decay: float = 0.9999
    # bookkeeping
    seed: int = 42
    output_dir: str = "motionkit-out/train"
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    resume_from: str | None = None  # "latest" or a checkpoint folder
    log_every: int = 10
    log_with: tuple[str, ...] = ("tensorboard",)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    export_formats: tuple[str, ...] = ("motionkit",)

    def __post_init__(self) -> None:
        for name in ("lr", "ema_decay", "max_grad_norm", "adam_epsilon"):
            require(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
        require(self.lr > 0, f"lr must be > 0, got {self.lr}")
        require(0.0 <= self.adam_beta1 < 1.0 and 0.0 <= self.adam_beta2 < 1.0, "adam betas must be in [0, 1)")
        require(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        require(self.gradient_accumulation_steps >= 1, "gradient_accumulation_steps must be >= 1")
        require(self.max_steps >= 0, f"max_steps must be >= 0, got {self.max_steps}")
        require(self.lr_warmup_steps >= 0, "lr_warmup_steps must be >= 0")
        require(self.num_train_timesteps >= 1, "num_train_timesteps must be >= 1")
        require(0 < self.beta_start < self.beta_end < 1, "betas must satisfy 0 < beta_start < beta_end < 1")
        require(self.ema_decay <= 1.0, f"ema_decay must be <= 1, got {self.ema_decay}")
        require(self.checkpoint_every >= 0, "checkpoint_every must be >= 0 (0: only at the end)")
        require(self.keep_checkpoints >= 1, "keep_checkpoints must be >= 1")
        require(self.log_every >= 1, "log_every must be >= 1")
        require(
            self.mixed_precision in MIXED_PRECISION,
            f"mixed_precision {self.mixed_precision!r} is not one of {', '.join(MIXED_PRECISION)}",
        )
        require(
            self.prediction_type in PREDICTION_TYPES,
            f"prediction_type {self.prediction_type!r} is not one of {', '.join(PREDICTION_TYPES)}",
        )
        require(
            self.timestep_sampling in TIMESTEP_SAMPLING,
            f"timestep_sampling {self.timestep_sampling!r} is not one of {', '.join(TIMESTEP_SAMPLING)}",
        )
        require(self.recompute in RECOMPUTE, f"recompute {self.recompute!r} is not one of {', '.join(RECOMPUTE)}")
        require(self.logit_normal_std > 0, f"logit_normal_std must be > 0, got {self.logit_normal_std}")
        _probability(self.uniform_share, "uniform_share")
        require(
            self.loss_weighting in LOSS_WEIGHTING,
            f"loss_weighting {self.loss_weighting!r} is not one of {', '.join(LOSS_WEIGHTING)}",
        )
        require(self.min_snr_gamma > 0, f"min_snr_gamma must be > 0, got {self.min_snr_gamma}")
        require(self.max_loss_weight >= 1, f"max_loss_weight must be >= 1, got {self.max_loss_weight}")
        check_noise_correlation(self.noise_correlation)
        check_noise_offset(self.noise_offset)
        bad = [f for f in self.export_formats if f not in EXPORT_FORMATS]
        require(not bad, f"export format {bad[0]!r} is not one of {', '.join(EXPORT_FORMATS)}" if bad else "")
        bad = [t for t in self.log_with if t not in TRACKERS]
        require(not bad, f"tracker {bad[0]!r} is not one of {', '.join(TRACKERS)}" if bad else "")
        require(bool(self.adapter) or self.lora.enabled, "adapter must name a preset or an adapter path")
        if self.image_cond.enabled and self.lora.enabled:
            raise MotionkitError(
                "image_cond and lora cannot train together: a MotionLoRA adapts only temporal attention; "
                "train the image-conditioning branch with the full adapter"
            )
        if self.encoder.enabled and (self.image_cond.enabled or self.lora.enabled):
            raise MotionkitError(
                "encoder training keeps the motion adapter frozen: turn off image_cond and lora, or train them "
                "in a run of their own first"
            )
        if self.encoder.enabled and self.encoder.kind == "controlnet":
            require(
                not self.data.shards,
                "encoder.kind controlnet pairs clips with control maps by file name: use data.folder, manifest or "
                "csv, not data.shards",
            )
            require(
                not self.data.latent_cache,
                "encoder.kind controlnet decodes each clip with its control map: remove data.latent_cache",
            )
        if self.distributed.shards or self.distributed.uses_deepspeed:
            _check_sharded(self)

    # -- construction -------------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "TrainConfig":
        return build_section(cls, values, "")

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str], overrides: list[str] | None = None) -> "TrainConfig":
        """Read ``path``; relative paths inside it resolve against the file's folder. ``overrides``:
        ``key=value`` strings (YAML values, dotted keys for sections) applied on top."""
        import yaml

        path = Path(path)
        if not path.is_file():
            raise MotionkitError(f"{path}: no such training config; pass --config with a YAML file")
        try:
            values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark else ""
            raise MotionkitError(f"{path}: not valid YAML{where}: fix the syntax") from None
        if not isinstance(values, dict):
            raise MotionkitError(f"{path}: a training config is a mapping of keys to values")
        values = _resolve_paths(values, path.parent)
        for item in overrides or []:
            apply_override(values, item)
        return cls.from_dict(values)

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def with_overrides(self, overrides: list[str]) -> "TrainConfig":
        values = self.to_dict()
        for item in overrides:
            apply_override(values, item)
        return TrainConfig.from_dict(values)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (lists, dicts), ready for YAML / JSON and trackers."""
        return plain_value(dataclasses.asdict(self))

    @property
    def uses_lora(self) -> bool:
        return self.lora.enabled

    @property
    def trains_encoder(self) -> bool:
        return self.encoder.enabled


# -- helpers ----------------------------------------------------------------------------------------


def _check_sharded(config: TrainConfig) -> None:
    """What a sharded run (fsdp2, zero2, zero3) cannot do: each of these needs every weight whole on one
    process mid-run, as a plain module."""
    strategy = config.distributed.strategy
    why = (
        f"with distributed.strategy {strategy} DeepSpeed's engine owns and partitions the trained weights"
        if config.distributed.uses_deepspeed
        else f"with distributed.strategy {strategy} no process holds the whole model"
    )
    require(
        config.validation.every == 0,
        f"validation.every needs the whole UNet on one process ({why}): set validation.every=0 and sample the exported adapter",
    )
    require(not config.ema, f"ema keeps a whole copy of the trained weights ({why}): set ema=false or use distributed.strategy ddp")
    require(
        not config.encoder.enabled,
        f"encoder training does not support distributed.strategy {strategy} yet: use distributed.strategy ddp",
    )
    require(
        not (config.distributed.uses_deepspeed and config.lora.enabled and config.mixed_precision != "no"),
        f"lora with distributed.strategy {strategy} and mixed_precision {config.mixed_precision}: DeepSpeed casts the "
        "whole model, the LoRA's frozen base adapter included, to half precision; set mixed_precision=no or use fsdp2",
    )


_PATH_KEYS = {
    ("base",), ("base_config",), ("adapter",), ("output_dir",), ("resume_from",), ("lora", "base_adapter"),
    ("encoder", "motion_adapter"), ("encoder", "control_dir"), ("encoder", "init_from"),
} | {
    ("data", k) for k in ("manifest", "folder", "csv", "video_dir", "latent_cache", "shards")
}


def _resolve_paths(values: dict[str, Any], root: Path) -> dict[str, Any]:
    """Make config-relative paths absolute, so a config runs the same from any working folder."""
    from motionkit.presets import PRESETS

    def fix(value: Any, key: tuple[str, ...]) -> Any:
        if not isinstance(value, str) or not value or key not in _PATH_KEYS:
            return value
        if key == ("adapter",) and value in PRESETS or key == ("resume_from",) and value == "latest":
            return value
        expanded = Path(os.path.expanduser(value))
        return str(expanded if expanded.is_absolute() else root / expanded)

    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and key in {"data", "lora", "encoder"}:
            out[key] = {k: fix(v, (key, k)) for k, v in value.items()}
        else:
            out[key] = fix(value, (key,))
    return out


def apply_override(values: dict[str, Any], item: str) -> None:
    """Apply one ``key=value`` (``data.size=512``); the value is parsed as YAML (numbers, lists, bools)."""
    import yaml

    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise MotionkitError(f"override {item!r} is not key=value (e.g. lr=3e-5 or data.size=512)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    *parents, leaf = key.strip().split(".")
    target = values
    for part in parents:
        node = target.setdefault(part, {})
        if not isinstance(node, dict):
            raise MotionkitError(f"override {item!r}: {part!r} is not a section")
        target = node
    target[leaf] = value


def build_section(cls: type, values: Mapping[str, Any], where: str) -> Any:
    if not isinstance(values, Mapping):
        raise MotionkitError(f"{where.rstrip('.') or 'config'} must be a mapping, got {type(values).__name__}")
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise MotionkitError(f"unknown training option {where}{unknown[0]!r}: choose from {', '.join(sorted(known))}")
    kwargs: dict[str, Any] = {}
    for name, value in values.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = build_section(hint, value or {}, f"{where}{name}.")
        else:
            kwargs[name] = _coerce(value, hint, f"{where}{name}")
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise MotionkitError(f"bad training options {where.rstrip('.') or ''}: {err}") from None


def _coerce(value: Any, hint: Any, name: str) -> Any:
    """YAML gives lists and ints where the config holds tuples and floats; check and convert."""
    text = str(hint)
    if value is None:
        if "None" in text:
            return None
        raise MotionkitError(f"{name} needs a value")
    if text.startswith("tuple"):
        items = [value] if isinstance(value, (str, int, float)) else list(value)
        return tuple(float(v) if "float" in text else v for v in items)
    if text.startswith("Mapping") or text.startswith("typing.Mapping"):
        if not isinstance(value, Mapping):
            raise MotionkitError(f"{name} must be a mapping of options")
        return dict(value)
    if hint is bool or text == "bool":
        if not isinstance(value, bool):
            raise MotionkitError(f"{name} must be true or false, got {value!r}")
        return value
    if hint is float or text == "float":
        try:
            return float(value)
        except (TypeError, ValueError):
            raise MotionkitError(f"{name} must be a number, got {value!r}") from None
    if hint is int or text == "int":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise MotionkitError(f"{name} must be an integer, got {value!r}")
        return int(value)
    if "str" in text and not isinstance(value, str):
        return str(value)
    return value


def plain_value(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: plain_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_value(v) for v in value]
    return value
