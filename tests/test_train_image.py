"""Image-model training (``motionkit train-image``): each stage lowers its loss on tiny shapes, writes a folder
``load_base`` reads, resumes from its checkpoint, and refuses bad configs in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from motionkit.errors import MotionkitError
from motionkit.train.image_config import ImageTrainConfig
from motionkit.train.image_trainer import ImageTrainer, word_tokenizer

SIZE = 32
TINY_VAE = {"block_out_channels": [8, 16], "norm_num_groups": 4, "layers_per_block": 1}
TINY_UNET = {
    "block_out_channels": [16, 32],
    "layers_per_block": 1,
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "norm_num_groups": 8,
    "attention_head_dim": 4,
}


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    yield
    AcceleratorState._reset_state(True)
    GradientState._reset_state()


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    from motionkit.data.world import write_world_dataset

    root = tmp_path_factory.mktemp("world")
    write_world_dataset(root / "natural", n_clips=6, frames=4, size=SIZE, style="natural", seed=0, images_per_clip=2)
    write_world_dataset(root / "neon", n_clips=4, frames=4, size=SIZE, style="neon", seed=1)
    return root


def config(stage: str, out: Path, **values) -> ImageTrainConfig:
    base = dict(stage=stage, size=SIZE, batch_size=4, max_steps=12, lr=3e-3, cpu=True, log_every=4, output_dir=str(out))
    return ImageTrainConfig.from_dict({**base, **values})


def trained(cfg: ImageTrainConfig) -> tuple[float, float, Path]:
    """Loss of step 1's fixed batch (same data, noise and timesteps) before and after training."""
    trainer = ImageTrainer(cfg).setup()
    with torch.no_grad():
        before = trainer.compute_loss(1).item()
    result = trainer.train()
    with torch.no_grad():
        after = trainer.compute_loss(1).item()
    return before, after, result.output


@pytest.fixture(scope="module")
def family(images, tmp_path_factory) -> dict[str, Path]:
    """The three stages in order; each records (loss before, loss after, output)."""
    from accelerate.state import AcceleratorState, GradientState

    out = tmp_path_factory.mktemp("family")
    runs = {}
    for name, cfg in [
        ("vae", config("vae", out / "vae", data=[str(images / "natural/images"), str(images / "neon/images")], vae_config=TINY_VAE)),
        ("base", config("text_unet", out / "base", data=str(images / "natural/images"), vae=str(out / "vae/vae"),
                        unet_config=TINY_UNET, text_config={"hidden_size": 16, "intermediate_size": 32, "num_attention_heads": 2},
                        sample_prompts=["a red ball"])),
        ("personalized", config("finetune", out / "personalized", data=str(images / "neon/images"), base=str(out / "base/pipeline"))),
    ]:
        AcceleratorState._reset_state(True)
        GradientState._reset_state()
        runs[name] = trained(cfg)
    return runs


def test_each_stage_lowers_its_loss(family):
    for name, (before, after, _) in family.items():
        assert after < before, f"{name}: loss {before:.4f} -> {after:.4f}"


def test_vae_measures_its_scaling_factor(family):
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(family["vae"][2])
    assert vae.config.scaling_factor != 0.18215 and 0.01 < vae.config.scaling_factor < 100
    assert len(vae.config.block_out_channels) == 2


def test_pipelines_load_through_load_base(family):
    from motionkit.pipeline.loading import load_base

    base = load_base(family["base"][2])
    personalized = load_base(family["personalized"][2])
    assert set(base) >= {"unet", "vae", "text_encoder", "tokenizer", "scheduler"}
    assert (family["base"][2].parent / "samples.png").is_file()
    # Only the UNet was fine-tuned: text encoder and VAE are the base's, bit for bit.
    for name in ("text_encoder", "vae"):
        for (k, a), b in zip(base[name].state_dict().items(), personalized[name].state_dict().values()):
            assert torch.equal(a, b), f"{name}.{k} changed"
    changed = any(not torch.equal(a, b) for a, b in zip(base["unet"].state_dict().values(), personalized["unet"].state_dict().values()))
    assert changed


def test_resume_continues_where_it_stopped(images, tmp_path):
    data = [str(images / "natural/images")]
    straight = ImageTrainer(config("vae", tmp_path / "a", data=data, vae_config=TINY_VAE, max_steps=6)).train()
    from accelerate.state import AcceleratorState, GradientState

    for steps, resume in ((3, None), (6, "latest")):
        AcceleratorState._reset_state(True)
        GradientState._reset_state()
        cfg = config("vae", tmp_path / "b", data=data, vae_config=TINY_VAE, max_steps=steps, resume_from=resume)
        resumed = ImageTrainer(cfg).train()
    assert [e["loss"] for e in resumed.history] == pytest.approx([e["loss"] for e in straight.history], rel=1e-5)


def test_word_tokenizer_keeps_caption_words_whole():
    captions = ["a red ball bouncing over a striped blue and white background, camera panning left", "zooming in"]
    tokenizer = word_tokenizer(captions, 32)
    assert tokenizer.tokenize(captions[0]) == [w + "</w>" for w in captions[0].replace(",", " ,").split()]
    assert len(tokenizer.tokenize("a purple thing")) > 3  # unknown words fall back to letters


@pytest.mark.parametrize(
    "values, message",
    [
        ({"stage": "unet"}, "stage 'unet' is not one of"),
        ({"stage": "text_unet", "data": "x"}, "needs vae"),
        ({"stage": "finetune", "data": "x"}, "needs base"),
        ({"stage": "vae", "data": "x", "size": 30}, "multiple of 8"),
        ({"stage": "vae", "data": "x", "bogus": 1}, "unknown training option 'bogus'"),
        ({"stage": "vae", "data": "x", "lr": "fast"}, "lr must be a number"),
        ({"stage": "vae", "data": "x", "noise_offset": 1.0}, "noise_offset must lie in"),
    ],
)
def test_bad_configs_fail_in_one_line(values, message):
    with pytest.raises(MotionkitError, match=message) as info:
        ImageTrainConfig.from_dict(values)
    assert "\n" not in str(info.value)


def test_cli_reports_config_errors_in_one_line(tmp_path, capsys):
    from motionkit.cli import main

    path = tmp_path / "bad.yaml"
    path.write_text("stage: vae\ndata: images\nbatch_size: 0\n", encoding="utf-8")
    assert main(["train-image", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("motionkit: error: batch_size must be >= 1") and "\n" not in err


def test_noise_offset_moves_each_sample_s_noise_by_one_value_per_channel(images, family, tmp_path):
    """The image trainer's loss with offset noise: the same batch and timesteps, noise shifted per sample and
    channel (captured where the noise is added), and nothing else changed."""
    inputs = {}
    for name, offset in (("plain", 0.0), ("offset", 0.2)):
        cfg = config("finetune", tmp_path / name, data=str(images / "neon/images"), base=str(family["base"][2]),
                     noise_offset=offset)
        trainer = ImageTrainer(cfg).setup()
        seen = []
        trainer.noise_scheduler.add_noise = lambda latents, noise, t, seen=seen: seen.append((latents, noise, t)) or latents
        with torch.no_grad():
            trainer.compute_loss(3)
        inputs[name] = seen[0]
    (latents_a, noise_a, t_a), (latents_b, noise_b, t_b) = inputs["plain"], inputs["offset"]
    assert torch.equal(latents_a, latents_b) and torch.equal(t_a, t_b)
    shift = noise_b - noise_a
    assert shift.abs().max() > 0
    torch.testing.assert_close(shift, shift[:, :, :1, :1].expand_as(shift), atol=1e-6, rtol=0)
