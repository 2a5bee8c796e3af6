"""Data-parallel training: 2 CPU processes (gloo) through ``accelerate launch`` end with identical replicas,
and match one process that sees the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch
import yaml

from tests.test_train import FRAMES, SIZE, fresh_accelerate_state, write_base_folder, write_videos  # noqa: F401

STEPS = 3
LR = 1e-3


def _config(tmp_path) -> str:
    write_base_folder(tmp_path / "base")
    write_videos(tmp_path / "videos")
    config = {
        "base": "base",
        "adapter": "animatediff-v2",
        "data": {"folder": "videos", "n_frames": FRAMES, "stride": 1, "size": SIZE},
        "lr": LR,
        "max_steps": STEPS,
        "log_with": [],
        "checkpoint_every": 0,
    }
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def _weights(out) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(out / "adapter" / "diffusion_pytorch_model.safetensors"))


def test_two_processes_match_one_process_on_the_same_global_batch(tmp_path):
    from motionkit.cli import main

    config = _config(tmp_path)
    single, double = tmp_path / "single", tmp_path / "double"
    assert main(["train", "--config", config, "--output-dir", str(single), "batch_size=2"]) == 0

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                "-m", "motionkit", "train", "--config", config, "--output-dir", str(double), "batch_size=1", "cpu=true",
    ]  # fmt: skip
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]

    summary = json.loads((double / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == STEPS
    assert len(summary["replica_sha256"]) == 2 and len(set(summary["replica_sha256"])) == 1

    losses = {name: [json.loads(line)["loss"] for line in (out / "history.jsonl").read_text().splitlines()] for name, out in (("single", single), ("double", double))}
    torch.testing.assert_close(torch.tensor(losses["double"]), torch.tensor(losses["single"]), rtol=1e-5, atol=1e-6)
    one, two = _weights(single), _weights(double)
    assert one.keys() == two.keys()
    # Adam divides by sqrt(v): where a gradient entry is ~0, a last-bit difference (all-reduce vs one batch
    # sum) moves that entry by a visible fraction of one step (lr). Bound it well below one step.
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=0, atol=LR * 0.1)
    diff = sum(float((two[k] - one[k]).norm() ** 2) for k in one) ** 0.5
    assert diff < 1e-5 * sum(float(one[k].norm() ** 2) for k in one) ** 0.5
