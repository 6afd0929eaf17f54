"""Video-MME: its parquet or JSON (videoID, question, options "A. ...", answer letter, duration, domain)."""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path
from typing import Any

from scorerl.data.convert.core import Conversion, Row, _collect, _existing, _media, _root, _text, choice, make_line
from scorerl.data.convert.tables import _parquet_rows, _require
from scorerl.data.manifest import LETTERS


def read_videomme(src: str | Path, media_root: str | Path | None = None, check_files: bool = True) -> Conversion:
    """Video-MME (lmms-lab/Video-MME videomme/test-*.parquet).

    Columns: video_id ("001"), duration (short/medium/long), domain, sub_category, url, videoID (the YouTube id),
    question_id ("001-1"), task_type, question, options (a list ["A. ...", "B. ...", ...]), answer (the letter).
    The "A. " prefixes are removed from the options (a row whose options do not carry their own letters in order
    is skipped). file = media_root / (videoID + ".mp4"), id = question_id, family = task_type; duration, domain,
    sub_category and video_id go to meta.
    """
    src = _existing(src)
    root = _root(src, media_root)
    header, rows = _parquet_rows(src)
    _require(src, header, ["videoID", "question_id", "task_type", "question", "options", "answer"])
    return _collect(rows, partial(_videomme_line, root=root, check_files=check_files))


def _videomme_line(src_row: Row, root: Path, check_files: bool) -> dict:
    """One Video-MME row -> a line (options without their letter prefixes, the answer letter checked)."""
    row = src_row.rec
    video = _media(root / f"{_text(row['videoID'], 'videoID')}.mp4", "video", check_files)
    options = row["options"]
    if not isinstance(options, (list, tuple)):
        raise ValueError(f"options must be a list, got {type(options).__name__}")
    if len(options) > len(LETTERS):
        raise ValueError(f"{len(options)} options; the manifest takes 2-{len(LETTERS)}")
    options = [_strip_letter_prefix(o, LETTERS[i]) for i, o in enumerate(options)]
    options, letter = choice(options, row["answer"], "letter")
    meta = {"source": "videomme", "source_answer": row["answer"]}
    meta |= {k: row[k] for k in ("video_id", "duration", "domain", "sub_category") if row.get(k) is not None}
    return make_line(
        _text(row["question_id"], "question_id"),
        "video",
        video,
        row["question"],
        options,
        letter,
        family=row["task_type"] or None,
        meta=meta,
    )


def _strip_letter_prefix(option: Any, letter: str) -> str:
    """ "B. text" (or "(B) text", "B) text", "B: text") -> "text"; ValueError unless the prefix is this letter."""
    text = _text(option, f"option {letter}")
    m = re.match(rf"\s*\(?{letter}\s*[.):]\s*", text)
    if not m:
        raise ValueError(f"option {text!r} does not start with '{letter}.'")
    return text[m.end() :]
