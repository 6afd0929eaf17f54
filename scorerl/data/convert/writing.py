"""The one place a conversion writes: embedded images as PNG files beside the manifest, then the JSONL, atomically."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from pathlib import Path
from typing import Any

from scorerl.data.convert.core import Conversion, ConvertReport, EmbeddedImage
from scorerl.errors import DataError
from scorerl.io.atomic import write_bytes, write_text


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
            media = (
                _save_image(line[kind], line["id"], base / image_dir)
                if isinstance(line[kind], EmbeddedImage)
                else Path(line[kind])
            )
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
