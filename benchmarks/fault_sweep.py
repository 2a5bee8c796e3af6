"""Feed motionkit's commands bad input, interrupt its writes and fill its disk; count what went wrong.

Every case runs ``python -m motionkit ...`` in a subprocess on the shipped tiny family (or files the sweep
builds) and is judged on four faults:

- traceback: the command printed a Python traceback instead of one line;
- hang: it ran past the time limit;
- silent: it exited 0 although the input was bad (or wrote nothing it was asked to);
- lost: a file that existed before the failed run is gone or changed.

    python benchmarks/fault_sweep.py [--json results/fault_sweep.json]

Full-disk cases mount a small tmpfs and need root; without it they are reported as not run.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from motionkit.hostile import kill_at_replace_prelude, png_claiming, torch_zip_with_pickle

ROOT = Path(__file__).resolve().parents[1]
FAMILY = ROOT / "motionkit" / "assets" / "tiny-family"
BASE, ADAPTER = FAMILY / "bases" / "tiny-base", FAMILY / "adapters" / "tiny-motion"
IMAGE = FAMILY / "examples" / "conditioning.png"
TIMEOUT_S = 180


@dataclass
class Outcome:
    kind: str
    name: str
    returncode: int | None
    traceback: bool
    hang: bool
    silent: bool
    lost: bool
    last_line: str


def _digest(paths: list[Path]) -> dict[str, str]:
    out = {}
    for path in paths:
        if path.is_file():
            out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
        elif path.is_dir():
            out[str(path)] = "dir:" + ",".join(sorted(p.name for p in path.iterdir()))
    return out


def _run(kind: str, name: str, argv: list[str], keep: list[Path] = (), expect_ok: bool = False, cwd: Path | None = None) -> Outcome:
    before = _digest(list(keep))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    try:
        result = subprocess.run(
            [sys.executable, "-m", "motionkit", *argv], capture_output=True, text=True, timeout=TIMEOUT_S, env=env, cwd=cwd
        )
        code, err, hang = result.returncode, result.stderr, False
    except subprocess.TimeoutExpired as timeout:
        code, err, hang = None, (timeout.stderr or b"").decode(errors="replace") if isinstance(timeout.stderr, bytes) else (timeout.stderr or ""), True
    lines = [line for line in err.strip().splitlines() if line.strip()]
    after = _digest(list(keep))
    lost = any(after.get(path) != digest for path, digest in before.items())
    return Outcome(
        kind, name, code, "Traceback (most recent call last)" in err, hang,
        silent=(code == 0) != expect_ok, lost=lost, last_line=(lines[-1] if lines else "")[:200],
    )


def _killed(kind: str, name: str, code: str, kill_at: int, keep: list[Path], cwd: Path, check: str) -> Outcome:
    """Run ``code`` with SIGKILL right after the writer's ``kill_at``-th rename, then rerun the command
    normally (``check``, CLI arguments) and judge the state it leaves."""
    script = kill_at_replace_prelude(kill_at) + textwrap.dedent(
        f"""
        import sys
        from motionkit.cli import main
        sys.exit(main({code!r}.split("\\x00")))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=TIMEOUT_S, env=env, cwd=cwd)
    outcome = _run(kind, name, check.split("\x00"), expect_ok=True, cwd=cwd)
    leftovers = [p.name for p in cwd.iterdir() if ".tmp-" in p.name or ".old-" in p.name]
    # The rerun must have recovered: the output exists and no temporaries are left behind.
    outcome.lost = outcome.lost or bool(leftovers) or not all(p.exists() for p in keep)
    return outcome


def _animate(*extra: str, prompt: bool = True) -> list[str]:
    text = ["--prompt", "a red ball"] if prompt else []
    return ["animate", "--base", str(BASE), "--adapter", str(ADAPTER), *text, "--frames", "4", "--steps", "2", *extra]


def _adapter_variant(work: Path, name: str, change) -> Path:
    from motionkit.formats import load_adapter
    from safetensors.torch import save_file

    adapter = load_adapter(ADAPTER)
    tensors = {k: v.clone() for k, v in adapter.state_dict().items()}
    change(tensors)
    folder = work / name
    folder.mkdir()
    shutil.copy(ADAPTER / "config.json", folder / "config.json")
    save_file(tensors, str(folder / "diffusion_pytorch_model.safetensors"))
    return folder


def _first(tensors: dict, fn) -> None:
    key = next(k for k in tensors if k.endswith("proj_out.weight"))
    tensors[key] = fn(tensors[key])


