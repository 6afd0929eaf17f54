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
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import re
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable, NamedTuple

from scorerl.data.manifest import LETTERS, answer_index
from scorerl.errors import DataError, ScoreRLError
from scorerl.io.atomic import write_bytes, write_text
ANSWER_FORMATS = ("auto", "letter", "index", "text")



# ------------------------------------------------------------------------------------------------ results


class Row(NamedTuple):
    """One record of a source: where it is ("FILE:LINE" or "FILE[i]"), its 0-based position, its content."""

    where: str
    index: int
    rec: Any


class Conversion(NamedTuple):
    """What a reader produced: manifest lines (dicts, media paths absolute) and the rows it left out."""

    lines: list[dict]
    skipped: list[tuple[str, str]]  # (where, reason)


@dataclass
class ConvertReport:
    """What write_manifest wrote: the number of lines, the rows left out and why, and the manifest's path."""

    written: int
    skipped: list[tuple[str, str]]
    out: Path


@dataclass(frozen=True)
class EmbeddedImage:
    """An image stored inside the source (a `datasets` Image column): loaded only when the writer saves it as a PNG
    next to the manifest, so reading a large data set does not hold every image in memory."""

    load: Callable[[], Any]  # -> a PIL image, or {"bytes": ..., "path": ...} as datasets stores it
    where: str  # the source row, for the reason if the image cannot be decoded


@dataclass(frozen=True)
class Columns:
    """Which column holds what, for the column-mapped formats (generic, imageqa).

    Give exactly one of video / image. Options come either from one column holding a list (or a JSON-encoded
    list) or from several columns, one option each (option_cols); with neither, every row is open-ended. id None
    numbers the rows (<source name>_<row index>).
    """

    question: str = "question"
    answer: str = "answer"
    id: str | None = None
    video: str | None = None
    image: str | None = None
    options: str | None = None
    option_cols: tuple[str, ...] = ()
    start: str | None = None
    end: str | None = None
    fps: str | None = None
    family: str | None = None
    meta: tuple[str, ...] = ()  # columns copied into meta as they are
    open_ended: bool = False  # no options on purpose, even though a column is named like options

    def named(self) -> list[str]:
        """Every column this mapping names (checked against the source up front, so a typo fails at once)."""
        single = (self.question, self.answer, self.id, self.video, self.image, self.options, self.start, self.end,
                  self.fps, self.family)
        return [c for c in (*single, *self.option_cols, *self.meta) if c]


# ------------------------------------------------------------------------------------------------ presets


def read_nextqa(src: str | Path, map_json: str | Path | None = None, media_root: str | Path | None = None,
                check_files: bool = True) -> Conversion:
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
    return make_line(f"{vid}_{_text(row['qid'], 'qid')}", "video", video, row["question"], options, letter,
                     family=row["type"] or None,
                     meta={"source": "nextqa", "source_answer": _int_or_text(row["answer"]), "video_id": vid,
                           "qid": _int_or_text(row["qid"])})


