"""benchmarks/profile_step.py's bookkeeping: operators charged to their class, and the motion modules' products
told apart from the rest of their work."""

import pytest
import torch
from torch import nn


@pytest.fixture(scope="module")
def profile_step(benchmark_script):
    return benchmark_script("profile_step")


class _Block(nn.Module):
    """A spatial projection, then a 'motion module' of one trainable linear layer and a GELU."""

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.proj = nn.Linear(width, width)
        self.motion_modules = nn.ModuleList([nn.Sequential(nn.Linear(width, hidden), nn.GELU())])
        self.proj.requires_grad_(False)


def test_motion_products_are_counted_apart_from_the_rest(profile_step):
    rows, width, hidden = 512, 64, 256
    block = _Block(width, hidden)
    x = torch.randn(rows, width)
    with profile_step.attributed({"UNet": block}) as timer:
        block.motion_modules[0](block.proj(x)).square().mean().backward()
    peak = 50.0
    summary = timer.motion_summary(peak)
    product_flops = 2 * rows * width * hidden  # one product forward (addmm), one backward (the weight's gradient)
    assert summary["product_GFLOP"] == round(2 * product_flops / 1e9, 2)
    assert timer.motion_product_flops == 2 * product_flops  # the frozen spatial projection's addmm is not charged here
    assert 0 < timer.motion_product_seconds < timer.motion_seconds  # GELU and its backward are the rest
    assert summary["other_ms"] == pytest.approx(summary["ms"] - summary["product_ms"], abs=0.15)
    assert summary["product_ms_at_mm_peak"] == round(2 * product_flops / peak / 1e6, 1)
    assert timer.flops["feed-forward / projections"] == 2 * rows * width * width + 2 * product_flops  # each has a class
