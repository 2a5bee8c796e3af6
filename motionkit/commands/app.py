"""``motionkit app``: serve the Gradio image-to-video page for the models of one folder (see docs/app.md)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from motionkit.errors import MotionkitError

if TYPE_CHECKING:
    from motionkit.app.models import ModelsFolder


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "app",
        help="serve the image-to-video web page (Gradio)",
        description="Serve a web page that animates an image or a prompt with the bases, motion adapters and "
        "MotionLoRAs of a models folder (DIR/bases, DIR/adapters, DIR/loras). Needs motionkit[app].",
    )
    add = parser.add_argument
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--models-dir", type=Path, metavar="DIR", help="models folder (default: the tiny family shipped with motionkit)")
    where.add_argument(
        "--demo-models", type=Path, metavar="DIR",
        help="write a tiny random models folder to DIR (if it holds none yet) and serve it: tries the page without real weights",
    )
    add("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 exposes the page to the network)")
    add("--port", type=int, help="port (default: Gradio's, 7860 or the next free one)")
    add("--share", action="store_true", help="also publish a temporary public gradio.live link")
    add("--max-frames", type=int, default=32, help="most frames a request may ask for (default 32)")
    add("--max-size", type=int, default=768, help="largest width or height in pixels (default 768)")
    add("--max-steps", type=int, default=50, help="most denoising steps (default 50)")
    add("--max-upload-mb", type=float, default=10.0, help="largest image upload in MB (default 10)")
    add("--concurrency", type=int, default=1, help="requests handled at once (sampling itself is one at a time; default 1)")
    add("--queue-size", type=int, default=16, help="requests allowed to wait; more are turned away (default 16)")
    add("--device", choices=("cpu", "cuda"), help="default: cuda when available")
    parser.set_defaults(func=run)


def _models(args: argparse.Namespace) -> "ModelsFolder":
    from motionkit.app.models import DEFAULT_MODELS_DIR, KINDS, ModelsFolder, write_demo_models

    if args.demo_models is not None:
        folder = ModelsFolder(args.demo_models)
        if not (args.demo_models / KINDS["base"][0]).is_dir():
            write_demo_models(args.demo_models)
            print(f"wrote tiny random demo models to {args.demo_models}")
        return folder
    if args.models_dir is not None:
        return ModelsFolder(args.models_dir)
    if not DEFAULT_MODELS_DIR.is_dir():
        raise MotionkitError(
            "this install ships no models folder yet: pass --models-dir DIR (DIR/bases, DIR/adapters, DIR/loras; "
            "see docs/app.md) or try the page with tiny random models: motionkit app --demo-models DIR"
        )
    return ModelsFolder(DEFAULT_MODELS_DIR)


def run(args: argparse.Namespace) -> int:
    from motionkit.app.limits import Limits

    limits = Limits(
        max_frames=args.max_frames,
        max_size=args.max_size,
        max_steps=args.max_steps,
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
    )
    models = _models(args)
    models.check()
    try:
        from motionkit.app.ui import launch
    except ImportError as err:
        if getattr(err, "name", None) not in ("gradio", "gradio_client"):
            raise
        raise MotionkitError("the app needs Gradio: pip install 'motionkit[app]'") from None
    launch(
        models, limits, host=args.host, port=args.port, share=args.share,
        concurrency=args.concurrency, queue_size=args.queue_size, device=args.device,
    )
    return 0
