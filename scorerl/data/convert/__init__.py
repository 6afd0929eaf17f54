"""Converters: the annotation files video-QA data sets ship with -> scorerl manifest v2 (JSONL, one question a line).

Each reader is a pure function `read_<format>(src, ...) -> Conversion(lines, skipped)`: it reads the source, builds
one manifest line (a dict) per question and lists every row it could not use as (where, reason), where `where` is
"FILE:LINE" (CSV, JSONL) or "FILE[INDEX]" (JSON lists, parquet, datasets). Only `write_manifest` writes: images
held inside a source (a `datasets` column) become PNG files next to the manifest, then the JSONL appears
atomically (scorerl.io.atomic), so a failed conversion never leaves half a manifest behind.

What every line gets, whatever the source:
  - a multiple-choice answer as its letter ("A".."J"), the source's own answer (an index, a text, "(B)") kept in
    meta.source_answer, and meta.source = the format name, so a line can always be traced back;
  - media paths made absolute against the media root (`--video-root`, default: the source's folder), then written
    relative to the manifest when they lie under its folder, absolute otherwise;
  - a check that the media file exists (reason "video file not found: PATH"), unless check_files=False;
  - the rules manifest v2 enforces (2-10 distinct non-empty options, start < end, fps > 0, unique ids), so a line
    this module writes is a line `read_manifest` accepts.

    from scorerl.data.convert import convert
    report = convert("nextqa", "val.csv", "nextqa_val.jsonl", map_json="map_vid_vidorID.json",
                     media_root="NExTVideo")

One module per public layout (nextqa, mvbench, videomme, llava_video, generic, imageqa), the shared rules
in core.py, tables.py and writing.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from scorerl.data.convert.core import (
    ANSWER_FORMATS,
    Columns,
    Conversion,
    ConvertReport,
    EmbeddedImage,
    check_line,
    choice,
    clean_options,
    make_line,
)
from scorerl.data.convert.generic import read_generic
from scorerl.data.convert.imageqa import read_imageqa
from scorerl.data.convert.llava_video import parse_lettered_question, read_llava_video
from scorerl.data.convert.mvbench import MVBENCH_VIDEO_DIRS, read_mvbench
from scorerl.data.convert.nextqa import read_nextqa
from scorerl.data.convert.videomme import read_videomme
from scorerl.data.convert.writing import summary_lines, write_manifest
from scorerl.data.manifest import LETTERS
from scorerl.errors import ScoreRLError

READERS: dict[str, Callable[..., Conversion]] = {
    "nextqa": read_nextqa,
    "mvbench": read_mvbench,
    "videomme": read_videomme,
    "llava_video": read_llava_video,
    "generic": read_generic,
    "imageqa": read_imageqa,
}


def convert(fmt: str, src: str | Path, out: str | Path, image_dir: str = "images", **options) -> ConvertReport:
    """Read `src` with the reader of `fmt` (READERS; `options` are that reader's keyword arguments) and write the
    manifest at `out`."""
    if fmt not in READERS:
        raise ScoreRLError(f"unknown format {fmt!r}; one of: {', '.join(READERS)}")
    return write_manifest(READERS[fmt](src, **options), out, image_dir=image_dir)


__all__ = [
    "ANSWER_FORMATS",
    "Columns",
    "ConvertReport",
    "Conversion",
    "EmbeddedImage",
    "LETTERS",
    "MVBENCH_VIDEO_DIRS",
    "READERS",
    "check_line",
    "choice",
    "clean_options",
    "convert",
    "make_line",
    "parse_lettered_question",
    "read_generic",
    "read_imageqa",
    "read_llava_video",
    "read_mvbench",
    "read_nextqa",
    "read_videomme",
    "summary_lines",
    "write_manifest",
]
