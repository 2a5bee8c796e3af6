"""Motion modules through torch.compile: same outputs and gradients as eager, and a one-line refusal where
compiling cannot run."""

import pytest
import torch

from motionkit.adapter import MotionAdapter
from motionkit.modules import MotionModule, compiled
from motionkit.tiny import randomize_, tiny_unet


def _randomize(module: torch.nn.Module) -> torch.nn.Module:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return module


def _step(module: MotionModule, x: torch.Tensor, frames: int):
    module.zero_grad()
    x.grad = None
    out = module(x, frames)
    out.square().mean().backward()
    return out.detach(), x.grad.clone(), {n: p.grad.clone() for n, p in module.named_parameters()}


@pytest.mark.skipif(compiled.compile_refusal("cpu") is not None, reason="torch.compile cannot run here")
def test_compiled_motion_module_equals_eager_in_output_and_gradients():
    module = _randomize(MotionModule(16, 2, norm_num_groups=4, temporal_norm="across_frames"))
    x = torch.randn(2 * 8, 16, 2, 2, requires_grad=True)
    eager = _step(module, x, 8)
    module.compile_motion()
    assert module.is_compiled
    for _ in range(2):  # the first call compiles, the second runs the compiled code
        out, dx, grads = _step(module, x, 8)
        torch.testing.assert_close(out, eager[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(dx, eager[1], atol=1e-6, rtol=1e-4)
        for name, grad in eager[2].items():
            torch.testing.assert_close(grads[name], grad, atol=1e-6, rtol=1e-4, msg=name)


def test_compile_refuses_in_one_line_without_a_cpp_compiler(monkeypatch):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(compiled.shutil, "which", lambda name: None)
    adapter = MotionAdapter.from_unet(tiny_unet("tiny-sd"), "animatediff-v2")
    refusal = adapter.compile_motion_modules()
    assert refusal is not None and "\n" not in refusal
    assert "C++ compiler" in refusal and "compile_motion_modules off" in refusal
    assert not any(m.is_compiled for m in adapter.motion_modules())


def test_compiled_module_falls_back_to_eager_when_inductor_fails(monkeypatch, caplog):
    from torch._dynamo.exc import BackendCompilerFailed

    module = randomize_(MotionAdapter.from_unet(tiny_unet("tiny-sd"), "animatediff-v2"), std=0.02)
    motion = next(module.motion_modules())
    x = torch.randn(2 * 4, motion.temporal_transformer.proj_in.in_features, 2, 2)
    with torch.no_grad():
        expected = motion(x, 4)
    motion.compile_motion()

    def broken(*_args):
        raise BackendCompilerFailed(lambda *a: None, RuntimeError("no compiler"), None)

    monkeypatch.setattr(motion._compiled, "compiled", broken)
    with torch.no_grad(), caplog.at_level("WARNING"):
        out = motion(x, 4)
    torch.testing.assert_close(out, expected, atol=0, rtol=0)
    assert motion._compiled.compiled is None
    assert any("runs eagerly" in r.getMessage() for r in caplog.records)
