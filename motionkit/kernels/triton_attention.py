"""Fused Triton self-attention over a short frame axis (AnimateDiff-style temporal attention).

The workload is millions of tiny attentions: every spatial position of every video attends over
F (2..64, usually 16) frames. Flash-style kernels waste most of a 64/128-row tile on that and put
``batch * heads`` on a CUDA grid axis capped at 65 535, which SD1.5 at 512 px already reaches. This
kernel instead:

* keeps the whole F x F score tile of a (sequence, head) pair in registers and uses a plain
  softmax (no online rescaling, no saved logsumexp: the backward recomputes it from q and k);
* handles GROUP pairs per program on a 1-D grid, so no launch dimension comes near 65 535;
* reads q/k/v and writes o through arbitrary strides with int64 offsets, so slices of a fused
  QKV projection and frames-in-batch views (``[B, F, S, C].transpose(1, 2)``) need no copies;
* pads the head dim and the frame axis to powers of two (at least 16, which also satisfies the
  ``tl.dot`` minimum K of 16 for 16-bit operands) with masked loads, so no extra HBM traffic;
  where a whole-head tile would spill registers (fp32, 64 frames) it walks the head dim in
  16-wide chunks instead, summing Q K^T over them.

Configs come from a small heuristic on (F, d, dtype): ``@triton.autotune`` would need a GPU to
benchmark and fails on a GPU-less machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from motionkit.errors import BackendUnavailableError

try:
    import triton
    import triton.language as tl
except ImportError as exc:  # pragma: no cover - dispatch checks find_spec first
    raise BackendUnavailableError(
        "attention backend 'triton' needs the triton package: pip install triton, or use backend 'sdpa'"
    ) from exc

__all__ = [
    "KernelConfig",
    "MAX_FRAMES",
    "MAX_HEAD_DIM",
    "choose_config",
    "compile_for_target",
    "launch_grid",
    "supports",
    "triton_temporal_attention",
]

MAX_HEAD_DIM = 256
MAX_FRAMES = 64
# Shared memory every sm_80+ GPU grants one block (consumer sm_86/89 opt in to 99 KiB); every
# config choose_config picks stays under it (checked by compiling for sm_80/sm_90 in the tests).
SHARED_MEMORY_BUDGET = 96 * 1024
# Grid axis 0 may hold 2**31 - 1 programs; axes 1/2 (never used here) only 65 535.
_MAX_GRID_X = 2**31 - 1
_LOG2E = 1.4426950408889634
_SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
_CPU_ERROR = (
    "attention backend 'triton' needs a CUDA tensor (or TRITON_INTERPRET=1 for the CPU interpreter); "
    "use backend 'sdpa' on CPU"
)


# --------------------------------------------------------------------------------------------
# Kernels. Written as plain functions and wrapped below, so tests can also build a compilable
# JITFunction from the same source while the module itself runs under the interpreter.
# --------------------------------------------------------------------------------------------


@triton.jit
def _program_rows(n_pairs, heads, seq_inner, frames, HEAD_DIM: tl.constexpr, BLOCK_F: tl.constexpr,
                  GROUP: tl.constexpr):
    # This program's GROUP pairs p = (sequence n, head h), head fastest: consecutive pairs then
    # cover one contiguous run of channels per frame in the common channels-last layouts.
    # Sequences are addressed as (outer b, inner s) so a [B, S, F, C] view with unmergeable
    # strides (frames-in-batch transposed) is read in place; 3-D inputs use b = 0.
    # Returns b, s, the head's first channel, the frame indices, valid frames and valid rows.
    pair = tl.program_id(0).to(tl.int64) * GROUP + tl.arange(0, GROUP).to(tl.int64)
    n = pair // heads
    fr = tl.arange(0, BLOCK_F).to(tl.int64)
    fr_ok = fr < frames
    row_ok = (pair < n_pairs)[:, None, None] & fr_ok[None, :, None]
    return n // seq_inner, n % seq_inner, (pair % heads) * HEAD_DIM, fr, fr_ok, row_ok


@triton.jit
def _chunk(c, row_ok, HEAD_DIM: tl.constexpr, BLOCK_DC: tl.constexpr):
    # Head-dim columns of chunk c and the [GROUP, BLOCK_F, BLOCK_DC] mask of valid elements.
    dd = c * BLOCK_DC + tl.arange(0, BLOCK_DC).to(tl.int64)
    return dd, row_ok & (dd < HEAD_DIM)[None, None, :]


@triton.jit
def _tile_offsets(b, s, col, fr, dd, stride_b, stride_s, stride_f, stride_c):
    # int64 element offsets of a [GROUP, BLOCK_F, chunk] tile: pairs x frames x head channels.
    base = b * stride_b + s * stride_s + col * stride_c
    return base[:, None, None] + (fr * stride_f)[None, :, None] + (dd * stride_c)[None, None, :]


@triton.jit
def _load_tile(ptr, b, s, col, fr, dd, mask, stride_b, stride_s, stride_f, stride_c, UPCAST: tl.constexpr):
    tile = tl.load(ptr + _tile_offsets(b, s, col, fr, dd, stride_b, stride_s, stride_f, stride_c), mask=mask, other=0.0)
    if UPCAST:  # interpreter only: its tl.dot mishandles bf16 operands
        tile = tile.to(tl.float32)
    return tile


@triton.jit
def _exp_scores(scores, fr_ok, qk_scale):
    # Scores come in unscaled; scale and log2(e) are folded into qk_scale so exp2 does the softmax.
    # Returns the unnormalised probabilities (in [0, 1]) and their row sums.
    scores = tl.where(fr_ok[None, None, :], scores * qk_scale, float("-inf"))
    p = tl.exp2(scores - tl.max(scores, 2)[:, :, None])
    return p, tl.sum(p, 2)


@triton.jit
def _accumulate_scores(q, k, do, V, b, s, col, fr, dd, mask, sv_b, sv_s, sv_f, sv_c, scores, dp,
                       DOT_PRECISION: tl.constexpr, UPCAST: tl.constexpr):
    # Backward's first pass over one head-dim chunk: scores += Q K^T and dP += dO V^T (v is only
    # needed here, so it is loaded here).
    v = _load_tile(V, b, s, col, fr, dd, mask, sv_b, sv_s, sv_f, sv_c, UPCAST)
    scores = tl.dot(q, tl.permute(k, (0, 2, 1)), scores, input_precision=DOT_PRECISION)
    dp = tl.dot(do, tl.permute(v, (0, 2, 1)), dp, input_precision=DOT_PRECISION)
    return scores, dp


@triton.jit
def _softmax_bwd(scores, dp, fr_ok, qk_scale, sm_scale, Q, UPCAST: tl.constexpr):
    # P recomputed from the raw scores (cheaper than storing it, F x F per pair, or a logsumexp),
    # then dS = P * (dP - rowsum(P * dP)) with the row term taken from the tile itself (no saved O).
    # Returns P^T and dS in the inputs' dtype, the operands of the gradient dots.
    p, row_sum = _exp_scores(scores, fr_ok, qk_scale)
    p = p / row_sum[:, :, None]
    ds = p * (dp - tl.sum(p * dp, 2)[:, :, None]) * sm_scale
    p_t = tl.permute(p, (0, 2, 1))
    if not UPCAST:  # upcast (interpreter bf16) keeps fp32 operands
        p_t, ds = p_t.to(Q.dtype.element_ty), ds.to(Q.dtype.element_ty)
    return p_t, ds


@triton.jit
def _store_grads(DQ, DK, DV, p_t, ds, q, k, do, b, s, col, fr, dd, mask, sg_b, sg_s, sg_f, sg_c,
                 DOT_PRECISION: tl.constexpr):
    # dV = P^T dO, dQ = dS K, dK = dS^T Q for one head-dim chunk.
    dv = tl.dot(p_t, do, input_precision=DOT_PRECISION)
    dq = tl.dot(ds, k, input_precision=DOT_PRECISION)
    dk = tl.dot(tl.permute(ds, (0, 2, 1)), q, input_precision=DOT_PRECISION)
    g_off = _tile_offsets(b, s, col, fr, dd, sg_b, sg_s, sg_f, sg_c)
    tl.store(DQ + g_off, dq.to(DQ.dtype.element_ty), mask=mask)
    tl.store(DK + g_off, dk.to(DK.dtype.element_ty), mask=mask)
    tl.store(DV + g_off, dv.to(DV.dtype.element_ty), mask=mask)


def _attn_fwd(
    Q, K, V, O,
    n_pairs, heads, seq_inner, frames,
    sq_b, sq_s, sq_f, sq_c,
    sk_b, sk_s, sk_f, sk_c,
    sv_b, sv_s, sv_f, sv_c,
    so_b, so_s, so_f, so_c,
    qk_scale,
    HEAD_DIM: tl.constexpr,
    BLOCK_F: tl.constexpr,
    BLOCK_DC: tl.constexpr,
    N_CHUNKS: tl.constexpr,
    GROUP: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
):
    b, s, col, fr, fr_ok, row_ok = _program_rows(n_pairs, heads, seq_inner, frames, HEAD_DIM, BLOCK_F, GROUP)

    # Q K^T in fp32, summed over head-dim chunks (one chunk unless a whole-head tile would spill).
    # A rolled loop (not static_range): unrolled chunks get their loads hoisted together and spill.
    scores = tl.zeros([GROUP, BLOCK_F, BLOCK_F], dtype=tl.float32)
    for c in range(N_CHUNKS):
        dd, mask = _chunk(c, row_ok, HEAD_DIM, BLOCK_DC)
        q = _load_tile(Q, b, s, col, fr, dd, mask, sq_b, sq_s, sq_f, sq_c, UPCAST)
        k = _load_tile(K, b, s, col, fr, dd, mask, sk_b, sk_s, sk_f, sk_c, UPCAST)
        scores = tl.dot(q, tl.permute(k, (0, 2, 1)), scores, input_precision=DOT_PRECISION)
    p, row_sum = _exp_scores(scores, fr_ok, qk_scale)
    inv_sum = 1.0 / row_sum

    for c in range(N_CHUNKS):
        dd, mask = _chunk(c, row_ok, HEAD_DIM, BLOCK_DC)
        v = _load_tile(V, b, s, col, fr, dd, mask, sv_b, sv_s, sv_f, sv_c, UPCAST)
        # Unnormalised p is in [0, 1], safe in 16 bits for the tensor-core P @ V; normalise after.
        out = tl.dot(p.to(v.dtype), v, input_precision=DOT_PRECISION) * inv_sum[:, :, None]
        tl.store(O + _tile_offsets(b, s, col, fr, dd, so_b, so_s, so_f, so_c), out.to(O.dtype.element_ty), mask=mask)


def _attn_bwd(
    Q, K, V, DO, DQ, DK, DV,
    n_pairs, heads, seq_inner, frames,
    sq_b, sq_s, sq_f, sq_c,
    sk_b, sk_s, sk_f, sk_c,
    sv_b, sv_s, sv_f, sv_c,
    sdo_b, sdo_s, sdo_f, sdo_c,
    sg_b, sg_s, sg_f, sg_c,
    qk_scale, sm_scale,
    HEAD_DIM: tl.constexpr,
    BLOCK_F: tl.constexpr,
    BLOCK_DC: tl.constexpr,
    N_CHUNKS: tl.constexpr,
    GROUP: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
):
    # Same pair/chunk scheme as the forward; dq, dk, dv share one (contiguous) layout `sg_*`.
    b, s, col, fr, fr_ok, row_ok = _program_rows(n_pairs, heads, seq_inner, frames, HEAD_DIM, BLOCK_F, GROUP)

    if N_CHUNKS == 1:
        # One whole-head tile: q, k and dO are loaded once and stay live for the gradients.
        dd, mask = _chunk(0, row_ok, HEAD_DIM, BLOCK_DC)
        q = _load_tile(Q, b, s, col, fr, dd, mask, sq_b, sq_s, sq_f, sq_c, UPCAST)
        k = _load_tile(K, b, s, col, fr, dd, mask, sk_b, sk_s, sk_f, sk_c, UPCAST)
        do = _load_tile(DO, b, s, col, fr, dd, mask, sdo_b, sdo_s, sdo_f, sdo_c, UPCAST)
        scores = tl.zeros([GROUP, BLOCK_F, BLOCK_F], dtype=tl.float32)
        dp = tl.zeros([GROUP, BLOCK_F, BLOCK_F], dtype=tl.float32)
        scores, dp = _accumulate_scores(q, k, do, V, b, s, col, fr, dd, mask, sv_b, sv_s, sv_f, sv_c, scores, dp,
                                        DOT_PRECISION, UPCAST)
        p_t, ds = _softmax_bwd(scores, dp, fr_ok, qk_scale, sm_scale, Q, UPCAST)
        _store_grads(DQ, DK, DV, p_t, ds, q, k, do, b, s, col, fr, dd, mask, sg_b, sg_s, sg_f, sg_c, DOT_PRECISION)
    else:
        # Head dim in chunks: a first pass sums Q K^T and dO V^T, a second re-reads q, k and dO
        # chunk by chunk (they are still in L2) to form the gradients.
        scores = tl.zeros([GROUP, BLOCK_F, BLOCK_F], dtype=tl.float32)
        dp = tl.zeros([GROUP, BLOCK_F, BLOCK_F], dtype=tl.float32)
        for c in range(N_CHUNKS):
            dd, mask = _chunk(c, row_ok, HEAD_DIM, BLOCK_DC)
            q = _load_tile(Q, b, s, col, fr, dd, mask, sq_b, sq_s, sq_f, sq_c, UPCAST)
            k = _load_tile(K, b, s, col, fr, dd, mask, sk_b, sk_s, sk_f, sk_c, UPCAST)
            do = _load_tile(DO, b, s, col, fr, dd, mask, sdo_b, sdo_s, sdo_f, sdo_c, UPCAST)
            scores, dp = _accumulate_scores(q, k, do, V, b, s, col, fr, dd, mask, sv_b, sv_s, sv_f, sv_c, scores, dp,
                                            DOT_PRECISION, UPCAST)
        p_t, ds = _softmax_bwd(scores, dp, fr_ok, qk_scale, sm_scale, Q, UPCAST)
        for c in range(N_CHUNKS):
            dd, mask = _chunk(c, row_ok, HEAD_DIM, BLOCK_DC)
            q = _load_tile(Q, b, s, col, fr, dd, mask, sq_b, sq_s, sq_f, sq_c, UPCAST)
            k = _load_tile(K, b, s, col, fr, dd, mask, sk_b, sk_s, sk_f, sk_c, UPCAST)
            do = _load_tile(DO, b, s, col, fr, dd, mask, sdo_b, sdo_s, sdo_f, sdo_c, UPCAST)
            _store_grads(DQ, DK, DV, p_t, ds, q, k, do, b, s, col, fr, dd, mask, sg_b, sg_s, sg_f, sg_c, DOT_PRECISION)


# triton.jit decides at decoration time whether to interpret (TRITON_INTERPRET=1).
_fwd_kernel = triton.jit(_attn_fwd)
_bwd_kernel = triton.jit(_attn_bwd)
INTERPRETED: bool = not isinstance(_fwd_kernel, triton.runtime.jit.JITFunction)



# --------------------------------------------------------------------------------------------
# Launch configuration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KernelConfig:
    block_f: int
    block_dc: int  # head-dim chunk width (a power of two >= 16)
    n_chunks: int  # chunks covering the head dim; 1 unless a whole-head tile would spill
    group: int
    num_warps: int
    dot_precision: str
    upcast: bool = False

    def constexprs(self, head_dim: int) -> dict[str, object]:
        return {
            "HEAD_DIM": head_dim,
            "BLOCK_F": self.block_f,
            "BLOCK_DC": self.block_dc,
            "N_CHUNKS": self.n_chunks,
            "GROUP": self.group,
            "DOT_PRECISION": self.dot_precision,
            "UPCAST": self.upcast,
        }


def _pow2_at_least_16(x: int) -> int:
    # 16 = tl.dot's minimum K for 16-bit operands on NVIDIA (the interpreter does not check it).
    return max(16, triton.next_power_of_2(x))


def choose_config(frames: int, head_dim: int, dtype: torch.dtype, backward: bool = False) -> KernelConfig:
    """Hand-picked launch config: enough pairs per program to give each warp work, few enough to
    stay in registers. The choices were read off compiled sm_80/sm_90 resource usage
    (``benchmarks/kernel_resources.py``): every config in the supported envelope (frames up to
    MAX_FRAMES, head dims up to MAX_HEAD_DIM) compiles within the shared-memory budget and spills
    no registers."""
    block_f = _pow2_at_least_16(frames)
    block_d = _pow2_at_least_16(head_dim)
    # The interpreter's tl.dot gets bf16 wrong (it works on the raw bits), so it runs those dots in
    # fp32; compiled kernels keep bf16 tensor-core dots.
    upcast = INTERPRETED and dtype == torch.bfloat16
    # "tf32" is the 16-bit default and meaningless there; fp32 inputs need "ieee" to stay fp32-exact.
    precision = "ieee" if dtype == torch.float32 or upcast else "tf32"
    if dtype == torch.float32:
        # fp32 dots run on FMA units with register-hungry layouts: one pair per program, 8 warps,
        # and heads wider than 64 (or 64-frame tiles) in chunks.
        if block_d <= 64 and block_f <= 32:
            block_dc = block_d
        elif backward and block_f == 32:
            block_dc = 32  # 16-wide chunks spill a few bytes at this size
        else:
            block_dc = 16
        return KernelConfig(block_f, block_dc, triton.cdiv(head_dim, block_dc), 1, 8, precision, upcast)
    if backward and block_f >= 64 and block_d >= 128:
        # The one 16-bit case where a whole-head tile spills: chunk the head dim instead.
        return KernelConfig(block_f, 16, triton.cdiv(head_dim, 16), 1, 8, precision, upcast)
    tile = block_f * block_d
    # Backward keeps ~7 such tiles live (q, k, v, do, dq, dk, dv) vs ~4 forward.
    budget = 2048 if backward else 4096
    group = max(1, min(8, budget // tile))
    num_warps = 4 if group * tile <= 2048 else 8
    return KernelConfig(block_f, block_d, 1, group, num_warps, precision, upcast)


def launch_grid(n_pairs: int, group: int) -> tuple[int]:
    """1-D grid over (sequence, head) pairs: axis 0 only, so the 65 535 cap of axes 1/2 never applies."""
    programs = triton.cdiv(n_pairs, group)
    if programs > _MAX_GRID_X:
        raise ValueError(f"{n_pairs} sequence-heads need {programs} programs, over the grid limit {_MAX_GRID_X}")
    return (programs,)


_TRITON_DTYPES = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32"}


def compile_for_target(kind: str, dtype: torch.dtype, frames: int, head_dim: int, capability: int = 80,
                       config: KernelConfig | None = None):
    """Compile the kernel ``kind`` ("fwd" or "bwd") ahead of time for ``sm_<capability>``, with
    ``config`` or else the one the heuristic picks. Needs no GPU; catches GPU-only errors (tl.dot shape minimums,
    shared memory) the interpreter ignores. Must run in a process without TRITON_INTERPRET:
    ``tl.max`` and friends are interpreted functions there and cannot be compiled."""
    import inspect

    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    if INTERPRETED:
        raise RuntimeError("compile_for_target needs a process without TRITON_INTERPRET=1")
    kernel = {"fwd": _fwd_kernel, "bwd": _bwd_kernel}[kind]
    cfg = config or choose_config(frames, head_dim, dtype, backward=kind == "bwd")
    constexprs = cfg.constexprs(head_dim)
    signature = {}
    for name in inspect.signature(kernel.fn).parameters:
        if name in constexprs:
            signature[name] = "constexpr"
        elif name[0].isupper():  # tensor arguments are the capitalised names
            signature[name] = "*" + _TRITON_DTYPES[dtype]
        elif name.endswith("_scale"):
            signature[name] = "fp32"
        else:
            signature[name] = "i64" if name.startswith("s") else "i32"
    return triton.compile(
        ASTSource(kernel, signature, constexprs),
        target=GPUTarget("cuda", capability, 32),
        options={"num_warps": cfg.num_warps, "num_stages": 1},
    )


# --------------------------------------------------------------------------------------------
# Python entry points
# --------------------------------------------------------------------------------------------


def supports(query: torch.Tensor, heads: int) -> bool:
    """Whether the kernel can run this call on a GPU (used by the ``auto`` backend)."""
    if not isinstance(query, torch.Tensor) or not query.is_cuda:
        return False
    if query.dtype not in _SUPPORTED_DTYPES or query.dim() not in (3, 4) or heads <= 0:
        return False
    channels, frames = query.shape[-1], query.shape[-2]
    if channels % heads or channels // heads > MAX_HEAD_DIM or not 1 <= frames <= MAX_FRAMES:
        return False
    major, _ = torch.cuda.get_device_capability(query.device)
    if major < 8 and query.dtype == torch.bfloat16:
        return False
    return query.numel() > 0


def _as_4d(x: torch.Tensor) -> torch.Tensor:
    return x.unsqueeze(0) if x.dim() == 3 else x


def _check_inputs(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, heads: int) -> int:
    if not query.is_cuda and not INTERPRETED:
        raise BackendUnavailableError(_CPU_ERROR)
    if query.dim() not in (3, 4):
        raise ValueError(f"expected [N, F, C] or [B, S, F, C] inputs, got shape {tuple(query.shape)}")
    if key.shape != query.shape or value.shape != query.shape:
        raise ValueError(f"query/key/value shapes differ: {tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}")
    if key.dtype != query.dtype or value.dtype != query.dtype or query.dtype not in _SUPPORTED_DTYPES:
        raise ValueError(f"query/key/value must share one of fp16/bf16/fp32, got {query.dtype}, {key.dtype}, {value.dtype}")
    if key.device != query.device or value.device != query.device:
        raise ValueError("query/key/value must be on one device")
    channels, frames = query.shape[-1], query.shape[-2]
    if heads <= 0 or channels % heads:
        raise ValueError(f"channels {channels} not divisible by heads {heads}")
    head_dim = channels // heads
    if head_dim > MAX_HEAD_DIM or frames > MAX_FRAMES:
        raise ValueError(f"triton temporal attention supports head dim <= {MAX_HEAD_DIM} and frames <= {MAX_FRAMES}, "
                         f"got {head_dim} and {frames}")
    return head_dim


def _device_guard(t: torch.Tensor):
    import contextlib

    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


def _forward(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, heads: int, head_dim: int,
             preserve_layout: bool) -> torch.Tensor:
    if preserve_layout:
        out = torch.empty_like(query, memory_format=torch.preserve_format)
    else:
        out = torch.empty(query.shape, dtype=query.dtype, device=query.device)
    if out.numel() == 0:
        return out
    q4, k4, v4, o4 = (_as_4d(t) for t in (query, key, value, out))
    n_outer, n_inner, frames, _ = q4.shape
    n_pairs = n_outer * n_inner * heads
    cfg = choose_config(frames, head_dim, query.dtype)
    with _device_guard(query):
        _fwd_kernel[launch_grid(n_pairs, cfg.group)](
            q4, k4, v4, o4,
            n_pairs, heads, n_inner, frames,
            *q4.stride(), *k4.stride(), *v4.stride(), *o4.stride(),
            _LOG2E / math.sqrt(head_dim),
            **cfg.constexprs(head_dim),
            num_warps=cfg.num_warps,
            num_stages=1,  # no loop to pipeline
        )
    return out


def _backward(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, grad_out: torch.Tensor,
              heads: int, head_dim: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    dq, dk, dv = (torch.empty(query.shape, dtype=query.dtype, device=query.device) for _ in range(3))
    if dq.numel() == 0:
        return dq, dk, dv
    q4, k4, v4, do4, g4 = (_as_4d(t) for t in (query, key, value, grad_out, dq))
    n_outer, n_inner, frames, _ = q4.shape
    n_pairs = n_outer * n_inner * heads
    cfg = choose_config(frames, head_dim, query.dtype, backward=True)
    sm_scale = 1.0 / math.sqrt(head_dim)
    with _device_guard(query):
        _bwd_kernel[launch_grid(n_pairs, cfg.group)](
            q4, k4, v4, do4, _as_4d(dq), _as_4d(dk), _as_4d(dv),
            n_pairs, heads, n_inner, frames,
            *q4.stride(), *k4.stride(), *v4.stride(), *do4.stride(), *g4.stride(),
            sm_scale * _LOG2E, sm_scale,
            **cfg.constexprs(head_dim),
            num_warps=cfg.num_warps,
            num_stages=1,
        )
    return dq, dk, dv


class _TemporalAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, query, key, value, heads: int, head_dim: int, preserve_layout: bool):  # type: ignore[override]
        ctx.save_for_backward(query, key, value)
        ctx.heads, ctx.head_dim = heads, head_dim
        return _forward(query, key, value, heads, head_dim, preserve_layout)

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        query, key, value = ctx.saved_tensors
        if grad_out.dtype != query.dtype:
            grad_out = grad_out.to(query.dtype)
        dq, dk, dv = _backward(query, key, value, grad_out, ctx.heads, ctx.head_dim)
        return dq, dk, dv, None, None, None


def triton_temporal_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, heads: int,
                              *, preserve_layout: bool = False) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v over the frame axis, per sequence and head.

    ``query``/``key``/``value``: ``[N, F, C]`` or ``[B, S, F, C]`` with ``C = heads * d``, any
    strides (slices of a fused QKV output, ``[B, F, S, C].transpose(1, 2)`` views) -- read in place.
    Returns a contiguous tensor of the input's shape and dtype; with ``preserve_layout=True`` the
    result instead gets the input's memory layout (e.g. frames-in-batch, so ``.transpose(1, 2)``
    of a 4-D result is a free view back to ``[B, F, S, C]``). Differentiable in q, k and v.
    """
    head_dim = _check_inputs(query, key, value, heads)
    if torch.is_grad_enabled() and (query.requires_grad or key.requires_grad or value.requires_grad):
        return _TemporalAttention.apply(query, key, value, heads, head_dim, preserve_layout)
    return _forward(query, key, value, heads, head_dim, preserve_layout)
