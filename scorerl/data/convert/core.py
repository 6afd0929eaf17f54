"""The rules every converter shares: the result types, what a manifest line must satisfy (make_line,
check_line, choice), and turning source rows into checked lines (_collect) with their media resolved."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable, NamedTuple

from scorerl.data.manifest import LETTERS, answer_index
from scorerl.errors import DataError, ScoreRLError

ANSWER_FORMATS = ("auto", "letter", "index", "text")


class Row(NamedTuple):
    """One record of a source: where it is ("FILE:LINE" or "FILE[i]"), its 0-based position, its content."""

    where: str
    index: int  # type: ignore[assignment]  # the row's position; shadows tuple.index, which no caller uses
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
        single = (
            self.question,
            self.answer,
            self.id,
            self.video,
            self.image,
            self.options,
            self.start,
            self.end,
            self.fps,
            self.family,
        )
        return [c for c in (*single, *self.option_cols, *self.meta) if c]


def make_line(
    id: str,
    kind: str,
    media: str | EmbeddedImage,
    question: Any,
    options: list[str] | None,
    answer: str,
    start: float | None = None,
    end: float | None = None,
    fps: float | None = None,
    family: str | None = None,
    meta: dict | None = None,
) -> dict:
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
        if line["answer"] not in LETTERS[: len(line["options"])]:
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
        letters = LETTERS[: len(options)]
        expected = {
            "letter": f"a letter {letters[0]}-{letters[-1]}",
            "index": f"an index 0-{len(options) - 1}",
            "text": f"one of the {len(options)} options' texts",
            "auto": f"a letter {letters[0]}-{letters[-1]}, an index 0-{len(options) - 1} or one of the "
            f"{len(options)} options' texts",
        }[answer_format]
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
    "letter": _letter_index,
    "index": _index_index,
    "text": _text_index,
    "auto": _auto_index,
}


def _check_answer_format(answer_format: str) -> None:
    if answer_format not in ANSWER_FORMATS:
        raise ScoreRLError(f"unknown answer format {answer_format!r}; one of: {', '.join(ANSWER_FORMATS)}")


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
