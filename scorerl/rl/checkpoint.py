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

import hashlib
import json
import os
import random
import re
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import safetensors.torch
import torch

from scorerl.config import diff_configs
from scorerl.errors import CheckpointError

FORMAT = "scorerl-checkpoint/1"
MARKER = "COMPLETE"
STATE_FILE = "state.json"
_TMP_PREFIX = ".tmp-"
_TRASH_PREFIX = ".trash-"
_STEP_DIR = re.compile(r"^step-(\d+)$")
_TENSOR_GROUP = re.compile(r"^[A-Za-z0-9_-]+$")

# Config keys that may change between a checkpoint and its resume because they do not change what the run computes:
# how long it runs (the LR schedule is warm-up then constant, so max_steps does not move it), how often it logs or
# saves, where it logs, and where its folders live. Anything else changes the trajectory and needs force=True.
RESUME_MAY_DIFFER = (
    "train.max_steps",
    "train.log_every",
    "train.trackers",
    "train.tracker_project",
    "train.checkpoint_every",
    "train.keep_last",
    "run.output_dir",
    "run.name",
    "data.cache_dir",
)


@dataclass
class Checkpoint:
    path: Path
    step: int
    world_size: int
    tensors: dict[str, dict[str, torch.Tensor]]
    state: dict
    rng: dict | None  # this rank's RNG state for restore_rng_state; None if the saving run had no such rank


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
    state: dict | None = None,
    rng: dict | None = None,
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
        root.mkdir(parents=True, exist_ok=True)
        _remove(tmp)  # leftover of a crashed attempt at this very step
        tmp.mkdir()
    wait()
    if rng is not None:
        _write_rng(tmp, rank, rng)
    if rank == 0:
        for name, group in (tensors or {}).items():
            _check_group_name(name)
            _write_file(tmp / f"{name}.safetensors", safetensors.torch.save(_storable(group)))
        _write_file(tmp / STATE_FILE, _json_bytes(state or {}, what=STATE_FILE))
    wait()
    if rank == 0:
        _write_manifest(tmp, step, world_size)
        _publish(tmp, final)
        if keep_last:
            prune_checkpoints(run_dir, keep_last)
        _clean_stale(root)  # we are the only writer of this run, so any other temp folder is a dead one
    wait()
    return final


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


def _write_file(path: Path, data: bytes) -> None:
    """Write and fsync, so the manifest written after it can never describe bytes still in the page cache."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


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
    _write_file(tmp / MARKER, _json_bytes(manifest, what=MARKER))
    _fsync_dir(tmp)


def _publish(tmp: Path, final: Path) -> None:
    """Rename the finished temp folder into place (replacing an older save of the same step)."""
    trash = None
    if final.exists():  # os.replace cannot overwrite a non-empty folder
        trash = final.with_name(_TRASH_PREFIX + final.name)
        _remove(trash)
        os.replace(final, trash)
    os.replace(tmp, final)
    _fsync_dir(final.parent)
    if trash is not None:
        _remove(trash)


def _fsync_dir(path: Path) -> None:
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
        rng = _join_rng(_parse_json(path / json_name, blobs[json_name]),
                        _parse_safetensors(path / st_name, blobs[st_name]))
    return Checkpoint(path, int(manifest["step"]), int(manifest["world_size"]), tensors, state, rng)


def _read_manifest(path: Path) -> dict:
    marker = path / MARKER
    if not marker.is_file():
        raise CheckpointError(f"{marker}: missing; the checkpoint is incomplete (its write was interrupted)")
    manifest = _parse_json(marker, marker.read_bytes())
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or "files" not in manifest:
        raise CheckpointError(f"{marker}: not a {FORMAT} manifest")
    return manifest


def _read_verified(f: Path, entry: dict) -> bytes:
    if not f.is_file():
        raise CheckpointError(f"{f}: missing from checkpoint (listed in {MARKER})")
    data = f.read_bytes()
    if len(data) != entry["bytes"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise CheckpointError(f"{f}: corrupt (size or sha256 differs from {MARKER})")
    return data


def _parse_json(f: Path, data: bytes):
    try:
        return json.loads(data)
    except ValueError as e:
        raise CheckpointError(f"{f}: not valid JSON: {e}") from None


def _parse_safetensors(f: Path, data: bytes) -> dict[str, torch.Tensor]:
    try:
        return safetensors.torch.load(data)
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(f"{f}: not a valid safetensors file: {e}") from None


# ------------------------------------------------------------------------------------------------ resume config


def check_resume_config(saved: dict, new: dict, force: bool = False) -> list[str]:
    """Dotted config keys that differ (beyond RESUME_MAY_DIFFER); raises CheckpointError unless force."""
    diffs = [k for k in diff_configs(saved, new) if k not in RESUME_MAY_DIFFER]
    if diffs and not force:
        detail = "; ".join(f"{k}: {_dotted(saved, k)!r} -> {_dotted(new, k)!r}" for k in diffs)
        raise CheckpointError(
            f"the config differs from the checkpoint's at {', '.join(diffs)} ({detail}); "
            "resuming would not continue the same run. Restore those values, or force the resume."
        )
    return diffs


def _dotted(cfg: dict, key: str):
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return "<absent>"
        node = node[part]
    return node


# ------------------------------------------------------------------------------------------------ optimizer


def flatten_optimizer_state(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """A torch optimizer state_dict as (tensors for safetensors, JSON layout); tensors are named by their path,
    e.g. `state.0.exp_avg`. Usage: tensors["optimizer"], state["optimizer"] = flatten_optimizer_state(opt.state_dict())
    """
    tensors: dict[str, torch.Tensor] = {}
    return tensors, _encode(state_dict, "", tensors)


def unflatten_optimizer_state(tensors: dict[str, torch.Tensor], layout: dict) -> dict:
    """Inverse of flatten_optimizer_state: a state_dict for optimizer.load_state_dict."""
    return _decode(layout, tensors)


def _encode(obj: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Python value -> JSON, with tensors moved out into `tensors` and tuples / int keys / arrays marked."""
    if torch.is_tensor(obj):
        tensors[path] = obj
        return {"__tensor__": path}
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype)}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, f"{path}.{i}".lstrip("."), tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, f"{path}.{i}".lstrip("."), tensors) for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: _encode(v, f"{path}.{k}".lstrip("."), tensors) for k, v in obj.items()}
        # JSON keys are strings; keep the real keys (optimizer param ids are ints) as a list of pairs.
        return {"__items__": [[k, _encode(v, f"{path}.{k}".lstrip("."), tensors)] for k, v in obj.items()]}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"{path or '<root>'}: cannot store a {type(obj).__name__} in a checkpoint")


