"""Render the built-in synthetic video-QA world (the same as `scorerl data synthetic`).

What it writes under --out:
    videos/{train,test}_NNNNN.mp4        H.264 yuv420p clips, --frames frames of --size x --size px, 8 fps
    images/static_{train,test}_NNNNN.png single scenes for curriculum stage 1 (static pseudo-videos)
    train.jsonl test.jsonl               video QA: moving_color, direction, event, count, static_attr
    static_train.jsonl static_test.jsonl image QA: static_attr, count
    world.json                           generator parameters + version; a rerun with the same ones is a no-op

Each manifest line: {"id", "video" | "image" (relative to the manifest), "question", "options" (4), "answer"
("A".."D"), "family", "scene" (objects with colour, shape, size, per-frame positions, first/last frame)}.
The default world (3000 / 500 / 1000 + 200) renders in well under a minute on one CPU core.

    python data_pipelines/build_synthetic.py --out ~/.cache/scorerl/world
"""

from __future__ import annotations

import argparse
import sys

from scorerl.errors import ScoreRLError
from scorerl.world.paths import world_dir
from scorerl.world.synthetic import build_world


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(world_dir()), help="output folder (default: the scorerl world cache)")
    p.add_argument("--train", type=int, default=3000, help="video QA samples in train.jsonl")
    p.add_argument("--test", type=int, default=500, help="video QA samples in test.jsonl")
    p.add_argument("--static", type=int, default=1000, help="image QA samples in static_train.jsonl")
    p.add_argument(
        "--static-test",
        type=int,
        default=None,
        help="image QA samples in static_test.jsonl (default: static/5, at most 200)",
    )
    p.add_argument("--frames", type=int, default=16, help="frames per video")
    p.add_argument("--size", type=int, default=64, help="frame side in pixels (even)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    try:
        out = build_world(
            args.out,
            train=args.train,
            test=args.test,
            static_train=args.static,
            frames=args.frames,
            size=args.size,
            seed=args.seed,
            progress=not args.quiet,
            static_test=args.static_test,
        )
    except ScoreRLError as e:
        print(f"build_synthetic: error: {e}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
