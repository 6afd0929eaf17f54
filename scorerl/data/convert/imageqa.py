"""Image QA for curriculum stage 1: a `datasets` dataset saved with save_to_disk, an imagefolder with metadata,
or any table with an image column; images become static pseudo-videos."""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from scorerl.data.convert.core import (
    Columns,
    Conversion,
    EmbeddedImage,
    Row,
    _check_answer_format,
    _collect,
    _existing,
    _root,
)
from scorerl.data.convert.generic import _column_line, _require_options_named
from scorerl.data.convert.tables import _require, _table_rows
from scorerl.errors import DataError, ScoreRLError


def read_imageqa(
    src: str | Path,
    columns: Columns | None = None,
    split: str | None = None,
    media_root: str | Path | None = None,
    check_files: bool = True,
    answer_format: str = "auto",
) -> Conversion:
    """Stage-1 image QA from a `datasets` dataset saved on disk (save_to_disk), an imagefolder, or a table file.

    - saved dataset (a folder with dataset_info.json / dataset_dict.json; a DatasetDict needs `split` unless it
      has one): an Image column is written as images/<id>.png next to the manifest; a text column is a path;
    - imagefolder (a folder, or its `split` subfolder, with metadata.jsonl / metadata.csv / metadata.parquet): the
      image is the folder's file named by the image column, or by `file_name` as imagefolder calls it;
    - a .jsonl / .json / .csv / .parquet file: image paths relative to media_root (default: its folder).
    The question/options/answer columns are named in `columns` as for read_generic; id None numbers the rows.
    """
    columns = columns if columns is not None else Columns(image="image")
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
    build = partial(
        _column_line,
        columns=columns,
        root=_root(src, media_root),
        check_files=check_files,
        answer_format=answer_format,
        name=name,
        source="imageqa",
    )
    return _collect(rows, build)


def _is_saved_dataset(folder: Path) -> bool:
    return any((folder / f).is_file() for f in ("dataset_info.json", "dataset_dict.json", "state.json"))


def _read_saved_dataset(
    src: Path, columns: Columns, split: str | None, media_root: str | Path | None, check_files: bool, answer_format: str
) -> Conversion:
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
    if image_col is None:
        raise DataError(f"{src}: image QA needs the image column (--image-col)")
    embedded = isinstance(ds.features[image_col], datasets.Image)
    raw = ds.select_columns([image_col]).cast_column(image_col, datasets.Image(decode=False)) if embedded else None
    plain = ds.remove_columns([image_col]) if embedded else ds
    rows = []
    for i, rec in enumerate(plain):
        if embedded:
            rec[image_col] = EmbeddedImage(load=partial(_dataset_cell, raw, i, image_col), where=f"{where}[{i}]")
        rows.append(Row(f"{where}[{i}]", i, rec))
    build = partial(
        _column_line,
        columns=columns,
        root=_root(src, media_root),
        check_files=check_files,
        answer_format=answer_format,
        name=split or src.name,
        source="imageqa",
    )
    return _collect(rows, build)


def _pick_split(src: Path, dsd: Any, split: str | None) -> tuple[Any, str]:
    names = list(dsd.keys())
    if split is None and len(names) == 1:
        split = names[0]
    if split is None or split not in names:
        raise DataError(
            f"{src}: "
            + (f"has no split {split!r}" if split else "holds several splits")
            + f" ({', '.join(names)}); pass one with --split"
        )
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
    raise DataError(
        f"{base}: neither a saved dataset (dataset_info.json) nor an imagefolder "
        f"(metadata.jsonl / metadata.csv / metadata.parquet){hint}"
    )
