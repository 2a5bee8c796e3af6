"""Convert an original AnimateDiff motion module (``mm_sd_v15_v2.ckpt``, ``v3_sd15_mm.ckpt``,
``mm_sdxl_v10_beta.ckpt`` ...) to safetensors, to a diffusers ``MotionAdapter`` folder and to a motionkit
folder, and check that every copy holds exactly the same weights.

``.ckpt`` files are pickles: they are read with ``torch.load(weights_only=True)``, which refuses anything
but tensors, and the converted files are all safetensors. ``--quick`` writes a tiny random module in the
original layout first (a ``.ckpt`` as AnimateDiff ships them) and converts that.

    python examples/convert_animatediff.py --quick
    python examples/convert_animatediff.py mm_sd_v15_v2.ckpt --out converted/
    motionkit inspect mm_sd_v15_v2.ckpt        # the same detection, from the command line
"""

from __future__ import annotations

import warnings
from pathlib import Path

import _shared


def write_tiny_original(path: Path, seed: int) -> Path:
    """A random AnimateDiff-v2-shaped module for a tiny UNet, saved as the original repository does."""
    import torch
    from safetensors.torch import load_file

    from motionkit import MotionAdapter, save_adapter
    from motionkit.tiny import randomize_, tiny_unet

    adapter = randomize_(MotionAdapter.from_unet(tiny_unet("tiny-sd"), preset="animatediff-v2"), seed=seed)
    original = save_adapter(adapter, path.with_suffix(".safetensors"), format="animatediff")
    torch.save(load_file(str(original)), path)  # a plain dict of tensors, like the released .ckpt files
    original.unlink()
    return path


def main() -> None:
    parser = _shared.parser(__doc__, models=False)
    parser.add_argument("src", nargs="?", type=Path, help="AnimateDiff motion module (.ckpt or .safetensors)")
    parser.add_argument("--out", type=Path, default=_shared.OUT / "converted", help="folder for the converted copies")
    args = parser.parse_args()
    if args.src is None and not args.quick:
        parser.error("give a motion module to convert, or --quick to build a tiny one")

    import torch

    from motionkit import detect_format, load_adapter, save_adapter

    args.out.mkdir(parents=True, exist_ok=True)
    src = args.src or write_tiny_original(args.out / "mm_tiny_v2.ckpt", args.seed)
    info = detect_format(src)
    print(f"{src}: {info.format} {info.version or ''}, {info.layout}, {info.parameters:,} parameters, {info.dtype}")
    print(f"  temporal norm {info.temporal_norm}, position table {info.max_frames} frames")
    for note in info.notes:
        print(f"  note: {note}")

    adapter = load_adapter(src)
    stem = src.stem
    targets = {
        "animatediff": args.out / f"{stem}.safetensors",  # same layout, safe container
        "diffusers": args.out / f"{stem}-diffusers",
        "motionkit": args.out / f"{stem}-motionkit",
    }
    reference = adapter.state_dict()
    for fmt, target in targets.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            save_adapter(adapter, target, format=fmt)
        back = load_adapter(target).state_dict()
        same = back.keys() == reference.keys() and all(torch.equal(back[k], reference[k]) for k in reference)
        print(f"wrote {target} ({fmt}): reloads {'identical' if same else 'DIFFERENT'}")
        for w in caught:
            print(f"  note: {w.message}")
        if not same:
            raise SystemExit(f"{target}: the converted weights differ from the original")

    # The diffusers folder is a plain diffusers MotionAdapter: diffusers' own loader reads it offline.
    from diffusers import MotionAdapter as DiffusersMotionAdapter

    theirs = DiffusersMotionAdapter.from_pretrained(targets["diffusers"])
    print(f"diffusers.MotionAdapter.from_pretrained reads {targets['diffusers'].name}: {sum(p.numel() for p in theirs.parameters()):,} parameters")


if __name__ == "__main__":
    main()
