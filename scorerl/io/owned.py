"""Folders scorerl writes hold only what scorerl wrote: a record of its entries, and a lock for one writer.

    <folder>/.scorerl-files.json   {"written_by": ..., "files": [names of the entries scorerl wrote there]}
    <folder>/.scorerl.lock         {"pid", "host", "started"} of the process that holds the folder

The record is what `--force` may delete: nothing else in the folder is ever removed or overwritten, and a folder
holding anything else is refused by name before any work starts (`foreign_entries`).

The lock is an advisory `flock` on the lock file, held for the writer's life: the kernel drops it when the
process dies however it dies (SIGKILL included), so a lock file left by a killed process is stale by construction
and the next writer takes it over (and says so). On a filesystem without flock (some network mounts) the pid in the
file decides instead: held while that pid runs on this host.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from scorerl.errors import ScoreRLError
from scorerl.io import atomic

log = logging.getLogger(__name__)
RECORD = ".scorerl-files.json"
LOCK = ".scorerl.lock"
BOOKKEEPING = (RECORD, LOCK)  # the record and the lock themselves: always scorerl's


class FolderInUseError(ScoreRLError):
    """Another scorerl process holds the folder's lock."""


# ------------------------------------------------------------------------------------------------ the record


def recorded(folder: str | Path) -> set[str]:
    """Names of the entries scorerl recorded as its own in `folder` (empty when it has no record)."""
    path = Path(folder) / RECORD
    if not path.is_file():
        return set()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {str(n) for n in data.get("files", [])}
    except (ValueError, AttributeError, UnicodeDecodeError):
        return set()  # a damaged record vouches for nothing: every entry is then treated as the user's


def record(folder: str | Path, names: Iterable[str], written_by: str) -> None:
    """Add `names` (entries scorerl is about to write in `folder`) to its record, before writing them."""
    folder = Path(folder)
    files = sorted(recorded(folder) | set(names))
    atomic.write_text(folder / RECORD, json.dumps({"written_by": written_by, "files": files}, indent=1) + "\n")


def foreign_entries(folder: str | Path, ours: Iterable[str]) -> list[str]:
    """Entries of `folder` that are neither in `ours` nor scorerl's bookkeeping, sorted (folders end in '/')."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    allowed = set(ours) | set(BOOKKEEPING)
    return sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir() if p.name not in allowed)


def remove_entry(path: Path) -> None:
    """Delete one entry scorerl wrote (a file or a whole folder of its own)."""
    import shutil

    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


# ------------------------------------------------------------------------------------------------ the lock


class FolderLock:
    """The lock of one folder, held from acquire() to release() (use it as a context manager)."""

    def __init__(self, folder: str | Path, what: str = "a scorerl run"):
        self.folder, self.what = Path(folder), what
        self.path = self.folder / LOCK
        self._fd: int | None = None
        self._created = False

    def acquire(self) -> "FolderLock":
        """Take the lock, or FolderInUseError naming the process that holds it. A lock file whose process is
        gone is taken over with a log line naming that process."""
        with atomic.disk_errors(self.path):
            self._created = not self.folder.exists()
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666 & ~atomic.user_umask())
        previous = _read_holder(self.path)
        try:
            _flock(fd, previous, self.folder)
        except BaseException:
            os.close(fd)
            raise
        if previous and previous.get("pid") != os.getpid():
            log.info(
                "%s: took over the lock of pid %s (host %s, started %s), which is no longer running",
                self.folder,
                previous.get("pid"),
                previous.get("host"),
                previous.get("started"),
            )
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "what": self.what,
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Drop the lock. The file stays, emptied: an empty lock file is a clean release, one naming a pid was
        left by a process that died (removing the file instead would let a process that opened it just before
        lock an inode nobody else sees)."""
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
            if not (self.folder / RECORD).exists():  # scorerl never wrote here (refused at once): leave no trace
                self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)  # closing drops the flock
            self._fd = None
        if self._created and not any(self.folder.iterdir()):
            self.folder.rmdir()

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _flock(fd: int, holder: dict[str, Any] | None, folder: Path) -> None:
    """flock(fd) without waiting; FolderInUseError when another process holds it."""
    import errno
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise FolderInUseError(_busy_message(folder, holder)) from None
        if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
            raise
    # No flock on this filesystem: the holder's pid decides (alive on this host = held).
    if (
        holder
        and holder.get("pid") != os.getpid()
        and holder.get("host") == socket.gethostname()
        and _alive(holder.get("pid"))
    ):
        raise FolderInUseError(_busy_message(folder, holder))


def _busy_message(folder: Path, holder: dict[str, Any] | None) -> str:
    who = (
        f"pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('started')}"
        if holder
        else "another process"
    )
    return (
        f"{folder} is in use by another scorerl process ({who}); two writers would mix their files. Wait for "
        f"it to finish, or choose another folder (run.name)"
    )


def _read_holder(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "null")
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True
