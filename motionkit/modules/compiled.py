"""Opt-in ``torch.compile`` (inductor) of a motion module's forward, with a one-line refusal where it cannot run.

Inductor fuses a module's norms, position adds, GEGLU and layout copies into a few generated loops, forward
and backward; the products stay library calls. Graphs are compiled per input shape (``dynamic=False``) on
the first call with that shape, so the first step of each shape pays the compile; later ones run the
compiled code. Same outputs and gradients as eager within fp32 rounding (fused elementwise loops round
differently).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from typing import Callable, Optional

import torch

logger = logging.getLogger(__name__)


def compile_refusal(device: torch.device | str = "cpu") -> Optional[str]:
    """Why compiling cannot run for ``device`` here, as one line naming the fix; ``None`` when it can."""
    device_type = torch.device(device).type
    if not hasattr(torch, "compile"):
        return "compiling motion modules needs torch >= 2.0: upgrade torch, or leave compile_motion_modules off"
    if device_type == "cpu":
        compiler = os.environ.get("CXX") or next((c for c in ("g++", "c++", "clang++") if shutil.which(c)), None)
        if compiler is None:
            return ("compiling motion modules on CPU needs a C++ compiler for inductor: install g++ (or set CXX), "
                    "or leave compile_motion_modules off")
    elif device_type == "cuda" and importlib.util.find_spec("triton") is None:
        return "compiling motion modules on CUDA needs triton: pip install triton, or leave compile_motion_modules off"
    return None


class CompiledForward:
    """``forward`` compiled with inductor, one static graph per input shape; should inductor fail to build
    code, one warning line and ``forward`` runs eagerly from then on (errors of the model itself propagate)."""

    def __init__(self, forward: Callable[..., torch.Tensor]):
        self.eager = forward
        self.compiled: Optional[Callable[..., torch.Tensor]] = torch.compile(forward, dynamic=False)

    def __call__(self, *args: object) -> torch.Tensor:
        if self.compiled is not None:
            from torch._dynamo.exc import BackendCompilerFailed

            try:
                return self.compiled(*args)
            except BackendCompilerFailed as error:
                logger.warning("motion module runs eagerly: compiling it failed (%s)", str(error).splitlines()[0])
                self.compiled = None
        return self.eager(*args)
