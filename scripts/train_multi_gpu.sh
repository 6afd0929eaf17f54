#!/usr/bin/env bash
# Train a run file on all GPUs of this machine (data-parallel policy; the frozen environment whole on each GPU, or
# partitioned across them when the run file sets env.placement: zero3, as configs/qwen2_5_vl_72b/ does).
#   bash scripts/train_multi_gpu.sh configs/qwen2_5_vl_7b/stage2_video.yaml [--resume auto] [section.key=value ...]
# GPU-only: on a CPU machine use configs/accelerate/cpu_2proc.yaml (README, "Training on many GPUs").
set -euo pipefail
cd "$(dirname "$0")/.."
config="${1:?usage: bash scripts/train_multi_gpu.sh RUN_FILE [scorerl train options]}"; shift
# Counted by the project's own environment (the torch that will train), not whatever python3 is on the PATH.
gpus="${GPUS:-$(.venv/bin/python -c 'import torch; print(torch.cuda.device_count())')}"
[ "$gpus" -ge 1 ] || { echo "no CUDA device here: see configs/accelerate/cpu_2proc.yaml for CPU runs" >&2; exit 2; }
exec .venv/bin/accelerate launch --config_file configs/accelerate/multi_gpu.yaml --num_processes "$gpus" \
    -m scorerl train "$config" "$@"
