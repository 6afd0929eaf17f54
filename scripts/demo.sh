#!/usr/bin/env bash
# The main job, from nothing: sets up .venv, then builds the built-in world, fits its reward environment,
# trains a SCORE policy with configs/quickstart.yaml and prints the evaluation at keep ratio 0.1.
# World, environment and features are cached under $SCORERL_HOME (default ~/.cache/scorerl) and reused.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
exec .venv/bin/scorerl demo configs/world/score_v4.yaml "$@"