def _odd_pickle(path: Path, reducer) -> Path:
    class Odd:
        def __reduce__(self):
            return reducer

    return torch_zip_with_pickle({"k": Odd()}, path)


def cases(work: Path) -> list[Outcome]:
    from motionkit.video_io import write_video

    results: list[Outcome] = []
    out = work / "out.mp4"
    # -- arguments -------------------------------------------------------------------------------
    bad_args = {
        "steps 100000": ["--steps", "100000"], "seed 2**70": ["--seed", str(2**70)], "guidance nan": ["--guidance", "nan"],
        "guidance inf": ["--guidance", "inf"], "noise-aug nan": ["--noise-aug", "nan"], "frames 100000": ["--frames", "100000"],
        "width 100000": ["--width", "100000"], "width 70": ["--width", "70"], "frames 0": ["--frames", "0"],
        "strength 2": ["--strength", "2"], "scheduler plms": ["--scheduler", "plms"], "motion-strength nan": ["--motion-strength", "nan"],
        "bomb image": ["--image", str(png_claiming(work / "bomb.png", 16000, 16000))], "image is text": ["--image", str(ROOT / "README.md")],
        "image-guidance both": ["--image-guidance", "both"],
        "keyframe out of range": ["--sparsectrl", str(FAMILY / "encoders" / "tiny-sparsectrl-rgb"), "--keyframe", f"9:{IMAGE}"],
    }
    for name, extra in bad_args.items():
        results.append(_run("arguments", name, _animate(*extra, "--out", str(out))))
    schedules = {
        "prompt keys overlap": ["--prompt-at", "0:a", "--prompt-at", "0:b"],
        "prompt key past end": ["--prompt-at", "0:a", "--prompt-at", "9:b"],
        "prompt keys decrease": ["--prompt-at", "3:a", "--prompt-at", "1:b"],
    }
    for name, extra in schedules.items():
        results.append(_run("arguments", name, _animate(*extra, "--out", str(out), prompt=False)))
    (work / "folder-out").mkdir()
    (work / "taken.mp4").mkdir()  # a folder where the video file should go
    results.append(_run("arguments", "--out a folder named like a video", _animate("--out", str(work / "taken.mp4"))))
    results.append(_run("arguments", "--config a folder", ["animate", "--config", str(work / "folder-out")]))
    loop = work / "loop"
    loop.symlink_to(loop)
    results.append(_run("arguments", "--adapter a symlink loop", ["animate", "--base", str(BASE), "--adapter", str(loop), "--prompt", "x", "--out", str(out)]))
    binary = work / "captions.csv"
    binary.write_bytes(os.urandom(2048))
    results.append(_run("arguments", "binary --captions", ["curate", str(work), "--captions", str(binary), "--out", str(work / "m.jsonl")]))
    # -- weights ---------------------------------------------------------------------------------
    variants = {
        "NaN weight": lambda t: _first(t, lambda w: w.fill_(math.nan)),
        "inf weight": lambda t: _first(t, lambda w: w.fill_(math.inf)),
        "int32 weight": lambda t: _first(t, lambda w: w.to(torch.int32)),
        "bool weight": lambda t: _first(t, lambda w: w.to(torch.bool)),
        "fp8 weight": lambda t: _first(t, lambda w: w.to(torch.float8_e4m3fn)),
        "wrong shape": lambda t: _first(t, lambda w: w[:, :-1].contiguous()),
    }
    for name, change in variants.items():
        folder = _adapter_variant(work, name.replace(" ", "-"), change)
        results.append(_run("weights", f"inspect: {name}", ["inspect", str(folder)]))
        results.append(_run("weights", f"animate: {name}", ["animate", "--base", str(BASE), "--adapter", str(folder), "--prompt", "x", "--frames", "2", "--steps", "1", "--out", str(out)]))
    huge = _adapter_variant(work, "huge-table", lambda t: None)
    config = json.loads((huge / "config.json").read_text())
    config["max_seq_length"] = 1e12
    (huge / "config.json").write_text(json.dumps(config))
    results.append(_run("weights", "inspect: max_seq_length 1e12", ["inspect", str(huge)]))
    for name, reducer in {"OrderedDict(5)": (collections.OrderedDict, (5,)), "torch.Size('abc')": (torch.Size, ("abc",))}.items():
        path = _odd_pickle(work / f"odd-{len(results)}.ckpt", reducer)
        results.append(_run("weights", f"inspect: pickle {name}", ["inspect", str(path)]))
    cut = work / "cut.safetensors"
    cut.write_bytes((ADAPTER / "diffusion_pytorch_model.safetensors").read_bytes()[:5000])
    results.append(_run("weights", "inspect: truncated safetensors", ["inspect", str(cut)]))
    nothing = work / "nothing.safetensors"
    from safetensors.torch import save_file

    save_file({"unet.no.such.layer.lora_A.weight": torch.zeros(2, 4), "unet.no.such.layer.lora_B.weight": torch.zeros(4, 2)}, str(nothing))
    results.append(_run("weights", "--lora matching no layer", _animate("--lora", str(nothing), "--out", str(out))))
    # -- corrupt videos --------------------------------------------------------------------------
    frames = (np.arange(12)[:, None, None, None] * 20 + np.zeros((12, 32, 32, 3))).astype(np.uint8)
    gif = write_video(frames, work / "full.gif").read_bytes()
    starts = [i for i in range(len(gif)) if gif[i : i + 3] == b"\x21\xf9\x04"]
    corrupt = {
        "gif cut between frames": ("cut.gif", gif[: starts[8]]),
        "gif cut mid-frame": ("mid.gif", gif[: len(gif) // 2]),
        "mp4 cut in half": ("cut.mp4", write_video(frames, work / "full.mp4").read_bytes()[:1500]),
        "text as mp4": ("text.mp4", b"not a video\n" * 50),
        "empty webp": ("empty.webp", b""),
    }
    for name, (file, data) in corrupt.items():
        (work / file).write_bytes(data)
        results.append(_run("videos", f"eval: {name}", ["eval", str(work / file)]))
    # -- kill -9 at every rename ------------------------------------------------------------------
    for kill_at in (1, 2):
        folder = work / f"kill-video-{kill_at}"
        folder.mkdir()
        write_video(frames, folder / "clip.gif", metadata={"prompt": "old"})
        argv = "\x00".join(_animate("--out", str(folder / "clip.gif")))
        outcome = _killed("kill -9", f"animate, after rename {kill_at}", argv, kill_at, [folder / "clip.gif"], folder, argv)
        from motionkit.video_io import sidecar_path

        record = sidecar_path(folder / "clip.gif")
        sidecar = json.loads(record.read_text()) if record.exists() else {}
        outcome.lost = outcome.lost or sidecar.get("prompt") != "a red ball"
        results.append(outcome)
    for kill_at in (1, 2):
        folder = work / f"kill-convert-{kill_at}"
        folder.mkdir()
        argv = "\x00".join(["convert", str(ADAPTER), str(folder / "adapter"), "--to", "motionkit"])
        subprocess.run([sys.executable, "-m", "motionkit", *argv.split("\x00")], capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        results.append(_killed("kill -9", f"convert over a folder, after rename {kill_at}", argv, kill_at, [folder / "adapter"], folder, argv))
    # -- full disk --------------------------------------------------------------------------------
    small = work / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(small)], capture_output=True).returncode == 0:
        try:
            (small / "filler").write_bytes(os.urandom(56 * 1024))
            (small / "old.mp4").write_bytes(b"old video")
            keep = [small / "old.mp4"]
            results.append(_run("full disk", "animate --out", _animate("--width", "256", "--height", "256", "--out", str(small / "old.mp4")), keep))
            results.append(_run("full disk", "convert --to motionkit", ["convert", str(ADAPTER), str(small / "a"), "--to", "motionkit"], keep))
        finally:
            subprocess.run(["umount", "--lazy", str(small)], capture_output=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write every outcome here")
    args = parser.parse_args()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="motionkit-faults-") as tmp:
        outcomes = cases(Path(tmp))
    totals = {k: sum(getattr(o, k) for o in outcomes) for k in ("traceback", "hang", "silent", "lost")}
    width = max(len(f"{o.kind}: {o.name}") for o in outcomes)
    for o in outcomes:
        faults = [k for k in totals if getattr(o, k)] or ["ok"]
        print(f"{o.kind + ': ' + o.name:<{width}}  rc={o.returncode}  {','.join(faults):<10}  {o.last_line[:110]}")
    print(f"\n{len(outcomes)} cases in {time.perf_counter() - start:.0f} s: " + ", ".join(f"{v} {k}" for k, v in totals.items()))
    if args.json:
        for o in outcomes:  # the record names no machine's folders
            o.last_line = o.last_line.replace(tmp, "WORK").replace(str(ROOT) + os.sep, "")
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"totals": totals, "cases": [asdict(o) for o in outcomes]}, indent=1) + "\n")
    return 0 if not any(totals.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
