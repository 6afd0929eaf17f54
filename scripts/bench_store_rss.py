"""Peak memory of a training process as the feature set grows: per-sample cache (held in RAM) vs feature store.

    .venv/bin/python scripts/bench_store_rss.py --samples 200 --scale 10

Builds a data set of N and scale x N short clips (one real H.264 clip written once, copied under new names, so
building is cheap but every sample is encoded and stored on its own), a tiny Qwen2.5-VL environment with wide
features, then runs `scorerl train` (train.precompute_features=true, the trainer's default) for a few steps in a
fresh process per (mode, size) and reports that process's
peak RSS (ru_maxrss). docs/data.md records the figures.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FRAMES, SIZE = 16, 64


def make_data(root: Path, n: int) -> Path:
    import numpy as np

    from scorerl.data.video_io import write_mp4

    clip = root / "clip.mp4"
    if not clip.is_file():
        write_mp4(clip, np.random.default_rng(0).integers(0, 256, (FRAMES, SIZE, SIZE, 3), dtype=np.uint8))
    videos = root / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        target = videos / f"v{i:06d}.mp4"
        if not target.exists():
            shutil.copyfile(clip, target)
        lines.append(
            json.dumps(
                {
                    "id": f"v{i}",
                    "video": f"videos/{target.name}",
                    "question": "What moves?",
                    "options": ["a", "b", "c", "d"],
                    "answer": "A",
                }
            )
        )
    manifest = root / f"train_{n}.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def run(args: list[str]) -> dict:
    """`scorerl <args>` in a fresh process; its peak RSS (MB) and wall time."""
    code = (
        "import resource, sys, time; from scorerl.cli import main; t = time.perf_counter(); rc = main(sys.argv[1:]);"
        " print('RESULT', rc, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter() - t)"
    )
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=REPO)
    line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT")), None)
    if line is None:
        raise SystemExit(f"scorerl {' '.join(args)} failed:\n{out.stderr[-3000:]}")
    _, rc, kb, seconds = line.split()
    if rc != "0":
        raise SystemExit(f"scorerl {' '.join(args)} exited {rc}:\n{out.stderr[-3000:]}")
    return {"peak_rss_mb": int(kb) / 1024, "seconds": float(seconds)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=200, help="the 1x data set size")
    ap.add_argument("--scale", type=int, default=10, help="the larger data set is this many times the first")
    ap.add_argument("--steps", type=int, default=20, help="training steps per run")
    ap.add_argument("--out", default=None, help="also write the rows as JSON here")
    args = ap.parse_args(argv)
    from scorerl.envs.build import build_tiny_env

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build_tiny_env("qwen2_5_vl", seed=0, hidden_size=256).save_pretrained(root / "env")
        for n in (args.samples, args.samples * args.scale):
            manifest = make_data(root, n)
            common = [
                f"env.path={root / 'env'}",
                "env.device=cpu",
                f"data.num_frames={FRAMES}",
                f"data.frame_size={SIZE}",
                f"data.stage2_manifest={manifest}",
                "curriculum.stage1_steps=0",
                f"train.max_steps={args.steps}",
                "train.batch_size=4",
                "rl.group_size=4",
                f"run.output_dir={root / 'runs'}",
                f"data.cache_dir={root / f'cache_{n}'}",
                f"data.store_dir={root / f'store_{n}'}",
            ]
            started = time.perf_counter()
            build = run(
                ["data", "features", str(REPO / "configs" / "quickstart.yaml"), *common, "--manifest", str(manifest)]
            )
            store_mb = sum(f.stat().st_size for f in (root / f"store_{n}").rglob("*.safetensors")) / 1e6
            for mode in ("cache", "store"):
                # The cache as the trainer uses it by default: every sample encoded (or read) up front and held.
                r = run(
                    [
                        "train",
                        str(REPO / "configs" / "quickstart.yaml"),
                        *common,
                        f"run.name={mode}_{n}",
                        f"data.features={mode}",
                        "train.precompute_features=true",
                    ]
                )
                rows.append({"samples": n, "mode": mode, "features_mb": round(store_mb, 1), **r})
                print(json.dumps(rows[-1]), flush=True)
            print(
                f"(store build for {n} samples: {build['seconds']:.1f} s, {time.perf_counter() - started:.0f} s "
                "with both runs)",
                flush=True,
            )
    print("\n| samples | features on disk (MB) | mode | peak RSS (MB) |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['samples']} | {r['features_mb']} | {r['mode']} | {r['peak_rss_mb']:.0f} |")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")
    print(f"\npeak RSS of this driver: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
