"""A compressed video library: the kept visual tokens of each video, computed once, answered from many times.

SCORE's policy never reads the question, so the tokens it keeps of a video are the same for every question. A
library stores only those (built by `scorerl compress`, integrations/library_build.py) with what is needed to put
them back at their original positions; answering from it skips frame decoding, the vision tower and the policy,
and the LLM prefill runs on the kept tokens alone (integrations/library_prefill.py).

    <lib>/library.json                   index: format, fingerprint, shards, video key -> entry, ids, skipped
    <lib>/shards/shard-00000.safetensors `<slot>.tokens` [K, D] (the model's dtype) and `<slot>.kept` int64 [K]
    <lib>/shards/shard-00000.json        the shard's own entries (written after its tensors: its presence = done)

An entry holds, per video: the kept tokens in placeholder order (LLaVA-OneVision's trailing newline among them),
their flat indices into the video's full placeholder run (t * N + n; the newline is T * N), the run's length
(`total`: how many placeholders the prompt needs), and Qwen2.5-VL's grid_thw and second_per_grid_t, from which
`get_rope_index` recomputes the 3-D M-RoPE ids of the FULL sequence (exactly what on-the-spot compression uses).

The fingerprint names everything the kept tokens depend on: the model's weights (content digest), its processor
settings, the frame rule, the policy (weights digest, or the baseline's name) and the ratio. Opening a library for
other settings is refused with each differing one named.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from scorerl.data import store as st
from scorerl.errors import DataError
from scorerl.integrations.prefill import LIBRARY_KEY
from scorerl.types import Sample, VisualTokens

LIBRARY_FORMAT = "scorerl-video-library/1"
INDEX_FILE = "library.json"
SHARDS_DIR = st.SHARDS_DIR  # the feature store's layout: st.OpenShards and st.shards_bytes read both
BUILD_FILE = "building.json"
ENTRIES = (BUILD_FILE, INDEX_FILE, SHARDS_DIR)  # all a build writes in its folder


@dataclass
class LibraryEntry:
    """One video's kept tokens and what rebuilds its prompt and positions."""

    key: str
    tokens: torch.Tensor  # [K, D] kept tokens in placeholder order (the model's dtype)
    kept: torch.Tensor  # int64 [K] their flat indices into the full run of `total` placeholders, ascending
    total: int  # placeholders of the full video in the prompt (T * N + suffix)
    T: int
    grid: tuple[int, int]  # (rows, cols) of a temporal unit
    suffix: int = 0  # LLaVA-OneVision's newline (always kept)
    grid_thw: tuple[int, int, int] | None = None  # Qwen2.5-VL's video_grid_thw row, in patches
    second_per_grid_t: float | None = None  # Qwen2.5-VL's second_per_grid_ts entry (None: the processor's 1.0)
    media: str = ""

    def flags(self) -> torch.Tensor:
        """bool [total]: which placeholders of the full run keep a token."""
        out = torch.zeros(self.total, dtype=torch.bool)
        out[self.kept] = True
        return out

    def visual_tokens(self) -> tuple[VisualTokens, torch.Tensor]:
        """(VisualTokens [T, N, D], keep bool [T, N]) for a ScoreRequest: the environment's scoring path (env.score,
        env.token_logprobs) forwards only the kept tokens, so the dropped ones are zeros here; no vision tower
        runs. Memory is the full [T, N, D] again: for answering, library_inputs + compressed_generate avoid it."""
        N = self.grid[0] * self.grid[1]
        flat = self.tokens.new_zeros(self.total, self.tokens.shape[-1])  # [T * N + suffix, D]
        flat[self.kept] = self.tokens
        keep = self.flags()[: self.T * N].reshape(self.T, N)  # [T, N]
        meta: dict[str, object] = {}
        if self.grid_thw is not None:  # Qwen2.5-VL: what its environment places the tokens by
            meta["grid_thw"] = list(self.grid_thw)
            if self.second_per_grid_t is not None:
                meta["second_per_grid_t"] = self.second_per_grid_t
        suffix = flat[self.T * N :] if self.suffix else None  # [S, D] LLaVA-OneVision's newline
        return VisualTokens(flat[: self.T * N].reshape(self.T, N, -1), self.grid, suffix, meta), keep


