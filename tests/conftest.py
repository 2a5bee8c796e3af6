import os

# Triton decides at decoration time whether to interpret, so this must precede any kernel import.
# Without a GPU the kernels run under the interpreter (slow, exact); tests keep shapes small.
try:
    import torch

    _has_cuda = torch.cuda.is_available()
except ImportError:  # pragma: no cover
    _has_cuda = False
if not _has_cuda:
    os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
