"""The feature store: every sample's projected visual tokens V [T, N, D], built once, read lazily.

    <store>/store.json                   index: format, fingerprint, shards, key -> (shard, slot, repeat), skipped
    <store>/shards/shard-00000.safetensors    up to `shard_size` samples: tensors `<slot>.features` [T', N, D] and
                                              `<slot>.suffix` [S, D], in the environment's dtype (bf16 for a 7B)
    <store>/shards/shard-00000.json      the shard's own list (written after its tensors: its presence = done)

Why this shape, for 7B-scale sets: features keep the environment's dtype (half the bytes of float32 at bf16); a
static pseudo-video (an image repeated T times) is stored as ONE temporal unit plus its T (T' = 1, checked
bit-for-bit against the full encoding before it is folded), so stage 1 costs 1/T; hundreds of samples per file;
reading memory-maps one shard and copies out only the tensors asked for, so a training process holds only its
current batches, whatever the store's size.

The store is keyed by a content fingerprint of what determines the features (the weights' files and config, the
processor settings, the frame sampling), never by paths or modification times: a model folder copied to
node-local disk opens the same store; any other change is refused with the differing setting named.
A sample's key is its id, media kind, media file name and size, and its clip window and fps where it has them
(an edited window or rate is a new sample, never the old features): the data set may move too.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from scorerl.errors import DataError
from scorerl.io import atomic
from scorerl.types import Sample, VisualTokens, token_count

T = TypeVar("T")

STORE_FORMAT = "scorerl-feature-store/1"
INDEX_FILE = "store.json"
SHARDS_DIR = "shards"
_WINDOW = 1 << 20  # bytes of each weights file hashed at its start, middle and end (plus its whole header)


# --------------------------------------------------------------------------------------------- identity


def weights_digest(folder: str | Path) -> str:
    """Content identity of a model folder, cheap at 7B: config.json, the weights index, and for every *.safetensors
    file its size, its header (every tensor's name, dtype, shape, offsets) and 1 MiB of its data at the start,
    middle and end. Paths and modification times play no part: a copied folder has the same digest."""
    folder = Path(folder)
    h = hashlib.sha256(STORE_FORMAT.encode())
    for name in ("config.json", "model.safetensors.index.json"):
        if (folder / name).is_file():
            h.update(name.encode() + (folder / name).read_bytes())
    for f in sorted(folder.glob("*.safetensors")):
        size = f.stat().st_size
        h.update(f"{f.name}:{size}".encode())
        with open(f, "rb") as fh:
            header_len = int.from_bytes(fh.read(8), "little")
            h.update(fh.read(min(header_len, size)))
            for start in (8 + header_len, max(8 + header_len, size // 2 - _WINDOW // 2), max(0, size - _WINDOW)):
                fh.seek(start)
                h.update(fh.read(_WINDOW))
    return h.hexdigest()[:32]


def store_fingerprint(*, arch: str, dtype: str, weights: str, settings: dict, sampling) -> dict:
    """Everything the stored features depend on, by name, so a mismatch can say which setting differs (sampling:
    data/frames.py FrameSampling, e.g. `frames.size`)."""
    import dataclasses

    return {
        "format": STORE_FORMAT,
        "arch": arch,
        "dtype": dtype,
        "weights": weights,
        "processor": json.loads(json.dumps(settings, sort_keys=True)),
        "frames": dataclasses.asdict(sampling),
    }


def fingerprint_diffs(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Dotted keys where two fingerprints differ."""
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += fingerprint_diffs(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k} ({va!r} in the store, {vb!r} now)")
    return out


def fingerprint_id(fingerprint: dict) -> str:
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:16]


def sample_key(sample: Sample) -> str:
    """A sample's identity in a store: id, kind, media file name and size (not its folder: data sets move), plus
    its clip window and per-sample fps when it has any (a sample without them keeps the key it always had)."""
    media = Path(sample.media)
    size = media.stat().st_size if media.is_file() else -1
    ident = [sample.id, sample.kind, media.name, size]
    window = [getattr(sample, k, None) for k in ("start", "end", "fps")]
    if any(v is not None for v in window):
        ident.append(window)
    return hashlib.sha256(json.dumps(ident).encode()).hexdigest()[:24]


