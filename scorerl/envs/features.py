"""Where a run's visual tokens come from (`data.features`), and building a feature store ahead of a run.

    cache    per-sample files filled on first use (data/cache.py); the small-scale default
    store    a sharded, lazily read store built beforehand by `scorerl data features` (data/store.py)
    online   no disk: the frozen encoder runs inside the training step on the batch's samples, batched

All three give the same tensors for the same sample (float32 environments: bit for bit), so a run's trajectory does
not depend on the choice; `data.features` is declared inert and may change across a resume.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from scorerl.data import store as st
from scorerl.data.cache import FeatureCache, encode_clip, env_fingerprint
from scorerl.data.frames import FrameSampling, frame_factor_of, load_clip
from scorerl.data.manifest import read_manifest, resolve_manifest
from scorerl.errors import ConfigError, DataError
from scorerl.io import atomic
from scorerl.paths import scorerl_home
from scorerl.types import Sample, VisualTokens

log = logging.getLogger(__name__)
BUILD_FILE = "building.json"  # the plan of a build in progress: its fingerprint and shard layout


def _as_float_cpu(t: VisualTokens) -> VisualTokens:
    return VisualTokens(
        t.features.detach().float().cpu(), t.grid, None if t.suffix is None else t.suffix.detach().float().cpu(), t.meta
    )


class OnlineFeatures:
    """`data.features: online`: every request encodes its samples now (one batched vision-tower call)."""

    def __init__(self, env, sampling: FrameSampling):
        self.env, self.sampling = env, sampling

    def get_many(self, samples: list[Sample]) -> list[VisualTokens]:
        clips = [load_clip(s, self.sampling) for s in samples]
        timing = [c.seconds_per_frame if self.sampling.timed else None for c in clips]
        with torch.inference_mode():
            return [_as_float_cpu(t) for t in self.env.encode_batch([c.frames for c in clips], timing)]

    def get(self, sample: Sample) -> VisualTokens:
        return self.get_many([sample])[0]


def env_identity(env, env_dir: Path | None) -> str:
    """Identity of the environment's weights, for feature caches and stores: its folder's content digest
    (env_fingerprint: no paths, no mtimes), or for an in-memory model without a folder a hash of its tensors (so
    two different models never share features)."""
    if env_dir is not None and Path(env_dir).is_dir():
        return env_fingerprint(env_dir)
    model = getattr(env, "model", None)
    if model is None:
        raise ConfigError(
            f"env.path {str(env_dir)!r} is not a folder and the environment exposes no weights to "
            f"identify its features by"
        )
    import hashlib

    h = hashlib.sha256(type(env).__name__.encode())
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().float().cpu().numpy().tobytes())
    return "weights-" + h.hexdigest()[:16]


def sampling_of(data, env, jitter: float | None = None) -> FrameSampling:
    """The frame rule of a data section for this environment: frame counts rounded to its temporal unit."""
    return FrameSampling.of(data, jitter, frame_factor=frame_factor_of(env))


def store_fingerprint(env, env_dir: Path | None, data, jitter: float | None = None) -> dict:
    """The fingerprint a store for this environment and data section must carry: weights, processor settings (the
    model's resize rule), dtype and the frame rule (rate or count, floor and cap, size, aspect, temporal unit)."""
    return st.store_fingerprint(
        arch=env.arch,
        dtype=str(env.dtype).removeprefix("torch."),
        weights=env_identity(env, env_dir),
        settings=dict(getattr(env, "settings", {})),
        sampling=sampling_of(data, env, jitter),
    )


def store_dir(data, fingerprint: dict) -> Path:
    """data.store_dir, else <scorerl home>/stores/<fingerprint id>: a store per environment and frame setting."""
    if data.store_dir:
        return Path(data.store_dir).expanduser()
    return scorerl_home() / "stores" / st.fingerprint_id(fingerprint)


def feature_source(data, env, env_dir: Path | None, *, jitter: float | None = None, cache_id: str | None = None):
    """The object runs read features from: get(sample) and get_many(samples) -> VisualTokens [T, N, D].
    jitter: the pseudo-video jitter of these samples (None: data.pseudo_video_jitter)."""
    sampling = sampling_of(data, env, jitter)
    if data.features == "online":
        return OnlineFeatures(env, sampling)
    if data.features == "store":
        fingerprint = store_fingerprint(env, env_dir, data, jitter)
        return st.FeatureStore(store_dir(data, fingerprint), fingerprint)
    return FeatureCache(env, cache_id or env_identity(env, env_dir), sampling, cache_dir=data.cache_dir or None)


# --------------------------------------------------------------------------------------------- building a store


def manifests_of(cfg, given: list[str] | None) -> list[str]:
    """The manifests to build features for: the given ones, else the config's stage 1 (when used), 2 and eval."""
    if given:
        return list(given)
    specs = [cfg.data.stage2_manifest, cfg.data.eval_manifest]
    if cfg.curriculum.switch == "plateau" or cfg.curriculum.stage1_steps > 0:
        specs.insert(0, cfg.data.stage1_manifest)
    return specs


def build_features(
    cfg,
    manifests: list[str] | None = None,
    out: str | Path | None = None,
    shard_size: int = 256,
    *,
    env=None,
    env_dir: Path | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    barrier=None,
    progress: bool = True,
) -> st.BuildReport:
    """Build (or finish building) the feature store of cfg's environment over `manifests`.

    Under `accelerate launch` every process builds the shards j with j % world_size == rank and the main process
    writes the index at the end. Shards already complete (from an interrupted build) are kept, so a rerun only
    builds what is missing; shards are byte-identical whatever the process count. Bad media are skipped and
    counted with data.skip_bad, else the build stops naming the sample and file.
    """
    from scorerl.envs import load_env, resolve_env_path

    if rank is None:
        from accelerate import PartialState

        state = PartialState(cpu=not torch.cuda.is_available())
        rank, world_size, barrier = state.process_index, state.num_processes, state.wait_for_everyone
    world_size = world_size or 1
    if shard_size < 1:
        raise ConfigError(f"--shard-size must be >= 1, got {shard_size}")
    barrier = barrier or (lambda: None)
    if env is None:
        env_dir, env = resolve_env_path(cfg.env.path), load_env(cfg.env)
    fingerprint = store_fingerprint(env, env_dir, cfg.data)
    store = Path(out).expanduser() if out is not None else store_dir(cfg.data, fingerprint)
    st.refuse_foreign(store, STORE_ENTRIES, "feature store", "--out (or data.store_dir)")
    created = not store.exists()  # a build that fails before any shard removes the folder it made
    # Every process checks before the main one writes anything (its plan goes through a temp file, which another
    # process checking later would call foreign).
    barrier()
    atomic.ensure_writable_dir(store, "--out")
    try:
        return _build(cfg, store, fingerprint, env, manifests, shard_size, rank, world_size, barrier, progress)
    except BaseException:
        if rank == 0 and created:
            _remove_if_unused(store)
        raise


def _build(
    cfg,
    store: Path,
    fingerprint: dict,
    env,
    manifests,
    shard_size: int,
    rank: int,
    world_size: int,
    barrier,
    progress: bool,
) -> st.BuildReport:
    """build_features with the store folder checked and created."""
    samples = []
    for spec in manifests_of(cfg, manifests):
        found, skipped_lines = read_manifest(resolve_manifest(spec), skip_bad=cfg.data.skip_bad)
        samples += found
    shards = st.plan_shards(samples, shard_size)
    keys = [st.sample_key(s) for shard in shards for s in shard]
    plan: dict[str, Any] = {
        "format": st.STORE_FORMAT,
        "fingerprint": fingerprint,
        "plan": st.plan_digest(keys, shard_size),
    }
    st.start_or_resume(
        store,
        plan,
        rank,
        barrier,
        build_file=BUILD_FILE,
        index_file=st.INDEX_FILE,
        check_fingerprint=st.check_fingerprint,
        what="store of other samples",
    )

    done_before = sum(st.shard_done(store, j) for j in range(len(shards)))
    mine = [j for j in range(len(shards)) if j % world_size == rank and not st.shard_done(store, j)]
    if rank == 0:
        _say_estimate(env, cfg, shards, store, done_before)
    sampling = sampling_of(cfg.data, env)

    def encode(sample: Sample) -> VisualTokens:
        return encode_clip(env, sample, sampling)

    st.build_own_shards(
        mine,
        shards,
        lambda j, shard, tick: st.build_shard(store, j, shard, encode, cfg.data.skip_bad, on_sample=tick),
        desc="features",
        unit="sample",
        show=progress and rank == 0,
    )
    barrier()
    if rank == 0:
        index = st.write_index(store, fingerprint, len(shards), shard_size, plan["plan"])
        (store / BUILD_FILE).unlink(missing_ok=True)
        for item in index["skipped"]:
            log.warning("skipped %s (%s): %s", item["id"], item["media"], item["reason"])
    barrier()
    index = json.loads((store / st.INDEX_FILE).read_text())
    return st.BuildReport(
        store,
        len(index["samples"]),
        len(mine),
        done_before,
        index["skipped"],
        st.shards_bytes(store),
        main_process=rank == 0,
    )


STORE_ENTRIES = (BUILD_FILE, st.INDEX_FILE, st.SHARDS_DIR)  # all a build writes in its folder


def _remove_if_unused(store: Path) -> None:
    """After a failed first build: remove the plan and the shards folder when no shard was finished, then the
    folder itself if that leaves it empty, so a failed command leaves no empty store behind."""
    shards = store / st.SHARDS_DIR
    if shards.is_dir() and any(shards.iterdir()):
        return  # finished shards are kept: a rerun builds only the missing ones
    if shards.is_dir():
        shards.rmdir()
    (store / BUILD_FILE).unlink(missing_ok=True)
    if store.is_dir() and not any(store.iterdir()):
        store.rmdir()


def _say_estimate(env, cfg, shards, store: Path, done_before: int) -> None:
    first = next((s for shard in shards for s in shard if s.kind == "video"), shards[0][0] if shards else None)
    if first is None:
        return
    try:
        with torch.inference_mode():
            tokens = encode_clip(env, first, sampling_of(cfg.data, env))
    except DataError:
        return
    kinds = [s.kind for shard in shards for s in shard]
    size = st.estimate_bytes(tokens, kinds)
    T, N, D = tokens.features.shape
    log.info(
        "feature store %s: %d samples (%d videos, %d images) in %d shards, %d already built; each video "
        "[%d, %d, %d] %s; about %s on disk (images kept as one unit)",
        store,
        len(kinds),
        kinds.count("video"),
        kinds.count("image"),
        len(shards),
        done_before,
        T,
        N,
        D,
        str(tokens.features.dtype).removeprefix("torch."),
        st.human_bytes(size),
    )
