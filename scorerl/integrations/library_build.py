"""`scorerl compress`: build a video library (integrations/library.py), each video encoded and compressed once.

The feature store's machinery (envs/features.py, data/store.py): manifests read with data.skip_bad, shards of
`shard_size` videos, each process of an `accelerate launch` building the shards j with j % world_size == rank, a
plan file so an interrupted build resumes with only the missing shards (and a build for other settings or other
videos is refused), the index written last by the main process, and nothing written into a folder holding files
a build does not write.

Each video goes through exactly the code on-the-spot compression runs (processor_like_inputs, the model's own
`get_video_features`, `select` on V [T, N, D]), one video per encoder call: what is stored is what
`compressed_generate` would keep for that video.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from scorerl.data import store as st
from scorerl.data.frames import load_clip
from scorerl.data.manifest import read_manifest, resolve_manifest
from scorerl.errors import ConfigError
from scorerl.integrations import library as lib
from scorerl.integrations.hf_generate import processor_like_inputs
from scorerl.integrations.prefill import _keep_flags, _visuals
from scorerl.io import atomic
from scorerl.types import Sample

log = logging.getLogger(__name__)


@dataclass
class LibraryReport:
    path: Path
    videos: int  # in the library after this build
    built_shards: int  # shards this process wrote now
    reused_shards: int  # shards found complete from an interrupted build
    skipped: list[dict]  # [{id, media, reason}] of the whole library
    bytes: int  # the shards on disk
    full_bytes: int  # what the same videos' full tokens would take in the model's dtype (a feature store's size)
    main_process: bool = True


def encode_video(env, sample: Sample, sampling, select) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """(kept tokens [K, D], their flat indices int64 [K], the entry's layout) of one video, as on-the-spot
    compression computes them: its frames by `sampling`, the model's encoder on processor-like pixels, `select`."""
    clip = load_clip(sample, sampling)
    spf = clip.seconds_per_frame if sampling.timed else None
    inputs = processor_like_inputs(env, [clip.frames], [""], seconds_per_frame=[spf])
    with torch.inference_mode():
        ((_, (visual,)),) = _visuals(env.model, env.arch, inputs)  # one video: its _Visual
        flags = _keep_flags(select, visual)  # bool [T * N + suffix]
    kept = flags.nonzero().squeeze(1)  # [K]
    layout = {
        "total": len(visual.tokens),
        "T": visual.T,
        "grid": list(visual.grid),
        "suffix": visual.suffix,
        "media": str(sample.media),
    }
    if env.arch == "qwen2_5_vl":
        layout["grid_thw"] = [int(x) for x in inputs["video_grid_thw"][0].tolist()]
        seconds = inputs.get("second_per_grid_ts")
        layout["second_per_grid_t"] = None if seconds is None else float(seconds[0])
    tokens = visual.tokens[flags.to(visual.tokens.device)].detach().cpu().contiguous()
    return tokens, kept.to(torch.int64), layout


def build_library(
    cfg,
    compressor,
    ratio: float,
    manifests: list[str],
    out: str | Path,
    shard_size: int = 64,
    *,
    env=None,
    env_dir: Path | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    barrier=None,
    progress: bool = True,
) -> LibraryReport:
    """Build (or finish building) the library of `manifests`' videos under cfg's environment and frame rule,
    `compressor` (a ScoreCompressor) keeping `ratio` of each video's tokens."""
    from scorerl.envs import load_env, resolve_env_path
    from scorerl.envs.features import sampling_of
    from scorerl.integrations.patch import selector

    if rank is None:
        from accelerate import PartialState

        state = PartialState(cpu=not torch.cuda.is_available())
        rank, world_size, barrier = state.process_index, state.num_processes, state.wait_for_everyone
    if world_size is None:
        raise ConfigError(f"build_library: rank {rank} was given without world_size")
    if shard_size < 1:
        raise ConfigError(f"--shard-size must be >= 1, got {shard_size}")
    if not 0 < float(ratio) <= 1:
        raise ConfigError(f"--ratio must be in (0, 1], got {ratio}")
    if not manifests:
        raise ConfigError("--manifest: name at least one manifest of videos to compress")
    barrier = barrier or (lambda: None)
    if env is None:
        env_dir, env = resolve_env_path(cfg.env.path), load_env(cfg.env)
    sampling = sampling_of(cfg.data, env)
    fingerprint = lib.library_fingerprint(env, env_dir, sampling, compressor, ratio)
    path = Path(out).expanduser()
    st.refuse_foreign(path, lib.ENTRIES, "video library", "--out")
    barrier()  # every process checks before the main one writes its plan (a temp file another would call foreign)
    atomic.ensure_writable_dir(path, "--out")

    samples = []
    for spec in manifests:
        found, _ = read_manifest(resolve_manifest(spec), skip_bad=cfg.data.skip_bad)
        samples += found
    videos = _unique_videos(samples)
    shards = [videos[i : i + shard_size] for i in range(0, len(videos), shard_size)]
    digest = st.plan_digest([lib.video_key(v) for v in videos], shard_size)
    plan = {"format": lib.LIBRARY_FORMAT, "fingerprint": fingerprint, "plan": digest}
    st.start_or_resume(
        path,
        plan,
        rank,
        barrier,
        build_file=lib.BUILD_FILE,
        index_file=lib.INDEX_FILE,
        check_fingerprint=lib.check_library_fingerprint,
        what="library of other videos",
    )

    done_before = sum(st.shard_done(path, j) for j in range(len(shards)))
    mine = [j for j in range(len(shards)) if j % world_size == rank and not st.shard_done(path, j)]
    select = selector(compressor, ratio)
    st.build_own_shards(
        mine,
        shards,
        lambda j, shard, tick: _build_shard(
            path, j, shard, lambda s: encode_video(env, s, sampling, select), cfg.data.skip_bad, tick
        ),
        desc="compress",
        unit="video",
        show=progress and rank == 0,
    )
    barrier()
    if rank == 0:
        index = _write_index(path, fingerprint, digest, len(shards), samples)
        (path / lib.BUILD_FILE).unlink(missing_ok=True)
        for item in index["skipped"]:
            log.warning("skipped %s (%s): %s", item["id"], item["media"], item["reason"])
    barrier()
    index = json.loads((path / lib.INDEX_FILE).read_text())
    width = env.hidden_size * torch.empty((), dtype=env.dtype).element_size()  # bytes per full token
    full = sum(v["total"] for v in index["videos"].values()) * width
    return LibraryReport(
        path,
        len(index["videos"]),
        len(mine),
        done_before,
        index["skipped"],
        lib.library_bytes(path),
        full,
        main_process=rank == 0,
    )


def _unique_videos(samples: list[Sample]) -> list[Sample]:
    """One sample per video (clip window and fps included), manifest order kept."""
    seen, out = set(), []
    for s in samples:
        k = lib.video_key(s)
        if k not in seen:
            seen.add(k)
            out.append(s)
    return out


def _shard_path(path: Path, j: int) -> Path:
    return path / lib.SHARDS_DIR / f"{st.shard_name(j)}.safetensors"


def _build_shard(path: Path, j: int, shard: list[Sample], encode, skip_bad: bool, tick) -> None:
    """Encode one shard's videos and write it (tensors first, then its list, both atomically)."""
    tensors: dict[str, torch.Tensor] = {}
    entries: list[dict] = []
    skipped: list[dict] = []
    for sample in shard:
        encoded = st.encode_or_skip(sample, encode, skip_bad, skipped)
        if encoded is None:
            tick()
            continue
        tokens, kept, layout = encoded
        slot = len(entries)
        tensors[f"{slot}.tokens"], tensors[f"{slot}.kept"] = tokens, kept
        entries.append({"key": lib.video_key(sample), "slot": slot, **layout})
        tick()
    target = _shard_path(path, j)
    if tensors:
        atomic.write_with(target, lambda tmp: save_file(tensors, str(tmp), metadata={"format": lib.LIBRARY_FORMAT}))
    atomic.write_text(target.with_suffix(".json"), json.dumps({"videos": entries, "skipped": skipped}, indent=1) + "\n")


def _write_index(path: Path, fingerprint: dict, plan: str, n_shards: int, samples: list[Sample]) -> dict:
    """Merge every shard's list into library.json (the last file a build writes), with every sample id that
    asks about a built video."""
    videos, skipped = {}, []
    for j in range(n_shards):
        part = json.loads(_shard_path(path, j).with_suffix(".json").read_text())
        for e in part["videos"]:
            videos[e.pop("key")] = {"shard": st.shard_name(j), **e}
        skipped += part["skipped"]
    ids = {s.id: k for s in samples if (k := lib.video_key(s)) in videos}
    index = {
        "format": lib.LIBRARY_FORMAT,
        "fingerprint": fingerprint,
        "plan": plan,
        "shards": n_shards,
        "videos": videos,
        "ids": ids,
        "skipped": skipped,
    }
    atomic.write_text(path / lib.INDEX_FILE, json.dumps(index, indent=1) + "\n")
    return index


# --------------------------------------------------------------------------------------------- the command


def compress_command(
    config_or_policy: str,
    overrides: list[str],
    manifests: list[str],
    ratio: float,
    out: str,
    compressor: str | None = None,
    shard_size: int = 64,
) -> LibraryReport:
    """`scorerl compress CONFIG_OR_POLICY`: a run config (its env and data sections; the policy from --compressor,
    else the config's run folder) or a policy folder (exported, run or checkpoint: the config it was trained
    with, overrides applied, e.g. env.path=/models/Qwen2.5-VL-7B-Instruct after moving the model)."""
    from scorerl.export import ScoreCompressor
    from scorerl.integrations.patch import load_compressor
    from scorerl.paths import resolve_config

    given = Path(config_or_policy).expanduser()
    if given.is_dir():
        if compressor is not None:
            raise ConfigError(
                f"--compressor: {config_or_policy} is already a policy folder; give a run config "
                "to compress with another compressor"
            )
        chosen = ScoreCompressor.from_pretrained(given)
        cfg = _config_of_policy(chosen.info.get("config"), overrides, given)
    else:
        from scorerl.config import load_config

        cfg = load_config(resolve_config(config_or_policy), overrides)
        run_dir = Path(cfg.run.output_dir).expanduser() / cfg.run.name
        if compressor is None and not run_dir.is_dir():
            raise ConfigError(
                f"{config_or_policy}: its run folder {run_dir} does not exist; name the policy "
                "with --compressor (a policy folder or a baseline name)"
            )
        chosen = load_compressor(compressor if compressor is not None else str(run_dir))
    return build_library(cfg, chosen, ratio, manifests, out, shard_size)


def _config_of_policy(config: dict | None, overrides: list[str], folder: Path):
    """The run config a policy folder records (export.json or its checkpoint), with command-line overrides."""
    from scorerl.config.loader import COMMAND_LINE, _parse_override, _set_dotted, config_from_dict

    if not config:
        raise ConfigError(
            f"{folder}: records no run config (no export.json); give the run config as "
            f"CONFIG_OR_POLICY and this folder as --compressor"
        )
    data, lines = json.loads(json.dumps(config)), {}
    for item in overrides:  # as load_config applies them to a file's values
        key, value = _parse_override(item)
        _set_dotted(data, key, value if key.count(".") == 1 else value.parsed)
        lines[key] = COMMAND_LINE
    return config_from_dict(data, source=f"{folder} (its run config)", lines=lines)
