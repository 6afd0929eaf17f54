"""DyCoke's temporal token merging (TTM): prune the tokens that repeat the same position of a reference frame.

Keda Tao, Can Qin, Haoxuan You, Yang Sui, Huan Wang, "DyCoke: Dynamic Compression of Tokens for Fast Video Large
Language Models", CVPR 2025 (arXiv 2411.15024). `dycoke` is the official TTM stage (KD-TAO/DyCoke, `dycole_ttm`
in llava/model/llava_arch.py, as LLaVA-OneVision calls it on one clip's features flattened frame-major),
re-implemented from its description and checked token for token, in order, against data-only fixtures of the
official outputs (tests/core/test_parity.py, tests/fixtures/parity/README.md). No code was copied. DyCoke's second stage
(KV-cache pruning during decoding) acts inside the LLM and is not reproduced.

The official TTM, with pruning ratio K and m = int((1 - K) * N) tokens kept per pruned frame:
  * frames form groups of 4. Pass 1 takes each adjacent pair (0,1), (2,3), ... among the first 2*floor(T/2)
    frames: the first of the pair is kept whole, the second keeps the m positions whose cosine similarity
    (of L2-normalised tokens) with the same position of the first is lowest (the positions that changed most).
  * pass 2 re-prunes frames 2, 6, 10, ... (i + 2 for i in range(0, T - 4, 4)) against frames 0, 4, 8, ...,
    with cosine similarity of the raw tokens, overwriting pass 1.
  * so frame t is whole when t % 4 == 0, or t % 4 == 2 and t >= T - 2 (frame T - 2 is never pruned for even T);
    the last frame of an odd T is dropped (0 tokens); every other frame is pruned against t - 2 (t % 4 == 2) or
    t - 1 (frames t % 4 == 3 are compared with the *unpruned* frame t - 1). T <= 4 is an error (the official
    function fails on it), so is T <= 4 here: a CompressorError.
  * output order: frames ascending; a whole frame in raster order, a pruned frame by ascending similarity.
    Exact similarity ties (e.g. a static video) go to the lower token index here; the official topk leaves them
    to its kernel.
Nothing is merged or averaged: the kept tokens are input tokens.

Retention is fixed by T and K: (W * N + P * m) / (T * N) for W whole and P pruned frames. Its minimum (K = 1)
is W / T, which tends to 1/4 for long clips and lies between 0.2 (T = 5) and 0.375 (T = 8): 0.333 at T = 6,
0.3125 at T = 16, 0.28 at T = 32. For odd T it is at most (T - 1) / T (the dropped frame), even at K = 0.

Keep ratio -> K (`dycoke`). The harness asks for rho; DyCoke runs at the largest pruning ratio that still keeps at
least k = ceil(rho * T * N) tokens: m = ceil((k - W * N) / P) clamped to [0, N], K = 1 - m / N (the TTM is run
with m itself, since int((1 - K) * N) in floating point can land one below m). It keeps W * N + P * m tokens:
at most P - 1 more than k when rho is reachable, its minimum W * N when rho < W / T (the published method cannot
go lower, and `dycoke` does not pretend to), and its maximum when rho exceeds it (odd T). The result's
`kept_fraction` reports what was really kept.

`dycoke_ttm+topk` [ours, not published]: so DyCoke can be compared at the keep ratios it cannot reach (5-10 %,
below its floor W / T), and at exactly the k every other method keeps. It keeps exactly k tokens at every
reachable rho, a subset of the TTM's output at the K above (K = 1, its floor, whenever rho < W / T). Among the
tokens the TTM kept it keeps the k first in this order, which applies DyCoke's own rule one level up to the
frames the TTM keeps whole:
  1. frame 0, the first anchor (no earlier frame to be redundant with); its tokens by ascending similarity to
     frame 1 (the pass-1 similarity), so below N tokens it keeps the positions that change;
  2. the other whole frames' tokens, by ascending cosine similarity (raw tokens, as pass 2) with the same
     position of the previous whole frame (t - 4, or t - 2 for the extra frame T - 2);
  3. the pruned frames' kept tokens, by ascending similarity to their reference (the TTM's own ranking, so
     above W / T the variant is `dycoke` minus its last, most redundant, few tokens).
Stable sorts: equal keys go to the earlier frame, then the lower token index. It raises a CompressorError when
k exceeds the TTM's maximum (odd T, rho > (T - 1) / T).
Short clips (T <= 4, where the official TTM fails: real clips under about 4.5 s at Qwen2.5-VL's 2 fps): there is no
pair-and-group structure to prune, so every frame is whole and the same ranking applies one level up to all of
them: frame 0 by ascending similarity to frame 1, each later frame by ascending cosine similarity with the same
position of the frame before it; then the first k. (T = 1: the frame's tokens in raster order.)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from scorerl.compress.baselines.base import Compressor, CompressorError, keep_count

WHOLE, PRUNED, DROPPED = "whole", "pruned", "dropped"


@dataclass(frozen=True)
class TTMLayout:
    """What the official TTM does to each frame of a T-frame clip; a function of T alone."""

    roles: tuple[str, ...]  # [T] whole / pruned / dropped
    reference: tuple[int | None, ...]  # [T] frame a pruned frame is compared with, else None

    @property
    def whole(self) -> int:
        return self.roles.count(WHOLE)

    @property
    def pruned(self) -> int:
        return self.roles.count(PRUNED)

    def count(self, keep_per_pruned: int, N: int) -> int:
        """Tokens the TTM keeps with `keep_per_pruned` tokens per pruned frame."""
        return self.whole * N + self.pruned * keep_per_pruned


@dataclass(frozen=True)
class TTMResult:
    """One TTM call on features [T, N, D]."""

    layout: TTMLayout
    keep_per_pruned: int  # m
    similarity: torch.Tensor  # [T, N] to the reference frame (pruned frames; NaN elsewhere)
    order: torch.Tensor  # int64 [M]: kept flat indices t * N + n in the official output order
    keep: torch.Tensor  # bool [T, N], M True


def ttm_layout(T: int) -> TTMLayout:
    """Roles and references of the official two passes for T frames (T >= 5, else a CompressorError)."""
    if T <= 4:
        raise CompressorError(
            f"dycoke: the official TTM needs T >= 5 frames (temporal units), got T = {T}; "
            "it fails on T <= 4 (its stride-2 pass has no frame to re-prune)"
        )
    paired = 2 * (T // 2)  # frames 0..paired-1 are in pass 1's pairs; an odd T drops its last frame
    second = set(range(2, T - 2, 4))  # pass 2 re-prunes frame i + 2 for i in range(0, T - 4, 4)

    def role(t: int) -> tuple[str, int | None]:
        if t >= paired:
            return DROPPED, None
        if t in second:
            return PRUNED, t - 2
        return (PRUNED, t - 1) if t % 2 == 1 else (WHOLE, None)

    roles, refs = zip(*(role(t) for t in range(T)))
    return TTMLayout(tuple(roles), tuple(refs))


def keep_per_pruned_frame(pruning_ratio: float, N: int) -> int:
    """m = int((1 - K) * N), truncated in Python floats like the official code (K = 0.7, N = 196 -> 58)."""
    if isinstance(pruning_ratio, bool) or not isinstance(pruning_ratio, (int, float)) or not 0 <= pruning_ratio <= 1:
        raise CompressorError(f"dycoke: pruning ratio K must be in [0, 1], got {pruning_ratio!r}")
    return int((1 - pruning_ratio) * N)


def ttm_similarity(features: torch.Tensor) -> torch.Tensor:
    """features [T, N, D] -> cosine similarity [T, N] of each pruned frame with its reference (NaN elsewhere).

    Pass 1 (frames t - 1 -> t, t odd) normalises the tokens first; pass 2 (t - 2 -> t) uses the raw tokens and
    overwrites pass 1. Equal in exact arithmetic, not always in float32, so both are kept as the official code has
    them.
    """
    x = features.to(torch.promote_types(features.dtype, torch.float32))
    T, N, _ = x.shape
    sim = torch.full((T, N), float("nan"), dtype=x.dtype, device=x.device)
    paired = 2 * (T // 2)
    first, second = F.normalize(x[0:paired:2], dim=-1), F.normalize(x[1:paired:2], dim=-1)  # [T//2, N, D]
    sim[1:paired:2] = F.cosine_similarity(first, second, dim=-1)  # [T//2, N]
    strided = torch.arange(2, T - 2, 4, device=x.device)  # frames pass 2 re-prunes
    sim[strided] = F.cosine_similarity(x[strided - 2], x[strided], dim=-1)
    return sim


def dycoke_ttm(
    features: torch.Tensor, pruning_ratio: float | None = None, *, keep_per_pruned: int | None = None
) -> TTMResult:
    """The official TTM on features [T, N, D] at pruning ratio K (or directly with m tokens per pruned frame)."""
    T, N, _ = features.shape
    layout = ttm_layout(T)
    if (pruning_ratio is None) == (keep_per_pruned is None):
        raise CompressorError("dycoke_ttm: give exactly one of pruning_ratio (K) and keep_per_pruned (m)")
    m = int(keep_per_pruned) if keep_per_pruned is not None else keep_per_pruned_frame(float(pruning_ratio or 0), N)
    if not 0 <= m <= N:
        raise CompressorError(f"dycoke_ttm: keep_per_pruned must be in [0, {N}], got {keep_per_pruned!r}")
    sim = ttm_similarity(features)  # [T, N]
    rank = torch.argsort(sim, dim=1, stable=True)  # [T, N] ascending; NaN rows are never used
    parts = []
    for t, role in enumerate(layout.roles):
        if role == WHOLE:
            parts.append(t * N + torch.arange(N, device=sim.device))
        elif role == PRUNED:
            parts.append(t * N + rank[t, :m])
    order = torch.cat(parts)  # [M]
    keep = torch.zeros(T * N, dtype=torch.bool, device=sim.device)
    keep[order] = True
    return TTMResult(layout, m, sim, order, keep.view(T, N))


def keep_per_pruned_for(k: int, layout: TTMLayout, N: int) -> int:
    """The rho -> K rule: the fewest tokens m per pruned frame whose total keeps >= k (clamped to [0, N])."""
    m = -(-(k - layout.whole * N) // layout.pruned)  # integer ceil
    return min(N, max(0, m))


def pruning_ratio_for(rho: float, T: int, N: int) -> float:
    """K that `dycoke` runs at for keep ratio rho: the largest pruning ratio keeping >= ceil(rho * T * N)."""
    return 1.0 - keep_per_pruned_for(keep_count(rho, T * N), ttm_layout(T), N) / N


class DyCoke(Compressor):
    """The official TTM at the K of the rho -> K rule (module docstring); keeps its own count, W*N + P*m."""

    name = "dycoke"

    def expected_count(self, rho: float, T: int, N: int) -> int:
        layout = ttm_layout(T)
        return layout.count(keep_per_pruned_for(keep_count(rho, T * N), layout, N), N)

    def _keep(
        self, features: torch.Tensor, k: int, grid: tuple[int, int], generator: torch.Generator | None
    ) -> torch.Tensor:
        T, N, _ = features.shape
        layout = ttm_layout(T)
        m = (k - layout.whole * N) // layout.pruned  # exact: k came from expected_count
        return dycoke_ttm(features, keep_per_pruned=m).keep


def topk_order(features: torch.Tensor, ttm: TTMResult) -> torch.Tensor:
    """The variant's ranking of the TTM's kept tokens (module docstring, items 1-3) -> int64 [M] flat indices."""
    T, N, _ = features.shape
    x = features.to(ttm.similarity.dtype)
    key = ttm.similarity.clone()  # [T, N]; pruned frames: their TTM similarity (tier 2)
    tier = torch.full((T,), 2, dtype=torch.long)
    whole = [t for t, role in enumerate(ttm.layout.roles) if role == WHOLE]  # whole[0] == 0
    key[0] = ttm.similarity[1]  # frame 0 vs frame 1: pass 1's similarity of that pair
    tier[0] = 0
    for prev, t in zip(whole, whole[1:]):
        key[t] = F.cosine_similarity(x[prev], x[t], dim=-1)
        tier[t] = 1
    order = ttm.order[torch.argsort(key.flatten()[ttm.order], stable=True)]  # by key; ties keep TTM order
    return order[torch.argsort(tier.to(order.device)[order // N], stable=True)]  # then by tier


class DyCokeTopK(Compressor):
    """[ours] The official TTM (at the rho -> K rule's K; K = 1 below W / T), then its k best tokens: exactly k."""

    name = "dycoke_ttm+topk"

    def _keep(
        self, features: torch.Tensor, k: int, grid: tuple[int, int], generator: torch.Generator | None
    ) -> torch.Tensor:
        T, N, _ = features.shape
        keep = torch.zeros(T * N, dtype=torch.bool, device=features.device)
        if T <= 4:  # no TTM on so short a clip (module docstring): every frame whole, ranked by the same rule
            keep[short_clip_order(features)[:k]] = True
            return keep.view(T, N)
        layout = ttm_layout(T)
        m = keep_per_pruned_for(k, layout, N)
        if layout.count(m, N) < k:
            raise CompressorError(
                f"dycoke_ttm+topk: the TTM keeps at most {layout.count(N, N)} of {T * N} tokens "
                f"for T = {T} (its last frame is dropped), fewer than k = {k}"
            )
        ttm = dycoke_ttm(features, keep_per_pruned=m)
        keep[topk_order(features, ttm)[:k]] = True
        return keep.view(T, N)


def short_clip_order(features: torch.Tensor) -> torch.Tensor:
    """The variant's ranking when T <= 4 -> int64 [T * N] flat indices: frame 0 first (by ascending similarity to
    frame 1), then every later token by ascending cosine similarity with its position in the previous frame."""
    T, N, _ = features.shape
    x = features.float()
    if T == 1:
        return torch.arange(N, device=features.device)
    key = torch.empty(T, N, device=features.device)
    key[0] = F.cosine_similarity(x[0], x[1], dim=-1)
    key[1:] = F.cosine_similarity(x[1:], x[:-1], dim=-1)
    tier = (torch.arange(T, device=features.device) > 0).long()[:, None].expand(T, N).flatten()
    order = torch.argsort(key.flatten(), stable=True)
    return order[torch.argsort(tier[order], stable=True)]
