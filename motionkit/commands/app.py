"""``motionkit app``: serve the Gradio image-to-video page for the models of one folder (see docs/app.md)."""

from __future__ import annotations

import argparse
import logging
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
    add(
        "--auth", action="append", metavar="USER:PASSWORD",
        help="require this login (repeat for several users); needed when --host is not loopback or with --share",
    )
    add("--no-auth", action="store_true", help="serve a non-loopback host or --share without a login, on purpose")
    add("--max-frames", type=int, help="most frames a request may ask for (default 32 on cpu, 64 on cuda)")
    add("--max-size", type=int, help="largest width or height in pixels (default 512 on cpu, 1024 on cuda)")
    add("--max-steps", type=int, help="most denoising steps (default 50 on cpu, 100 on cuda)")
    add(
        "--max-cost", type=float,
        help="most frames x width x height x steps per request, in millions (default 16 on cpu, 1000 on cuda)",
    )
    add("--max-upload-mb", type=float, default=10.0, help="largest image upload in MB (default 10)")
    add(
        "--cache-examples", choices=("eager", "lazy", "off"), default="eager",
        help="run the examples at start (eager, default), on their first click (lazy), or never (off)",
    )
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


def _auth(specs: list[str] | None) -> list[tuple[str, str]]:
    logins = []
    for spec in specs or []:
        user, sep, password = spec.partition(":")
        if not sep or not user or not password:
            raise MotionkitError(f"--auth takes USER:PASSWORD, got {spec.split(':')[0]!r}...: give both, separated by ':'")
        logins.append((user, password))
    return logins


def run(args: argparse.Namespace) -> int:
    from motionkit.app.limits import Limits
    from motionkit.pipeline.build import device_and_dtype

    device, _ = device_and_dtype(args.device)
    limits = Limits.for_device(
        device,
        max_frames=args.max_frames,
        max_size=args.max_size,
        max_steps=args.max_steps,
        max_cost=args.max_cost,
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
    )
    auth = _auth(args.auth)
    models = _models(args)
    # Refusals and stops are one line each in the server's log; real faults carry their traceback.
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("motionkit.app").setLevel(logging.INFO)
    models.check()
    try:
        from motionkit.app.ui import launch
    except ImportError as err:
        if getattr(err, "name", None) not in ("gradio", "gradio_client"):
            raise
        raise MotionkitError("the app needs Gradio: pip install 'motionkit[app]'") from None
    launch(
        models, limits, host=args.host, port=args.port, share=args.share, auth=auth, open_access=args.no_auth,
        concurrency=args.concurrency, queue_size=args.queue_size, device=device,
        cache_examples=False if args.cache_examples == "off" else args.cache_examples,
    )
    return 0