def _load_video_map(path: str | Path) -> dict[str, str]:
    """map_vid_vidorID.json: {video id: "folder/vidorid"}, ids compared as text (the CSV holds text)."""
    path = _existing(path)
    data = _load_json(path)
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object {{video id: \"folder/vidorid\"}}, got {type(data).__name__}")
    return {str(k): str(v) for k, v in data.items()}


# MVBench keeps each task's videos under its own folder of MVBench/video/ (its reference data_list in
# OpenGVLab/Ask-Anything video_chat2/mvbench.ipynb); a task JSON's `video` field is relative to that folder.
MVBENCH_VIDEO_DIRS = {
    "action_sequence": "star/Charades_v1_480", "action_prediction": "star/Charades_v1_480",
    "action_antonym": "ssv2_video", "fine_grained_action": "Moments_in_Time_Raw/videos",
    "unexpected_action": "FunQA_test/test", "object_existence": "clevrer/video_validation",
    "object_interaction": "star/Charades_v1_480", "object_shuffle": "perception/videos",
    "moving_direction": "clevrer/video_validation", "action_localization": "sta/sta_video",
    "scene_transition": "scene_qa/video", "action_count": "perception/videos",
    "moving_count": "clevrer/video_validation", "moving_attribute": "clevrer/video_validation",
    "state_change": "perception/videos", "fine_grained_pose": "nturgbd", "character_order": "perception/videos",
    "egocentric_navigation": "vlnqa", "episodic_reasoning": "tvqa/frames_fps3_hq",
    "counterfactual_inference": "clevrer/video_validation",
}


def read_mvbench(src: str | Path, media_root: str | Path | None = None, check_files: bool = True,
                 task_dirs: bool = True) -> Conversion:
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
    video = _media(video, "video", check_files)
    options, letter = choice(_field(rec, "candidates"), _field(rec, "answer"), "text")
    return make_line(f"{task}_{index}", "video", video, _field(rec, "question"), options, letter,
                     start=_number(rec.get("start"), "start"), end=_number(rec.get("end"), "end"), family=task,
                     meta={"source": "mvbench", "source_answer": rec["answer"], "task": task, "index": index})


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
    return make_line(_text(row["question_id"], "question_id"), "video", video, row["question"], options, letter,
                     family=row["task_type"] or None, meta=meta)


def _strip_letter_prefix(option: Any, letter: str) -> str:
    """ "B. text" (or "(B) text", "B) text", "B: text") -> "text"; ValueError unless the prefix is this letter."""
    text = _text(option, f"option {letter}")
    m = re.match(rf"\s*\(?{letter}\s*[.):]\s*", text)
    if not m:
        raise ValueError(f"option {text!r} does not start with '{letter}.'")
    return text[m.end():]


def read_llava_video(src: str | Path, media_root: str | Path | None = None, check_files: bool = True) -> Conversion:
    """LLaVA-Video-178K conversations (lmms-lab/LLaVA-Video-178K */*_qa_processed.json, *_mc_*.json, ...).

    A JSON list of {id, video (relative to the data root), conversations: [{from: "human", value: "<image>\\n
    question"}, {from: "gpt", value: answer}, ... more turns], data_source}. Each human/gpt pair is one line,
    id "{id}_{turn}" (turn = 0, 1, ...). The <image>/<video> tag and its newline are removed. A question that lists
    lettered options ("A. ..." or "(A) ..." lines, possibly after an "Options:" line and before an instruction line
    such as "Answer with the option's letter from the given choices directly.") whose answer is a letter ("B",
    "B.", "(B)", "B. text") or one option's exact text is multiple choice; anything else is open-ended with the
    gpt text as the answer. The instruction line goes to meta.instruction.
    """
    src = _existing(src)
    root = _root(src, media_root)
    turns: list[Row] = []
    skipped: list[tuple[str, str]] = []
    for entry in _json_list_rows(src):
        try:
            turns += _llava_turns(entry)
        except ValueError as e:
            skipped.append((entry.where, str(e)))
    conv = _collect(turns, partial(_llava_line, root=root, check_files=check_files))
    return Conversion(conv.lines, skipped + conv.skipped)


def _llava_turns(entry: Row) -> list[Row]:
    """An entry's conversation -> one row per human/gpt pair; ValueError when the turns do not alternate."""
    rec = _record(entry.rec)
    convs = _field(rec, "conversations")
    if not isinstance(convs, list):
        raise ValueError("conversations must be a list")
    if len(convs) % 2 or not convs:
        raise ValueError(f"conversations has {len(convs)} messages; expected human/gpt pairs")
    rows = []
    for t in range(len(convs) // 2):
        human, gpt = convs[2 * t], convs[2 * t + 1]
        if not (isinstance(human, dict) and isinstance(gpt, dict)
                and human.get("from") == "human" and gpt.get("from") == "gpt"):
            raise ValueError(f"turn {t}: expected a human message then a gpt message")
        rows.append(Row(f"{entry.where} turn {t}", t, (rec, t, human.get("value"), gpt.get("value"))))
    return rows


def _llava_line(row: Row, root: Path, check_files: bool) -> dict:
    """One human/gpt pair -> a multiple-choice line when the question lists options and the answer names one,
    an open-ended line otherwise."""
    rec, turn, asked, said = row.rec
    question = _TAG.sub("", _text(asked, "human value")).strip()
    answer = _text(said, "gpt value").strip()
    video = _media(root / _text(_field(rec, "video"), "video"), "video", check_files)
    entry_id = _text(_field(rec, "id"), "id")
    meta = {"source": "llava_video", "source_answer": said, "source_id": entry_id, "turn": turn}
    if rec.get("data_source") is not None:
        meta["data_source"] = rec["data_source"]
    parsed = parse_lettered_question(question)
    letter = _llava_letter(answer, parsed[1]) if parsed else None
    if parsed and letter:
        stem, options, instruction = parsed
        if instruction:
            meta["instruction"] = instruction
        options, letter = choice(options, letter, "letter")  # checks them: 2-10, distinct
        return make_line(f"{entry_id}_{turn}", "video", video, stem, options, letter, meta=meta)
    return make_line(f"{entry_id}_{turn}", "video", video, question, None, answer, meta=meta)


_TAG = re.compile(r"<(?:image|video)>\n?")
_OPTION_LINE = re.compile(r"\s*(?:\(([A-J])\)|([A-J])[.)])\s*(.*\S)?\s*$")


def parse_lettered_question(text: str) -> tuple[str, list[str], str] | None:
    """ "question\\nA. x\\nB. y\\ninstruction" -> (question, [x, y], instruction); None unless it lists at least
    two options lettered A, B, ... in order on their own lines after a non-empty question."""
    lines = text.split("\n")
    first = next((i for i, line in enumerate(lines) if _option_letter(line) == "A"), None)
    if first is None:
        return None
    options = []
    for line in lines[first:]:
        m = _OPTION_LINE.fullmatch(line)
        if not m or (m.group(1) or m.group(2)) != LETTERS[len(options)] or not m.group(3):
            break
        options.append(m.group(3))
        if len(options) == len(LETTERS):
            break
    stem_lines = lines[:first]
    if stem_lines and re.fullmatch(r"\s*(options|choices)\s*:?\s*", stem_lines[-1], re.I):
        stem_lines = stem_lines[:-1]
    stem = "\n".join(stem_lines).strip()
    if len(options) < 2 or not stem:
        return None
    instruction = "\n".join(lines[first + len(options):]).strip()
    return stem, options, instruction


def _option_letter(line: str) -> str | None:
    m = _OPTION_LINE.fullmatch(line)
    return (m.group(1) or m.group(2)) if m and m.group(3) else None


def _llava_letter(answer: str, options: list[str]) -> str | None:
    """The letter a gpt answer names ("B", "B.", "(B)", "B) x", "B. x", or an option's exact text), or None."""
    letters = LETTERS[:len(options)]
    for pattern in (r"\(([A-J])\)\.?(?:\s+.*)?", r"([A-J])[.):]?", r"([A-J])[.):]\s+.*"):
        m = re.fullmatch(pattern, answer, re.S)
        if m:
            return m.group(1) if m.group(1) in letters else None
    return letters[options.index(answer)] if answer in options else None


def read_generic(src: str | Path, columns: Columns, media_root: str | Path | None = None,
                 check_files: bool = True, answer_format: str = "auto") -> Conversion:
    """Any table of questions: a JSON list of objects, JSONL, CSV, TSV or parquet, with the columns named in
    `columns` (see Columns). The answer may be a letter, a 0-based index or an option's text (answer_format
    "auto" takes it in that order, as read_manifest does, then a digit string as an index; name the format to be
    sure). Media paths are relative to media_root (default: the source's folder). An image column holding
    embedded images ({"bytes": ...}, as parquet exports of `datasets` do) is written out as PNGs.
    """
    src = _existing(src)
    if bool(columns.video) == bool(columns.image):
        raise ScoreRLError("generic: name exactly one media column (video or image)")
    _check_answer_format(answer_format)
    header, rows = _table_rows(src)
    _require(src, header, columns.named())
    _require_options_named(src, header, columns)
    root = _root(src, media_root)
    build = partial(_column_line, columns=columns, root=root, check_files=check_files, answer_format=answer_format,
                    name=src.stem, source="generic")
    return _collect(rows, build)


def read_imageqa(src: str | Path, columns: Columns = Columns(image="image"), split: str | None = None,
                 media_root: str | Path | None = None, check_files: bool = True,
                 answer_format: str = "auto") -> Conversion:
    """Stage-1 image QA from a `datasets` dataset saved on disk (save_to_disk), an imagefolder, or a table file.

    - saved dataset (a folder with dataset_info.json / dataset_dict.json; a DatasetDict needs `split` unless it
      has one): an Image column is written as images/<id>.png next to the manifest; a text column is a path;
    - imagefolder (a folder, or its `split` subfolder, with metadata.jsonl / metadata.csv / metadata.parquet): the
      image is the folder's file named by the image column, or by `file_name` as imagefolder calls it;
    - a .jsonl / .json / .csv / .parquet file: image paths relative to media_root (default: its folder).
    The question/options/answer columns are named in `columns` as for read_generic; id None numbers the rows.
    """
    src = _existing(src)
    if not columns.image or columns.video:
        raise ScoreRLError("imageqa: name the image column (and no video column)")
    _check_answer_format(answer_format)
    if src.is_dir() and _is_saved_dataset(src):
        return _read_saved_dataset(src, columns, split, media_root, check_files, answer_format)
    if src.is_dir():
        src = _imagefolder_metadata(src, split)
        header, rows = _table_rows(src)
        if columns.image not in header and "file_name" in header:
            columns = replace(columns, image="file_name")
        name = src.parent.name
    else:
        header, rows = _table_rows(src)
        name = src.stem
    _require(src, header, columns.named())
    _require_options_named(src, header, columns)
    build = partial(_column_line, columns=columns, root=_root(src, media_root), check_files=check_files,
                    answer_format=answer_format, name=name, source="imageqa")
    return _collect(rows, build)


def _check_answer_format(answer_format: str) -> None:
    if answer_format not in ANSWER_FORMATS:
        raise ScoreRLError(f"unknown answer format {answer_format!r}; one of: {', '.join(ANSWER_FORMATS)}")


def _is_saved_dataset(folder: Path) -> bool:
    return any((folder / f).is_file() for f in ("dataset_info.json", "dataset_dict.json", "state.json"))


def _read_saved_dataset(src: Path, columns: Columns, split: str | None, media_root: str | Path | None,
                        check_files: bool, answer_format: str) -> Conversion:
    """A save_to_disk folder: the rows without the image column, the images read lazily at write time."""
    import datasets

    try:
        ds = datasets.load_from_disk(str(src))
    except Exception as e:  # datasets raises several types for a folder it cannot read
        raise DataError(f"{src}: cannot load the saved dataset: {e}") from None
    where = str(src)
    if isinstance(ds, datasets.DatasetDict):
        ds, split = _pick_split(src, ds, split)
        where = f"{src}/{split}"
    _require(src, list(ds.column_names), columns.named())
    _require_options_named(src, list(ds.column_names), columns)
    image_col = columns.image
    embedded = isinstance(ds.features[image_col], datasets.Image)
    raw = ds.select_columns([image_col]).cast_column(image_col, datasets.Image(decode=False)) if embedded else None
    plain = ds.remove_columns([image_col]) if embedded else ds
    rows = []
    for i, rec in enumerate(plain):
        if embedded:
            rec[image_col] = EmbeddedImage(load=partial(_dataset_cell, raw, i, image_col), where=f"{where}[{i}]")
        rows.append(Row(f"{where}[{i}]", i, rec))
    build = partial(_column_line, columns=columns, root=_root(src, media_root), check_files=check_files,
                    answer_format=answer_format, name=split or src.name, source="imageqa")
    return _collect(rows, build)


def _pick_split(src: Path, dsd: Any, split: str | None) -> tuple[Any, str]:
    names = list(dsd.keys())
    if split is None and len(names) == 1:
        split = names[0]
    if split not in names:
        raise DataError(f"{src}: " + (f"has no split {split!r}" if split else "holds several splits")
                        + f" ({', '.join(names)}); pass one with --split")
    return dsd[split], split


def _dataset_cell(ds: Any, index: int, col: str) -> Any:
    return ds[index][col]


def _imagefolder_metadata(folder: Path, split: str | None) -> Path:
    """The metadata file of an imagefolder (or of its split subfolder)."""
    names = ("metadata.jsonl", "metadata.csv", "metadata.parquet")
    base = folder / split if split else folder
    for name in names:
        if (base / name).is_file():
            return base / name
    splits = sorted(d.name for d in folder.iterdir() if d.is_dir() and any((d / n).is_file() for n in names))
    hint = f"; its splits {', '.join(splits)} have one: pass --split" if splits and not split else ""
    raise DataError(f"{base}: neither a saved dataset (dataset_info.json) nor an imagefolder "
                    f"(metadata.jsonl / metadata.csv / metadata.parquet){hint}")


def _column_line(row: Row, columns: Columns, root: Path, check_files: bool, answer_format: str, name: str,
                 source: str) -> dict:
    """One row of a column-mapped table -> a line."""
    rec = _record(row.rec)
    kind, col = ("video", columns.video) if columns.video else ("image", columns.image)
    row_id = _text(_field(rec, columns.id), columns.id) if columns.id else f"{name}_{row.index}"
    media = _media_value(_field(rec, col), kind, root, check_files, row.where)
    options = _row_options(rec, columns)
    answer = _field(rec, columns.answer)
    if options is None:
        options, answer_out = None, _text(answer, "answer").strip()
    else:
        options, answer_out = choice(options, answer, answer_format)
    family = _blank_to_none(rec.get(columns.family)) if columns.family else None
    meta = {"source": source, "source_answer": answer}
    meta |= {c: rec[c] for c in columns.meta if c in rec}
    return make_line(row_id, kind, media, _field(rec, columns.question), options, answer_out,
                     start=_number(rec.get(columns.start), "start") if columns.start else None,
                     end=_number(rec.get(columns.end), "end") if columns.end else None,
                     fps=_number(rec.get(columns.fps), "fps") if columns.fps else None,
                     family=None if family is None else str(family), meta=meta)


def _row_options(rec: dict, columns: Columns) -> list | None:
    """The row's options (a list, a JSON-encoded list, or one per column; trailing empty columns dropped), or None
    for an open-ended row."""
    if columns.options:
        value = rec.get(columns.options)
        if _blank_to_none(value) is None:
            return None
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise ValueError(f"{columns.options} is neither a list nor a JSON-encoded list: {value!r}") from None
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{columns.options} must be a list, got {type(value).__name__}")
        return list(value)
    if columns.option_cols:
        values = [_blank_to_none(rec.get(c)) for c in columns.option_cols]
        while values and values[-1] is None:
            values.pop()
        if not values:
            return None
        if None in values:
            raise ValueError(f"option column {columns.option_cols[values.index(None)]} is empty")
        return values
    return None


# ------------------------------------------------------------------------------------------------ line rules


def make_line(id: str, kind: str, media: str | EmbeddedImage, question: Any, options: list[str] | None,
              answer: str, start: float | None = None, end: float | None = None, fps: float | None = None,
              family: str | None = None, meta: dict | None = None) -> dict:
    """A manifest v2 line, fields in the documented order, optional ones left out when None."""
    line: dict[str, Any] = {"id": id, kind: media, "question": _text(question, "question").strip()}
    if options is not None:
        line["options"] = options
    line["answer"] = answer
    for key, value in (("start", start), ("end", end), ("fps", fps), ("family", family)):
        if value is not None:
            line[key] = value
    if meta:
        line["meta"] = meta
    return line


def check_line(line: dict) -> None:
    """ValueError(reason) unless `line` follows manifest v2 (the rules read_manifest applies, bar the media
    check, which the readers make themselves)."""
    if not isinstance(line.get("id"), str) or not line["id"]:
        raise ValueError("id must be a non-empty string")
    if not line["question"]:
        raise ValueError("question is empty")
    kind = "video" if "video" in line else "image"
    if "options" in line:
        if clean_options(line["options"]) != line["options"]:
            raise ValueError("options must be stripped texts")
        if line["answer"] not in LETTERS[:len(line["options"])]:
            raise ValueError(f"answer {line['answer']!r} is not a letter of the {len(line['options'])} options")
    elif not isinstance(line["answer"], str) or not line["answer"]:
        raise ValueError("an open-ended answer must be a non-empty string")
    start, end = line.get("start"), line.get("end")
    for key in ("start", "end", "fps"):
        if key in line and line[key] < 0:
            raise ValueError(f"{key} must be >= 0, got {line[key]}")
    if (start is not None or end is not None) and kind != "video":
        raise ValueError("start/end (a clip window) need a video, not an image")
    if start is not None and end is not None and start >= end:
        raise ValueError(f"start {start} must be before end {end}")
    if line.get("fps") is not None and line["fps"] <= 0:
        raise ValueError(f"fps must be > 0, got {line['fps']}")


def choice(options: Any, answer: Any, answer_format: str = "auto") -> tuple[list[str], str]:
    """(options as clean texts, the answer's letter); ValueError naming what is wrong.

    answer_format: "letter" ("C", "c", "(C)", "C."), "index" (0-based: 2, "2", 2.0), "text" (an option's exact
    text, surrounding spaces ignored) or "auto": an exact letter, then an int index, then an option's text, then a
    digit string as an index (the order read_manifest uses, so auto never disagrees with it).
    """
    options = clean_options(options)
    index = _ANSWER_READERS[answer_format](answer, options)
    if index is None:
        letters = LETTERS[:len(options)]
        expected = {"letter": f"a letter {letters[0]}-{letters[-1]}", "index": f"an index 0-{len(options) - 1}",
                    "text": f"one of the {len(options)} options' texts",
                    "auto": f"a letter {letters[0]}-{letters[-1]}, an index 0-{len(options) - 1} or one of the "
                            f"{len(options)} options' texts"}[answer_format]
        raise ValueError(f"answer {answer!r} is not {expected}")
    return options, LETTERS[index]


def clean_options(options: Any) -> list[str]:
    """Options as stripped texts (numbers written as text); ValueError unless 2-10, non-empty and distinct."""
    if not isinstance(options, (list, tuple)):
        raise ValueError(f"options must be a list, got {type(options).__name__}")
    texts = [_text(o, f"option {i}").strip() for i, o in enumerate(options)]
    if not 2 <= len(texts) <= len(LETTERS):
        raise ValueError(f"{len(texts)} options; the manifest takes 2-{len(LETTERS)}")
    empty = [i for i, t in enumerate(texts) if not t]
    if empty:
        raise ValueError(f"option {LETTERS[empty[0]]} is empty")
    if len(set(texts)) != len(texts):
        dup = next(t for t in texts if texts.count(t) > 1)
        raise ValueError(f"options are not distinct ({dup!r} appears twice)")
    return texts


def _letter_index(answer: Any, options: list[str]) -> int | None:
    if not isinstance(answer, str):
        return None
    m = re.fullmatch(r"\s*\(?([A-Ja-j])\)?\.?\s*", answer)
    index = LETTERS.index(m.group(1).upper()) if m else None
    return index if index is not None and index < len(options) else None


def _index_index(answer: Any, options: list[str]) -> int | None:
    if isinstance(answer, bool):
        return None
    if isinstance(answer, float) and answer.is_integer():
        answer = int(answer)
    if isinstance(answer, str) and re.fullmatch(r"\s*\d+\s*", answer):
        answer = int(answer)
    return answer if isinstance(answer, int) and 0 <= answer < len(options) else None


def _text_index(answer: Any, options: list[str]) -> int | None:
    if isinstance(answer, bool) or not isinstance(answer, (str, int, float)):
        return None
    text = str(answer).strip()
    return options.index(text) if text in options else None


def _auto_index(answer: Any, options: list[str]) -> int | None:
    """The manifest's own rule (letter, int index, exact text), then an option's text with spaces trimmed, then a
    digit string or a whole float as an index."""
    found = answer_index(options, answer)
    if found is None and isinstance(answer, str):
        found = _text_index(answer, options)
    return found if found is not None else _index_index(answer, options)


_ANSWER_READERS: dict[str, Callable[[Any, list[str]], int | None]] = {
    "letter": _letter_index, "index": _index_index, "text": _text_index, "auto": _auto_index}


# ------------------------------------------------------------------------------------------------ writing


def write_manifest(conversion: Conversion, out: str | Path, image_dir: str = "images") -> ConvertReport:
    """Write the lines as JSONL at `out` (atomically, after any embedded images: out's folder / image_dir /
    <id>.png); media paths under out's folder become relative. DataError, and nothing written, when no line is
    left: an empty manifest would only fail later, further from its cause."""
    out = Path(out).expanduser()
    base = out.absolute().parent
    skipped = list(conversion.skipped)
    lines = []
    for line in conversion.lines:
        kind = "video" if "video" in line else "image"
        try:
            media = _save_image(line[kind], line["id"], base / image_dir) if isinstance(
                line[kind], EmbeddedImage) else Path(line[kind])
        except ValueError as e:
            skipped.append((line[kind].where, str(e)))
            continue
        lines.append({**line, kind: _portable(media, base)})
    if not lines:
        first = f"; first: {skipped[0][0]}: {skipped[0][1]}" if skipped else ""
        raise DataError(f"{out}: nothing to write: no row converted ({len(skipped)} skipped{first})")
    text = "".join(json.dumps(line, ensure_ascii=False, default=_json_default) + "\n" for line in lines)
    write_text(out, text)
    return ConvertReport(written=len(lines), skipped=skipped, out=out)


def convert(fmt: str, src: str | Path, out: str | Path, image_dir: str = "images", **options) -> ConvertReport:
    """Read `src` with the reader of `fmt` (READERS; `options` are that reader's keyword arguments) and write the
    manifest at `out`."""
    if fmt not in READERS:
        raise ScoreRLError(f"unknown format {fmt!r}; one of: {', '.join(READERS)}")
    return write_manifest(READERS[fmt](src, **options), out, image_dir=image_dir)


def summary_lines(report: ConvertReport, limit: int = 10) -> list[str]:
    """A one-line summary, then up to `limit` skipped rows with their reasons (the same text for every CLI)."""
    lines = [f"wrote {report.written} line(s) to {report.out}; skipped {len(report.skipped)}"]
    lines += [f"  {where}: {reason}" for where, reason in report.skipped[:limit]]
    if len(report.skipped) > limit:
        lines.append(f"  ... and {len(report.skipped) - limit} more")
    return lines


def _save_image(image: EmbeddedImage, sample_id: str, folder: Path) -> Path:
    """Decode an embedded image and write it as folder/<id>.png (RGB, atomic); ValueError if it cannot be read."""
    from PIL import Image, UnidentifiedImageError

    value = image.load()
    if isinstance(value, dict) and (value.get("bytes") or value.get("path")):
        source = io.BytesIO(value["bytes"]) if value.get("bytes") else value["path"]
    elif hasattr(value, "convert"):  # a decoded PIL image
        source = None
    else:
        raise ValueError(f"not an image: {type(value).__name__}")
    buf = io.BytesIO()
    try:
        if source is None:
            value.convert("RGB").save(buf, format="PNG")
        else:
            with Image.open(source) as pil:
                pil.convert("RGB").save(buf, format="PNG")
    except UnidentifiedImageError:
        raise ValueError("cannot decode the image: not a known image format") from None
    except OSError as e:
        raise ValueError(f"cannot decode the image: {e}") from None
    path = folder / f"{_file_stem(sample_id)}.png"
    write_bytes(path, buf.getvalue(), fsync=False)
    return path


def _file_stem(sample_id: str) -> str:
    """A file name for an id: the id itself when it is safe, else a cleaned id plus a short hash (still unique)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", sample_id).strip(".") or "image"
    if safe == sample_id:
        return safe
    return f"{safe[:80]}-{hashlib.sha1(sample_id.encode()).hexdigest()[:8]}"


def _portable(path: Path, base: Path) -> str:
    """A media path as written: relative (POSIX) when under the manifest's folder, so the two move together."""
    path = Path(os.path.abspath(path))
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return str(path)


def _json_default(value: Any) -> Any:
    """numpy scalars and arrays as plain JSON; anything else as its text (meta is passed through, not read)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


# ------------------------------------------------------------------------------------------------ reading


READERS: dict[str, Callable[..., Conversion]] = {
    "nextqa": read_nextqa, "mvbench": read_mvbench, "videomme": read_videomme, "llava_video": read_llava_video,
    "generic": read_generic, "imageqa": read_imageqa,
}


def _collect(rows: Iterable[Row], build: Callable[[Row], dict]) -> Conversion:
    """Build, check and de-duplicate a line per row; a row that fails is listed with its reason, never fatal
    (TypeError too: a cell of an unexpected type in row 90,000 should cost that row, not the conversion)."""
    lines: list[dict] = []
    skipped: list[tuple[str, str]] = []
    first: dict[str, str] = {}
    for row in rows:
        try:
            line = build(row)
            check_line(line)
            if line["id"] in first:
                raise ValueError(f"duplicate id {line['id']!r} (first at {first[line['id']]})")
        except (ValueError, TypeError) as e:
            skipped.append((row.where, str(e)))
            continue
        first[line["id"]] = row.where
        lines.append(line)
    return Conversion(lines, skipped)


def _existing(path: str | Path) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"{path}: not found")
    return path


def _root(src: Path, media_root: str | Path | None) -> Path:
    """Where relative media paths start: media_root, else the source file's folder (or the source folder)."""
    if media_root is not None:
        return Path(media_root).expanduser().absolute()
    return src.absolute() if src.is_dir() else src.absolute().parent


def _media(path: Path, kind: str, check_files: bool) -> str:
    """The absolute media path; ValueError "video file not found: PATH" when it is missing (and checked)."""
    path = Path(os.path.abspath(path))
    if check_files and not path.is_file():
        raise ValueError(f"{kind} file not found: {path}")
    return str(path)


def _media_value(value: Any, kind: str, root: Path, check_files: bool, where: str) -> str | EmbeddedImage:
    """A media cell: an embedded image (kept for the writer), image bytes ({"bytes": ...}), or a path."""
    if isinstance(value, EmbeddedImage):
        return value
    if kind == "image" and isinstance(value, dict) and value.get("bytes"):
        return EmbeddedImage(load=partial(dict, value), where=where)
    if isinstance(value, dict) and value.get("path"):
        value = value["path"]
    path = Path(_text(value, kind)).expanduser()
    return _media(path if path.is_absolute() else root / path, kind, check_files)


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read: {e}") from None


def _json_list_rows(path: Path) -> list[Row]:
    """A JSON list of records -> rows "FILE[i]"."""
    data = _load_json(path)
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
    return [Row(f"{path}[{i}]", i, rec) for i, rec in enumerate(data)]


def _jsonl_rows(path: Path) -> list[Row]:
    """JSONL -> rows "FILE:LINE"; an invalid line is a row that fails with its reason."""
    rows: list[Row] = []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read: {e}") from None
    for lineno, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
        except json.JSONDecodeError as e:
            rec = _Bad(f"invalid JSON ({e.msg} at column {e.colno})")
        rows.append(Row(f"{path}:{lineno}", len(rows), rec))
    return rows


def _csv_rows(path: Path, delimiter: str = ",") -> tuple[list[str], list[Row]]:
    """(header, rows "FILE:LINE") of a CSV/TSV; cells stay text, as CSV holds them."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f, delimiter=delimiter)
            header = list(reader.fieldnames or [])
            rows: list[Row] = []
            line = 2  # the line a record starts on (the header is line 1; a quoted cell may span lines)
            for i, rec in enumerate(reader):
                rows.append(Row(f"{path}:{line}", i, rec))
                line = reader.line_num + 1
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: cannot read CSV: {e}") from None
    return header, rows


def _parquet_rows(path: Path) -> tuple[list[str], list[Row]]:
    """(header, rows "FILE[i]") of a parquet file, through pyarrow (a dependency of datasets), else datasets."""
    try:
        try:
            import pyarrow.parquet as pq

            table = pq.read_table(path)
            header, records = list(table.column_names), table.to_pylist()
        except ImportError:
            import datasets

            ds = datasets.Dataset.from_parquet(str(path))
            header, records = list(ds.column_names), list(ds)
    except ImportError:
        raise
    except Exception as e:  # pyarrow raises ArrowInvalid / OSError for a file that is not parquet
        raise DataError(f"{path}: cannot read parquet: {e}") from None
    return header, [Row(f"{path}[{i}]", i, rec) for i, rec in enumerate(records)]


def _table_rows(path: Path) -> tuple[list[str], list[Row]]:
    """(columns, rows) of a table file, by its extension; for JSON the columns are every key any record has."""
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return _csv_rows(path, "\t" if suffix == ".tsv" else ",")
    if suffix == ".parquet":
        return _parquet_rows(path)
    if suffix in (".jsonl", ".json"):
        rows = _jsonl_rows(path) if suffix == ".jsonl" else _json_list_rows(path)
        keys = {k for row in rows if isinstance(row.rec, dict) for k in row.rec}
        return sorted(keys), rows
    raise DataError(f"{path}: unknown table type {suffix!r}; use .json, .jsonl, .csv, .tsv or .parquet")


OPTION_LIKE = ("options", "choices", "candidates", "option", "choice", "answer_choices")


def _require_options_named(path: Path, header: list[str], columns: Columns) -> None:
    """DataError when no options column is named but the source has one by its usual name: without it every
    multiple-choice question would silently become open-ended, its answer the option's index as text ("0")."""
    if columns.options or columns.option_cols or columns.open_ended:
        return
    found = [c for c in header if str(c).lower() in OPTION_LIKE and c != columns.answer]
    if found:
        raise DataError(f"{path}: column {found[0]!r} looks like the options, but none is named: every question "
                        f"would become open-ended. Pass --options-col {found[0]} (or --open-ended if the questions "
                        "really have no options)")


def _require(path: Path, header: list[str], needed: list[str]) -> None:
    """DataError naming every missing column, before any row is read (a typo would otherwise skip them all)."""
    missing = [c for c in dict.fromkeys(needed) if c not in header]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)} (it has: {', '.join(header) or 'none'})")


