"""Reading the table formats sources come in: JSON lists, JSONL, CSV/TSV, parquet; rows keep where they came
from ("FILE:LINE" or "FILE[INDEX]") for the skipped-row report."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from scorerl.data.convert.core import Row, _Bad
from scorerl.errors import DataError


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


def _require(path: Path, header: list[str], needed: list[str]) -> None:
    """DataError naming every missing column, before any row is read (a typo would otherwise skip them all)."""
    missing = [c for c in dict.fromkeys(needed) if c not in header]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)} (it has: {', '.join(header) or 'none'})")
