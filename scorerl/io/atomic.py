"""The one atomic writer: a file or folder appears whole or not at all, never half written.

Files are written to a temp sibling, flushed and fsynced, then renamed over the target (`os.replace` is atomic on
POSIX within one filesystem); folders are built under a temp name and swapped in. A crash at any point leaves the
previous version (or nothing) in place.

A full disk, a read-only filesystem or a missing permission is a `WriteError` naming the target (the CLI prints
it as one line), raised after the temp file or folder is removed. Every file gets the mode the user's umask gives
a new file (safetensors' save_file creates 0600, which a group sharing the filesystem could not read).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Callable, Iterator

from scorerl.errors import ScoreRLError, WriteError

# errno values that mean "this place cannot take the write": the user fixes them (space, quota, permissions, mount).
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG})
_UMASK_LOCK = threading.Lock()


@contextlib.contextmanager
def disk_errors(target: str | Path) -> Iterator[None]:
    """Turn an OSError of DISK_ERRNOS raised inside into WriteError naming `target`; others pass through."""
    try:
        yield
    except OSError as e:
        if e.errno not in DISK_ERRNOS:
            raise
        raise WriteError(
            f"{target}: cannot write: {e.strerror or e} (nothing was half written; free space or "
            f"choose a writable folder, then run the command again)"
        ) from None


def user_umask() -> int:
    """The process's umask (read by setting and restoring it, under a lock: os.umask has no getter)."""
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def apply_umask(path: str | Path) -> None:
    """Give a file (or every file and folder under a folder) the mode a new one gets under the user's umask."""
    mask = user_umask()
    path = Path(path)
    paths = [path, *path.rglob("*")] if path.is_dir() else [path]
    for p in paths:
        if not p.is_symlink():
            os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~mask)


def write_bytes(path: str | Path, data: bytes, fsync: bool = True) -> Path:
    """Write `data` to `path` atomically (temp file in the same folder, fsync, rename)."""
    return write_with(path, lambda tmp: write_synced(tmp, data, fsync))


def write_text(path: str | Path, text: str, fsync: bool = True) -> Path:
    return write_bytes(path, text.encode("utf-8"), fsync=fsync)


def write_with(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Let write(tmp) produce the file at a temp path (e.g. safetensors' save_file), then rename it into place (what
    write returns is ignored)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with disk_errors(path):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write(tmp)
            apply_umask(tmp)
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
    swapped = False
    with disk_errors(out):
        try:
            shutil.rmtree(trash, ignore_errors=True)
            if out.exists():
                os.replace(out, trash)
                swapped = True
            os.replace(tmp, out)
        except BaseException:
            if swapped and not out.exists():  # the old version goes back: a failed swap loses nothing
                os.replace(trash, out)
            raise
    fsync_dir(out.parent)
    shutil.rmtree(trash, ignore_errors=True)
    return out


def build_dir(out: str | Path, build: Callable[[Path], None]) -> Path:
    """Let build(tmp) fill a fresh temp folder beside `out`, then swap it in with replace_dir."""
    out = Path(out)
    tmp = out.with_name(f".tmp-{out.name}")
    with disk_errors(out):
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            build(tmp)
            apply_umask(tmp)
            return replace_dir(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


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
