#!/usr/bin/env bash
# The test suite, from nothing: sets up .venv (see setup_venv.sh) and runs pytest. Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh dev
exec .venv/bin/python -m pytest "$@"
