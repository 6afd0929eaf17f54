"""Atomic, verifiable checkpoints made of safetensors and JSON only (never pickle: loading must not run code).

Layout of one checkpoint (`step` = optimizer steps finished when it was written):

    <run>/checkpoints/step-000123/
        <name>.safetensors          one per entry of `tensors` (e.g. policy.safetensors, optimizer.safetensors)
        state.json                  JSON state: scheduler, curriculum, samplers, optimizer layout, config, ...
        rng-rank<r>.safetensors     torch CPU / CUDA / named-Generator RNG states of process r
        rng-rank<r>.json            python `random` and numpy RNG states of process r
        COMPLETE                    manifest, written last: format, step, world_size, sha256 + size of every file

A checkpoint is built in `<run>/checkpoints/.tmp-step-000123/`, every file fsynced, the manifest written last,
then the folder is renamed into place with `os.replace`. A crash at any point therefore leaves either the complete
new checkpoint or none, and readers only ever consider `step-*` folders that hold a COMPLETE manifest.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import safetensors.torch
import torch

from scorerl.errors import CheckpointError, WriteError
from scorerl.io import atomic

FORMAT = "scorerl-checkpoint/1"
MARKER = "COMPLETE"
STATE_FILE = "state.json"
_TMP_PREFIX = ".tmp-"
_TRASH_PREFIX = ".trash-"
_STEP_DIR = re.compile(r"^step-(\d+)$")
_TENSOR_GROUP = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass
class Checkpoint:
    path: Path
    step: int
    world_size: int
    tensors: dict[str, dict[str, torch.Tensor]]
    state: dict[str, Any]
    rng: dict[str, Any] | None  # this rank's RNG state for restore_rng_state; None if the saving run had no such rank


# ------------------------------------------------------------------------------------------------ layout


def checkpoints_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def step_dir_name(step: int) -> str:
    return f"step-{step:06d}"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run (those with a COMPLETE manifest), oldest step first."""
    root = checkpoints_dir(run_dir)
    if not root.is_dir():
        return []
    found = []
    for d in root.iterdir():
        m = _STEP_DIR.match(d.name)
        if m and d.is_dir() and (d / MARKER).is_file():
            found.append((int(m.group(1)), d))
    return [d for _, d in sorted(found)]


def latest_checkpoint(run_dir: str | Path, clean_stale: bool = False) -> Path | None:
    """The newest complete checkpoint, or None. Partial (temp) folders are never returned.

    clean_stale=True also deletes leftover temp/trash folders of crashed saves; only the process that owns the run
    (the trainer on resume) should ask for that, since a save in progress looks exactly like a leftover.
    """
    if clean_stale:
        _clean_stale(checkpoints_dir(run_dir))
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


# ------------------------------------------------------------------------------------------------ saving


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    *,
    tensors: dict[str, dict[str, torch.Tensor]] | None = None,
    state: dict[str, Any] | None = None,
    rng: dict[str, Any] | None = None,
    keep_last: int | None = None,
    rank: int = 0,
    world_size: int = 1,
    barrier: Callable[[], None] | None = None,
) -> Path:
    """Write checkpoint `step` atomically; call on every process (each passes its own `rng`).

    Rank 0 writes `tensors` and `state`; every rank writes its RNG files; rank 0 then writes the manifest, renames
    the folder into place and prunes to the last `keep_last`. With world_size > 1, pass `barrier`
    (e.g. accelerator.wait_for_everyone) so ranks wait for the folder to exist and for each other's files.
    """
    if world_size > 1 and barrier is None:
        raise ValueError("save_checkpoint with world_size > 1 needs a barrier (e.g. accelerator.wait_for_everyone)")
    wait = barrier or (lambda: None)
    root = checkpoints_dir(run_dir)
    final = root / step_dir_name(step)
    tmp = root / (_TMP_PREFIX + final.name)
    if rank == 0:
        with _cleaned_on_disk_error(tmp, final):
            root.mkdir(parents=True, exist_ok=True)
            _remove(tmp)  # leftover of a crashed attempt at this very step
            tmp.mkdir()
    wait()
    if rank != 0 and not tmp.is_dir():
        # Every rank writes its RNG files into rank 0's folder: a node that cannot see it has another filesystem.
        raise CheckpointError(
            f"rank {rank}: cannot see {tmp}, which rank 0 just created: every process must see "
            f"run.output_dir on one shared filesystem (multi-node runs: a shared mount)"
        )
    with _cleaned_on_disk_error(tmp, final):
        if rng is not None:
            _write_rng(tmp, rank, rng)
        if rank == 0:
            for name, group in (tensors or {}).items():
                _check_group_name(name)
                atomic.write_synced(tmp / f"{name}.safetensors", safetensors.torch.save(_storable(group)))
            atomic.write_synced(tmp / STATE_FILE, _json_bytes(state or {}, what=STATE_FILE))
    wait()
    if rank == 0:
        with _cleaned_on_disk_error(tmp, final):
            _write_manifest(tmp, step, world_size)
            atomic.apply_umask(tmp)
            atomic.replace_dir(tmp, final)
        if keep_last:
            prune_checkpoints(run_dir, keep_last)
        _clean_stale(root)  # we are the only writer of this run, so any other temp folder is a dead one
    wait()
    return final


@contextlib.contextmanager
def _cleaned_on_disk_error(tmp: Path, final: Path) -> Iterator[None]:
    """A full disk (or a read-only or forbidden folder) while writing checkpoint `final`: its temp folder is
    removed and a WriteError names the checkpoint; the previous checkpoints stay intact, so `--resume auto`
    continues exactly from the newest of them once there is room."""
    try:
        with atomic.disk_errors(final):
            yield
    except WriteError as e:
        _remove(tmp)
        raise WriteError(
            f"{e}; the previous checkpoints are intact: after freeing space, continue with --resume auto"
        ) from None


