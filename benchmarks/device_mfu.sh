#!/usr/bin/env bash
# Training MFU, tokens/s and device memory on one GPU for a ~1B decoder (Llama-3.2-1B
# shape, sequence 2048, bf16) and mT5-large (inputs 512, targets 128), per attention /
# remat / scan choice; one table, within 8 minutes including compilation.
#   bash benchmarks/device_mfu.sh [--steps 5] [--models decoder_1b,mt5_large] [--json FILE]
#   bash benchmarks/device_mfu.sh --dry-run      # the same programs, reduced, on the CPU
set -euo pipefail
cd "$(dirname "$0")/.."
# One process owns the GPU: let XLA take most of its memory up front.
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.92}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader 2>/dev/null || true
exec timeout 470 python benchmarks/device_mfu.py "$@"
