"""Training faults that must not lose work or pass silently: a non-finite update never checkpointed, a
torn history line, lr overrides on resume, short clips, launcher mismatches, summary paths and
half-written checkpoint folders. Tiny models, a few steps."""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from motionkit.errors import MotionkitError
from motionkit.train.trainer import Trainer, TrainingDivergedError
from tests.test_train import fresh_accelerate_state, make_trainer  # noqa: F401  (fixture)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_an_update_that_breaks_the_weights_is_never_checkpointed(tmp_path, monkeypatch):
    original = Trainer.compute_loss
    calls = {"n": 0}

    def overflowing_gradient(self, *args, **kwargs):
        calls["n"] += 1
        loss = original(self, *args, **kwargs)
        if calls["n"] == 2:  # a finite loss whose gradient overflows
            loss.register_hook(lambda grad: grad * float("inf"))
        return loss

    monkeypatch.setattr(Trainer, "compute_loss", overflowing_gradient)
    trainer = make_trainer(tmp_path, max_steps=4, checkpoint_every=1)
    with pytest.raises(TrainingDivergedError) as err:
        trainer.train()
    message = str(err.value)
    assert "step 2" in message and "checkpoint-00000001" in message and "\n" not in message
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["checkpoint-00000001"]
    from safetensors.torch import load_file

    weights = load_file(str(tmp_path / "checkpoints" / "checkpoint-00000001" / "trainable.safetensors"))
    assert all(bool(torch.isfinite(t).all()) for t in weights.values())
    history = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history] == [1]


def test_non_finite_weights_are_refused_by_save_checkpoint(tmp_path):
    trainer = make_trainer(tmp_path, max_steps=1).setup()
    with torch.no_grad():
        trainer.trainable[0].view(-1)[0] = float("nan")
    with pytest.raises(TrainingDivergedError, match="not finite"):
        trainer.save_checkpoint()
    assert not (tmp_path / "checkpoints").exists() or not list((tmp_path / "checkpoints").iterdir())


def test_a_torn_last_history_line_is_dropped_on_resume(tmp_path, caplog):
    make_trainer(tmp_path, max_steps=2, checkpoint_every=2).train()
    history = tmp_path / "history.jsonl"
    with open(history, "a", encoding="utf-8") as handle:
        handle.write('{"step": 3, "lo')  # killed mid-write
    with caplog.at_level(logging.WARNING):
        resumed = make_trainer(tmp_path, max_steps=3, checkpoint_every=2, resume_from="latest")
        resumed.train()
    assert "interrupted write" in caplog.text
    steps = [json.loads(line)["step"] for line in history.read_text().splitlines()]
    assert steps == [1, 2, 3]
    assert [h["step"] for h in resumed.history] == [1, 2, 3]


def test_a_corrupt_history_line_before_the_last_is_refused(tmp_path):
    make_trainer(tmp_path, max_steps=2, checkpoint_every=2).train()
    history = tmp_path / "history.jsonl"
    lines = history.read_text().splitlines()
    history.write_text("garbage\n" + "\n".join(lines) + "\n")
    with pytest.raises(MotionkitError, match="line 1 is not JSON"):
        make_trainer(tmp_path, max_steps=3, resume_from="latest").setup()


def test_an_lr_override_on_resume_is_applied(tmp_path):
    changes = dict(checkpoint_every=2, lr_scheduler="linear", lr_warmup_steps=0)
    first = make_trainer(tmp_path, max_steps=4, lr=1e-3, **changes)
    first.train()
    lr_before = first.history[1]["lr"]  # lr after step 2 under the first run's schedule
    resumed = make_trainer(tmp_path, max_steps=4, lr=5e-4, resume_from=str(tmp_path / "checkpoints" / "checkpoint-00000002"), **changes)
    resumed.setup()
    assert resumed.lr_scheduler.base_lrs == [5e-4]
    assert math.isclose(resumed.optimizer.param_groups[0]["lr"], lr_before / 2, rel_tol=1e-9)
    assert math.isclose(resumed.lr_scheduler.get_last_lr()[0], lr_before / 2, rel_tol=1e-9)
    resumed.train()
    assert math.isclose(resumed.history[2]["lr"], first.history[2]["lr"] / 2, rel_tol=1e-9)


def test_summary_paths_are_relative_to_the_output_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_trainer(Path("runs") / "a", max_steps=1).train()
    summary = json.loads((tmp_path / "runs" / "a" / "summary.json").read_text())
    assert summary["exported"]
    for path in summary["exported"].values():
        assert (tmp_path / "runs" / "a" / path).exists(), path


def test_stale_checkpoint_temporaries_are_removed(tmp_path):
    make_trainer(tmp_path, max_steps=2, checkpoint_every=2).train()
    root = tmp_path / "checkpoints"
    stale = root / f".checkpoint-00000003.tmp-{_dead_pid()}-0123abcd"
    stale.mkdir()
    (stale / "trainable.safetensors").write_bytes(b"half")
    make_trainer(tmp_path, max_steps=2, resume_from="latest").setup()
    assert not stale.exists()
    stale.mkdir()  # and before each checkpoint write
    make_trainer(tmp_path, max_steps=4, checkpoint_every=2, resume_from="latest").train()
    assert not stale.exists()
    assert sorted(p.name for p in root.iterdir()) == ["checkpoint-00000002", "checkpoint-00000004"]


def test_a_short_clip_warns_once(caplog):
    from motionkit.data.datasets import ClipSource, VideoClipDataset

    sources = [ClipSource("short.mp4", "a", 0, 5, 8.0, 32, 32), ClipSource("long.mp4", "b", 0, 40, 8.0, 32, 32)]
    dataset = VideoClipDataset(sources, n_frames=8, stride=4, size=(32, 32), seed=0)
    with caplog.at_level(logging.WARNING):
        for epoch in range(3):
            dataset.set_epoch(epoch)
            dataset.plan(0), dataset.plan(1)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "short.mp4" in warnings[0] and "repeated frames" in warnings[0]
    assert "29" in warnings[0]  # (8 - 1) * 4 + 1


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"ACCELERATE_USE_FSDP": "true"}, "accelerate's FSDP was asked for"),
        ({"ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29533"}, "--cpu runs one process"),
    ],
)
def test_a_launch_accelerate_does_not_run_is_refused(tmp_path, monkeypatch, env, expected):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(MotionkitError, match=expected) as err:
        make_trainer(tmp_path, max_steps=1, cpu=True).setup()
    assert "\n" not in str(err.value) and "--multi_gpu" in str(err.value)


def test_optimizer_settings_on_resume_come_from_the_config(tmp_path):
    make_trainer(tmp_path, max_steps=2, checkpoint_every=2).train()
    resumed = make_trainer(tmp_path, max_steps=3, resume_from="latest", adam_weight_decay=0.5, adam_beta2=0.99).setup()
    group = resumed.optimizer.param_groups[0]
    assert group["weight_decay"] == 0.5 and tuple(group["betas"]) == (0.9, 0.99)
