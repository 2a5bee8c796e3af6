"""``motionkit inspect PATH``: what a motion adapter, motion LoRA, ControlNet or SparseCtrl file holds, without
loading a model."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "inspect",
        help="show the format, version, layout and size of a motion adapter, motion LoRA, ControlNet or SparseCtrl",
        description="Recognise a motion adapter, motion LoRA, ControlNet or SparseCtrl file or folder (offline) and describe it.",
    )
    parser.add_argument("path", help="adapter, LoRA, ControlNet or SparseCtrl file or folder")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from motionkit.formats import detect_format

    info = detect_format(args.path)
    if args.json:
        print(json.dumps(info.as_dict(), indent=2, sort_keys=True))
        return 0
    rows = [
        ("format", info.format + (f" ({info.version})" if info.version else "")),
        ("container", info.container),
        ("layout", info.layout),
        ("parameters", f"{info.parameters:,}"),
        ("tensors", str(info.tensors)),
        ("dtype", info.dtype),
    ]
    if info.variant:
        rows.append(("few-step", info.variant))
    cfg = info.config
    if info.format in ("controlnet", "sparsectrl"):
        mask = " + 1 mask" if info.format == "sparsectrl" and cfg.get("concat_conditioning_mask", True) else ""
        rows.append(("condition", f"{cfg.get('conditioning_channels')} channels{mask}"))
        if info.format == "sparsectrl":
            rows.append(("motion modules", f"yes, up to {info.max_frames} frames"))
    elif info.format != "motion-lora":
        rows += [
            ("temporal norm", str(info.temporal_norm).replace("_", " ")),
            ("frames", f"up to {info.max_frames}" if info.max_frames else "any (no position table)"),
            ("attention heads", str(cfg.get("num_attention_heads"))),
            ("temporal conv", "yes" if cfg.get("use_temporal_conv") else "no"),
        ]
        if cfg.get("training_frames"):
            rows.append(("trained on", f"{cfg['training_frames']} frames"))
        if cfg.get("image_cond_channels"):
            rows.append(("image condition", f"{cfg['image_cond_channels']} channels"))
    rows += [("note", note) for note in info.notes]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0