# --------------------------------------------------------------------------------------------- identity


def compressor_identity(compressor) -> str:
    """A trained policy: a digest of its weights and its config (top-k scope included); a baseline: its name."""
    from scorerl.compress.policy import policy_fields

    if compressor.policy is None:
        return f"baseline:{compressor.name}"
    # policy_fields: the config as its policy_config.json holds it (fields added since, at their neutral value, left
    # out), so a policy keeps the identity it had before they existed.
    h = hashlib.sha256(json.dumps(policy_fields(compressor.policy.config), sort_keys=True, default=str).encode())
    for name, t in sorted(compressor.policy.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().float().cpu().numpy().tobytes())
    return "weights-" + h.hexdigest()[:16]


def library_fingerprint(env, env_dir, sampling, compressor, ratio: float) -> dict:
    """What a library's kept tokens depend on, by name (sampling: data/frames.py FrameSampling)."""
    from scorerl.envs.features import env_identity

    return {
        "format": LIBRARY_FORMAT,
        "arch": env.arch,
        "dtype": str(env.dtype).removeprefix("torch."),
        "weights": env_identity(env, env_dir),
        "processor": json.loads(json.dumps(dict(getattr(env, "settings", {})), sort_keys=True)),
        "frames": dataclasses.asdict(sampling),
        "policy": compressor_identity(compressor),
        "ratio": float(ratio),
    }


def check_library_fingerprint(path: Path, found: dict, expected: dict) -> None:
    """DataError naming every setting that changed since the library was built."""
    diffs = [d.replace(" in the store,", " in the library,") for d in st.fingerprint_diffs(found, expected)]
    if diffs:
        raise DataError(
            f"{path}: stale video library, built for other settings: {'; '.join(diffs)}. Rebuild it "
            f"(scorerl compress ... --out another folder), or restore those settings"
        )


def video_key(sample: Sample) -> str:
    """A video's identity in a library: media kind, file name and size, clip window and fps (not the question:
    every question about the same clip shares one entry)."""
    return media_key(sample.media, sample.kind, *(getattr(sample, k, None) for k in ("start", "end", "fps")))


def media_key(
    media: str | Path,
    kind: str = "video",
    start: float | None = None,
    end: float | None = None,
    fps: float | None = None,
) -> str:
    """video_key of a media file given by path (an lmms-eval doc's video: the whole clip, the frame rule's rate)."""
    media = Path(media)
    size = media.stat().st_size if media.is_file() else -1
    ident = [kind, media.name, size, [start, end, fps]]
    return hashlib.sha256(json.dumps(ident).encode()).hexdigest()[:24]


# --------------------------------------------------------------------------------------------- reading


