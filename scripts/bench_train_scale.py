"""Training at scale: N stage-2 steps of a 7B run file with random weights (bf16, one GPU), timed.

    python scripts/bench_train_scale.py configs/qwen2_5_vl_7b/stage2_video.yaml --steps 20 \\
        --out docs/results/train_scale
    python scripts/bench_train_scale.py configs/qwen2_5_vl_7b/stage2_video.yaml --dry-run   # CPU, tiny model, seconds

The real trainer runs the run file's stage 2 (online features: the vision tower inside each step) on an
environment built from the run file's `bench.random_init` sizes with random weights (step time does not depend on
the weights' values) and on random frames of the run file's shape (content does not change the cost; no decoder
is needed on the GPU machine). Reported: median step time, the environment's share (env_ms / step), the policy's,
peak GPU memory, and the same with one forward per mask instead of the K masks batched.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train_throughput import PerRequestEnv  # noqa: E402  (one forward per mask: the unbatched baseline)


def build_env(cfg, dry_run: bool):
    from scorerl.envs.build import build_random_env, build_tiny_env

    if dry_run:
        return build_tiny_env(cfg.env.arch, seed=0)
    return build_random_env(
        cfg.env.arch,
        cfg.bench.random_init,
        dtype=cfg.env.dtype,
        device="cuda",
        attn_implementation=cfg.env.attn_implementation,
        token_budget=cfg.env.token_budget,
    )


def random_clip(frames: int, size: int, seconds_per_frame: float = 0.5):
    from scorerl.data.frames import Clip

    pixels = np.random.default_rng(0).integers(0, 256, (frames, size, size, 3), dtype=np.uint8)
    return Clip(pixels, seconds_per_frame)


def run_case(config: str, mode: str, steps: int, dry_run: bool, root: Path, env) -> dict:
    """One training run of `steps` steps; mode batched (K masks in one forward) or per_mask."""
    import scorerl.envs
    import scorerl.envs.features as features
    from scorerl.config import load_config
    from scorerl.rl.metrics import read_metrics
    from scorerl.rl.trainer import train

    frames = 4 if dry_run else 64
    size = 32 if dry_run else 448
    manifest = root / "train.jsonl"
    root.mkdir(parents=True, exist_ok=True)
    (root / "v.mp4").write_bytes(b"")  # present for the manifest; frames come from random_clip below
    manifest.write_text(
        "".join(
            json.dumps(
                {
                    "id": f"v{i}",
                    "video": "v.mp4",
                    "question": "What happens?",
                    "options": ["a", "b", "c", "d"],
                    "answer": "A",
                }
            )
            + "\n"
            for i in range(64)
        )
    )
    overrides = [
        f"run.output_dir={root / 'runs'}",
        f"run.name={mode}",
        f"data.stage2_manifest={manifest}",
        "data.features=online",
        "data.sample_fps=0",
        f"data.num_frames={frames}",
        f"data.frame_size={size}",
        "curriculum.stage1_steps=0",
        f"train.max_steps={steps}",
        "train.trackers=[]",
        "train.checkpoint_every=100000",
        "train.precompute_features=false",
        "data.skip_bad=false",
    ]
    if dry_run:
        overrides += [
            "env.device=cpu",
            "env.dtype=float32",
            "train.batch_size=2",
            "rl.group_size=4",
            "train.grad_accum=1",
        ]
    cfg = load_config(config, overrides)
    real_load, real_clip = scorerl.envs.load_env, features.load_clip
    scorerl.envs.load_env = lambda section: env if mode == "batched" else PerRequestEnv(env)
    features.load_clip = lambda sample, sampling: random_clip(frames, size)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    try:
        run = train(cfg)
    finally:
        scorerl.envs.load_env, features.load_clip = real_load, real_clip
    lines = read_metrics(run)[1:] or read_metrics(run)  # the first step includes warm-up
    med = lambda key: statistics.median(r[key] for r in lines)  # noqa: E731
    step_ms = 1000 * med("step_s")
    return {
        "mode": mode,
        "steps": len(lines),
        "step_ms": step_ms,
        "env_ms": med("env_ms"),
        "env_share": med("env_ms") / step_ms,
        "policy_ms": med("policy_ms"),
        "samples_per_s": med("samples_per_s"),
        "batch_size": cfg.train.batch_size,
        "group_size": cfg.rl.group_size,
        "grad_accum": cfg.train.grad_accum,
        "frames": frames,
        "frame_size": size,
        "peak_gpu_memory_gb": torch.cuda.max_memory_allocated() / 1e9 if torch.cuda.is_available() else None,
        "wall_s": time.perf_counter() - started,
    }


def markdown(rows: list[dict], config: str) -> str:
    lines = [
        f"# Training at scale: `{config}`",
        "",
        "| K masks scored | step ms | env ms (share) | policy ms | samples/s | peak GPU GB |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        mem = "n/a" if r["peak_gpu_memory_gb"] is None else f"{r['peak_gpu_memory_gb']:.1f}"
        how = "one batched forward" if r["mode"] == "batched" else "one forward per mask"
        lines.append(
            f"| {how} | {r['step_ms']:.0f} | {r['env_ms']:.0f} ({100 * r['env_share']:.0f}%) | "
            f"{r['policy_ms']:.1f} | {r['samples_per_s']:.2f} | {mem} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", nargs="?", default=str(REPO / "configs" / "qwen2_5_vl_7b" / "stage2_video.yaml"))
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--dry-run", action="store_true", help="CPU, a tiny model of the same architecture, seconds")
    ap.add_argument("--out", default=None, help="output prefix: OUT.json and OUT.md")
    args = ap.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        print("bench_train_scale: no CUDA device here; use --dry-run on a CPU", file=sys.stderr)
        return 2
    import scorerl.world  # noqa: F401  (run files may hold the world's sections)
    from scorerl.config import load_config

    env = build_env(load_config(args.config), args.dry_run)
    steps = 3 if args.dry_run else args.steps
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("batched", "per_mask"):
            rows.append(run_case(args.config, mode, steps, args.dry_run, Path(tmp) / mode, env))
            print(json.dumps(rows[-1]), flush=True)
    text = markdown(rows, args.config)
    print(text)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".json").write_text(
            json.dumps(
                {
                    "config": args.config,
                    "torch": torch.__version__,
                    "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
                    "rows": rows,
                },
                indent=2,
            )
            + "\n"
        )
        out.with_suffix(".md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
