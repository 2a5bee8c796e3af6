"""Few-step presets (AnimateLCM, AnimateDiff-Lightning): schedulers as the models' own usage sets them, the
runs they give, and ``inspect`` recognising the files (AnimateLCM's 64-frame table included)."""

import subprocess
import sys

import pytest
import torch
from diffusers import EulerDiscreteScheduler, LCMScheduler
from safetensors.torch import save_file

from motionkit import MotionAdapter, MotionkitError
from motionkit.formats import detect_format, load_adapter
from motionkit.formats.animatediff import to_original
from motionkit.formats.keys import to_diffusers_state_dict
from motionkit.modules.position import sinusoidal_table
from motionkit.pipeline.few_step import PRESETS, apply_preset, get_preset, missing_lora
from motionkit.pipeline.motion_pipeline import MotionPipeline
from motionkit.tiny import randomize_, tiny_pipeline_components, tiny_unet


@pytest.fixture(scope="module")
def v2_adapter() -> MotionAdapter:
    return randomize_(MotionAdapter.from_unet(tiny_unet(), preset="animatediff-v2"))


def _animatelcm_file(adapter: MotionAdapter, path) -> None:
    """AnimateLCM_sd15_t2v.ckpt's layout: AnimateDiff v2 keys, a 64-frame table named pos_encoder.pos_encoding."""
    tensors, _ = to_original(adapter)
    out = {}
    for key, value in tensors.items():
        if key.endswith(".pos_encoder.pe"):
            key = key[: -len("pe")] + "pos_encoding"
            value = sinusoidal_table(64, value.shape[-1]).unsqueeze(0)
        out[key] = value
    torch.save({"state_dict": out}, path)


def test_animatelcm_is_recognised_with_its_64_frame_table(v2_adapter, tmp_path):
    path = tmp_path / "AnimateLCM_sd15_t2v.ckpt"
    _animatelcm_file(v2_adapter, path)
    info = detect_format(path)
    assert (info.format, info.version, info.max_frames, info.variant) == ("animatediff", "animatelcm", 64, "animatelcm")
    assert any("--preset animatelcm" in note for note in info.notes)
    renamed = tmp_path / "motion.ckpt"  # the table's name and length tell, not only the file name
    path.rename(renamed)
    loaded = load_adapter(renamed)
    assert loaded.config.max_seq_length == 64 and loaded.config.temporal_norm == "per_frame"
    for key, value in v2_adapter.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)
    run = subprocess.run([sys.executable, "-m", "motionkit", "inspect", str(renamed)], capture_output=True, text=True)
    assert run.returncode == 0 and "animatelcm" in run.stdout and "up to 64" in run.stdout


def test_lightning_is_recognised_by_its_file_name(v2_adapter, tmp_path):
    tensors = to_diffusers_state_dict(v2_adapter.state_dict())
    for key in list(tensors):  # MotionAdapter() state dicts carry their 32-frame tables
        if key.endswith("attn1.to_q.weight"):
            tensors[key.replace("attn1.to_q.weight", "pos_embed.pe")] = sinusoidal_table(32, tensors[key].shape[1]).unsqueeze(0)
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    for steps in (1, 2, 4, 8):
        path = tmp_path / f"animatediff_lightning_{steps}step_diffusers.safetensors"
        save_file(tensors, str(path))
        info = detect_format(path)
        assert (info.format, info.version, info.variant) == ("diffusers", "v2", f"lightning-{steps}")
    plain = tmp_path / "mm.safetensors"
    save_file(tensors, str(plain))
    assert detect_format(plain).variant is None  # same structure as v2: a renamed Lightning file is plain v2
    save_file(tensors, str(plain), metadata={"model": "AnimateDiff-Lightning 4-step"})
    assert detect_format(plain).variant == "lightning-4"


@pytest.mark.parametrize("steps", [1, 2, 4, 8])
def test_lightning_scheduler_is_the_model_cards(steps):
    base = tiny_pipeline_components()["scheduler"].config
    ours = get_preset(f"lightning-{steps}").make_scheduler(base)
    theirs = EulerDiscreteScheduler.from_config(base, timestep_spacing="trailing", beta_schedule="linear")
    assert isinstance(ours, EulerDiscreteScheduler)
    assert ours.config.timestep_spacing == "trailing" and ours.config.beta_schedule == "linear"
    ours.set_timesteps(steps)
    theirs.set_timesteps(steps)
    torch.testing.assert_close(ours.timesteps, theirs.timesteps)
    torch.testing.assert_close(ours.sigmas, theirs.sigmas)
    assert ours.timesteps[0] == 999  # trailing spacing starts at the last training timestep
    assert get_preset(f"lightning-{steps}").guidance == 1.0 and get_preset(f"lightning-{steps}").steps == steps


def test_animatelcm_scheduler_lora_and_missing_lora_line():
    base = tiny_pipeline_components()["scheduler"].config
    preset = get_preset("animatelcm")
    ours, theirs = preset.make_scheduler(base), LCMScheduler.from_config(base, beta_schedule="linear")
    ours.set_timesteps(preset.steps)
    theirs.set_timesteps(preset.steps)
    assert isinstance(ours, LCMScheduler) and torch.equal(ours.timesteps, theirs.timesteps)
    assert (preset.lora, preset.lora_scale) == ("AnimateLCM_sd15_t2v_lora.safetensors", 0.8)
    line = missing_lora(preset, [])
    assert "AnimateLCM_sd15_t2v_lora.safetensors" in line and "--lora" in line and "\n" not in line
    assert missing_lora(preset, ["loras/AnimateLCM_sd15_t2v_lora.safetensors"]) is None
    assert missing_lora(get_preset("lightning-4"), []) is None
    with pytest.raises(MotionkitError, match="unknown preset 'lightning-3'"):
        get_preset("lightning-3")


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_samples_with_its_step_count(name):
    components = tiny_pipeline_components()
    pipe = MotionPipeline(**components, adapter=randomize_(MotionAdapter.from_unet(components["unet"], preset="animatediff-v2", max_seq_length=8)))
    pipe.set_progress_bar_config(disable=True)
    preset = apply_preset(pipe, name)
    calls = []
    video = pipe(
        prompt="a cat", num_frames=4, height=64, width=64, num_inference_steps=preset.steps, guidance_scale=preset.guidance,
        output_type="pt", generator=torch.Generator().manual_seed(0),
        callback_on_step_end=lambda p, i, t, tensors: calls.append(int(t)) or {},
    ).frames
    assert len(calls) == preset.steps and torch.isfinite(video).all()