class _Bad:
    """A record that could not be parsed; _record raises its reason when the row is built."""

    def __init__(self, reason: str):
        self.reason = reason


def _record(row: Any) -> dict:
    if isinstance(row, _Bad):
        raise ValueError(row.reason)
    if not isinstance(row, dict):
        raise ValueError(f"expected an object, got {type(row).__name__}")
    return row


def _field(rec: dict, key: str) -> Any:
    if key not in rec:
        raise ValueError(f"no field {key!r}")
    return rec[key]


def _text(value: Any, what: str) -> str:
    """A text cell (numbers written as text); ValueError for anything else."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{what} is {'missing' if value is None else 'a boolean'}")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (str, int, float)):
        return str(value)
    raise ValueError(f"{what} must be text, got {type(value).__name__}")


def _number(value: Any, what: str) -> float | int | None:
    """An optional number (text parsed, blank or NaN = absent); ValueError for anything else."""
    value = _blank_to_none(value)
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"{what} {value!r} is not a number") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what} must be a number, got {type(value).__name__}")
    return None if isinstance(value, float) and math.isnan(value) else value


def _blank_to_none(value: Any) -> Any:
    """None for the ways tables spell "no value": None, "", whitespace, NaN."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _int_or_text(value: Any) -> Any:
    """A CSV cell that holds an integer as that integer (for meta), anything else unchanged."""
    return int(value) if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()) else value


__all__ = ["ANSWER_FORMATS", "Columns", "ConvertReport", "Conversion", "EmbeddedImage", "LETTERS",
           "MVBENCH_VIDEO_DIRS", "READERS", "check_line", "choice", "clean_options", "convert", "make_line",
           "parse_lettered_question", "read_generic", "read_imageqa", "read_llava_video", "read_mvbench",
           "read_nextqa", "read_videomme", "summary_lines", "write_manifest"]
