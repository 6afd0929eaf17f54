"""The one atomic writer: a file or folder appears whole or not at all, never half written.

Files are written to a temp sibling, flushed and fsynced, then renamed over the target (`os.replace` is atomic on
POSIX within one filesystem); folders are built under a temp name and swapped in. A crash at any point leaves the
previous version (or nothing) in place.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from scorerl.errors import ScoreRLError


def write_bytes(path: str | Path, data: bytes, fsync: bool = True) -> Path:
    """Write `data` to `path` atomically (temp file in the same folder, fsync, rename)."""
    return write_with(path, lambda tmp: write_synced(tmp, data, fsync))


def write_text(path: str | Path, text: str, fsync: bool = True) -> Path:
    return write_bytes(path, text.encode("utf-8"), fsync=fsync)


def write_with(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Let write(tmp) produce the file at a temp path (e.g. safetensors' save_file), then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def replace_dir(tmp: str | Path, out: str | Path) -> Path:
    """Move a finished folder `tmp` into place at `out`; an existing `out` is swapped out first (a rename cannot
    overwrite a non-empty folder) and removed after."""
    tmp, out = Path(tmp), Path(out)
    trash = out.with_name(f".trash-{out.name}")
    shutil.rmtree(trash, ignore_errors=True)
    if out.exists():
        os.replace(out, trash)
    os.replace(tmp, out)
    fsync_dir(out.parent)
    shutil.rmtree(trash, ignore_errors=True)
    return out


def build_dir(out: str | Path, build: Callable[[Path], None]) -> Path:
    """Let build(tmp) fill a fresh temp folder beside `out`, then swap it in with replace_dir."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".tmp-{out.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        build(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return replace_dir(tmp, out)


def fsync_dir(path: str | Path) -> None:
    """Make a rename durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def ensure_writable_dir(path: str | Path, what: str) -> Path:
    """Create folder `path` if needed and prove it takes a file, before any work is spent on filling it;
    ScoreRLError naming `what` (a config key or option) otherwise."""
    path = Path(path).expanduser()
    blocking = next((p for p in (path, *path.parents) if p.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise ScoreRLError(f"{what}: cannot write to {path}: {blocking} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=path)  # unique: processes may probe at once
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ScoreRLError(f"{what}: cannot write to {path}: {e.strerror or e}") from None
    return path


def write_synced(path: Path, data: bytes, fsync: bool = True) -> None:
    """Write and fsync one file in place (inside a folder that is itself published atomically, e.g. a checkpoint)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        if fsync:
            os.fsync(f.fileno())
