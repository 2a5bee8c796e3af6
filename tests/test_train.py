"""Training: config, loss going down, frozen base, bitwise resume, NaN stop, image conditioning,
MotionLoRA and the CLI, all on tiny models, 4 frames of 32x32 px, a few steps."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

from motionkit.errors import MotionkitError
from motionkit.train.config import DataConfig, ImageCondConfig, LoRAConfig, TrainConfig
from motionkit.train.trainer import Trainer, TrainingDivergedError, collate_clips

FRAMES, SIZE = 4, 32


class PatternClips(Dataset):
    """Moving test patterns held in memory: clip ``i`` pans at its own speed, with its own hue."""

    def __init__(self, n: int = 8) -> None:
        from motionkit.data.synthetic import moving_pattern

        self.items = []
        for i in range(n):
            frames = moving_pattern(FRAMES, SIZE, SIZE, speed=1.0 + i % 3, hue=i % 3, seed=i)
            pixels = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1.0
            self.items.append({"pixel_values": pixels, "prompt": f"pattern {i % 3}", "path": f"clip{i}"})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return self.items[index]


def reset_accelerate() -> None:
    """accelerate keeps process-wide singletons; each trainer here builds its own Accelerator."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    reset_accelerate()
    yield
    reset_accelerate()


def tiny_config(out: Path, **changes) -> TrainConfig:
    values = dict(
        adapter="animatediff-v2",
        batch_size=2,
        max_steps=4,
        lr=1e-3,
        output_dir=str(out),
        checkpoint_every=0,
        log_with=(),
        data=DataConfig(n_frames=FRAMES, size=SIZE),
    )
    values.update(changes)
    return TrainConfig(**values)


def tiny_base(seed: int = 0) -> dict:
    from motionkit.tiny import tiny_pipeline_components

    return tiny_pipeline_components(seed=seed)


def make_trainer(out: Path, dataset: Dataset | None = None, **changes) -> Trainer:
    reset_accelerate()
    return Trainer(tiny_config(out, **changes), base=tiny_base(), dataset=dataset or PatternClips())


