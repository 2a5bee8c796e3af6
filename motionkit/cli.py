"""The ``motionkit`` command. Each subcommand lives in ``motionkit/commands/<name>.py`` and exports
``register(subparsers)``, which adds its parser and sets ``func`` (a callable taking the parsed args)."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from motionkit import commands
from motionkit.errors import MotionkitError, disk_full_message, is_disk_full, os_error_message


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="motionkit", description="Teach image diffusion models to move.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"motionkit.commands.{info.name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from motionkit import __version__

        print(__version__)
        return 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        result = args.func(args)
    except MotionkitError as err:
        print(f"motionkit: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("motionkit: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if is_disk_full(err):
            print(f"motionkit: error: {disk_full_message(err)}", file=sys.stderr)
            return 2
        if isinstance(err, OSError):
            print(f"motionkit: error: {os_error_message(err)}", file=sys.stderr)
            return 2
        raise
    return int(result or 0)
