#!/usr/bin/env bash
# What changes the bits of a world environment fit on CPU (README, "How much the figures move between machines"):
# five 5-step fits of configs/world/env_v4.yaml that differ only in threads or in the CPU kernels torch and MKL
# use, and the SHA-256 of each fitted model.safetensors. Needs world v4 rendered (scorerl env fit renders it).
#
#   bash scripts/fit_numerics.sh [OUT_DIR]      # about 3 min on 2 cores
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-$(mktemp -d)}"
SHORT="fit.steps=3 fit.projector_warmup_steps=2 fit.warmup_steps=1"
fit() {  # NAME THREADS [ENV=VALUE ...]
  local name="$1" threads="$2"; shift 2
  env "$@" .venv/bin/scorerl env fit configs/world/env_v4.yaml $SHORT fit.threads="$threads" \
    --out "$OUT/$name" > "$OUT/$name.log" 2>&1
  printf '%-44s %s\n' "$name" "$(sha256sum "$OUT/$name/model.safetensors" | cut -c1-16)"
}
fit "2 threads" 2 X=0
fit "2 threads, again" 2 X=0
fit "1 thread" 1 X=0
fit "1 thread, ATEN_CPU_CAPABILITY=avx2" 1 ATEN_CPU_CAPABILITY=avx2
fit "1 thread, MKL_CBWR=AVX2" 1 MKL_CBWR=AVX2
fit "1 thread, both pinned" 1 ATEN_CPU_CAPABILITY=avx2 MKL_CBWR=AVX2
echo "fits in $OUT"