def _decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        name = obj["__tensor__"]
        if name not in tensors:
            raise CheckpointError(f"checkpoint layout names tensor {name!r}, which is not in its safetensors file")
        return tensors[name]
    if "__ndarray__" in obj:
        return np.array(obj["__ndarray__"], dtype=obj["dtype"])
    if "__tuple__" in obj:
        return tuple(_decode(v, tensors) for v in obj["__tuple__"])
    if "__items__" in obj:
        return {k: _decode(v, tensors) for k, v in obj["__items__"]}
    return {k: _decode(v, tensors) for k, v in obj.items()}


# ------------------------------------------------------------------------------------------------ RNG


def capture_rng_state(
    generators: dict[str, torch.Generator] | None = None,
    numpy_generators: dict[str, np.random.Generator] | None = None,
) -> dict:
    """Every RNG state of this process: python, numpy legacy, torch CPU, CUDA (if any), and the named generators."""
    version, internal, gauss = random.getstate()
    return {
        "python": {"version": version, "state": list(internal), "gauss": gauss},
        "numpy": _encode(np.random.get_state(legacy=False), "", {}),
        "numpy_generators": {k: _encode(g.bit_generator.state, "", {}) for k, g in (numpy_generators or {}).items()},
        "torch_cpu": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "generators": {k: g.get_state() for k, g in (generators or {}).items()},
    }


def restore_rng_state(
    state: dict,
    generators: dict[str, torch.Generator] | None = None,
    numpy_generators: dict[str, np.random.Generator] | None = None,
) -> None:
    """Set every RNG captured by capture_rng_state; each named generator passed must be in the state."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    np.random.set_state(_decode(state["numpy"], {}))
    for name, g in (numpy_generators or {}).items():
        if name not in state["numpy_generators"]:
            raise CheckpointError(f"checkpoint has no state for numpy generator {name!r}")
        g.bit_generator.state = _decode(state["numpy_generators"][name], {})
    torch.set_rng_state(state["torch_cpu"])
    _restore_cuda(state["cuda"])
    for name, g in (generators or {}).items():
        if name not in state["generators"]:
            raise CheckpointError(f"checkpoint has no state for torch generator {name!r}")
        g.set_state(state["generators"][name])


def _restore_cuda(states: list[torch.Tensor]) -> None:
    if not states:
        return
    if not torch.cuda.is_available() or torch.cuda.device_count() != len(states):
        have = torch.cuda.device_count() if torch.cuda.is_available() else 0
        warnings.warn(f"checkpoint holds {len(states)} CUDA RNG states but {have} devices are visible; "
                      "CUDA RNG not restored, so GPU-side random draws will differ from the original run")
        return
    torch.cuda.set_rng_state_all(states)


def _write_rng(tmp: Path, rank: int, rng: dict) -> None:
    json_part = {k: rng[k] for k in ("python", "numpy", "numpy_generators")}
    tensors = {"torch_cpu": rng["torch_cpu"]}
    tensors.update({f"cuda.{i}": t for i, t in enumerate(rng["cuda"])})
    tensors.update({f"generator.{k}": t for k, t in rng["generators"].items()})
    _write_file(tmp / f"rng-rank{rank}.safetensors", safetensors.torch.save(_storable(tensors)))
    _write_file(tmp / f"rng-rank{rank}.json", _json_bytes(json_part, what=f"rng-rank{rank}.json"))


def _join_rng(json_part: dict, tensors: dict[str, torch.Tensor]) -> dict:
    cuda = sorted((int(k.split(".", 1)[1]), t) for k, t in tensors.items() if k.startswith("cuda."))
    return {
        **json_part,
        "torch_cpu": tensors["torch_cpu"],
        "cuda": [t for _, t in cuda],
        "generators": {k.split(".", 1)[1]: t for k, t in tensors.items() if k.startswith("generator.")},
    }
