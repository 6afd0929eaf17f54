#!/usr/bin/env bash
# World v4's accuracy-vs-cost frontier: 3 independently fitted environments (env seeds 0, 1, 2) x 3 SCORE training
# seeds, every method at several settings, on the 10,000-question v4 test split (its own seed, 2); then
# scripts/frontier.py writes docs/results/frontier_v4.{json,md,png}. docs/results/README.md, "frontier_v4".
#
#   bash scripts/frontier_v4.sh all            # everything, in order (about 3.5 h on 2 cores)
#   bash scripts/frontier_v4.sh fit 1          # one step: fit E | train E S | nbr E S | eval E | eval_score E | eval_nbr E | report
#
# Each step skips what is already there, so the steps can run in two shells at once (give each one thread:
# two torch processes with two threads each on 2 cores run about 3x slower than one thread each).
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
SCORERL=".venv/bin/scorerl"
HOME_DIR="${SCORERL_HOME:-$HOME/.cache/scorerl}"
TEST="$HOME_DIR/world_v4_test10k"
RUNS="${RUNS:-runs}"
OUT="${OUT:-results/frontier_v4}"
RATIOS="${RATIOS:-0.05,0.1,0.25}"       # SCORE: about 30 / 33 / 46% of the full prefill FLOPs here (text tokens
                                        # dominate: ~43 of them against 128 visual ones); FastV at K = 1: 47-58%
BASE_RATIOS="${BASE_RATIOS:-$RATIOS}"   # FastV at K = 2 costs over 60% at any ratio here
NBR_RATIOS="${NBR_RATIOS:-0.05,0.1}"
BASELINES="${BASELINES:-full,vidcom2,fastv,fastvid_meanq,holitom_meanq}"

env_dir() { if [ "$1" = 0 ]; then echo "$HOME_DIR/world_env_v4"; else echo "$HOME_DIR/world_env_v4_s$1"; fi; }
env_path() { if [ "$1" = 0 ]; then echo "world_v4"; else env_dir "$1"; fi; }  # env 0 is the demo's environment

split() {
  [ -f "$TEST/test.jsonl" ] || "$SCORERL" data synthetic --out "$TEST" --version 4 --train 0 --test 10000 \
    --static 0 --static-test 0 --seed 2
}

fit() {  # E: the environment's run.seed
  "$SCORERL" env fit configs/world/env_v4.yaml run.seed="$1" --out "$(env_dir "$1")" --resume auto
}

train() {  # E S
  local run="$RUNS/v4_e$1_s$2"
  [ -f "$run/policy/policy.safetensors" ] || "$SCORERL" train configs/world/score_v4.yaml \
    env.path="$(env_path "$1")" run.seed="$2" run.name="v4_e$1_s$2" run.output_dir="$RUNS" --resume auto
}

nbr() {  # E S: the neighbour variant
  local run="$RUNS/v4nbr_e$1_s$2"
  [ -f "$run/policy/policy.safetensors" ] || "$SCORERL" train configs/world/score_v4_neighbours.yaml \
    env.path="$(env_path "$1")" run.seed="$2" run.name="v4nbr_e$1_s$2" run.output_dir="$RUNS" --resume auto
}

evaluate() {  # E: the training-free methods at RATIOS, FastV also at K = 1, DyCoke at its own budget
  local e="$1"
  mkdir -p "$OUT"
  [ -f "$OUT/e${e}_base.json" ] || "$SCORERL" eval configs/world/score_v4.yaml env.path="$(env_path "$e")" \
    --manifest "$TEST/test.jsonl" --methods "$BASELINES" --ratios "$BASE_RATIOS" --out "$OUT/e${e}_base.json"
  [ -f "$OUT/e${e}_fastv1.json" ] || "$SCORERL" eval configs/world/score_v4.yaml env.path="$(env_path "$e")" \
    eval.fastv_layer=1 --manifest "$TEST/test.jsonl" --methods full,fastv --ratios "$RATIOS" --out "$OUT/e${e}_fastv1.json"
  [ -f "$OUT/e${e}_dycoke.json" ] || "$SCORERL" eval configs/world/score_v4.yaml env.path="$(env_path "$e")" \
    --manifest "$TEST/test.jsonl" --methods full,dycoke --ratios 0.1 --out "$OUT/e${e}_dycoke.json"
}

evaluate_score() {  # E: SCORE's three training seeds
  local e="$1" policies=()
  for s in 0 1 2; do policies+=(--policy "$RUNS/v4_e${e}_s$s"); done
  mkdir -p "$OUT"
  [ -f "$OUT/e${e}_score.json" ] || "$SCORERL" eval configs/world/score_v4.yaml env.path="$(env_path "$e")" \
    "${policies[@]}" --manifest "$TEST/test.jsonl" --methods full,score --ratios "$RATIOS" --out "$OUT/e${e}_score.json"
}

evaluate_nbr() {  # E: the neighbour variant's three seeds
  local e="$1" policies=()
  for s in 0 1 2; do policies+=(--policy "$RUNS/v4nbr_e${e}_s$s"); done
  mkdir -p "$OUT"
  [ -f "$OUT/e${e}_nbr.json" ] || "$SCORERL" eval configs/world/score_v4_neighbours.yaml \
    env.path="$(env_path "$e")" "${policies[@]}" --manifest "$TEST/test.jsonl" --methods full,score \
    --ratios "$NBR_RATIOS" --out "$OUT/e${e}_nbr.json"
}

report() {
  local args=()
  for e in 0 1 2; do
    local files="$OUT/e${e}_base.json,$OUT/e${e}_fastv1.json,$OUT/e${e}_dycoke.json,$OUT/e${e}_score.json"
    [ -f "$OUT/e${e}_nbr.json" ] && files="$files,$OUT/e${e}_nbr.json"
    [ -f "$OUT/e${e}_score.json" ] && args+=(--env "e$e=$files")
  done
  .venv/bin/python scripts/frontier.py "${args[@]}" --max-flops 0.75 --rename '*_nbr.json:score=score_nbr' --out docs/results/frontier_v4
}

case "${1:-all}" in
  split) split ;;
  fit) fit "$2" ;;
  train) train "$2" "$3" ;;
  nbr) nbr "$2" "$3" ;;
  eval) evaluate "$2" ;;
  eval_score) evaluate_score "$2" ;;
  eval_nbr) evaluate_nbr "$2" ;;
  report) report ;;
  all)
    split
    for e in 0 1 2; do
      fit "$e"
      for s in 0 1 2; do train "$e" "$s"; nbr "$e" "$s"; done
      evaluate "$e"
      evaluate_score "$e"
      evaluate_nbr "$e"
    done
    report
    ;;
  *) echo "usage: $0 all | split | fit E | train E S | nbr E S | eval E | eval_score E | eval_nbr E | report" >&2; exit 2 ;;
esac
