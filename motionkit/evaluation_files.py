"""The files an evaluation script leaves: ``report.json``, ``table.md`` and ``contact_sheet.png`` in one folder,
each written atomically, so a run killed halfway leaves the previous run's files whole."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from motionkit.contact_sheet import write_contact_sheet
from motionkit.utils.atomic import atomic_write


def run_settings(args: argparse.Namespace, passed_on: list[str]) -> dict[str, Any]:
    """A script's parsed arguments as JSON values (paths as strings), with the flags it passed on to
    ``motionkit animate`` under ``"animate_flags"``."""
    settings = {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()}
    settings["animate_flags"] = list(passed_on)
    return settings


def write_evaluation(
    out: str | os.PathLike[str], report: dict[str, Any], table: str, sheet: Sequence[tuple[str, Any]]
) -> Path:
    """``out/report.json`` (``report``), ``out/table.md`` (``table``) and ``out/contact_sheet.png`` (``sheet``'s
    labelled rows of frames); returns ``out``."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_write(folder / "report.json") as handle:
        handle.write(json.dumps(report, indent=2) + "\n")
    with atomic_write(folder / "table.md") as handle:
        handle.write(table + "\n")
    write_contact_sheet(folder / "contact_sheet.png", sheet)
    return folder
