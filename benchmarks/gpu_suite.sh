#!/usr/bin/env bash
# One prepared GPU run of motionkit against SDPA, xformers and diffusers: at most 8 minutes on an
# H100/H200. Writes benchmarks/results/gpu_suite.json and gpu_suite.md (or --out-dir DIR).
#
#   benchmarks/gpu_suite.sh                  # GPU run
#   benchmarks/gpu_suite.sh --write-policy   # GPU run that also rewrites motionkit/kernels/auto_policy.json
#   benchmarks/gpu_suite.sh --dry-run        # no GPU: compile-only kernel checks, toy sizes on CPU
#
# PYTHON picks the interpreter (default: python). The driver keeps its own wall-clock guard (460 s);
# the outer timeout only catches a driver that hangs itself.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
limit=480
for arg in "$@"; do
  if [ "$arg" = "--dry-run" ]; then limit=900; fi
done
exec timeout --signal=TERM --kill-after=15 "$limit" "$PYTHON" benchmarks/gpu_suite.py "$@"
