"""Path mistakes are one line naming the problem and the fix: no raw ``[Errno N]``, no temporary names, and a
symlink loop is called one rather than "no such file"."""

from __future__ import annotations

import os

import pytest

from motionkit.cli import main
from motionkit import errors
from motionkit.family import TinyFamily
from motionkit.utils.atomic import atomic_write


def _one_line_error(argv: list[str], capsys) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("motionkit: error: ")]
    assert code == 2 and len(lines) == 1, err
    line = lines[0]
    assert "Errno" not in line and ".tmp-" not in line, line
    return line


def _animate(tmp_path, *extra: str) -> list[str]:
    family = TinyFamily.find()
    return ["animate", "--base", str(family.base), "--adapter", str(family.adapter), "--prompt", "x", "--frames", "2",
            "--steps", "1", "--width", "64", "--height", "64", *extra]


def test_out_naming_an_existing_folder(tmp_path, capsys):
    (tmp_path / "clip.mp4").mkdir()
    line = _one_line_error(_animate(tmp_path, "--out", str(tmp_path / "clip.mp4")), capsys)
    assert "clip.mp4: is a folder" in line and "another name" in line


def test_config_naming_a_folder(tmp_path, capsys):
    line = _one_line_error(["animate", "--config", str(tmp_path)], capsys)
    assert "is a folder, not a batch file" in line and "--config" in line


def test_a_symlink_loop_is_called_one(tmp_path, capsys):
    loop = tmp_path / "loop.png"
    os.symlink(loop, loop)
    line = _one_line_error(_animate(tmp_path, "--image", str(loop), "--out", str(tmp_path / "o.mp4")), capsys)
    assert "symlink loop" in line and "no such" not in line and "--image" in line
    line = _one_line_error(["inspect", str(loop)], capsys)
    assert "symlink loop" in line and "point the link at a real" in line
    broken = tmp_path / "broken.safetensors"
    os.symlink(tmp_path / "gone.safetensors", broken)
    assert "broken symlink" in _one_line_error(["inspect", str(broken)], capsys)


def test_writing_a_file_where_a_folder_is_names_the_output_not_the_temporary(tmp_path):
    (tmp_path / "notes.txt").mkdir()
    with pytest.raises(IsADirectoryError) as caught:
        with atomic_write(tmp_path / "notes.txt") as handle:
            handle.write("x")
    assert str(caught.value).startswith(f"{tmp_path / 'notes.txt'}: a folder is in the way")


def test_os_errors_read_as_a_path_and_a_fix():
    err = IsADirectoryError(21, "Is a directory", "/out/.clip.tmp-123-0123abcd.mp4", None, "/out/clip.mp4")
    assert errors.os_error_message(err) == "/out/clip.mp4: is a folder where a file is needed; give a file path, or remove the folder"
    assert errors.os_error_message(OSError(40, "Too many levels of symbolic links", "/a/b")).startswith("/a/b: is a symlink loop")
    assert errors.os_error_message(FileNotFoundError("x: no such adapter; check --adapter")) == "x: no such adapter; check --adapter"
