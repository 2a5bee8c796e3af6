"""The image-use probe: its arithmetic on oracle predictors, its two model adapters (branch, encoder) on
tiny random models, the held-out clips, and the benchmark script on the tiny family."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from motionkit.errors import MotionkitError
from motionkit.train.probe import (
    ProbeRow,
    branch_predictor,
    copy_first_eps,
    encoder_predictor,
    format_table,
    image_model_predictor,
    probe_image_use,
    world_clips,
)


def _alphas() -> torch.Tensor:
    from diffusers import DDPMScheduler

    return DDPMScheduler(beta_schedule="linear", beta_start=0.00085, beta_end=0.012).alphas_cumprod


def test_probe_arithmetic_on_oracles():
    alphas = _alphas()
    latents = torch.randn(3, 4, 5, 2, 2)
    hidden = torch.zeros(3, 1, 8)

    def oracle(noisy, t, _hidden, condition):
        a = alphas[int(t[0])]
        if condition == "real":  # knows x0: recovers eps exactly
            return (noisy - a.sqrt() * latents) / (1 - a).sqrt()
        return torch.zeros_like(noisy)

    rows = probe_image_use(oracle, latents, hidden, alphas, (1, 500, 961), seed=4)
    for row in rows:
        noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(4 + row.timestep))
        assert row.real < 1e-8 and row.real_vs_zero < 1e-6
        assert row.zero == pytest.approx(float(noise[:, :, 1:].pow(2).mean()), rel=1e-6)  # frames 1.. only
        a = alphas[row.timestep]
        noisy = a.sqrt() * latents + (1 - a).sqrt() * noise
        expected = (copy_first_eps(noisy, latents, a) - noise)[:, :, 1:].pow(2).mean()
        assert row.copy_first == pytest.approx(float(expected), rel=1e-5) and row.none is None
    # On a still clip the copy-frame-0 baseline is exact at every t.
    still = latents[:, :, :1].expand_as(latents).contiguous()
    assert all(r.copy_first < 1e-8 for r in probe_image_use(oracle, still, hidden, alphas, (1, 961)))
    text = format_table(rows)
    assert len(text.splitlines()) == 4 and "real/zero" in text and "961" in text
    assert ProbeRow(5, 1.0, 2.0, 3.0).as_dict()["real_vs_zero"] == 0.5
    with pytest.raises(MotionkitError, match="timestep 1000 is outside"):
        probe_image_use(oracle, latents, hidden, alphas, (1000,))
    with pytest.raises(MotionkitError, match="frames >= 2"):
        probe_image_use(oracle, latents[:, :, :1], hidden, alphas)


def _tiny_motion_unet(image_branch: bool):
    from motionkit.adapter import MotionAdapter
    from motionkit.injection import inject
    from motionkit.tiny import tiny_pipeline_components

    base = tiny_pipeline_components(seed=0)
    torch.manual_seed(1)
    extra = {"image_cond_channels": 5, "image_cond_mask": "one_hot"} if image_branch else {}
    adapter = MotionAdapter.from_unet(base["unet"], "animatediff-v2", **extra).eval()
    return base, inject(base["unet"].eval(), adapter)


def test_branch_probe_sees_what_the_branch_adds():
    base, motion_unet = _tiny_motion_unet(image_branch=True)
    latents = torch.randn(2, 4, 3, 4, 4)
    hidden = torch.randn(2, 77, base["unet"].config.cross_attention_dim)
    alphas = _alphas()
    fresh = probe_image_use(branch_predictor(motion_unet, latents), latents, hidden, alphas, (100, 900))
    assert all(r.real == r.zero for r in fresh)  # a zero-initialised branch ignores the image
    with torch.no_grad():
        motion_unet.adapter.image_cond_conv.weight.normal_(std=0.1)
    used = probe_image_use(branch_predictor(motion_unet, latents), latents, hidden, alphas, (100, 900))
    assert all(r.real != r.zero for r in used)
    # The baseline is the image model alone: what an identity (fresh) adapter gives, whatever the trained one holds.
    with torch.no_grad():
        for p in motion_unet.adapter.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    rows = probe_image_use(branch_predictor(motion_unet, latents), latents, hidden, alphas, (100, 900), baseline=image_model_predictor(motion_unet))
    assert motion_unet.motion_strength == 1.0  # restored after each baseline call
    assert [r.image_model for r in rows] == pytest.approx([r.zero for r in fresh], rel=1e-5)
    assert all(r.zero != r.image_model and r.zero_vs_image_model == r.zero / r.image_model for r in rows)
    assert "zero/image model" in format_table(rows) and "zero/image model" not in format_table(fresh)
    assert rows[0].as_dict()["zero_vs_image_model"] == rows[0].zero_vs_image_model and fresh[0].zero_vs_image_model is None
    _, plain = _tiny_motion_unet(image_branch=False)
    with pytest.raises(MotionkitError, match="no image-conditioning branch"):
        branch_predictor(plain, latents)


def test_encoder_probe_compares_real_zero_and_no_encoder():
    from motionkit.train.encoder import EncoderDenoiser, sparse_controlnet_from_unet

    base, motion_unet = _tiny_motion_unet(image_branch=False)
    encoder = sparse_controlnet_from_unet(base["unet"]).eval()
    denoiser = EncoderDenoiser(encoder, motion_unet)
    latents = torch.randn(2, 4, 3, 4, 4)
    hidden = torch.randn(2, 77, base["unet"].config.cross_attention_dim)
    conditions = ("real", "zero", "none")
    fresh = probe_image_use(encoder_predictor(denoiser, latents), latents, hidden, _alphas(), (500,), 0, conditions)
    assert fresh[0].real == fresh[0].zero == fresh[0].none  # zero convolutions: no effect yet
    with torch.no_grad():
        for block in [*encoder.controlnet_down_blocks, encoder.controlnet_mid_block, encoder.controlnet_cond_embedding]:
            block.weight.normal_(std=0.1)
    used = probe_image_use(encoder_predictor(denoiser, latents), latents, hidden, _alphas(), (500,), 0, conditions)
    assert len({used[0].real, used[0].zero, used[0].none}) == 3


def test_world_clips_are_deterministic_and_held_out():
    pixels, captions = world_clips(2, num_frames=3, stride=2, size=32, seed=5)
    again, _ = world_clips(2, num_frames=3, stride=2, size=32, seed=5)
    other, _ = world_clips(2, num_frames=3, stride=2, size=32, seed=6)
    assert pixels.shape == (2, 3, 3, 32, 32) and len(captions) == 2 and all(captions)
    assert torch.equal(pixels, again) and not torch.equal(pixels, other)
    assert pixels.min() >= -1 and pixels.max() <= 1


def test_probe_script_runs_on_the_tiny_family(family_dir, tmp_path, capsys, benchmark_script):
    script = benchmark_script("probe_image_use")
    out = tmp_path / "probe.json"
    family = Path(family_dir)
    args = ["--base", str(family / "bases" / "tiny-base"), "--adapter", str(family / "adapters" / "tiny-motion")]
    args += ["--encoder", str(family / script.ENCODER), "--clips", "2", "--timesteps", "500", "961", "--out", str(out)]
    assert script.main(args) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert [r["timestep"] for r in report["models"]["branch"]] == [500, 961] and "real/zero" in printed
    assert set(report["uses_image_at_every_t"]) == set(report["models"])
    assert all(r["image_model"] > 0 for r in report["models"]["branch"]) and "zero/image model" in printed
    assert report["motion_modules_help_at_every_t"] in (True, False)


def test_shipped_encoder_loads_in_diffusers_and_holds_the_image(tmp_path, capsys, benchmark_script):
    """The tiny family's SparseCtrl encoder: a diffusers folder of the RGB variant that, beside the family's
    adapter, predicts the noise of held-out clips better with their first frame than without, at high t."""
    from diffusers import SparseControlNetModel

    from motionkit.assets import tiny_family_path

    script = benchmark_script("probe_image_use")
    encoder = SparseControlNetModel.from_pretrained(tiny_family_path() / script.ENCODER)
    cfg = encoder.config
    assert (cfg.conditioning_channels, cfg.use_simplified_condition_embedding, cfg.concat_conditioning_mask) == (4, True, True)
    assert encoder.controlnet_mid_block.weight.abs().max() > 0  # trained: the zero convolution moved
    out = tmp_path / "probe.json"
    assert script.main(["--clips", "4", "--timesteps", "700", "961", "--out", str(out)]) == 0
    capsys.readouterr()
    rows = json.loads(out.read_text())["models"]["encoder"]
    assert all(r["real"] < r["zero"] for r in rows)
