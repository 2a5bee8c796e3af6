"""Fused Triton temporal attention: numerics under the interpreter, GPU compile checks, dispatch.

Without CUDA, conftest sets TRITON_INTERPRET=1 before this module imports the kernels, so they run
(slowly, exactly) on CPU: shapes stay at a few dozen (sequence, head) pairs per call. Rules the
interpreter does not enforce (tl.dot minimum K, shared memory) are checked by compiling for
sm_80/sm_90 in a subprocess without the interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

pytest.importorskip("triton")

from motionkit.kernels import dispatch  # noqa: E402
from motionkit.kernels import triton_attention as ta  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TOL = {torch.float32: 2e-5, torch.float16: 2e-3, torch.bfloat16: 2e-2}
GRAD_TOL = {torch.float32: 5e-5, torch.float16: 5e-3, torch.bfloat16: 4e-2}


def _qkv(n: int, frames: int, heads: int, head_dim: int, dtype: torch.dtype, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    c = heads * head_dim
    fused = torch.randn(n, frames, 3 * c, generator=gen).to(DEVICE, dtype)
    return fused, fused.split(c, dim=-1)  # strided views, as a fused QKV projection gives them


def _reference(q, k, v, heads):
    # fp32 SDPA on the same (rounded) inputs: the kernel accumulates in fp32 too.
    return dispatch.sdpa_attention(q.float(), k.float(), v.float(), heads)


def _close(actual: torch.Tensor, expected: torch.Tensor, tol: float) -> None:
    # Scale-aware absolute tolerance (gradients can be O(10)).
    scale = max(1.0, expected.abs().max().item())
    torch.testing.assert_close(actual.float(), expected.float(), rtol=0, atol=tol * scale)


# ------------------------------------------------------------------------------- forward ----


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("head_dim", [40, 80, 160])
@pytest.mark.parametrize("frames", [8, 16, 24, 32])
def test_forward_matches_sdpa(frames, head_dim, dtype):
    _, (q, k, v) = _qkv(3, frames, 2, head_dim, dtype)
    out = ta.triton_temporal_attention(q, k, v, 2)
    assert out.shape == q.shape and out.dtype == dtype and out.is_contiguous()
    _close(out, _reference(q, k, v, 2), TOL[dtype])


@pytest.mark.parametrize("frames,head_dim", [(16, 40), (7, 80), (32, 64)])
def test_forward_bf16(frames, head_dim):
    _, (q, k, v) = _qkv(3, frames, 2, head_dim, torch.bfloat16)
    out = ta.triton_temporal_attention(q, k, v, 2)
    assert out.dtype == torch.bfloat16
    _close(out, _reference(q, k, v, 2), TOL[torch.bfloat16])


@pytest.mark.parametrize("frames,head_dim,heads", [(1, 40, 2), (2, 8, 4), (7, 40, 3), (13, 80, 1), (64, 40, 1)])
def test_forward_odd_shapes(frames, head_dim, heads):
    # F not a power of two / below the 16-row padding, tiny head dims, head counts that leave
    # partial groups in the last program.
    _, (q, k, v) = _qkv(5, frames, heads, head_dim, torch.float32)
    _close(ta.triton_temporal_attention(q, k, v, heads), _reference(q, k, v, heads), TOL[torch.float32])


def test_forward_transposed_and_nondense_inputs():
    # q from a [F, N, C] buffer (frame-major), k contiguous, v with a channel stride of 2.
    gen = torch.Generator().manual_seed(3)
    n, frames, heads, d = 4, 12, 2, 40
    c = heads * d
    q = torch.randn(frames, n, c, generator=gen).to(DEVICE).transpose(0, 1)
    k = torch.randn(n, frames, c, generator=gen).to(DEVICE)
    v = torch.randn(n, frames, 2 * c, generator=gen).to(DEVICE)[..., ::2]
    out = ta.triton_temporal_attention(q, k, v, heads)
    _close(out, _reference(q, k, v, heads), TOL[torch.float32])


def test_four_d_frames_in_batch_view():
    # A frames-in-batch projection output [B, F, S, 3C] read as [B, S, F, C] without permute copies.
    gen = torch.Generator().manual_seed(4)
    b, frames, s, heads, d = 2, 16, 3, 2, 40
    c = heads * d
    fib = torch.randn(b, frames, s, 3 * c, generator=gen).to(DEVICE)
    q, k, v = (t.transpose(1, 2) for t in fib.split(c, dim=-1))  # [B, S, F, C] strided views
    out = ta.triton_temporal_attention(q, k, v, heads)
    assert out.shape == (b, s, frames, c) and out.is_contiguous()
    flat = [t.reshape(b * s, frames, c) for t in (q, k, v)]  # reference pays the copies
    _close(out.reshape(b * s, frames, c), _reference(*flat, heads), TOL[torch.float32])

    kept = ta.triton_temporal_attention(q, k, v, heads, preserve_layout=True)
    assert kept.transpose(1, 2).is_contiguous()  # back to [B, F, S, C] as a free view
    torch.testing.assert_close(kept, out, rtol=0, atol=0)


def test_empty_input():
    q = torch.empty(0, 16, 80, device=DEVICE)
    assert ta.triton_temporal_attention(q, q, q, 2).shape == (0, 16, 80)


def test_input_validation():
    q = torch.zeros(2, 16, 80, device=DEVICE)
    with pytest.raises(ValueError, match="divisible"):
        ta.triton_temporal_attention(q, q, q, 3)
    with pytest.raises(ValueError, match="shapes differ"):
        ta.triton_temporal_attention(q, q[:1], q, 2)
    with pytest.raises(ValueError, match="head dim"):
        big = torch.zeros(1, 4, 512, device=DEVICE)
        ta.triton_temporal_attention(big, big, big, 1)


# ------------------------------------------------------------------------------ backward ----

GRAD_CASES = [
    (16, 40, torch.float32),
    (8, 80, torch.float32),
    (7, 160, torch.float32),
    (24, 64, torch.float32),
    (16, 40, torch.float16),
    (32, 80, torch.float16),
    (64, 80, torch.float16),  # head dim walked in chunks (rolled loop, q/k/dO re-read)
    (32, 160, torch.float32),  # 32-wide chunks
    (16, 64, torch.bfloat16),
]


@pytest.mark.parametrize("frames,head_dim,dtype", GRAD_CASES, ids=[f"F{f}-d{d}-{str(t)[6:]}" for f, d, t in GRAD_CASES])
def test_gradients_match_sdpa(frames, head_dim, dtype):
    fused, _ = _qkv(3, frames, 2, head_dim, dtype, seed=1)
    c = 2 * head_dim
    gen = torch.Generator().manual_seed(2)
    grad_out = torch.randn(3, frames, c, generator=gen).to(DEVICE, dtype)

    ours = fused.detach().clone().requires_grad_()
    q, k, v = ours.split(c, dim=-1)
    out = ta.triton_temporal_attention(q, k, v, 2)
    out.backward(grad_out)

    ref = fused.detach().float().clone().requires_grad_()
    rq, rk, rv = ref.split(c, dim=-1)
    _reference(rq, rk, rv, 2).backward(grad_out.float())

    assert ours.grad.dtype == dtype
    for part in range(3):  # dq, dk, dv land in the q/k/v slices of the fused gradient
        got, want = ours.grad[..., part * c : (part + 1) * c], ref.grad[..., part * c : (part + 1) * c]
        _close(got, want, GRAD_TOL[dtype])


def test_gradients_four_d_view_and_noncontiguous_grad_out():
    gen = torch.Generator().manual_seed(5)
    b, frames, s, heads, d = 1, 16, 3, 2, 40
    c = heads * d
    base = torch.randn(b, frames, s, c, generator=gen).to(DEVICE)
    grad_fib = torch.randn(b, frames, s, c, generator=gen).to(DEVICE)

    x = base.clone().requires_grad_()
    view = x.transpose(1, 2)
    out = ta.triton_temporal_attention(view, view * 0.5, view, heads, preserve_layout=True)
    out.backward(grad_fib.transpose(1, 2))  # grad_out is a strided view too

    y = base.clone().requires_grad_()
    flat = y.transpose(1, 2).reshape(b * s, frames, c)
    dispatch.sdpa_attention(flat, flat * 0.5, flat, heads).backward(grad_fib.transpose(1, 2).reshape(b * s, frames, c))
    _close(x.grad, y.grad, GRAD_TOL[torch.float32])


# ------------------------------------------------------------------------------ dispatch ----


def test_dispatch_triton_backend_runs_kernel():
    _, (q, k, v) = _qkv(2, 16, 2, 40, torch.float32)
    out = dispatch.temporal_attention(q, k, v, 2, backend="triton")
    _close(out, _reference(q, k, v, 2), TOL[torch.float32])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks CPU-only selection")
def test_auto_picks_sdpa_on_cpu():
    q = torch.randn(2, 16, 80)
    assert not ta.supports(q, 2)
    assert dispatch.resolve_backend("auto", q, 2) == "sdpa"


def test_supports_shape_checks():
    assert not ta.supports(torch.zeros(2, 16, 80), 2)  # CPU tensor
    assert not ta.supports(torch.zeros(2, 16, 80, device="meta"), 2)  # not CUDA either


def test_chunked_configs_cover_the_head_dim():
    for frames, head_dim, dtype, backward in [(16, 80, torch.float32, False), (64, 160, torch.float16, True),
                                              (64, 40, torch.float32, True), (32, 160, torch.float32, True)]:
        cfg = ta.choose_config(frames, head_dim, dtype, backward)
        assert cfg.n_chunks > 1 and cfg.block_dc in (16, 32)
        assert (cfg.n_chunks - 1) * cfg.block_dc < head_dim <= cfg.n_chunks * cfg.block_dc
    cfg = ta.choose_config(16, 160, torch.float16)  # the common 16-bit case keeps one whole-head tile
    assert (cfg.n_chunks, cfg.block_dc) == (1, 256)


def test_cpu_without_interpreter_raises_one_line_error():
    script = textwrap.dedent(
        """
        import torch
        from motionkit.kernels import dispatch
        q = torch.randn(2, 16, 80)
        try:
            dispatch.temporal_attention(q, q, q, 2, backend="triton")
        except dispatch.BackendUnavailableError as exc:
            print("ERR:" + str(exc))
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["CUDA_VISIBLE_DEVICES"] = ""
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("ERR:")]
    assert len(lines) == 1
    message = lines[0][4:]
    assert "\n" not in message
    assert "CUDA tensor" in message and "TRITON_INTERPRET=1" in message and "'sdpa'" in message


