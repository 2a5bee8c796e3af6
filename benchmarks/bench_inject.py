"""Forward time of a motionkit-injected UNet against diffusers' UNetMotionModel, same weights and inputs.

Both run in one process, interleaved, so machine noise hits them alike; the ratio is the figure
to read (below 1.0: motionkit is faster).

    python benchmarks/bench_inject.py                      # tiny and medium configs on CPU
    python benchmarks/bench_inject.py --configs medium-sd --frames 16 --device cuda --dtype fp16
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from common import print_table, time_once, write_rows

from motionkit import MotionAdapter, inject
from motionkit.formats.diffusers_format import to_unet_motion_model
from motionkit.tiny import randomize_, tiny_unet, unet_inputs

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def bench_config(name: str, frames: int, batch: int, repeats: int, device: str, dtype: torch.dtype) -> dict:
    unet = tiny_unet(name)
    adapter = randomize_(MotionAdapter.from_unet(unet, preset="animatediff-v2", temporal_norm="across_frames"))
    reference = to_unet_motion_model(unet, adapter).to(device, dtype)
    unet.to(device, dtype)
    motion = inject(unet, adapter)
    inputs = unet_inputs(unet, batch=batch, frames=frames)
    inputs = {k: (v.to(device) if torch.is_tensor(v) else {kk: vv.to(device) for kk, vv in v.items()}) for k, v in inputs.items()}
    inputs["sample"] = inputs["sample"].to(dtype)
    inputs["encoder_hidden_states"] = inputs["encoder_hidden_states"].to(dtype)
    per_frame_text = inputs["encoder_hidden_states"].repeat_interleave(frames, dim=0)

    def run_motionkit():
        motion(**inputs)

    def run_diffusers():
        reference(inputs["sample"], inputs["timestep"], per_frame_text, added_cond_kwargs=inputs.get("added_cond_kwargs"))

    ours, theirs = [], []
    with torch.inference_mode():
        run_motionkit(), run_diffusers()  # warm-up
        for _ in range(repeats):
            ours.append(time_once(run_motionkit, device))
            theirs.append(time_once(run_diffusers, device))
    t_ours, t_theirs = statistics.median(ours), statistics.median(theirs)
    return {
        "config": name,
        "frames": frames,
        "batch": batch,
        "motionkit_ms": round(t_ours * 1e3, 2),
        "diffusers_ms": round(t_theirs * 1e3, 2),
        "ratio": round(t_ours / t_theirs, 3),
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["tiny-sd", "tiny-sdxl", "medium-sd"])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--out", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    rows = [bench_config(c, args.frames, args.batch, args.repeats, args.device, DTYPES[args.dtype]) for c in args.configs]
    columns = [("config", "config"), ("frames", "frames"), ("motionkit_ms", "motionkit ms"), ("diffusers_ms", "diffusers ms"), ("ratio", "ratio")]
    print_table(rows, columns)
    write_rows(rows, args.out)
    return rows


if __name__ == "__main__":
    main()