def write_base_folder(folder: Path) -> Path:
    """A tiny base model saved as a diffusers pipeline folder (what ``base:`` points at)."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        **tiny_base(), safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    pipe.save_pretrained(folder)
    return folder


def write_videos(folder: Path, n: int = 4) -> Path:
    from motionkit.data.synthetic import moving_pattern
    from motionkit.video_io import write_video

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        write_video(moving_pattern(8, SIZE, SIZE, speed=1.0 + i, hue=i % 3, seed=i), folder / f"clip{i}.mp4", fps=8)
        (folder / f"clip{i}.txt").write_text(f"pattern {i}", encoding="utf-8")
    return folder


# -- config ---------------------------------------------------------------------------------------


def test_config_defaults_follow_the_animatediff_recipe():
    cfg = TrainConfig()
    assert (cfg.lr, cfg.adam_beta1, cfg.adam_beta2, cfg.adam_weight_decay) == (1e-4, 0.9, 0.999, 1e-2)
    assert (cfg.data.n_frames, cfg.data.stride, cfg.data.size, cfg.batch_size) == (16, 4, 256, 4)
    assert (cfg.beta_start, cfg.beta_end, cfg.beta_schedule, cfg.num_train_timesteps) == (0.00085, 0.012, "linear", 1000)
    assert (cfg.max_grad_norm, cfg.data.caption_dropout, cfg.image_cond.cond_dropout) == (1.0, 0.1, 0.2)


def test_config_yaml_round_trip_overrides_and_errors(tmp_path):
    import yaml

    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({"base": "base", "data": {"folder": "videos", "size": 64}, "lr": 3e-5}))
    cfg = TrainConfig.from_yaml(path, ["data.n_frames=8", "image_cond.enabled=true", "log_with=[]"])
    assert cfg.base == str(tmp_path / "base") and cfg.data.folder == str(tmp_path / "videos")
    assert (cfg.data.size, cfg.data.n_frames, cfg.lr, cfg.image_cond.enabled, cfg.log_with) == (64, 8, 3e-5, True, ())
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(MotionkitError, match="unknown training option 'learning_rate'"):
        TrainConfig.from_dict({"learning_rate": 1})
    with pytest.raises(MotionkitError, match="mixed_precision"):
        TrainConfig(mixed_precision="fp8")
    with pytest.raises(MotionkitError, match="base_adapter"):
        TrainConfig(lora=LoRAConfig(enabled=True))
    with pytest.raises(MotionkitError, match="noise_aug"):
        ImageCondConfig(noise_aug=(0.5, 0.1))


def test_example_configs_are_valid():
    examples = Path(__file__).resolve().parent.parent / "examples" / "train"
    configs = sorted(examples.glob("*.yaml"))
    assert {c.name for c in configs} >= {"tiny_cpu.yaml", "sd15_motion.yaml"}
    for path in configs:
        cfg = TrainConfig.from_yaml(path)
        assert Path(cfg.base).is_absolute() and cfg.data.has_source


# -- training -------------------------------------------------------------------------------------


def test_training_lowers_the_loss_and_leaves_the_base_untouched(tmp_path):
    from motionkit.train.base import weight_hashes

    dataset = PatternClips()
    trainer = make_trainer(tmp_path, dataset, max_steps=6, lr=3e-3).setup()
    base_before = weight_hashes(trainer.base.frozen_modules())
    eval_batches = [collate_clips([dataset[i] for i in range(j, j + 4)]) for j in (0, 4)]
    before = trainer.evaluate(eval_batches)
    result = trainer.train()
    after = trainer.evaluate(eval_batches)
    assert after < before * 0.95, (before, after)
    assert weight_hashes(trainer.base.frozen_modules()) == base_before == result.frozen_hashes
    unet_grads = [p.grad for p in trainer.base.unet.parameters()]
    assert all(g is None for g in unet_grads)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["frozen_unchanged"] and summary["steps"] == 6
    from motionkit.formats import load_adapter

    exported = load_adapter(tmp_path / "adapter")
    trained = dict(trainer.adapter.named_parameters())
    assert all(torch.equal(t, trained[k]) for k, t in exported.state_dict().items() if k in trained)


@pytest.mark.filterwarnings("ignore:this adapter normalises per frame")
def test_every_save_records_the_training_frames(tmp_path):
    from motionkit.formats import load_adapter
    from motionkit.model_defaults import adapter_config, recorded_training_frames

    make_trainer(tmp_path, max_steps=1, checkpoint_every=1, export_formats=("motionkit", "diffusers", "animatediff")).train()
    checkpoint = next((tmp_path / "checkpoints").glob("checkpoint-*"))
    assert json.loads((checkpoint / "adapter_config.json").read_text())["training_frames"] == FRAMES
    assert json.loads((tmp_path / "adapter" / "config.json").read_text())["training_frames"] == FRAMES
    for export in ("adapter", "adapter-diffusers", "adapter-animatediff.safetensors"):
        assert load_adapter(tmp_path / export).config.training_frames == FRAMES
        assert recorded_training_frames(adapter_config(tmp_path / export)) == FRAMES


def _loss_and_grads(trainer: Trainer) -> tuple[float, dict[str, torch.Tensor]]:
    batch = collate_clips([trainer.dataset[i] for i in range(2)])
    with trainer.accelerator.autocast():
        loss = trainer.compute_loss(batch, 0, [0, 1])
    loss.backward()
    return float(loss), {n: p.grad.clone() for n, p in trainer.adapter.named_parameters() if p.grad is not None}


def test_gradient_checkpointing_and_bf16_compute_the_same_step(tmp_path):
    plain_loss, plain = _loss_and_grads(make_trainer(tmp_path / "a").setup())
    ckpt_loss, ckpt = _loss_and_grads(make_trainer(tmp_path / "b", gradient_checkpointing=True).setup())
    assert ckpt_loss == plain_loss and plain.keys() == ckpt.keys()
    for name in plain:
        torch.testing.assert_close(ckpt[name], plain[name])
    bf16 = make_trainer(tmp_path / "c", mixed_precision="bf16").setup()
    assert bf16.base.unet.dtype == torch.bfloat16 and all(p.dtype == torch.float32 for p in bf16.trainable)
    bf16_loss, _ = _loss_and_grads(bf16)
    assert abs(bf16_loss - plain_loss) < 0.05 * plain_loss


def test_recompute_computes_the_same_step_and_is_validated(tmp_path):
    from motionkit.modules.recompute import RECOMPUTE_MODES
    from motionkit.train.config import RECOMPUTE

    assert RECOMPUTE == RECOMPUTE_MODES
    plain_loss, plain = _loss_and_grads(make_trainer(tmp_path / "a").setup())
    lean = make_trainer(tmp_path / "b", recompute="feed_forward").setup()
    assert {m.recompute for m in lean.adapter.motion_modules()} == {"feed_forward"}
    lean_loss, lean_grads = _loss_and_grads(lean)
    assert lean_loss == plain_loss and plain.keys() == lean_grads.keys()
    for name in plain:
        torch.testing.assert_close(lean_grads[name], plain[name])
    with pytest.raises(MotionkitError, match="recompute 'all' is not one of none, cheap, feed_forward"):
        tiny_config(tmp_path / "c", recompute="all")


def test_prediction_type_follows_the_base_scheduler(tmp_path):
    from diffusers import DDIMScheduler

    def v_base() -> dict:
        return {**tiny_base(), "scheduler": DDIMScheduler(prediction_type="v_prediction")}

    trainer = Trainer(tiny_config(tmp_path), base=v_base(), dataset=PatternClips()).setup()
    assert trainer.noise_scheduler.config.prediction_type == "v_prediction"
    assert trainer.noise_scheduler.config.beta_schedule == "linear"
    reset_accelerate()
    forced = Trainer(tiny_config(tmp_path / "eps", prediction_type="epsilon"), base=v_base(), dataset=PatternClips()).setup()
    assert forced.noise_scheduler.config.prediction_type == "epsilon"


def test_frozen_weight_change_fails_loudly(tmp_path):
    from motionkit.train.trainer import FrozenWeightsChangedError

    trainer = make_trainer(tmp_path, max_steps=1).setup()
    with torch.no_grad():
        next(trainer.base.vae.parameters()).add_(1.0)  # what a wrong requires_grad would do
    with pytest.raises(FrozenWeightsChangedError, match="vae"):
        trainer.train()


def _interrupt_after(step: int):
    original = Trainer.save_checkpoint

    def save_then_stop(self):
        path = original(self)
        if self.position.step == step:
            raise KeyboardInterrupt
        return path

    return save_then_stop


def test_resume_matches_an_uninterrupted_run_bitwise(tmp_path, monkeypatch):
    changes = dict(
        max_steps=6, checkpoint_every=3, ema=True, ema_decay=0.9, lr_scheduler="cosine", lr_warmup_steps=2,
        gradient_accumulation_steps=2, batch_size=1,
    )
    straight = make_trainer(tmp_path / "straight", **changes)
    straight.train()

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "save_checkpoint", _interrupt_after(3))
        with pytest.raises(KeyboardInterrupt):
            make_trainer(tmp_path / "resumed", **changes).train()
    resumed = make_trainer(tmp_path / "resumed", resume_from="latest", **changes)
    resumed.train()

    assert resumed.position == straight.position
    a, b = straight.trainable_state(), resumed.trainable_state()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(x, y) for x, y in zip(straight.ema.shadow_params, resumed.ema.shadow_params))
    assert [h["loss"] for h in straight.history] == [h["loss"] for h in resumed.history]
    assert straight.lr_scheduler.get_last_lr() == resumed.lr_scheduler.get_last_lr()


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    original = Trainer.compute_loss
    calls = {"n": 0}

    def poisoned(self, *args, **kwargs):
        calls["n"] += 1
        loss = original(self, *args, **kwargs)
        return loss * float("nan") if calls["n"] == 3 else loss

    monkeypatch.setattr(Trainer, "compute_loss", poisoned)
    trainer = make_trainer(tmp_path, max_steps=6, checkpoint_every=2)
    with pytest.raises(TrainingDivergedError) as err:
        trainer.train()
    message = str(err.value)
    assert "nan at step 3" in message and "checkpoint-00000002" in message and "\n" not in message
    names = [p.name for p in (tmp_path / "checkpoints").iterdir()]
    assert names == ["checkpoint-00000002"]
    saved = json.loads((tmp_path / "checkpoints" / "checkpoint-00000002" / "state.json").read_text())
    assert saved["step"] == 2
    assert all(math.isfinite(float(p.sum())) for p in trainer.trainable)


# -- image conditioning ---------------------------------------------------------------------------


def test_image_cond_layout():
    from motionkit.train.image_cond import image_cond_tensor, training_image_cond

    latent = torch.randn(2, 4, 3, 3)
    cond = image_cond_tensor(latent, torch.tensor([0, 2]), num_frames=4)
    assert cond.shape == (2, 5, 4, 3, 3)
    assert cond[0, 0, :, 0, 0].tolist() == [1, 0, 0, 0] and cond[1, 0, :, 0, 0].tolist() == [0, 0, 1, 0]
    assert all(torch.equal(cond[:, 1:, f], latent) for f in range(4))
    latents = torch.randn(3, 4, 4, 3, 3)
    gens = [torch.Generator().manual_seed(i) for i in range(3)]
    dropped = training_image_cond(latents, ImageCondConfig(cond_dropout=1.0), gens)
    assert dropped.shape == (3, 5, 4, 3, 3) and not dropped.any()
    kept = training_image_cond(latents, ImageCondConfig(noise_aug=(0.0, 0.0), cond_dropout=0.0), gens)
    for i in range(3):
        frame = int(kept[i, 0, :, 0, 0].argmax())
        assert torch.equal(kept[i, 1:, 0], latents[i, :, frame])
    pia = training_image_cond(latents, ImageCondConfig(cond_dropout=0.0, mask="pia"), gens)
    mask = pia[:, 0, :, 0, 0]
    assert ((mask > 0) & (mask <= 1)).all() and (mask < 1).any()  # PIA's coefficients, not a one-hot


def test_image_cond_branch_trains_while_the_unet_gets_no_gradient(tmp_path):
    trainer = make_trainer(tmp_path, image_cond=ImageCondConfig(enabled=True, cond_dropout=0.0)).setup()
    conv = trainer.adapter.image_cond_conv
    assert conv is not None and conv.in_channels == 5 and not conv.weight.any()
    batch = collate_clips([trainer.dataset[i] for i in range(2)])
    trainer.compute_loss(batch, 0, [0, 1]).backward()
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in trainer.base.unet.parameters())
    assert all(p.grad is None for m in (trainer.base.vae, trainer.base.text_encoder) for p in m.parameters())
    trainer.optimizer.zero_grad()
    trainer.train()
    assert conv.weight.abs().sum() > 0
    from motionkit.formats import load_adapter

    exported = load_adapter(tmp_path / "adapter")
    assert torch.equal(exported.image_cond_conv.weight, conv.weight.detach())
    assert exported.config.image_cond_mask == "one_hot", "sampling must feed the mask the branch learned"


# -- validation -----------------------------------------------------------------------------------


def test_validation_writes_videos_and_leaves_training_unchanged(tmp_path):
    pytest.importorskip("motionkit.pipeline.motion_pipeline")
    from motionkit.train.config import ValidationConfig

    validation = ValidationConfig(every=2, prompts=("a pan",), num_frames=FRAMES, num_inference_steps=2)
    with_val = make_trainer(tmp_path / "val", max_steps=2, validation=validation)
    with_val.train()
    videos = sorted((tmp_path / "val" / "validation").glob("*.mp4"))
    assert [v.name for v in videos] == ["step-00000002-0.mp4"]
    without = make_trainer(tmp_path / "plain", max_steps=2)
    without.train()
    a, b = with_val.trainable_state(), without.trainable_state()
    assert all(torch.equal(a[k], b[k]) and a[k].dtype == torch.float32 for k in a)


# -- MotionLoRA -----------------------------------------------------------------------------------


def test_motion_lora_trains_only_lora_and_round_trips(tmp_path):
    from motionkit.adapter import MotionAdapter
    from motionkit.formats import apply_motion_lora, load_adapter, load_motion_lora, save_adapter
    from motionkit.injection import inject
    from motionkit.tiny import randomize_, tiny_unet, unet_inputs

    base_path = tmp_path / "base_adapter"
    base_adapter = randomize_(MotionAdapter.from_unet(tiny_unet(), "animatediff-v2"), seed=3, std=0.05)
    save_adapter(base_adapter, base_path)
    reference = {k: v.clone() for k, v in base_adapter.state_dict().items()}

    trainer = make_trainer(
        tmp_path / "run", max_steps=3, lora=LoRAConfig(enabled=True, rank=4, alpha=8, base_adapter=str(base_path))
    )
    result = trainer.train()
    names = [n for n, p in trainer.adapter.named_parameters() if p.requires_grad]
    assert names and all(".lora_A." in n or ".lora_B." in n for n in names)
    assert any(trainer.adapter.get_parameter(n).abs().sum() > 0 for n in names if ".lora_B." in n)
    base_weights = {k.replace(".base_layer", ""): v for k, v in trainer.adapter.state_dict().items() if ".lora_" not in k}
    assert base_weights.keys() == reference.keys()
    assert all(torch.equal(base_weights[k], reference[k]) for k in reference)

    # Reload: fresh base adapter + saved LoRA gives the trained adapter's outputs.
    lora_file = Path(result.exported["motion_lora"])
    reloaded = load_adapter(base_path)
    apply_motion_lora(reloaded, load_motion_lora(lora_file))
    trainer.adapter.eval()
    inputs = unet_inputs(trainer.base.unet, batch=1, frames=FRAMES)
    expected = trainer.motion_unet(**inputs).sample
    trainer.motion_unet.eject()
    got = inject(trainer.base.unet, reloaded)(**inputs).sample
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_trained_motion_lora_loads_into_diffusers(tmp_path):
    """The saved file goes through diffusers' own LoRA loader onto its UNetMotionModel, same outputs."""
    from diffusers import MotionAdapter as DiffusersMotionAdapter
    from diffusers import UNetMotionModel
    from safetensors.torch import load_file

    from motionkit.adapter import MotionAdapter
    from motionkit.formats import save_adapter
    from motionkit.injection import inject
    from motionkit.tiny import randomize_, tiny_unet, unet_inputs
    from motionkit.train.motion_lora import add_trainable_lora, save_trained_lora

    adapter = MotionAdapter.from_unet(tiny_unet(), "animatediff-v2", temporal_norm="across_frames")
    randomize_(adapter, std=0.05)
    save_adapter(adapter, tmp_path / "adapter", format="diffusers")
    add_trainable_lora(adapter, rank=4, alpha=8)  # alpha != rank: the scale is folded into the saved factors
    with torch.no_grad():
        for name, param in adapter.named_parameters():
            if ".lora_B." in name:
                param.normal_(0, 0.05)
    save_trained_lora(adapter, tmp_path / "lora.safetensors")

    theirs = UNetMotionModel.from_unet2d(tiny_unet(), DiffusersMotionAdapter.from_pretrained(tmp_path / "adapter"))
    theirs.load_lora_adapter(load_file(str(tmp_path / "lora.safetensors")), prefix="unet", adapter_name="motion")
    inputs = unet_inputs(tiny_unet(), batch=1, frames=FRAMES)
    with torch.no_grad():
        ours = inject(tiny_unet(), adapter.eval())(**inputs).sample
        text = inputs["encoder_hidden_states"].repeat_interleave(FRAMES, 0)
        expected = theirs(inputs["sample"], inputs["timestep"], text).sample
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-5)


