"""Feature cache: the frozen vision tower + projector run once per sample, not once per step.

Each sample's projected visual tokens are stored as one float32 safetensors file whose name is a hash of everything
that determines them (environment fingerprint, the environment's processor settings (its resize rule), media file
identity, the sample's clip window and fps, the frame rule: count or rate with floor and cap, size, aspect, temporal
unit, pseudo-video jitter), so a changed setting or an edited sample never reads stale features. This is the
lazily filled per-sample cache (`data.features: cache`); at 7B scale use the sharded store (data/store.py,
`data.features: store`) or no disk at all (`online`). Writes are atomic (temp file + rename): a crash leaves no half
file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from scorerl.io import atomic
from scorerl.paths import feature_cache_dir
from scorerl.types import VisualTokens, token_count

FORMAT_VERSION = 2  # 2: keys hold the environment's processor settings and the frame rule's temporal unit


def env_fingerprint(path: str | Path) -> str:
    """Identity of a model folder by its content (data/store.py `weights_digest`): not its path, not file mtimes, so
    a folder copied to node-local disk keeps its cached features."""
    from scorerl.data.store import weights_digest

    return weights_digest(path)[:16]


def load_frames(sample, num_frames: int, frame_size: int, jitter: float = 0.0) -> np.ndarray:
    """uint8 [num_frames, size, size, 3] of a sample, num_frames spread evenly (data/frames.py load_clip; frame_size
    0: native, every frame of the sample its own size)."""
    from scorerl.data.frames import FrameSampling, load_clip

    return load_clip(sample, FrameSampling(num_frames=num_frames, size=frame_size, jitter=jitter)).frames


def encode_clip(env, sample, sampling) -> VisualTokens:
    """A sample's visual tokens (float32, CPU): its frames as `sampling` says, encoded once; with sampling.timed
    the real seconds between frames reach the model (Qwen2.5-VL's temporal positions)."""
    from scorerl.data.frames import load_clip

    clip = load_clip(sample, sampling)
    spf = clip.seconds_per_frame if sampling.timed else None
    with torch.inference_mode():
        (tokens,) = env.encode_batch([clip.frames], seconds_per_frame=[spf])
    return VisualTokens(
        tokens.features.detach().float().cpu(),
        tokens.grid,
        None if tokens.suffix is None else tokens.suffix.detach().float().cpu(),
        tokens.meta,
    )


class FeatureCache:
    """Visual tokens per sample, from disk when present, else encoded by the environment and stored.

    env: anything with `encode(frames uint8 [F, H, W, 3]) -> VisualTokens` (a scorerl.envs VideoEnv).
    """

    def __init__(self, env, env_id: str, sampling, cache_dir: str | Path | None = None, in_memory: bool = True):
        self.env = env
        self.sampling = sampling  # data/frames.py FrameSampling
        self.root = Path(cache_dir) if cache_dir else feature_cache_dir()
        self.root.mkdir(parents=True, exist_ok=True)
        self.env_id = env_id
        self._memory: dict[str, VisualTokens] | None = {} if in_memory else None

    def key(self, sample) -> str:
        """Hash of what the sample's features depend on: weights, processor settings, media file (path, size,
        mtime), the sample's window and fps, and the frame rule (the fields that apply to its kind)."""
        st = Path(sample.media).stat()
        sampling = dataclasses.asdict(self.sampling)
        if sample.kind == "image":
            for key in ("timed", "fps", "min_frames", "max_frames"):  # a pseudo-video is num_frames copies
                sampling.pop(key)
        else:
            sampling.pop("jitter")
        window = [getattr(sample, k, None) for k in ("start", "end", "fps")]
        settings = json.loads(json.dumps(getattr(self.env, "settings", {}), sort_keys=True, default=str))
        ident = json.dumps(
            [
                FORMAT_VERSION,
                self.env_id,
                settings,
                str(Path(sample.media).resolve()),
                st.st_size,
                st.st_mtime_ns,
                sample.kind,
                str(sample.id),
                sampling,
                window,
            ],
            sort_keys=True,
        )
        return hashlib.sha256(ident.encode()).hexdigest()[:32]

    def get(self, sample) -> VisualTokens:
        key = self.key(sample)
        if self._memory is not None and key in self._memory:
            return self._memory[key]
        path = self.root / key[:2] / f"{key}.safetensors"
        if path.is_file():
            tokens = _read(path)
        else:
            tokens = encode_clip(self.env, sample, self.sampling)
            _write(path, tokens)
        if self._memory is not None:
            self._memory[key] = tokens
        return tokens

    def get_many(self, samples) -> list[VisualTokens]:
        return [self.get(s) for s in samples]

    def token_count(self, sample) -> int | None:
        """Visual tokens of a sample without encoding it: from memory or its file's header; None if not cached."""
        key = self.key(sample)
        if self._memory is not None and key in self._memory:
            return self._memory[key].token_count
        path = self.root / key[:2] / f"{key}.safetensors"
        if not path.is_file():
            return None
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            suffix = f.get_slice("suffix").get_shape() if "suffix" in f.keys() else None
            return token_count(f.get_slice("features").get_shape(), suffix)


def _write(path: Path, tokens: VisualTokens) -> None:
    meta = {"grid": json.dumps(list(tokens.grid)), "meta": json.dumps(tokens.meta), "format": str(FORMAT_VERSION)}
    atomic.write_with(path, lambda tmp: save_file(tokens.to_tensors(), str(tmp), metadata=meta))


def _read(path: Path) -> VisualTokens:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    tensors = load_file(str(path))
    return VisualTokens(
        tensors["features"], tuple(json.loads(meta["grid"])), tensors.get("suffix"), json.loads(meta["meta"])
    )