# --------------------------------------------------------------------------------------------- building


@dataclass
class BuildReport:
    store: Path
    samples: int  # in the store after this build
    built_shards: int  # shards this process wrote now
    reused_shards: int  # shards found complete from an earlier, interrupted build
    skipped: list[dict]  # [{id, media, reason}] of the whole store
    bytes: int  # size of the shards on disk
    main_process: bool = True  # False on the other ranks of a multi-process build (they print nothing)


def shard_name(j: int) -> str:
    return f"shard-{j:05d}"


def plan_shards(samples: list[Sample], shard_size: int) -> list[list[Sample]]:
    """Samples (deduplicated by key, manifest order kept) cut into shards of shard_size."""
    seen, unique = set(), []
    for s in samples:
        k = sample_key(s)
        if k not in seen:
            seen.add(k)
            unique.append(s)
    return [unique[i : i + shard_size] for i in range(0, len(unique), shard_size)]


def fold_static(tokens: VisualTokens, kind: str) -> tuple[torch.Tensor, int]:
    """(features to store, repeat): an image's pseudo-video whose temporal units are bit-identical is stored as its
    first unit [1, N, D] with repeat T; anything else whole with repeat 1."""
    v = tokens.features
    if kind == "image" and v.shape[0] > 1 and all(torch.equal(v[0], v[t]) for t in range(1, v.shape[0])):
        return v[:1].contiguous(), v.shape[0]
    return v.contiguous(), 1


def encode_or_skip(sample: Sample, encode: Callable[[Sample], T], skip_bad: bool, skipped: list[dict]) -> T | None:
    """encode(sample); with skip_bad an unreadable sample is appended to `skipped` with its reason (None returned),
    else its DataError names the manifest line. Shared by the feature store's and the library's builds."""
    try:
        return encode(sample)
    except DataError as e:
        if not skip_bad:
            raise DataError(
                f"{sample.manifest or '<manifest>'}:{sample.line} (id {sample.id!r}): {e} (set "
                "data.skip_bad=true to skip unreadable media)"
            ) from None
        skipped.append({"id": sample.id, "media": str(sample.media), "reason": str(e)})
        return None


def start_or_resume(
    folder: Path,
    plan: dict[str, Any],
    rank: int,
    barrier: Callable[[], None],
    *,
    build_file: str,
    index_file: str,
    check_fingerprint: Callable[[Path, dict, dict], None],
    what: str,
) -> None:
    """Record a build's plan in `build_file` (main process), or check that the interrupted build or finished index
    in `folder` had this very plan: the same fingerprint (check_fingerprint names what changed), the same items
    and shard size. `what` names the folder's kind in the error ("store of other samples"). Shared by the feature
    store's and the library's builds."""
    for name in (build_file, index_file):
        f = folder / name
        if f.is_file():
            found = json.loads(f.read_text())
            check_fingerprint(folder, found["fingerprint"], plan["fingerprint"])
            if found.get("plan") != plan["plan"]:
                raise DataError(
                    f"{folder}: holds a {what} or another --shard-size; build these manifests into another --out, "
                    "or delete that folder"
                )
            barrier()
            return
    if rank == 0:
        atomic.write_text(folder / build_file, json.dumps(plan) + "\n")
    barrier()


