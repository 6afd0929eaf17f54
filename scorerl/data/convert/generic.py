"""Any JSON/JSONL/CSV/parquet table, its columns named on the command line (Columns)."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

from scorerl.data.convert.core import (
    Columns,
    Conversion,
    Row,
    _blank_to_none,
    _check_answer_format,
    _collect,
    _existing,
    _field,
    _media_value,
    _number,
    _record,
    _root,
    _text,
    choice,
    make_line,
)
from scorerl.data.convert.tables import _require, _table_rows
from scorerl.errors import DataError, ScoreRLError


def read_generic(
    src: str | Path,
    columns: Columns,
    media_root: str | Path | None = None,
    check_files: bool = True,
    answer_format: str = "auto",
) -> Conversion:
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
    build = partial(
        _column_line,
        columns=columns,
        root=root,
        check_files=check_files,
        answer_format=answer_format,
        name=src.stem,
        source="generic",
    )
    return _collect(rows, build)


def _column_line(
    row: Row, columns: Columns, root: Path, check_files: bool, answer_format: str, name: str, source: str
) -> dict:
    """One row of a column-mapped table -> a line."""
    rec = _record(row.rec)
    kind, col = ("video", columns.video) if columns.video else ("image", columns.image)
    if col is None:
        raise ValueError("no media column: name the video or the image column")
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
    return make_line(
        row_id,
        kind,
        media,
        _field(rec, columns.question),
        options,
        answer_out,
        start=_number(rec.get(columns.start), "start") if columns.start else None,
        end=_number(rec.get(columns.end), "end") if columns.end else None,
        fps=_number(rec.get(columns.fps), "fps") if columns.fps else None,
        family=None if family is None else str(family),
        meta=meta,
    )


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


OPTION_LIKE = ("options", "choices", "candidates", "option", "choice", "answer_choices")


def _require_options_named(path: Path, header: list[str], columns: Columns) -> None:
    """DataError when no options column is named but the source has one by its usual name: without it every
    multiple-choice question would silently become open-ended, its answer the option's index as text ("0")."""
    if columns.options or columns.option_cols or columns.open_ended:
        return
    found = [c for c in header if str(c).lower() in OPTION_LIKE and c != columns.answer]
    if found:
        raise DataError(
            f"{path}: column {found[0]!r} looks like the options, but none is named: every question "
            f"would become open-ended. Pass --options-col {found[0]} (or --open-ended if the questions "
            "really have no options)"
        )
