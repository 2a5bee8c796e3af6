"""Every script in ``examples/`` runs with ``--quick`` on the tiny family (the shipped one, or a random
stand-in with its layout) and writes what it says it writes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
OUT = Path("motionkit-out") / "examples"
# script -> files it must write, relative to the working folder
SCRIPTS = {
    "animate_personalized.py": [OUT / "personalized.mp4"],
    "image_to_video.py": [OUT / "image-to-video.gif"],
    "train_on_folder.py": [OUT / "train-on-folder" / "run" / "adapter", OUT / "train-on-folder" / "sample.mp4"],
    "motion_lora.py": [OUT / "motion-lora" / "run" / "motion_lora.safetensors", OUT / "motion-lora" / "scale-1.mp4"],
    "convert_animatediff.py": [OUT / "converted" / "mm_tiny_v2-diffusers", OUT / "converted" / "mm_tiny_v2-motionkit"],
    "prompt_travel.py": [OUT / "prompt-travel.mp4"],
}


def test_every_example_is_tested():
    scripts = {p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_")}
    assert scripts == set(SCRIPTS)


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_example_runs_quick(script, family_dir, tmp_path):
    # One thread: tiny models on a shared CPU run faster without thread hand-offs.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    command = [sys.executable, str(EXAMPLES / script), "--quick", "--models-dir", str(family_dir), "--device", "cpu"]
    run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "wrote" in run.stdout
    for path in SCRIPTS[script]:
        assert (tmp_path / path).exists(), f"{script} did not write {path}"