def prune_checkpoints(run_dir: str | Path, keep_last: int) -> None:
    """Delete all but the `keep_last` newest complete checkpoints."""
    for old in list_checkpoints(run_dir)[:-keep_last]:
        # Rename first so a crash mid-delete never leaves a half-deleted folder that still looks like a checkpoint.
        trash = old.with_name(_TRASH_PREFIX + old.name)
        _remove(trash)
        os.replace(old, trash)
        _remove(trash)


def _check_group_name(name: str) -> None:
    if not _TENSOR_GROUP.match(name) or name.startswith("rng-"):
        raise ValueError(f"tensor group name {name!r} must be [A-Za-z0-9_-]+ and must not start with 'rng-'")


def _storable(group: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous, and no two entries sharing memory (safetensors refuses shared storage, e.g. tied weights)."""
    out, seen = {}, set()
    for key, t in group.items():
        t = t.detach().cpu().contiguous()
        ptr = t.untyped_storage().data_ptr() if t.numel() else None
        if ptr is not None and ptr in seen:
            t = t.clone()
        seen.add(ptr if ptr is None else t.untyped_storage().data_ptr())
        out[key] = t
    return out


def _json_bytes(obj: Any, what: str) -> bytes:
    try:
        return json.dumps(obj, indent=1).encode()
    except (TypeError, ValueError) as e:
        raise TypeError(f"{what}: checkpoint state must be JSON-able (dict/list/str/number/bool/None): {e}") from None


def _write_manifest(tmp: Path, step: int, world_size: int) -> None:
    files = {}
    for f in sorted(tmp.iterdir()):
        if f.is_file() and f.name != MARKER:
            data = f.read_bytes()  # read back, so ranks' files written by other processes are covered too
            files[f.name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    manifest = {"format": FORMAT, "step": step, "world_size": world_size, "files": files}
    atomic.write_synced(tmp / MARKER, _json_bytes(manifest, what=MARKER))
    atomic.fsync_dir(tmp)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)


def _clean_stale(root: Path) -> None:
    if not root.is_dir():
        return
    for d in root.iterdir():
        if d.is_dir() and d.name.startswith((_TMP_PREFIX, _TRASH_PREFIX)):
            _remove(d)


# ------------------------------------------------------------------------------------------------ loading


def load_checkpoint(path: str | Path, rank: int = 0) -> Checkpoint:
    """Read and verify a checkpoint folder; CheckpointError names the missing or corrupt file."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such checkpoint folder")
    manifest = _read_manifest(path)
    blobs = {name: _read_verified(path / name, entry) for name, entry in manifest["files"].items()}

    tensors = {}
    for name, data in blobs.items():
        if name.endswith(".safetensors") and not name.startswith("rng-"):
            tensors[name.removesuffix(".safetensors")] = _parse_safetensors(path / name, data)
    if STATE_FILE not in blobs:
        raise CheckpointError(f"{path / STATE_FILE}: missing from checkpoint (not listed in {MARKER})")
    state = _parse_json(path / STATE_FILE, blobs[STATE_FILE])

    rng = None
    json_name, st_name = f"rng-rank{rank}.json", f"rng-rank{rank}.safetensors"
    if json_name in blobs and st_name in blobs:
        rng = _join_rng(
            _parse_json(path / json_name, blobs[json_name]), _parse_safetensors(path / st_name, blobs[st_name])
        )
    return Checkpoint(path, int(manifest["step"]), int(manifest["world_size"]), tensors, state, rng)


def _read_manifest(path: Path) -> dict[str, Any]:
    marker = path / MARKER
    if not marker.is_file():
        raise CheckpointError(f"{marker}: missing; the checkpoint is incomplete (its write was interrupted)")
    manifest = _parse_json(marker, marker.read_bytes())
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or "files" not in manifest:
        raise CheckpointError(f"{marker}: not a {FORMAT} manifest")
    return manifest


def _read_verified(f: Path, entry: dict[str, Any]) -> bytes:
    if not f.is_file():
        raise CheckpointError(f"{f}: missing from checkpoint (listed in {MARKER})")
    data = f.read_bytes()
    if len(data) != entry["bytes"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise CheckpointError(f"{f}: corrupt (size or sha256 differs from {MARKER})")
    return data


def _parse_json(f: Path, data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError as e:
        raise CheckpointError(f"{f}: not valid JSON: {e}") from None


def _parse_safetensors(f: Path, data: bytes) -> dict[str, torch.Tensor]:
    try:
        return safetensors.torch.load(data)
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(f"{f}: not a valid safetensors file: {e}") from None


def _write_rng(tmp: Path, rank: int, rng: dict[str, Any]) -> None:
    json_part = {k: rng[k] for k in ("python", "numpy", "numpy_generators")}
    tensors = {"torch_cpu": rng["torch_cpu"]}
    tensors.update({f"cuda.{i}": t for i, t in enumerate(rng["cuda"])})
    tensors.update({f"generator.{k}": t for k, t in rng["generators"].items()})
    atomic.write_synced(tmp / f"rng-rank{rank}.safetensors", safetensors.torch.save(_storable(tensors)))
    atomic.write_synced(tmp / f"rng-rank{rank}.json", _json_bytes(json_part, what=f"rng-rank{rank}.json"))


def _join_rng(json_part: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    cuda = sorted((int(k.split(".", 1)[1]), t) for k, t in tensors.items() if k.startswith("cuda."))
    return {
        **json_part,
        "torch_cpu": tensors["torch_cpu"],
        "cuda": [t for _, t in cuda],
        "generators": {k.split(".", 1)[1]: t for k, t in tensors.items() if k.startswith("generator.")},
    }