class VideoLibrary:
    """A built library opened for reading, its fingerprint checked against `expected` (library_fingerprint)."""

    def __init__(self, path: str | Path, expected: dict | None):
        self.path = Path(path).expanduser()
        index = st.read_index(
            self.path,
            INDEX_FILE,
            LIBRARY_FORMAT,
            f"no video library here ({INDEX_FILE} missing); build it with "
            f"`scorerl compress CONFIG_OR_POLICY --manifest M --ratio R --out {self.path}`",
        )
        if expected is not None:
            check_library_fingerprint(self.path, index["fingerprint"], expected)
        self.fingerprint: dict = index["fingerprint"]
        self.videos: dict[str, dict] = index["videos"]
        self.ids: dict[str, str] = index["ids"]  # sample id -> video key
        self.skipped: list[dict] = index["skipped"]
        self._shard = st.OpenShards(self.path)

    @classmethod
    def open(cls, path, *, env, sampling, compressor, ratio: float, env_dir=None) -> "VideoLibrary":
        """The library at `path`, refused unless built for this model, processor, frame rule, policy and ratio."""
        return cls(path, library_fingerprint(env, env_dir, sampling, compressor, ratio))

    def __len__(self) -> int:
        return len(self.videos)

    def __contains__(self, item: Sample | str) -> bool:
        return self._key(item) in self.videos

    def _key(self, item: Sample | str) -> str:
        """A sample's video key; a sample id's; else the string itself (a key from media_key)."""
        return video_key(item) if isinstance(item, Sample) else self.ids.get(str(item), str(item))

    def get(self, item: Sample | str) -> LibraryEntry:
        """The entry of a manifest sample (its clip), of a sample id the library was built from, or of a key."""
        key = self._key(item)
        meta = self.videos.get(key)
        if meta is None:
            raise DataError(
                f"{item if isinstance(item, str) else item.id!r} is not in the video library "
                f"{self.path}; add it with `scorerl compress ... --manifest` (built videos are kept)"
            )
        f = self._shard(meta["shard"])
        slot = meta["slot"]
        grid_thw = meta.get("grid_thw")
        return LibraryEntry(
            key=key,
            tokens=f.get_tensor(f"{slot}.tokens"),
            kept=f.get_tensor(f"{slot}.kept"),
            total=meta["total"],
            T=meta["T"],
            grid=tuple(meta["grid"]),
            suffix=meta["suffix"],
            grid_thw=None if grid_thw is None else tuple(grid_thw),
            second_per_grid_t=meta.get("second_per_grid_t"),
            media=meta.get("media", ""),
        )


def library_bytes(path: str | Path) -> int:
    return st.shards_bytes(Path(path))


# --------------------------------------------------------------------------------------------- prompts


def _grid_thw(entry: LibraryEntry) -> list[int]:
    """A Qwen2.5-VL library entry's video_grid_thw row."""
    if entry.grid_thw is None:
        raise DataError(f"library video {entry.key!r} has no grid_thw: it was not built for Qwen2.5-VL")
    return list(entry.grid_thw)


def library_inputs(env, entries: list[LibraryEntry], prompts: list[str]) -> dict:
    """What `compressed_generate` / a patched `generate` take for `prompts[i]` about library video `entries[i]`:
    input_ids [B, L] with each video's FULL placeholder run (as the processor expands it), attention_mask
    [B, L], Qwen2.5-VL's video_grid_thw [V, 3], mm_token_type_ids [B, L] and second_per_grid_ts [V] (the keys
    `get_rope_index` reads), and the entries themselves under LIBRARY_KEY. No pixels: nothing is decoded or
    encoded. The same left-padded layout processor_like_inputs gives for the videos themselves."""
    from scorerl.integrations.hf_generate import _expanded_text

    if len(entries) != len(prompts):
        raise ValueError(f"{len(entries)} library videos but {len(prompts)} prompts: one prompt per video")
    tokenizer = env.tokenizer
    if tokenizer.pad_token is None:
        raise ValueError("the tokenizer has no pad token: cannot left-pad a batch")
    texts = [_expanded_text(env, prompt, e.total) for prompt, e in zip(prompts, entries)]
    text = tokenizer(texts, padding="longest", padding_side="left", return_tensors="pt")
    ids = text["input_ids"].to(env.device)
    inputs = {"input_ids": ids, "attention_mask": text["attention_mask"].to(env.device), LIBRARY_KEY: list(entries)}
    if env.arch == "qwen2_5_vl":
        config = env.model.config
        inputs["video_grid_thw"] = torch.tensor([_grid_thw(e) for e in entries], dtype=torch.long)
        inputs["mm_token_type_ids"] = (ids == config.image_token_id).long() + 2 * (ids == config.video_token_id).long()
        seconds = [e.second_per_grid_t for e in entries]
        if any(s is not None for s in seconds):  # as processor_like_inputs: 1 s per unit where a video has none
            inputs["second_per_grid_ts"] = torch.tensor([1.0 if s is None else float(s) for s in seconds])
    return inputs
