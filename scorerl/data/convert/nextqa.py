"""NExT-QA: its CSV (video, question, a0..a4, answer index, qid, type) and the video-id map."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from scorerl.data.convert.core import (
    Conversion,
    Row,
    _collect,
    _existing,
    _int_or_text,
    _media,
    _root,
    _text,
    choice,
    make_line,
)
from scorerl.data.convert.tables import _csv_rows, _load_json, _require
from scorerl.errors import DataError


def read_nextqa(
    src: str | Path, map_json: str | Path | None = None, media_root: str | Path | None = None, check_files: bool = True
) -> Conversion:
    """NExT-QA multiple choice (train.csv / val.csv / test.csv of github.com/doc-doc/NExT-QA).

    Columns: video (the video id), frame_count, width, height, question, answer (0-4, the right option's index),
    qid (the question's number within its video), type (CW, CH, TN, TC, TP, DL, DC, DO), a0, a1, a2, a3, a4.
    The videos are stored by VidOR id: map_vid_vidorID.json maps {video id: "folder/vidorid"} and the file is
    media_root / (mapped + ".mp4"). Without a map the file is media_root / (video id + ".mp4"), the flat layout
    some redistributions use. id = "{video}_{qid}" (qid alone repeats across videos), family = type.
    """
    src = _existing(src)
    root = _root(src, media_root)
    video_map = _load_video_map(map_json) if map_json is not None else None
    header, rows = _csv_rows(src)
    _require(src, header, ["video", "question", "answer", "qid", "type", "a0", "a1", "a2", "a3", "a4"])
    return _collect(rows, partial(_nextqa_line, video_map=video_map, root=root, check_files=check_files))


def _nextqa_line(src_row: Row, video_map: dict[str, str] | None, root: Path, check_files: bool) -> dict:
    """One NExT-QA row -> a line; the answer (an index) becomes its letter."""
    row = src_row.rec
    vid = _text(row["video"], "video")
    if video_map is None:
        rel = vid
    elif vid in video_map:
        rel = video_map[vid]
    else:
        raise ValueError(f"video {vid} is not in the video map")
    video = _media(root / f"{rel}.mp4", "video", check_files)
    options = [row[f"a{i}"] for i in range(5)]
    options, letter = choice(options, row["answer"], "index")
    return make_line(
        f"{vid}_{_text(row['qid'], 'qid')}",
        "video",
        video,
        row["question"],
        options,
        letter,
        family=row["type"] or None,
        meta={
            "source": "nextqa",
            "source_answer": _int_or_text(row["answer"]),
            "video_id": vid,
            "qid": _int_or_text(row["qid"]),
        },
    )


def _load_video_map(path: str | Path) -> dict[str, str]:
    """map_vid_vidorID.json: {video id: "folder/vidorid"}, ids compared as text (the CSV holds text)."""
    path = _existing(path)
    data = _load_json(path)
    if not isinstance(data, dict):
        raise DataError(f'{path}: expected a JSON object {{video id: "folder/vidorid"}}, got {type(data).__name__}')
    return {str(k): str(v) for k, v in data.items()}