# ---------------------------------------------------------------------------- grid limit ----


class _RecordingKernel:
    """Stands in for a Triton kernel: records the launch grid instead of running."""

    def __init__(self):
        self.grids = []

    def __getitem__(self, grid):
        self.grids.append(grid)
        return lambda *args, **kwargs: None


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
@pytest.mark.parametrize("head_dim", [40, 64, 160])
def test_grid_stays_on_axis_zero_past_65535(monkeypatch, dtype, head_dim):
    heads = 10
    n = 7_000  # 70 000 (sequence, head) pairs: over the 65 535 cap of CUDA grid axes 1/2
    fwd, bwd = _RecordingKernel(), _RecordingKernel()
    monkeypatch.setattr(ta, "_fwd_kernel", fwd)
    monkeypatch.setattr(ta, "_bwd_kernel", bwd)
    monkeypatch.setattr(ta, "INTERPRETED", True)  # let meta tensors through the device check
    q = torch.empty(n, 16, heads * head_dim, device="meta", dtype=dtype, requires_grad=True)
    out = ta.triton_temporal_attention(q, q, q, heads)
    out.backward(torch.empty_like(out))
    for recorder, backward in ((fwd, False), (bwd, True)):
        (grid,) = recorder.grids
        cfg = ta.choose_config(16, head_dim, dtype, backward=backward)
        assert len(grid) == 1 or all(g <= 65_535 for g in grid[1:])
        assert grid[0] * cfg.group >= n * heads and grid[0] < 2**31
    for pairs in (65_535, 65_536, 70_000, 2 * 128 * 128 * 20):
        assert len(ta.launch_grid(pairs, 1)) == 1


