"""Fixtures of the core tests: small data sets written with the core's own video writer, never the world's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def write_tiny_dataset(
    root: Path, videos: int = 8, images: int = 8, frames: int = 6, size: int = 32, seed: int = 0
) -> Path:
    """A video-QA manifest (train.jsonl: a square moving across noise, "which way?") and an image-QA manifest
    (static_train.jsonl: a coloured square, "which colour?"), with real H.264 clips and PNGs, into `root`."""
    from scorerl.data.video_io import write_mp4, write_png

    rng = np.random.default_rng(seed)
    colours = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220), "yellow": (220, 220, 30)}
    directions = ["left", "right", "up", "down"]
    lines = {"train": [], "static_train": []}
    for i in range(videos):
        answer = i % 4
        clip = rng.integers(0, 60, (frames, size, size, 3), dtype=np.uint8)
        for t in range(frames):
            step = (size - 8) * t // max(frames - 1, 1)
            r, c = {0: (12, size - 8 - step), 1: (12, step), 2: (size - 8 - step, 12), 3: (step, 12)}[answer]
            clip[t, r : r + 8, c : c + 8] = 255
        write_mp4(root / "videos" / f"v{i}.mp4", clip)
        lines["train"].append(
            {
                "id": f"v{i}",
                "video": f"videos/v{i}.mp4",
                "question": "Which way does it move?",
                "options": directions,
                "answer": "ABCD"[answer],
                "family": "direction",
            }
        )
    for i in range(images):
        answer = i % 4
        image = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
        image[8:24, 8:24] = list(colours.values())[answer]
        write_png(root / "images" / f"i{i}.png", image)
        lines["static_train"].append(
            {
                "id": f"i{i}",
                "image": f"images/i{i}.png",
                "question": "Which colour?",
                "options": list(colours),
                "answer": "ABCD"[answer],
                "family": "colour",
            }
        )
    for name, records in lines.items():
        (root / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return root