def build_shard(
    store: Path,
    j: int,
    shard: list[Sample],
    encode: Callable[[Sample], VisualTokens],
    skip_bad: bool,
    on_sample: Callable[[], None] = lambda: None,
) -> None:
    """Encode one shard's samples and write it (tensors first, then its list, both atomically)."""
    tensors: dict[str, torch.Tensor] = {}
    entries: list[dict] = []
    skipped: list[dict] = []
    for sample in shard:
        tokens = encode_or_skip(sample, encode, skip_bad, skipped)
        if tokens is None:
            on_sample()
            continue
        slot = len(entries)
        features, repeat = fold_static(tokens, sample.kind)
        tensors[f"{slot}.features"] = features.detach().cpu()
        if tokens.suffix is not None:
            tensors[f"{slot}.suffix"] = tokens.suffix.detach().cpu().contiguous()
        entries.append(
            {
                "key": sample_key(sample),
                "id": sample.id,
                "slot": slot,
                "repeat": repeat,
                "grid": list(tokens.grid),
                "meta": tokens.meta,
            }
        )
        on_sample()
    path = store / SHARDS_DIR / f"{shard_name(j)}.safetensors"
    if tensors:
        atomic.write_with(path, lambda tmp: save_file(tensors, str(tmp), metadata={"format": STORE_FORMAT}))
    atomic.write_text(path.with_suffix(".json"), json.dumps({"samples": entries, "skipped": skipped}, indent=1) + "\n")


def build_own_shards(
    mine: list[int],
    shards: list[list[Sample]],
    build: Callable[[int, list[Sample], Callable[[], None]], None],
    *,
    desc: str,
    unit: str,
    show: bool,
) -> None:
    """build(j, shards[j], tick) for each shard j of this process, under one progress bar over their items (build
    calls tick once per item). Shared by the feature store's and the library's builds."""
    from scorerl.io.progress import ProgressBar

    bar = ProgressBar(sum(len(shards[j]) for j in mine), desc=desc, unit=unit, disable=not show)
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        bar.update(done)

    try:
        for j in mine:
            build(j, shards[j], tick)
    finally:
        bar.close()


def shard_done(store: Path, j: int) -> bool:
    return (store / SHARDS_DIR / f"{shard_name(j)}.json").is_file()


def plan_digest(keys: list[str], shard_size: int) -> str:
    """Identity of a build's layout: which samples, in which order, how many per shard."""
    return hashlib.sha256(json.dumps([shard_size, keys]).encode()).hexdigest()[:24]


def write_index(store: Path, fingerprint: dict, n_shards: int, shard_size: int, plan: str) -> dict:
    """Merge every shard's list into store.json (the last file a build writes)."""
    samples, skipped = {}, []
    for j in range(n_shards):
        part = json.loads((store / SHARDS_DIR / f"{shard_name(j)}.json").read_text())
        for e in part["samples"]:
            samples[e.pop("key")] = {"shard": shard_name(j), **e}
        skipped += part["skipped"]
    index = {
        "format": STORE_FORMAT,
        "fingerprint": fingerprint,
        "plan": plan,
        "shard_size": shard_size,
        "shards": n_shards,
        "samples": samples,
        "skipped": skipped,
    }
    atomic.write_text(store / INDEX_FILE, json.dumps(index, indent=1) + "\n")
    return index


def check_fingerprint(store: Path, found: dict, expected: dict) -> None:
    diffs = fingerprint_diffs(found, expected)
    if diffs:
        raise DataError(
            f"{store}: feature store built for other settings: {'; '.join(diffs)}. Build a store for "
            f"these settings (scorerl data features) in another folder, or restore them"
        )


def estimate_bytes(tokens: VisualTokens, kinds: list[str]) -> int:
    """Disk size of a store of these sample kinds, from one encoded sample (images folded to one unit)."""
    T, N, D = tokens.features.shape
    per_unit = N * D * tokens.features.element_size()
    suffix = 0 if tokens.suffix is None else tokens.suffix.numel() * tokens.suffix.element_size()
    return sum((per_unit * (1 if k == "image" else T)) + suffix for k in kinds)


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.1f} TB"


# --------------------------------------------------------------------------------------------- reading


def refuse_foreign(folder: Path, entries: tuple[str, ...], builder: str, where: str) -> None:
    """DataError when `folder` holds anything but the `entries` a build writes (a user's folder given as its
    output), naming what it holds; `builder` names the build, `where` the options that choose the folder."""
    from scorerl.io.owned import foreign_entries

    if folder.is_dir():
        foreign = foreign_entries(folder, entries)
        if foreign:
            raise DataError(
                f"{folder}: holds {', '.join(foreign)}, which a {builder} build does not write; "
                f"refusing to build there. Choose a new or empty {where}"
            )


