"""Training throughput of the SCORE trainer: samples/s and where a step's time goes.

For each environment (the tiny random Qwen2.5-VL on a tiny rendered world; the built-in world's fitted environment
if it has been fitted) it runs the real trainer for a few steps twice:
    batched    the K masks of every sample scored in ONE env.score call (what the trainer does)
    per_mask   the same requests scored one forward per mask (what a naive loop does)
and reports per optimizer step: env forward ms (mask scoring + CE_base of samples seen for the first time), policy
ms (state, MLP, mask sampling, rewards, loss, backward), overhead ms (optimizer, metrics, bookkeeping) and
samples/s. The first --warmup steps are not counted.

    .venv/bin/python scripts/bench_train_throughput.py [--steps 12] [--warmup 2] [--out bench.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


class PerRequestEnv:
    """The same environment, but every request of a score() call gets its own forward."""

    def __init__(self, env):
        self._env = env

    def score(self, requests):
        return torch.cat([self._env.score([r]) for r in requests])

    def __getattr__(self, name):
        return getattr(self._env, name)


def run_case(
    name: str, config: Path | None, overrides: list[str], mode: str, steps: int, warmup: int, out_dir: Path
) -> dict:
    import scorerl.envs
    from scorerl.config import load_config
    from scorerl.rl.metrics import read_metrics
    from scorerl.rl.trainer import train

    real_load = scorerl.envs.load_env
    if mode == "per_mask":
        scorerl.envs.load_env = lambda section: PerRequestEnv(real_load(section))
    try:
        cfg = load_config(
            config,
            [
                f"run.output_dir={out_dir}",
                f"run.name={name}-{mode}",
                "curriculum.stage1_steps=0",
                f"train.max_steps={warmup + steps}",
                "train.checkpoint_every=100000",
                "train.batch_size=4",
                "rl.group_size=8",
                *overrides,
            ],
        )
        started = time.perf_counter()
        run = train(cfg)
        wall = time.perf_counter() - started
    finally:
        scorerl.envs.load_env = real_load
    lines = [r for r in read_metrics(run) if r["step"] > warmup]
    med = lambda k: statistics.median(r[k] for r in lines)  # noqa: E731
    step_ms = 1000 * med("step_s")
    env_ms, policy_ms = med("env_ms"), med("policy_ms")
    return {
        "env": name,
        "mode": mode,
        "samples_per_s": med("samples_per_s"),
        "step_ms": step_ms,
        "env_ms": env_ms,
        "policy_ms": policy_ms,
        "overhead_ms": step_ms - env_ms - policy_ms,
        "steps": len(lines),
        "batch_size": cfg.train.batch_size,
        "group_size": cfg.rl.group_size,
        "kept_fraction": med("kept_fraction"),
        "wall_s_incl_setup": wall,
    }


def tiny_case(root: Path) -> tuple[str, None, list[str]]:
    """Tiny random Qwen2.5-VL (as in the tests) on a small rendered world at the quickstart's frame settings."""
    from scorerl.envs.build import build_tiny_env
    from scorerl.world.synthetic import build_world

    world = build_world(root / "world", train=64, test=4, static_train=4, frames=16, size=64, seed=0, progress=False)
    build_tiny_env("qwen2_5_vl", seed=0).save_pretrained(root / "env")
    return (
        "tiny",
        None,
        [
            f"env.path={root / 'env'}",
            "env.device=cpu",
            f"data.stage2_manifest={world / 'train.jsonl'}",
            f"data.stage1_manifest={world / 'static_train.jsonl'}",
            "data.num_frames=16",
            "data.frame_size=64",
            f"data.cache_dir={root / 'features'}",
        ],
    )


def world_case() -> tuple[str, Path, list[str]] | None:
    """The built-in world's fitted environment with the quickstart config, if fitted and rendered."""
    from scorerl.world.paths import world_dir, world_env_dir

    if not (world_env_dir().is_dir() and (world_dir() / "train.jsonl").is_file()):
        return None
    return "world", REPO / "configs" / "quickstart.yaml", ["env.device=cpu"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=12, help="timed optimizer steps per case")
    ap.add_argument("--warmup", type=int, default=2, help="untimed first steps")
    ap.add_argument("--out", default=None, help="also write the results as JSON here")
    args = ap.parse_args(argv)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cases = [tiny_case(root)]
        if (w := world_case()) is not None:
            cases.append(w)
        else:
            print("(the built-in world's environment is not fitted: timing the tiny environment only)")
        for name, config, overrides in cases:
            for mode in ("batched", "per_mask"):
                rows.append(run_case(name, config, overrides, mode, args.steps, args.warmup, root / "runs"))
                print(json.dumps(rows[-1]), flush=True)

    print(
        f"\ntorch {torch.__version__}, {torch.get_num_threads()} threads, batch 4 x K 8 masks, "
        f"median of {args.steps} steps after {args.warmup} warm-up\n"
    )
    print("| env | K masks scored | samples/s | step ms | env forward ms | policy ms | overhead ms |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['env']} | {'one batched forward' if r['mode'] == 'batched' else 'one forward per mask'} "
            f"| {r['samples_per_s']:.1f} | {r['step_ms']:.0f} | {r['env_ms']:.0f} | {r['policy_ms']:.1f} "
            f"| {r['overhead_ms']:.1f} |"
        )
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