# ------------------------------------------------------------------------- GPU compiles ----


def _compile_matrix() -> list[tuple[str, str, int, int]]:
    """The launch configs the heuristic picks across the envelope: frames 16/32 (8 and 24 pad to
    those) x head dims 40/64/80/128/160, plus 64 frames at 40/160/256, x fp16/bf16/fp32, forward
    and backward."""
    shapes = [(f, d) for f in (16, 32) for d in (40, 64, 80, 128, 160)] + [(64, 40), (64, 160), (64, 256)]
    return [(kind, dtype, f, d) for kind in ("fwd", "bwd") for dtype in ("float16", "bfloat16", "float32")
            for f, d in shapes]


_COMPILE_SCRIPT = """
import json, sys
from dataclasses import asdict
sys.path.insert(0, "benchmarks")
import kernel_resources
results = []
for kind, dtype, frames, head_dim, arch in json.loads(sys.argv[1]):
    dtype_name = {"float16": "fp16", "bfloat16": "bf16", "float32": "fp32"}[dtype]
    results.append(asdict(kernel_resources.measure(kind, dtype_name, frames, head_dim, arch)))
print("RESULT:" + json.dumps(results))
"""


def test_kernels_compile_for_sm80_and_sm90_without_spills():
    """Compiling for real targets catches what the interpreter lets through (tl.dot shape minimums,
    shared memory), and the cubin's resource usage shows register spills, the GPU-only slowdown."""
    jobs = _compile_matrix()
    # Each config once, alternating sm_80 / sm_90 (both see every kind and dtype), split across
    # two processes. The interpreter must be off there: it replaces tl.max & co. with Python.
    batches = [[], []]
    for i, job in enumerate(jobs):
        batches[i % 2].append([*job, 80 if (i // 2) % 2 == 0 else 90])
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    procs = [
        subprocess.Popen([sys.executable, "-c", _COMPILE_SCRIPT, json.dumps(batch)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        for batch in batches
    ]
    results = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr[-4000:]
        results += json.loads(stdout.split("RESULT:", 1)[1])
    assert len(results) == len(jobs)
    assert {r["arch"] for r in results} == {80, 90}
    for r in results:
        where = (r["kind"], r["dtype"], r["frames"], r["head_dim"], r["arch"])
        assert r["shared_bytes"] <= ta.SHARED_MEMORY_BUDGET, where
        assert r["registers"] > 0 and r["warps_per_sm"] > 0, where
        assert r["spill_bytes"] == 0 and r["local_bytes"] == 0, (where, r["registers"], r["spill_bytes"])


# ----------------------------------------------------------------------------- benchmark ----


def test_benchmark_script_quick_cpu(tmp_path, capsys, benchmark_script):
    bench = benchmark_script("bench_temporal_attention")
    out = tmp_path / "bench.json"
    bench.main(["--quick", "--device", "cpu", "--repeats", "2", "--out", str(out)])
    table = capsys.readouterr().out
    assert "sdpa" in table and "ratio" in table
    rows = json.loads(out.read_text())["rows"]
    assert {r["impl"] for r in rows} >= {"sdpa", "math"}
    if ta.INTERPRETED:
        assert any(r["impl"] == "triton" for r in rows)


def test_whole_motion_module_triton_matches_sdpa():
    """A motion module run through the kernel equals the same module on SDPA, forward and gradients."""
    from motionkit.modules import MotionModule

    torch.manual_seed(0)
    module = MotionModule(80, 2, norm_num_groups=8, temporal_norm="across_frames", use_temporal_conv=True)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.randn_like(p) * 0.2 + (1.0 if "norm" in name and name.endswith("weight") else 0.0))
    frames = 16
    x = torch.randn(frames, 80, 3, 3)

    def run(backend):
        for attention in module.modules():
            if hasattr(attention, "set_backend"):
                attention.set_backend(backend)
        module.zero_grad()
        inp = x.clone().requires_grad_(True)
        out = module(inp, frames)
        out.square().mean().backward()
        return out.detach(), inp.grad, {n: p.grad.clone() for n, p in module.named_parameters()}

    out_sdpa, dx_sdpa, grads_sdpa = run("sdpa")
    out_triton, dx_triton, grads_triton = run("triton")
    # fp32 throughout; differences are summation order, amplified by the feed-forward.
    torch.testing.assert_close(out_triton, out_sdpa, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(dx_triton, dx_sdpa, atol=1e-4, rtol=1e-4)
    for name in grads_sdpa:
        torch.testing.assert_close(grads_triton[name], grads_sdpa[name], atol=1e-4, rtol=1e-3)
