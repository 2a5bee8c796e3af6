"""benchmarks/gpu_suite.py without a GPU: its dry run (compile for sm_90, toy sizes on CPU) and its bookkeeping."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_suite  # noqa: E402

from motionkit.kernels import auto_policy  # noqa: E402


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    """The device, compile and kernel sections of a dry run, with the decision table written to a scratch copy."""
    out = tmp_path_factory.mktemp("suite")
    policy = out / "policy.json"
    report = gpu_suite.main(["--dry-run", "--sections", "device,compile,kernel", "--out-dir", str(out),
                             "--write-policy", "--policy-path", str(policy)])
    return out, report, policy


def test_dry_run_writes_marked_json_and_markdown(dry_run):
    out, report, _ = dry_run
    written = json.loads((out / "gpu_suite_dry_run.json").read_text())
    assert written["dry_run"] is True and written["suite"] == "motionkit gpu suite"
    assert list(written["sections"]) == ["device", "compile", "kernel"]
    for name, section in written["sections"].items():
        assert section["status"] == "ok", (name, section["error"])
    assert written["device"]["name"] == gpu_suite.DRY_DEVICE_NAME
    assert [t["verdict"] for t in written["targets"]] == ["dry run"] * 3
    markdown = (out / "gpu_suite_dry_run.md").read_text()
    assert "DRY RUN" in markdown and "| verdict |" in markdown
    assert not (out / "gpu_suite.json").exists()  # a dry run never takes a GPU run's file names


def test_dry_run_compiles_every_suite_shape_for_sm90(dry_run):
    kernels = dry_run[1]["sections"]["compile"]["result"]["kernels"]
    import bench_temporal_attention as bta

    wanted = {(kind, dtype, s.frames, s.channels // s.heads) for kind in ("fwd", "bwd") for dtype in ("fp16", "bf16")
              for s in bta.FULL_SHAPES}
    assert {(k["kind"], k["dtype"], k["frames"], k["head_dim"]) for k in kernels} == wanted
    assert all(k["ok"] and k["arch"] == 90 for k in kernels)


def test_kernel_section_rows_verdicts_and_policy(dry_run):
    _, report, policy_path = dry_run
    kernel = report["sections"]["kernel"]["result"]
    shapes = {s.name for s in gpu_suite.toy_shapes()}
    cases = {(r["dtype"], r["shape"], r["layout"], r["impl"], r["pass"]) for r in kernel["rows"]}
    assert cases == {(d, s, layout, impl, p) for d in ("fp16", "bf16") for s in shapes for layout in ("module", "fib")
                     for impl in ("sdpa", "triton") for p in ("fwd", "fwd+bwd")}
    assert all(r["max_err_vs_sdpa"] < 0.05 for r in kernel["rows"] if r["max_err_vs_sdpa"] is not None)
    verdicts = kernel["verdicts"]
    assert {(v["dtype"], v["shape"]) for v in verdicts} == {(d, s) for d in ("fp16", "bf16") for s in shapes}
    for v in verdicts:
        assert v["inference"] == auto_policy.winner(v["speedup_inference"])
        assert v["training"] == auto_policy.winner(v["speedup_training"])
    # --write-policy with a scratch --policy-path: the table holds exactly the verdicts, under the dry-run device.
    table = auto_policy.load_policy(policy_path)
    assert list(table) == [gpu_suite.DRY_DEVICE_NAME]
    assert {(e.dtype, e.head_dim, e.pairs, e.inference, e.training) for e in table[gpu_suite.DRY_DEVICE_NAME]} == {
        (v["dtype"], v["head_dim"], v["pairs"], v["inference"], v["training"]) for v in verdicts}
    assert report["policy"]["written"] is not None


def test_dry_run_refuses_to_write_the_shipped_table():
    with pytest.raises(SystemExit):
        gpu_suite.parse_args(["--dry-run", "--write-policy"])


def test_a_section_past_its_budget_is_killed_and_recorded(tmp_path):
    args = gpu_suite.parse_args(["--dry-run"])
    record = gpu_suite.run_section("device", 0.5, args, tmp_path, [])  # importing torch alone takes longer
    assert record["status"] == "timeout" and "budget" in record["error"]


def test_failed_sections_leave_targets_unmeasured():
    report = {"dry_run": False, "sections": {
        "kernel": {"status": "error", "error": "RuntimeError: boom", "result": {}},
        "sampling": {"status": "timeout", "error": "ran past", "result": {"rows": [
            {"pipeline": "diffusers", "ms_per_step": 100.0, "peak_mib": 1.0, "speedup_vs_diffusers": 1.0},
            {"pipeline": "motionkit-auto", "ms_per_step": 70.0, "peak_mib": 1.0, "speedup_vs_diffusers": 1.43}]}},
        "memory": {"status": "ok", "error": None, "result": {"rows": [
            {"pipeline": "motionkit", "decode_chunk": 16, "gpu_peak_mib": 9000.0},
            {"pipeline": "diffusers", "decode_chunk": 16, "error": "OutOfMemoryError: CUDA out of memory"}]}},
    }}
    verdicts = [t["verdict"] for t in gpu_suite.targets(report)]
    assert verdicts == ["not measured", "pass", "fail"]  # 9000 MiB is 9.4 GB


def test_kernel_target_needs_both_speed_and_bandwidth():
    import bench_temporal_attention as bta

    shape = bta.Shape("s", 2, 64 * 64, 16, 320, 8)
    rows = [{"dtype": "fp16", "shape": "s", "layout": "module", "impl": impl, "pass": p, "ms": ms}
            for impl, p, ms in [("sdpa", "fwd", 1.0), ("triton", "fwd", 0.4), ("sdpa", "fwd+bwd", 2.0), ("triton", "fwd+bwd", 2.5)]]
    tensor_bytes = shape.sequences * shape.frames * shape.channels * 2
    fast_enough = 4 * tensor_bytes / 0.4e-3 / 1e9  # GB/s at which 0.4 ms is exactly the bandwidth limit
    (hit,) = gpu_suite.kernel_verdicts(rows, [shape], peak_gbps=fast_enough / 0.7)  # 70 % of the limit
    (miss,) = gpu_suite.kernel_verdicts(rows, [shape], peak_gbps=fast_enough / 0.5)  # 50 %
    assert hit["speedup_inference"] == 2.5 and hit["meets_target"] and not miss["meets_target"]
    assert (hit["inference"], hit["training"]) == ("triton", "sdpa")  # fwd+bwd lost: training keeps SDPA


def test_peak_bandwidth_table_names():
    assert gpu_suite.spec_bandwidth_gbps("NVIDIA H200") == 4800
    assert gpu_suite.spec_bandwidth_gbps("NVIDIA H100 80GB HBM3") == 3350
    assert gpu_suite.spec_bandwidth_gbps("NVIDIA GH200 480GB") == 4000
    assert gpu_suite.spec_bandwidth_gbps("NVIDIA A100-SXM4-80GB") == 2039
    assert gpu_suite.spec_bandwidth_gbps("Some Future GPU") is None


def test_a_failing_section_records_its_error_line(tmp_path):
    args = gpu_suite.parse_args(["--dry-run"])
    record = gpu_suite.run_section("device", 120, args, tmp_path, ["--peak-gbps", "fast"])
    assert record["status"] == "error" and "--peak-gbps" in record["error"]
    assert (tmp_path / "device.log").exists()


def test_the_run_goes_on_after_a_failed_section(tmp_path, monkeypatch):
    ran = []

    def fake(name, timeout_s, args, work, extra):
        ran.append(name)
        if name == "kernel":
            return {"status": "error", "seconds": 1.0, "budget_s": timeout_s, "error": "RuntimeError: boom", "result": {}}
        return {"status": "ok", "seconds": 1.0, "budget_s": timeout_s, "error": None, "result": {"name": "x"}}

    monkeypatch.setattr(gpu_suite, "run_section", fake)
    report = gpu_suite.orchestrate(gpu_suite.parse_args(["--dry-run", "--out-dir", str(tmp_path)]))
    assert ran == list(gpu_suite.SECTIONS)
    assert report["sections"]["kernel"]["error"] == "RuntimeError: boom"
    assert "RuntimeError: boom" in (tmp_path / "gpu_suite_dry_run.md").read_text()


def test_error_line_is_the_exception_without_the_checkout_path():
    text = (f'Traceback (most recent call last):\n  File "{gpu_suite.ROOT}/benchmarks/x.py", line 1\n'
            f"    boom()\ntorch.OutOfMemoryError: CUDA out of memory in {gpu_suite.ROOT}/benchmarks/x.py\n")
    assert gpu_suite.last_error_line(text) == "torch.OutOfMemoryError: CUDA out of memory in benchmarks/x.py"
