"""What the world's environment fit trains on: decoded clips in memory, mirror augmentation, questions derived
from each video's scene description, and the per-step draws (batches, keep masks), all pure functions of
(seed, step) so a resumed fit draws exactly what the uninterrupted one drew.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
from dataclasses import dataclass

import numpy as np
import torch

from scorerl.data.manifest import LETTERS, answer_choices, format_prompt, read_manifest, resolve_manifest
from scorerl.errors import DataError
from scorerl.rng import fit_step_rng
from scorerl.types import Sample

# --------------------------------------------------------------------------------------------- data


@dataclass
class FitData:
    """A split held in memory, its frames decoded once."""

    frames: np.ndarray  # uint8 [S, F, H, W, 3]
    samples: list[Sample]  # images are static pseudo-videos (one image repeated over the frames)

    def __len__(self) -> int:
        return len(self.samples)


def load_split(spec: str, num_frames: int, frame_size: int, desc: str) -> FitData:
    """Read a manifest and decode all its frames once (uint8: 4000 x 16 x 64 x 64 x 3 is ~0.8 GB)."""
    from tqdm.auto import tqdm

    from scorerl.data.cache import load_frames

    samples, _ = read_manifest(resolve_manifest(spec))
    frames = np.empty((len(samples), num_frames, frame_size, frame_size, 3), dtype=np.uint8)
    for i, s in enumerate(tqdm(samples, desc=f"decoding {desc}", unit="sample", leave=False)):
        frames[i] = load_frames(s, num_frames, frame_size)
    return FitData(frames, samples)


def concat_data(parts: list[FitData]) -> FitData:
    parts = [p for p in parts if len(p)]
    return FitData(np.concatenate([p.frames for p in parts]), [s for p in parts for s in p.samples])


def prompt_corpus(samples: list[Sample], answer_format: str) -> list[str]:
    """The text the tokenizer is trained on: every prompt the environment will be asked, and every answer text
    on a line of its own (so that an answer is tokenized as it is scored: on its own, after the prompt)."""
    answers = sorted({a for s in samples for a in answer_choices(s, answer_format)})
    return [format_prompt(s, answer_format) for s in samples] + answers


# --------------------------------------------------------------------------------------------- augmentation

# A left-right mirror is a symmetry of the world (every shape is left-right symmetric), so it adds samples without
# leaving it; "left" and "right" in the text swap with it, and the answer letter stays, since option texts change in
# place. Time reversal is NOT one: a moving object's motion-blur trail would then lead it.
MIRROR_WORDS = {"left": "right", "right": "left"}


def swap_words(text: str, pairs: dict[str, str]) -> str:
    """Swap whole words simultaneously (left <-> right in one pass, so they do not cancel)."""
    if not pairs:
        return text
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, pairs)) + r")\b")
    return pattern.sub(lambda m: pairs[m.group(1)], text)


def augmented_sample(sample: Sample, pairs: dict[str, str]) -> Sample:
    """The question as it reads for the mirrored video (option texts change in place, so does the
    answer's text, and the answer letter stays)."""
    if not pairs:
        return sample
    return dataclasses.replace(
        sample, question=swap_words(sample.question, pairs), options=[swap_words(o, pairs) for o in sample.options]
    )


def mirror_frames(frames: np.ndarray) -> np.ndarray:
    """uint8 [F, H, W, 3] -> the same video mirrored left-right."""
    return np.ascontiguousarray(frames[:, :, ::-1])


# --------------------------------------------------------------------------------------------- derived questions


def scene_question(sample: Sample, family: str, letter: int, rng: np.random.Generator) -> Sample | None:
    """Another question about the same video, asked by the world's own generator from the sample's scene
    description; None when the scene cannot carry that family's question (e.g. `direction` of a still object)."""
    from scorerl.world.questions import make_question

    if sample.meta.get("scene") is None or letter >= len(LETTERS):
        return None
    try:
        question, options, _ = make_question(rng, copy.deepcopy(sample.meta["scene"]), family, letter)
    except (DataError, KeyError, ValueError, IndexError):
        return None
    return dataclasses.replace(
        sample, question=question, options=list(options), answer=LETTERS[letter], answer_index=letter, family=family
    )


def questions_for(
    sample: Sample, extra: int, rng: np.random.Generator, family_weights: dict[str, float] | None = None
) -> list[Sample]:
    """The manifest's question plus up to `extra` derived from the scene (families drawn in proportion to
    family_weights, 1 where unlisted; uniformly when there are none)."""
    from scorerl.world.scenes import IMAGE_FAMILIES, VIDEO_FAMILIES

    out = [sample]
    families = VIDEO_FAMILIES if sample.kind == "video" else IMAGE_FAMILIES
    p = None
    if family_weights:
        w = np.array([float(family_weights.get(f, 1.0)) for f in families])
        p = w / w.sum()
    for _ in range(extra):
        family = (
            families[int(rng.integers(len(families)))] if p is None else families[int(rng.choice(len(families), p=p))]
        )
        letter = int(rng.integers(len(sample.options)))
        q = scene_question(sample, family, letter, rng)
        if q is not None:
            out.append(q)
    return out


# --------------------------------------------------------------------------------------------- deterministic draws


def batch_indices(n: int, batch_size: int, step: int, seed: int, weights: np.ndarray | None = None) -> np.ndarray:
    """Sample indices of batch `step` (0-based): without weights, the step's slice of an endless stream of
    per-epoch permutations of range(n); with weights [n], batch_size distinct indices drawn with probability
    proportional to them (from the step's own generator, so a resumed fit draws the same batches)."""
    if weights is not None:
        rng = fit_step_rng(seed, step, 2)[1]
        return rng.choice(n, size=min(batch_size, n), replace=False, p=weights / weights.sum())
    out: list[int] = []
    pos = step * batch_size
    while len(out) < batch_size:
        epoch, offset = divmod(pos, n)
        perm = np.random.default_rng([seed, epoch]).permutation(n)
        take = perm[offset : offset + batch_size - len(out)]
        out.extend(take.tolist())
        pos += len(take)
    return np.asarray(out)


def sample_weights(samples: list[Sample], family_weights: dict[str, float]) -> np.ndarray | None:
    """Sampling weight [n] of each training sample (its family's, 1 where unlisted); None without weights."""
    if not family_weights:
        return None
    return np.array([float(family_weights.get(s.family, 1.0)) for s in samples])


def random_keep_masks(
    count: int, T: int, N: int, keep_min: float, full_prob: float, generator: torch.Generator
) -> list[torch.Tensor | None]:
    """One keep mask bool [T, N] per request (None = all tokens): ratio ~ U[keep_min, 1], or 1 with probability
    full_prob; exactly ceil(ratio * T * N) >= 1 tokens at uniformly random places."""
    masks: list[torch.Tensor | None] = []
    full = torch.rand(count, generator=generator) < full_prob
    ratios = keep_min + (1 - keep_min) * torch.rand(count, generator=generator)
    for b in range(count):
        order = torch.randperm(T * N, generator=generator)  # drawn for every request: the stream stays aligned
        if full[b]:
            masks.append(None)
            continue
        k = min(T * N, max(1, math.ceil(float(ratios[b]) * T * N)))
        keep = torch.zeros(T * N, dtype=torch.bool)
        keep[order[:k]] = True
        masks.append(keep.view(T, N))
    return masks


def evidence_first(
    masks: list[torch.Tensor | None], evidence: list[np.ndarray | None], prob: float, generator: torch.Generator
) -> list[torch.Tensor | None]:
    """With probability `prob`, turn a sparse mask into one of the same size k that keeps the request's evidence
    tokens (bool [T, N]: the tokens that show its coloured objects) first, then random others; a random k of them
    when they outnumber k. The others are unchanged (None stays None: all tokens).

    Why (docs/world.md, "Sparse evidence"): with uniformly random masks alone, the share of coloured tokens among
    the kept ones is the same at every keep ratio, and the fitted model learned to COUNT by that share. A selector
    that keeps the objects and drops the background then changes the count it reads: on v4 the model given every
    object token and nothing else answered `count` no better than chance. Showing it evidence-first masks too
    teaches it to read what is there, whichever tokens came with it."""
    if prob <= 0:
        return masks
    draw = torch.rand(len(masks), generator=generator)  # [R]; drawn for every request: the stream stays aligned
    out: list[torch.Tensor | None] = []
    for b, (mask, ev) in enumerate(zip(masks, evidence)):
        order = torch.randperm(mask.numel() if mask is not None else 1, generator=generator)
        if mask is None or ev is None or not draw[b] < prob or not ev.any():
            out.append(mask)
            continue
        T, N = mask.shape
        k = int(mask.sum())
        first = torch.as_tensor(ev, dtype=torch.bool).reshape(T * N)[order]  # evidence flags in a random order
        ranked = order[torch.argsort((~first).to(torch.int8), stable=True)]  # evidence first, each part shuffled
        keep = torch.zeros(T * N, dtype=torch.bool)
        keep[ranked[:k]] = True
        out.append(keep.view(T, N))
    return out
