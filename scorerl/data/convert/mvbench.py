"""MVBench: one JSON per task (video, question, candidates, answer text) under the task's own video folder."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from scorerl.data.convert.core import (
    Conversion,
    Row,
    _collect,
    _existing,
    _field,
    _media,
    _number,
    _record,
    _root,
    _text,
    choice,
    make_line,
)
from scorerl.data.convert.tables import _json_list_rows
from scorerl.errors import DataError

MVBENCH_VIDEO_DIRS = {
    "action_sequence": "star/Charades_v1_480",
    "action_prediction": "star/Charades_v1_480",
    "action_antonym": "ssv2_video",
    "fine_grained_action": "Moments_in_Time_Raw/videos",
    "unexpected_action": "FunQA_test/test",
    "object_existence": "clevrer/video_validation",
    "object_interaction": "star/Charades_v1_480",
    "object_shuffle": "perception/videos",
    "moving_direction": "clevrer/video_validation",
    "action_localization": "sta/sta_video",
    "scene_transition": "scene_qa/video",
    "action_count": "perception/videos",
    "moving_count": "clevrer/video_validation",
    "moving_attribute": "clevrer/video_validation",
    "state_change": "perception/videos",
    "fine_grained_pose": "nturgbd",
    "character_order": "perception/videos",
    "egocentric_navigation": "vlnqa",
    "episodic_reasoning": "tvqa/frames_fps3_hq",
    "counterfactual_inference": "clevrer/video_validation",
}


def read_mvbench(
    src: str | Path, media_root: str | Path | None = None, check_files: bool = True, task_dirs: bool = True
) -> Conversion:
    """MVBench (OpenGVLab/MVBench json/<task>.json), one task file or a folder of them.

    Each file: a list of {video, question, candidates: [...], answer: the right candidate's TEXT, and for some
    tasks start, end (seconds)}. family = the task (the file's stem), id = "{task}_{index}", start/end passed
    through. The video is media_root / <task's folder> / video when that exists (task_dirs: the folders of
    MVBENCH_VIDEO_DIRS, so media_root is MVBench's video/ folder), else media_root / video. A task stored as
    folders of frames (episodic_reasoning) is skipped: the manifest takes video files.
    """
    src = _existing(src)
    files = sorted(src.glob("*.json")) if src.is_dir() else [src]
    if not files:
        raise DataError(f"{src}: no MVBench task .json files in this folder")
    root = _root(src, media_root)
    lines: list[dict] = []
    skipped: list[tuple[str, str]] = []
    for path in files:
        task = path.stem
        subdir = MVBENCH_VIDEO_DIRS.get(task) if task_dirs else None
        build = partial(_mvbench_line, task=task, root=root, subdir=subdir, check_files=check_files)
        part = _collect(_json_list_rows(path), build)  # ids "{task}_{i}" cannot repeat across task files
        lines += part.lines
        skipped += part.skipped
    return Conversion(lines, skipped)


def _mvbench_line(row: Row, task: str, root: Path, subdir: str | None, check_files: bool) -> dict:
    """One MVBench item -> a line; the answer (a candidate's text) becomes its letter."""
    rec, index = _record(row.rec), row.index
    name = _text(_field(rec, "video"), "video")
    candidates = [root / subdir / name] if subdir else []
    candidates.append(root / name)
    video = next((c for c in candidates if c.exists()), candidates[0])
    if video.is_dir():
        raise ValueError(f"video is a folder of frames, not a video file: {video}")
    media = _media(video, "video", check_files)
    options, letter = choice(_field(rec, "candidates"), _field(rec, "answer"), "text")
    return make_line(
        f"{task}_{index}",
        "video",
        media,
        _field(rec, "question"),
        options,
        letter,
        start=_number(rec.get("start"), "start"),
        end=_number(rec.get("end"), "end"),
        family=task,
        meta={"source": "mvbench", "source_answer": rec["answer"], "task": task, "index": index},
    )
