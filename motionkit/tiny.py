"""Tiny diffusers UNets in the shapes of SD 1.x and SDXL: for tests, the offline demo and CPU benchmarks.

They keep every structural feature that matters to motion adapters (cross-attention and plain
blocks, mid block, SDXL's added text/time conditioning) at a size that runs in milliseconds.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import UNet2DConditionModel

from motionkit.adapter import MotionAdapter

TINY_SD_UNET: dict[str, Any] = dict(
    block_out_channels=(32, 64),
    layers_per_block=2,
    sample_size=16,
    in_channels=4,
    out_channels=4,
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=16,
    norm_num_groups=8,
    attention_head_dim=4,
)

TINY_SDXL_UNET: dict[str, Any] = dict(
    block_out_channels=(32, 64, 64),
    layers_per_block=2,
    sample_size=16,
    in_channels=4,
    out_channels=4,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    transformer_layers_per_block=(1, 1, 2),
    cross_attention_dim=32,
    norm_num_groups=8,
    attention_head_dim=4,
    addition_embed_type="text_time",
    addition_time_embed_dim=8,
    projection_class_embeddings_input_dim=32 + 6 * 8,
)

# Medium: big enough that the motion modules, not Python overhead, dominate a CPU forward.
MEDIUM_SD_UNET: dict[str, Any] = dict(
    TINY_SD_UNET,
    block_out_channels=(64, 128, 128),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=32,
    norm_num_groups=16,
    attention_head_dim=8,
    sample_size=32,
)

# Full SD 1.5 layout (diffusers' defaults with CLIP-L's 768-wide text), random weights: GPU-scale benchmarks.
SD15_UNET: dict[str, Any] = dict(sample_size=64, cross_attention_dim=768)

UNET_CONFIGS = {"tiny-sd": TINY_SD_UNET, "tiny-sdxl": TINY_SDXL_UNET, "medium-sd": MEDIUM_SD_UNET, "sd15": SD15_UNET}


def tiny_unet(name: str = "tiny-sd", seed: int = 0, **overrides: Any) -> UNet2DConditionModel:
    torch.manual_seed(seed)
    return UNet2DConditionModel(**{**UNET_CONFIGS[name], **overrides}).eval()


def randomize_(adapter: MotionAdapter, seed: int = 0, std: float = 0.1) -> MotionAdapter:
    """Give every adapter weight a non-zero random value, so equivalence checks are not vacuous."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in adapter.named_parameters():
            noise = torch.randn(p.shape, generator=generator) * std
            is_norm_scale = "norm" in name and name.endswith("weight")
            p.copy_(noise + 1.0 if is_norm_scale else noise)
    return adapter


def unet_inputs(unet: UNet2DConditionModel, batch: int = 1, frames: int = 8, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random ``sample`` [B, C, F, H, W], timesteps, text embeddings (and SDXL added conditions)."""
    g = torch.Generator().manual_seed(seed)
    cfg = unet.config
    size = cfg.sample_size
    inputs: dict[str, Any] = {
        "sample": torch.randn(batch, cfg.in_channels, frames, size, size, generator=g),
        "timestep": torch.randint(0, 1000, (batch,), generator=g),
        "encoder_hidden_states": torch.randn(batch, 7, cfg.cross_attention_dim, generator=g),
    }
    if cfg.addition_embed_type == "text_time":
        text_dim = cfg.projection_class_embeddings_input_dim - 6 * cfg.addition_time_embed_dim
        inputs["added_cond_kwargs"] = {
            "text_embeds": torch.randn(batch, text_dim, generator=g),
            "time_ids": torch.tensor([[size * 8, size * 8, 0, 0, size * 8, size * 8]] * batch, dtype=torch.float32),
        }
    return inputs


# -- whole pipelines ---------------------------------------------------------------------------------

TINY_VAE: dict[str, Any] = dict(
    # Four blocks: the VAE downsamples by 8, as SD's does, so sizes and latent shapes keep their real ratios.
    block_out_channels=(8, 8, 8, 8),
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    latent_channels=4,
    norm_num_groups=2,
    layers_per_block=1,
    sample_size=128,
)


def byte_chars() -> list[str]:
    """CLIP's byte-to-unicode alphabet: every byte gets a printable character, in CLIP's order."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = [], 0
    for b in range(256):
        if b in printable:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def tiny_tokenizer(model_max_length: int = 77) -> "CLIPTokenizer":
    """A character-level CLIP tokenizer built offline (no hub): vocab and merges are written here."""
    import json
    import tempfile
    from pathlib import Path

    from transformers import CLIPTokenizer

    chars = byte_chars()
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    with tempfile.TemporaryDirectory() as tmp:
        vocab, merges = Path(tmp, "vocab.json"), Path(tmp, "merges.txt")
        vocab.write_text(json.dumps({t: i for i, t in enumerate(tokens)}), encoding="utf-8")
        merges.write_text("#version: 0.2\n", encoding="utf-8")
        # model_max_length must be set: without it CLIP's tokenizer has no truncation length.
        return CLIPTokenizer(str(vocab), str(merges), model_max_length=model_max_length)


def _tiny_text_encoder(tokenizer: Any, hidden_size: int, seed: int, projection_dim: int | None = None) -> torch.nn.Module:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_attention_heads=2,
        num_hidden_layers=2,
        max_position_embeddings=tokenizer.model_max_length,
        projection_dim=projection_dim or hidden_size,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    cls = CLIPTextModelWithProjection if projection_dim else CLIPTextModel
    return cls(config).eval()


def tiny_scheduler() -> "DDIMScheduler":
    """DDIM with AnimateDiff's defaults: linear betas 0.00085-0.012, steps_offset 1, no sample clipping."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="linear", clip_sample=False, steps_offset=1
    )


def tiny_pipeline_components(seed: int = 0, family: str = "sd", unet: str | None = None) -> dict[str, Any]:
    """Every component of a base text-to-image pipeline, tiny and random, built without the hub.

    ``family="sd"``: vae, text_encoder, tokenizer, unet, scheduler (diffusers' SD pipeline names).
    ``family="sdxl"`` adds text_encoder_2 (with projection) and tokenizer_2, whose widths sum to the
    UNet's cross-attention width (diffusers' StableDiffusionXLPipeline names). ``unet`` picks another entry of ``UNET_CONFIGS`` of the same family.
    """
    from diffusers import AutoencoderKL

    if family not in ("sd", "sdxl"):
        raise ValueError(f"family {family!r} is not 'sd' or 'sdxl'")
    unet_name = unet or f"tiny-{family}"
    unet_model = tiny_unet(unet_name, seed=seed)
    width = unet_model.config.cross_attention_dim
    torch.manual_seed(seed)
    vae = AutoencoderKL(**TINY_VAE).eval()
    tokenizer = tiny_tokenizer()
    components: dict[str, Any] = {"vae": vae, "tokenizer": tokenizer, "unet": unet_model, "scheduler": tiny_scheduler()}
    if family == "sd":
        components["text_encoder"] = _tiny_text_encoder(tokenizer, width, seed + 1)
    else:
        half = width // 2
        components["text_encoder"] = _tiny_text_encoder(tokenizer, half, seed + 1)
        # SDXL's pooled text embedding (added conditioning) is text_encoder_2's projection.
        text_dim = unet_model.config.projection_class_embeddings_input_dim - 6 * unet_model.config.addition_time_embed_dim
        components["text_encoder_2"] = _tiny_text_encoder(tokenizer, width - half, seed + 2, projection_dim=text_dim)
        components["tokenizer_2"] = tiny_tokenizer()
    return components
