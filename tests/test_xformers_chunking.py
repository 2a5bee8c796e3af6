"""The xformers path splits batches past the CUDA grid limit instead of failing (fake xformers module)."""

import sys
import types

import torch

from motionkit.kernels import dispatch


def test_xformers_batches_are_chunked_below_grid_limit(monkeypatch):
    seen = []

    def memory_efficient_attention(q, k, v):  # [B, M, H, K], the xformers convention
        seen.append(q.shape[0])
        out = torch.nn.functional.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return out.transpose(1, 2)

    fake = types.ModuleType("xformers")
    fake.ops = types.SimpleNamespace(memory_efficient_attention=memory_efficient_attention)
    monkeypatch.setitem(sys.modules, "xformers", fake)
    monkeypatch.setitem(sys.modules, "xformers.ops", fake.ops)
    monkeypatch.setattr(dispatch, "XFORMERS_MAX_BATCH", 5)

    q, k, v = torch.randn(3, 12, 4, 16).unbind(0)
    out = dispatch.xformers_attention(q, k, v, heads=2)
    assert seen == [5, 5, 2], "sequences are split into chunks no larger than the limit"
    torch.testing.assert_close(out, dispatch.sdpa_attention(q, k, v, 2), atol=1e-5, rtol=1e-5)
