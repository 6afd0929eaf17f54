#!/usr/bin/env bash
# The wheel works without the repository: build it, install it into a fresh virtual environment, and from a folder
# outside the checkout run `scorerl --help`, show a packaged run file by name, find a packaged accelerate config and
# import the public API. CI runs it after the linters (.ci/run).
#
#   bash scripts/check_wheel.sh          # ~1.5 min: torch 2.13.0 (CPU) and the dependencies come from pip's cache
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "[wheel] building"
# from a copy of the tracked files: the build leaves nothing (build/, *.egg-info) in the checkout
mkdir -p "$work/src"
git ls-files -z | xargs -0 cp -P --parents -t "$work/src"
"$PY" -m pip wheel -q --disable-pip-version-check --no-deps -w "$work/dist" "$work/src" 2>&1 \
  | grep -v "^WARNING: Location" || true
wheel="$(ls "$work"/dist/scorerl-*.whl)"
echo "[wheel] $(basename "$wheel"): $(python3 -c "import zipfile,sys; n=zipfile.ZipFile(sys.argv[1]).namelist(); \
print(len(n), 'files,', sum(f.endswith('.yaml') for f in n), 'packaged configs')" "$wheel")"

echo "[wheel] installing into a fresh virtual environment (torch==2.13.0 CPU first)"
"$PY" -m venv "$work/venv"
pip_q() { "$work/venv/bin/python" -m pip install -q --disable-pip-version-check "$@" 2>&1 | grep -v "^WARNING: Location" || true; }
pip_q torch==2.13.0
pip_q "$wheel"

cd "$work"  # nothing of the checkout is importable from here
export SCORERL_HOME="$work/home"
"$work/venv/bin/scorerl" --help > /dev/null
"$work/venv/bin/scorerl" config show qwen2_5_vl_7b/stage2_video.yaml | grep -q "arch: qwen2_5_vl"
"$work/venv/bin/scorerl" config path accelerate/multi_gpu.yaml | grep -q "site-packages/scorerl/configs/accelerate"
"$work/venv/bin/python" -c "from scorerl import ScoreCompressor; import scorerl, sys; \
assert 'site-packages' in scorerl.__file__, scorerl.__file__"
echo "[wheel] ok: scorerl --help, config show/path of packaged files, from scorerl import ScoreCompressor"
