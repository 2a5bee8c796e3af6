import importlib
import os
import sys
from pathlib import Path

import pytest
import torch

# Triton decides at decoration time whether to interpret, so this must precede any kernel import.
# Without a GPU the kernels run under the interpreter (slow, exact); tests keep shapes small.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# Tiny models gain nothing from threads, and oversubscribed cores (parallel processes in the
# distributed test, a busy CI machine) slow them down many times over.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def family_dir(tmp_path_factory):
    """The shipped tiny model family, or a random stand-in with its layout where it is not installed."""
    from motionkit import family
    from motionkit.errors import MotionkitError

    try:
        return family.shipped_family_dir()
    except MotionkitError:
        return family.write_stand_in_family(tmp_path_factory.mktemp("family")).root


@pytest.fixture(scope="session")
def write_models_folder():
    """A function writing a models folder of tiny random models into a directory: ``bases/base`` (a diffusers
    folder), ``adapters/adapter`` (trained on 2 frames) and ``first.png``, a grey 64 px first frame."""

    def write(root):
        import numpy as np
        from diffusers import StableDiffusionPipeline
        from PIL import Image

        from motionkit.adapter import MotionAdapter
        from motionkit.tiny import tiny_pipeline_components

        components = tiny_pipeline_components(seed=0)
        StableDiffusionPipeline(
            **components, safety_checker=None, feature_extractor=None, requires_safety_checker=False
        ).save_pretrained(root / "bases" / "base")
        MotionAdapter.from_unet(components["unet"], training_frames=2).save_pretrained(root / "adapters" / "adapter")
        Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(root / "first.png")
        return root

    return write


@pytest.fixture(scope="session")
def benchmark_script():
    """A function importing ``benchmarks/<name>.py`` as a module; the folder is on ``sys.path`` only while it loads."""
    folder = str(Path(__file__).resolve().parents[1] / "benchmarks")

    def load(name: str):
        sys.path.insert(0, folder)
        try:
            return importlib.import_module(name)
        finally:
            sys.path.remove(folder)

    return load