def read_index(folder: Path, index_name: str, fmt: str, build_hint: str) -> dict[str, Any]:
    """The JSON index of a built sharded folder (a feature store or a video library), checked to be of format
    `fmt`; DataError naming the file, or saying how to build it (build_hint) when it is missing."""
    index_file = folder / index_name
    if not index_file.is_file():
        raise DataError(f"{folder}: {build_hint}")
    try:
        index = json.loads(index_file.read_text())
    except ValueError as e:
        raise DataError(f"{index_file}: not valid JSON: {e}") from None
    if not isinstance(index, dict) or index.get("format") != fmt:
        raise DataError(f"{index_file}: not a {fmt} index")
    return index


class OpenShards:
    """The safetensors shards of a folder, memory-mapped on first use; at most `max_open` stay open, the oldest
    closed first (batches walk the shards in order)."""

    def __init__(self, folder: Path, max_open: int = 4):
        self.folder, self.max_open = folder, max_open
        self._open: dict[str, Any] = {}

    def __call__(self, name: str) -> Any:
        if name not in self._open:
            if len(self._open) >= self.max_open:
                self._open.pop(next(iter(self._open)))
            self._open[name] = safe_open(str(self.folder / SHARDS_DIR / f"{name}.safetensors"), framework="pt")
        return self._open[name]


class FeatureStore:
    """A built store, opened for reading: `get(sample)` memory-maps the sample's shard and copies out its tensors."""

    def __init__(self, path: str | Path, fingerprint: dict, open_shards: int = 4):
        self.path = Path(path).expanduser()
        index = read_index(
            self.path,
            INDEX_FILE,
            STORE_FORMAT,
            f"no feature store here ({INDEX_FILE} missing); build it with `scorerl data features CONFIG`",
        )
        check_fingerprint(self.path, index["fingerprint"], fingerprint)
        self.samples: dict[str, dict] = index["samples"]
        self.skipped: list[dict] = index["skipped"]
        self._shard = OpenShards(self.path, open_shards)

    def __contains__(self, sample: Sample) -> bool:
        return sample_key(sample) in self.samples

    def missing(self, samples: list[Sample]) -> list[Sample]:
        return [s for s in samples if s not in self]

    def get(self, sample: Sample) -> VisualTokens:
        entry = self.samples.get(sample_key(sample))
        if entry is None:
            raise DataError(
                f"sample {sample.id!r} ({sample.media}) is not in the feature store {self.path}; "
                "rebuild it with `scorerl data features CONFIG --manifest ...` (only missing shards "
                "are built)"
            )
        f = self._shard(entry["shard"])
        slot = entry["slot"]
        features = f.get_tensor(f"{slot}.features")  # [T', N, D]
        if entry["repeat"] > 1:
            features = features.expand(entry["repeat"], *features.shape[1:])  # a view: T copies cost nothing
        suffix = f.get_tensor(f"{slot}.suffix") if f"{slot}.suffix" in f.keys() else None
        return VisualTokens(features, tuple(entry["grid"]), suffix, entry["meta"])

    def get_many(self, samples: list[Sample]) -> list[VisualTokens]:
        return [self.get(s) for s in samples]

    def token_count(self, sample: Sample) -> int | None:
        """Visual tokens of a sample from its shard's header (no tensor is read); None if the store lacks it."""
        entry = self.samples.get(sample_key(sample))
        if entry is None:
            return None
        f, slot = self._shard(entry["shard"]), entry["slot"]
        units, *rest = f.get_slice(f"{slot}.features").get_shape()  # [T', N, D]: a folded image holds 1 unit
        suffix = f.get_slice(f"{slot}.suffix").get_shape() if f"{slot}.suffix" in f.keys() else None
        return token_count([units * entry["repeat"], *rest], suffix)


def shards_bytes(store: Path) -> int:
    return sum(f.stat().st_size for f in (store / SHARDS_DIR).glob("*.safetensors"))


def shard_count(n_samples: int, shard_size: int) -> int:
    return math.ceil(n_samples / shard_size)
