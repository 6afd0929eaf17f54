#!/usr/bin/env bash
# Create (or reuse) ./.venv and install scorerl into it. torch is pinned first: that exact version is a CPU
# build on the package index; an unpinned torch pulled in by another package would download CUDA wheels. Every
# other package comes at the exact version of constraints.txt (the versions the README's figures were made with).
# Usage: bash scripts/setup_venv.sh [EXTRAS]   e.g. EXTRAS=dev
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "[setup] creating .venv with $($PY --version)"
    "$PY" -m venv .venv
fi
stamp=".venv/.scorerl-installed-${extras:-base}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
    echo "[setup] installing torch==2.13.0 (CPU) and scorerl${extras:+[$extras]}"
    .venv/bin/python -m pip install -q --disable-pip-version-check torch==2.13.0 2>&1 | grep -v "^WARNING: Location" || true
    .venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e ".${extras:+[$extras]}" 2>&1 | grep -v "^WARNING: Location" || true
    if [ "$extras" = "dev" ]; then
        bash scripts/install_lmms_eval.sh .venv  # the plugin's tests; out of pip's view (see that script)
        # deepspeed for the ZeRO-3 environment tests; DS_BUILD_OPS=0: no CUDA ops (its CPU op is built on first use)
        DS_BUILD_OPS=0 .venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt "deepspeed==0.19.8" 2>&1 | grep -v "^WARNING: Location" || true
        .venv/bin/python -c "import deepspeed" 2>/dev/null || { echo "[setup] deepspeed failed to install"; exit 1; }
    fi
    .venv/bin/python -c "import torch, transformers, scorerl" || { echo "[setup] install failed"; exit 1; }
    touch "$stamp"
fi
