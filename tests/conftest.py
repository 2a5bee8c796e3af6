import os

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
