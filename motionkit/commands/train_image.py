"""``motionkit train-image --config CONFIG.yaml [--resume latest|PATH] [--max-steps N] [--output-dir DIR] [key=value ...]``.

Trains one stage of a small text-to-image model (``vae``, ``text_unet`` or ``finetune``; see
``motionkit.train.image_config``), e.g. the tiny family a motion adapter is then trained against.
"""

from __future__ import annotations

import argparse

from motionkit.commands.train import add_run_arguments, config_overrides


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train-image",
        help="train a small image model: its VAE, text encoder + UNet, or a personalized fine-tune",
        description="Train one stage of a text-to-image model on a folder of captioned images (.txt sidecars). "
        "Settings come from a YAML config (see examples/tiny_family/); key=value arguments override them.",
    )
    add_run_arguments(parser, "the model", "lr=3e-4 batch_size=16")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from motionkit.train.image_config import ImageTrainConfig

    config = ImageTrainConfig.from_yaml(args.config, config_overrides(args))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from motionkit.train.image_trainer import train_image

    result = train_image(config)
    loss = f", final loss {result.history[-1]['loss']:.4f}" if result.history else ""
    print(f"trained {config.stage} for {result.steps} steps{loss}; wrote {result.output}")
    return 0
