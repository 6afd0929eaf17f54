#!/usr/bin/env bash
# lmms-eval 0.7.3 into a virtual environment, OUT OF PIP'S VIEW: its own package metadata pins torchvision, av<16
# and wandb==0.25.0 (for its other models; the evaluator and scorerl's plugin need none of them), which cannot
# hold beside this stack (no CPU torchvision; av 18, wandb 0.31). Installed with --no-deps into the site-packages
# as usual, pip would print "lmms-eval 0.7.3 requires ..., which is not installed" on every later install. So the
# package goes into VENV/lmms-eval without its .dist-info folder and a .pth file puts it on sys.path: Python
# imports it, pip sees nothing to check. What its evaluator needs at run time comes with scorerl[lmms] / [dev]
# (pyproject.toml, filelock<4 included). Usage: bash scripts/install_lmms_eval.sh [VENV]   (default .venv)
set -euo pipefail
venv="${1:-.venv}"
version="0.7.3"
target="$venv/lmms-eval"
site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
if [ "$(cat "$target/VERSION" 2>/dev/null || true)" != "$version" ]; then
    rm -rf "$target"
    "$venv/bin/python" -m pip uninstall -q -y lmms-eval 2>/dev/null || true  # an earlier in-view install
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps --target "$target" \
        "lmms-eval==$version" 2>&1 | grep -v "^WARNING: Location" || true
    rm -rf "$target"/lmms_eval-*.dist-info "$target/bin"
    echo "$version" > "$target/VERSION"
fi
(cd "$target" && pwd) > "$site/scorerl-lmms-eval.pth"
"$venv/bin/python" -c "import lmms_eval.evaluator" || { echo "[setup] lmms-eval failed to import"; exit 1; }
