#!/usr/bin/env bash
# Two data-parallel processes on CPU (gloo), e.g. to check a setup without GPUs. accelerate's --cpu flag
# alone starts one process (multi-CPU needs MPI there), so launch through torchrun (accelerate's
# --multi_gpu launcher) and ask the trainer for CPU with cpu=true. Extra key=value arguments go to the
# trainer, e.g. distributed.strategy=fsdp2 validation.every=0 to shard the model over the 2 processes.
set -euo pipefail
accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no --dynamo_backend no \
    -m motionkit train --config "${1:-examples/train/tiny_cpu.yaml}" cpu=true "${@:2}"