# -- CLI ------------------------------------------------------------------------------------------


def test_cli_trains_from_a_yaml_config(tmp_path, capsys):
    import yaml

    from motionkit.cli import main
    from motionkit.formats import load_adapter

    write_base_folder(tmp_path / "base")
    write_videos(tmp_path / "videos")
    config = {
        "base": "base",
        "adapter": "animatediff-v2",
        "data": {"folder": "videos", "n_frames": FRAMES, "stride": 1, "size": SIZE},
        "batch_size": 2,
        "log_with": [],
        "checkpoint_every": 1,
        "keep_checkpoints": 1,
        "export_formats": ["motionkit", "diffusers"],
    }
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(config))
    out = tmp_path / "out"
    cache = tmp_path / "latents"
    argv = ["train", "--config", str(tmp_path / "train.yaml"), "--max-steps", "2", "--output-dir", str(out), "lr=1e-3"]
    assert main([*argv, f"data.latent_cache={cache}"]) == 0
    assert "trained 2 steps" in capsys.readouterr().out
    assert len(list(cache.rglob("*.safetensors"))) >= 2  # clips were VAE-encoded once, into the cache
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["checkpoint-00000002"]
    assert load_adapter(out / "adapter").config.block_out_channels == (32, 64)
    assert (out / "adapter-diffusers" / "config.json").is_file()

    assert main(["train", "--config", str(tmp_path / "train.yaml"), "nope=1"]) == 2
    assert "unknown training option 'nope'" in capsys.readouterr().err
    assert main(argv) == 2  # a second fresh run must not overwrite the first one's checkpoints
    assert "--resume latest" in capsys.readouterr().err


def test_tensorboard_logging_writes_event_files(tmp_path):
    trainer = make_trainer(tmp_path, log_with=("tensorboard",), max_steps=2).setup()
    trainer.train()
    events = list(tmp_path.rglob("events.out.tfevents.*"))
    assert events and all(e.stat().st_size > 0 for e in events), "TensorBoard events are written under output_dir"


def test_compile_motion_modules_computes_the_same_step(tmp_path):
    from motionkit.modules.compiled import compile_refusal

    if compile_refusal("cpu") is not None:
        pytest.skip("torch.compile cannot run here")
    plain_loss, plain = _loss_and_grads(make_trainer(tmp_path / "a").setup())
    compiled = make_trainer(tmp_path / "b", compile_motion_modules=True).setup()
    assert all(m.is_compiled for m in compiled.adapter.motion_modules())
    compiled_loss, compiled_grads = _loss_and_grads(compiled)
    assert compiled_loss == pytest.approx(plain_loss, rel=1e-5) and plain.keys() == compiled_grads.keys()
    for name in plain:
        torch.testing.assert_close(compiled_grads[name], plain[name], atol=1e-6, rtol=1e-4)
