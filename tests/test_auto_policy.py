"""The auto backend's decision table: the kernel only where it was measured to win, SDPA everywhere else."""

from __future__ import annotations

import json

import pytest
import torch

from motionkit.kernels import auto_policy, dispatch
from motionkit.kernels.auto_policy import PolicyEntry

GPU = "Test GPU 80GB"


def entry(frames=16, head_dim=40, pairs=65536, inference="triton", training="triton", dtype="fp16") -> PolicyEntry:
    return PolicyEntry(dtype=dtype, frames=frames, head_dim=head_dim, pairs=pairs, inference=inference, training=training)


TABLE = {
    GPU: [
        entry(head_dim=40, pairs=65536, inference="triton", training="sdpa"),
        entry(head_dim=40, pairs=262144, inference="triton", training="sdpa"),
        entry(head_dim=160, pairs=1024, inference="sdpa", training="sdpa"),  # the kernel loses here
        entry(head_dim=160, pairs=16384, inference="triton", training="triton"),
    ]
}


def choose(**kw):
    args = dict(device=GPU, dtype=torch.float16, frames=16, head_dim=40, pairs=65536, training=False)
    return auto_policy.choose(TABLE, **{**args, **kw})


def test_measured_wins_pick_the_kernel_and_losses_pick_sdpa():
    assert choose() == "triton"
    assert choose(training=True) == "sdpa"  # its forward won, its forward+backward did not
    assert choose(head_dim=160, pairs=1024) == "sdpa"
    assert choose(head_dim=160, pairs=16384, training=True) == "triton"


def test_nearest_measured_size_decides_within_reach():
    assert choose(head_dim=160, pairs=1500) == "sdpa"  # nearer 1024 (a loss) than 16384 on a log scale
    assert choose(head_dim=160, pairs=12000) == "triton"
    assert choose(pairs=150000) == "triton"  # between two measured wins


@pytest.mark.parametrize("change", [
    dict(device="Other GPU"), dict(dtype=torch.bfloat16), dict(dtype=torch.float32), dict(frames=24),
    dict(head_dim=64), dict(pairs=65536 // 4), dict(pairs=262144 * 4), dict(pairs=0),
])
def test_anything_not_measured_gets_sdpa(change):
    assert choose(**change) == "sdpa"


def test_winner_needs_a_clear_margin():
    assert auto_policy.winner(None) == "sdpa"
    assert auto_policy.winner(1.0) == "sdpa"
    assert auto_policy.winner(auto_policy.WIN_MARGIN - 1e-3) == "sdpa"
    assert auto_policy.winner(auto_policy.WIN_MARGIN) == "triton"


@pytest.fixture
def fake_gpu(monkeypatch):
    """A CPU tensor dispatch treats as a kernel-capable GPU's, under TABLE."""
    monkeypatch.setattr(dispatch, "_triton_fits", lambda query, heads: True)
    monkeypatch.setattr(dispatch, "_device_name", lambda device: GPU)
    auto_policy.set_active_policy(TABLE)
    yield
    auto_policy.set_active_policy(None)


def test_auto_dispatch_follows_the_table(fake_gpu):
    q40 = torch.empty(2 * 64 * 64, 16, 8 * 40, dtype=torch.float16)  # SD1.5 512 px, first level: 65 536 pairs
    q160 = torch.empty(2 * 8 * 8, 16, 8 * 160, dtype=torch.float16)  # its 8 x 8 level: 1 024 pairs
    assert dispatch.resolve_backend("auto", q40, 8) == "triton"
    assert dispatch.resolve_backend("auto", q160, 8) == "sdpa"  # where the kernel loses, auto must not pick it
    assert dispatch.resolve_backend("auto", q40.requires_grad_(), 8) == "sdpa"  # training entry: a loss
    with torch.no_grad():
        assert dispatch.resolve_backend("auto", q40, 8) == "triton"  # no graph: the inference entry
    assert dispatch.resolve_backend("auto", q40.to(torch.bfloat16), 8) == "sdpa"  # bf16 never measured
    assert dispatch.resolve_backend("triton", q160, 8) == "triton"  # an explicit choice is kept


def test_shapes_the_kernel_cannot_run_never_reach_the_table(monkeypatch):
    monkeypatch.setattr(dispatch, "_device_name", lambda device: pytest.fail("table consulted"))
    assert dispatch.resolve_backend("auto", torch.empty(4, 16, 80), 2) == "sdpa"  # CPU tensor


def test_shipped_table_parses_and_names_known_backends():
    payload = json.loads(auto_policy.POLICY_PATH.read_text())
    assert {"devices", "win_margin"} <= payload.keys()
    for entries in auto_policy.load_policy().values():
        assert all(e.inference in auto_policy.CHOICES and e.training in auto_policy.CHOICES for e in entries)


def test_write_load_round_trip_and_merge_replaces_one_device(tmp_path):
    path = tmp_path / "policy.json"
    auto_policy.write_policy(TABLE, path, {GPU: {"date": "today"}})
    assert auto_policy.load_policy(path) == TABLE
    merged = auto_policy.merge_device({**TABLE, "Other GPU": [entry()]}, GPU, [entry(head_dim=80)])
    assert merged[GPU] == [entry(head_dim=80)] and merged["Other GPU"] == [entry()]
    assert auto_policy.load_policy(tmp_path / "missing.json") == {}


def test_a_table_naming_an_unknown_backend_is_refused():
    payload = auto_policy.policy_payload({GPU: [entry(inference="flash")]})
    with pytest.raises(ValueError, match="flash"):
        auto_policy.parse_policy(payload)
