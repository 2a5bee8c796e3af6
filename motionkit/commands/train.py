"""``motionkit train --config CONFIG.yaml [--resume latest|PATH] [--max-steps N] [--output-dir DIR] [key=value ...]``.

Runs on one process as is, or on many through ``accelerate launch -m motionkit train ...``.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a motion adapter (or a MotionLoRA, a SparseCtrl encoder or a ControlNet) on video clips",
        description="Train a motion adapter against a frozen image model. Settings come from a YAML config "
        "(see examples/train/); key=value arguments override them (dotted keys for sections, e.g. data.size=512). "
        "For several GPUs or nodes run it through 'accelerate launch -m motionkit train ...'.",
    )
    add_run_arguments(parser, "the adapter", "lr=3e-5 data.size=512")
    parser.set_defaults(func=run)


def add_run_arguments(parser: argparse.ArgumentParser, product: str, example: str) -> None:
    """The arguments every training command shares: config, resume, step count, output folder, overrides."""
    parser.add_argument("--config", required=True, help="training config (YAML)")
    parser.add_argument(
        "--resume", metavar="latest|PATH",
        help="continue from the newest checkpoint or a checkpoint folder (lr and adam_* overrides apply to the resumed run)",
    )
    parser.add_argument("--max-steps", type=int, help="total optimizer steps (overrides the config)")
    parser.add_argument("--output-dir", help=f"where checkpoints, logs and {product} go (overrides the config)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help=f"config overrides, e.g. {example}")


def config_overrides(args: argparse.Namespace) -> list[str]:
    """``key=value`` overrides from the command line, the flags included."""
    overrides = list(args.overrides)
    if args.resume:
        overrides.append(f"resume_from={args.resume}")
    if args.max_steps is not None:
        overrides.append(f"max_steps={args.max_steps}")
    if args.output_dir:
        overrides.append(f"output_dir={args.output_dir}")
    return overrides


def run(args: argparse.Namespace) -> int:
    import logging

    from motionkit.train.config import TrainConfig

    config = TrainConfig.from_yaml(args.config, config_overrides(args))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from motionkit.train.encoder_trainer import trainer_for

    result = trainer_for(config).train()
    if result.exported:  # the main process exports; the others stay quiet
        loss = f", final loss {result.history[-1]['loss']:.4f}" if result.history else ""
        print(f"trained {result.steps} steps{loss}; wrote {', '.join(result.exported.values())}")
    return 0
