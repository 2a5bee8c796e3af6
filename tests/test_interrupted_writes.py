"""Writes killed outright (``kill -9``) lose nothing: leftovers are cleaned on the next write, a folder swap
cut between its renames is rolled back, a video never sits beside the previous video's sidecar; a full
disk is one line; mp4 output does not depend on the number of cores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from motionkit.cli import main
from motionkit.hostile import kill_at_replace_prelude
from motionkit.utils.atomic import atomic_path, clean_stale_temps
from motionkit.video_io import read_video, sidecar_path, write_video


def _killed_at_replace(code: str, kill_at: int, cwd: Path) -> None:
    """Run ``code`` in a child whose ``kill_at``-th ``os.replace`` in the atomic writer (1-based) is
    followed by SIGKILL: the process dies exactly between two renames, as ``kill -9`` would leave it."""
    script = kill_at_replace_prelude(kill_at) + textwrap.dedent(code)
    result = subprocess.run([sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert result.returncode == -9, result.stderr


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _write_folder(target: Path, text: str) -> None:
    with atomic_path(target, is_dir=True) as tmp:
        (tmp / "weights.txt").write_text(text)


def test_folder_swap_killed_between_renames_is_rolled_back_on_the_next_write(tmp_path):
    target = tmp_path / "adapter"
    _write_folder(target, "old")
    # The first replace moves the old folder aside; dying right after leaves no output folder at all.
    code = "from pathlib import Path\nfrom motionkit.utils.atomic import atomic_path\n"
    code += "with atomic_path(Path('adapter'), is_dir=True) as tmp:\n    (tmp / 'weights.txt').write_text('new')\n"
    _killed_at_replace(code, kill_at=1, cwd=tmp_path)
    assert not target.exists()
    assert any(".old-" in name for name in _hidden(tmp_path))
    # Recovery alone puts the previous folder back ...
    restored = clean_stale_temps(tmp_path)
    assert restored and (target / "weights.txt").read_text() == "old"
    assert _hidden(tmp_path) == []
    # ... and a new write after a cut swap leaves only the new folder.
    _killed_at_replace(code, kill_at=1, cwd=tmp_path)
    _write_folder(target, "newer")
    assert (target / "weights.txt").read_text() == "newer"
    assert _hidden(tmp_path) == []


def test_temporaries_of_killed_writers_are_removed_and_live_ones_kept(tmp_path):
    code = textwrap.dedent(
        """
        import os, signal
        from pathlib import Path
        from motionkit.utils.atomic import atomic_path
        with atomic_path(Path("clip.bin")) as tmp:
            tmp.write_bytes(b"half")
            os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, timeout=60)
    assert result.returncode == -9
    assert [n for n in _hidden(tmp_path) if ".tmp-" in n]
    # A temporary of this (live) process is someone's write in progress: never touched.
    live = tmp_path / f".clip.tmp-{os.getpid()}-0123abcd.bin"
    live.write_bytes(b"in progress")
    with atomic_path(tmp_path / "clip.bin") as tmp:
        tmp.write_bytes(b"whole")
    assert (tmp_path / "clip.bin").read_bytes() == b"whole"
    assert _hidden(tmp_path) == [live.name]


def test_killed_video_write_never_leaves_the_old_sidecar_beside_the_new_video(tmp_path):
    frames = np.zeros((3, 16, 16, 3), np.uint8)
    write_video(frames, tmp_path / "clip.gif", metadata={"prompt": "old"})
    code = "import numpy as np\nfrom motionkit.video_io import write_video\n"
    code += "new = np.arange(5, dtype=np.uint8)[:, None, None, None] * 40 + np.zeros((5, 16, 16, 3), np.uint8)\n"
    code += "write_video(new, 'clip.gif', metadata={'prompt': 'new'})\n"
    _killed_at_replace(code, kill_at=1, cwd=tmp_path)  # dies right after the video moved into place
    assert len(read_video(tmp_path / "clip.gif")) == 5
    assert not sidecar_path(tmp_path / "clip.gif").exists()
    write_video(frames, tmp_path / "clip.gif", metadata={"prompt": "again"})
    assert json.loads(sidecar_path(tmp_path / "clip.gif").read_text())["prompt"] == "again"


def test_mp4_bytes_do_not_depend_on_the_cores_available(tmp_path):
    frames = np.cumsum(np.random.default_rng(0).integers(0, 8, (12, 96, 96, 3)), axis=0).astype(np.uint8)
    cores = sorted(os.sched_getaffinity(0))
    written = []
    try:
        for allowed in ({cores[0]}, set(cores)):
            os.sched_setaffinity(0, allowed)
            written.append(write_video(frames, tmp_path / f"c{len(allowed)}.mp4").read_bytes())
    finally:
        os.sched_setaffinity(0, set(cores))
    assert written[0] == written[1]


def _full_disk(tmp_path: Path, monkeypatch) -> Path:
    """A folder on a 64 KiB tmpfs where the machine allows mounting one; otherwise one whose writes fail
    with ENOSPC as a full disk's do."""
    folder = tmp_path / "small"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode == 0:
        (folder / "filler").write_bytes(os.urandom(60 * 1024))
        return folder
    import errno

    import av

    real_open = av.open

    def full(path, *args, **kwargs):
        if str(path).startswith(str(folder)) and kwargs.get("mode", args[0] if args else "r") == "w":
            raise av.error.OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(av, "open", full)
    return folder


def test_full_disk_is_one_line_and_keeps_the_old_file(tmp_path, monkeypatch, capsys):
    from diffusers import StableDiffusionPipeline

    from motionkit.adapter import MotionAdapter
    from motionkit.tiny import tiny_pipeline_components

    components = tiny_pipeline_components()
    StableDiffusionPipeline(
        **components, safety_checker=None, feature_extractor=None, requires_safety_checker=False
    ).save_pretrained(tmp_path / "base")
    MotionAdapter.from_unet(components["unet"]).save_pretrained(tmp_path / "adapter")
    folder = _full_disk(tmp_path, monkeypatch)
    try:
        out = folder / "clip.mp4"
        if (folder / "filler").exists():
            out.write_bytes(b"old video")  # tiny: fits beside the filler
        before = sorted(os.listdir(folder))
        capsys.readouterr()
        code = main([
            "animate", "--base", str(tmp_path / "base"), "--adapter", str(tmp_path / "adapter"), "--prompt", "a ball",
            "--frames", "4", "--width", "256", "--height", "256", "--steps", "1", "--out", str(out),
        ])
        err = capsys.readouterr().err
        assert code == 2 and "Traceback" not in err, err
        line = err.strip().splitlines()[-1]  # after the sampling progress bar
        assert line.startswith("motionkit: error: no space left on device") and ".tmp-" not in line, err
        assert sorted(os.listdir(folder)) == before  # nothing half-written, the old file untouched
        if out.exists():
            assert out.read_bytes() == b"old video"
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], capture_output=True)  # lazy: detach even if a handle lingers
