"""The interface every training-free baseline implements, and the few helpers they share.

A compressor looks at the projected visual tokens of one video and returns which of them to keep:

    keep = compressor.select(features, rho, grid)   # features [T, N, D] -> keep bool [T, N]

It keeps exactly k = keep_count(rho, T * N) = ceil(rho * T * N) tokens unless its docstring says otherwise
(`full` keeps all). Tokens are *selected*, never merged or moved: the environment places each kept token at its
original position, so a baseline and the learned policy are compared on the same footing. Validation and the
exact-k check live here, once; a method only writes `_keep(features, k, grid, generator)`.

Shared helpers (pure functions, used by several methods):
  keep_count      rho -> k, the same count as the learned policy's top-k (select.num_keep)
  allocate        split an integer budget over frames in proportion to weights, capped per frame, summing exactly
  keep_top        global top-k of a score map with a deterministic tie-break
  per_frame_topk  top-b[t] of each frame's scores
  evenly_spaced   `count` evenly spaced indices in range(total)
  cosine_distance 1 - cos between token vectors (0 for a zero vector, never NaN)
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from numbers import Real

import torch
import torch.nn.functional as F

from scorerl.compress.select import num_keep
from scorerl.errors import ScoreRLError


class CompressorError(ScoreRLError, ValueError):
    """Bad input to a compressor (keep ratio, feature shape, grid, budget). Also a ValueError for callers that
    catch that."""


# --------------------------------------------------------------------------------------------- interface


class Compressor(ABC):
    """A training-free token selector. Subclasses set `name` and implement `_keep`."""

    name: str = ""

    def select(
        self, features: torch.Tensor, rho: float, grid: tuple[int, int], *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """features [T, N, D], keep ratio rho in (0, 1], grid (rows, cols) with rows * cols == N -> keep bool [T, N].

        `generator` seeds the randomised methods (ignored by the deterministic ones).
        """
        T, N, _ = check_inputs(features, rho, grid)
        k = self.expected_count(rho, T, N)
        keep = self._keep(features, k, (int(grid[0]), int(grid[1])), generator)
        # A wrong count here is a bug in the method, not a user error, so it is not a CompressorError.
        if keep.shape != (T, N) or keep.dtype != torch.bool or int(keep.sum()) != k:
            raise RuntimeError(
                f"{self.name}: returned {tuple(keep.shape)} {keep.dtype} keeping "
                f"{int(keep.sum())} tokens; expected bool {(T, N)} keeping {k}"
            )
        return keep

    def expected_count(self, rho: float, T: int, N: int) -> int:
        """Tokens `select` keeps for this input; k = ceil(rho * T * N) unless a method documents otherwise."""
        return keep_count(rho, T * N)

    @abstractmethod
    def _keep(
        self, features: torch.Tensor, k: int, grid: tuple[int, int], generator: torch.Generator | None
    ) -> torch.Tensor:
        """features [T, N, D] (validated), 1 <= k <= T * N -> keep bool [T, N] with exactly k True."""

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({params})"


# --------------------------------------------------------------------------------------------- validation


def check_rho(rho: object) -> float:
    """The keep ratio must be a real number in (0, 1]; anything else is a clear error."""
    if isinstance(rho, bool) or not isinstance(rho, Real):
        raise CompressorError(f"keep ratio rho must be a number in (0, 1], got {type(rho).__name__} {rho!r}")
    rho = float(rho)
    if not math.isfinite(rho) or not 0 < rho <= 1:
        raise CompressorError(f"keep ratio rho must be in (0, 1], got {rho!r}")
    return rho


def check_inputs(features: torch.Tensor, rho: object, grid: Sequence[int]) -> tuple[int, int, int]:
    """Validate (features [T, N, D], rho, grid) and return (T, N, D)."""
    check_rho(rho)
    if not isinstance(features, torch.Tensor) or features.dim() != 3:
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
        raise CompressorError(f"features must be a tensor [T, N, D], got {shape}")
    T, N, D = features.shape
    if T < 1 or N < 1 or D < 1:
        raise CompressorError(f"features [T, N, D] must be non-empty, got {tuple(features.shape)}")
    if not features.is_floating_point():
        raise CompressorError(f"features must be floating point, got {features.dtype}")
    if len(tuple(grid)) != 2 or int(grid[0]) * int(grid[1]) != N or min(int(g) for g in grid) < 1:
        raise CompressorError(f"grid (rows, cols) = {tuple(grid)} does not tile N = {N} tokens per unit")
    if not bool(torch.isfinite(features).all()):
        raise CompressorError("features contain NaN or inf")
    return T, N, D


def keep_count(rho: float, total: int) -> int:
    """k = ceil(rho * total), clamped to [1, total].

    Delegates to the policy's own count (select.num_keep, which absorbs float round-off such as
    0.07 * 100 == 7.000000000000001) so a baseline and the learned policy keep the same k at every rho.
    """
    return num_keep(check_rho(rho), total)


# --------------------------------------------------------------------------------------------- shared helpers


def allocate(
    budget: int, weights: torch.Tensor | Sequence[float], capacity: int | torch.Tensor | Sequence[int]
) -> torch.Tensor:
    """Split an integer `budget` over frames in proportion to `weights`, at most `capacity` per frame.

    weights [T] >= 0; capacity an int or [T] ints. Returns int64 [T] that sums to `budget` exactly.
    Water-filling: frames whose proportional share exceeds their capacity are filled to it and the rest of the
    budget is re-shared among the others by weight (equally where all remaining weights are 0). The real-valued
    shares are then rounded by largest remainder; equal remainders go to the lower frame index, so the result is
    deterministic.
    """
    w = torch.as_tensor(weights, dtype=torch.float64).flatten().cpu()  # [T]
    T = w.numel()
    cap = torch.as_tensor(capacity, dtype=torch.int64).flatten().cpu()
    cap = cap.expand(T).clone() if cap.numel() == 1 else cap  # [T]
    if T == 0 or cap.numel() != T:
        raise CompressorError(f"allocate: need one capacity per frame, got {cap.numel()} for {T} weights")
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
        raise CompressorError("allocate: weights must be finite and >= 0")
    if bool((cap < 0).any()):
        raise CompressorError("allocate: capacities must be >= 0")
    if isinstance(budget, bool) or int(budget) != budget or not 0 <= budget <= int(cap.sum()):
        raise CompressorError(f"allocate: budget {budget!r} must be an integer in [0, {int(cap.sum())}]")
    budget = int(budget)

    quota = torch.zeros(T, dtype=torch.float64)  # [T] real-valued share
    free = cap > 0  # frames not yet filled to capacity
    remaining = float(budget)
    while remaining > 0 and bool(free.any()):
        wf = torch.where(free, w, torch.zeros_like(w))
        if float(wf.sum()) <= 0:  # every open frame has weight 0: share equally rather than divide by 0
            wf = free.double()
        share = remaining * wf / wf.sum()
        full = free & (share >= cap)
        if not bool(full.any()):
            quota = torch.where(free, share, quota)
            break
        quota[full] = cap[full].double()
        remaining -= float(cap[full].sum())
        free &= ~full

    out = torch.minimum(quota.floor().long(), cap)  # [T]
    short = budget - int(out.sum())
    while short > 0:  # usually one pass; the loop only guards against float round-off in `quota`
        frac = torch.where(out < cap, quota - out, torch.full_like(quota, -math.inf))
        order = torch.sort(frac, descending=True, stable=True).indices
        order = order[out[order] < cap[order]][:short]
        out[order] += 1
        short -= order.numel()
    return out


def keep_top(scores: torch.Tensor, k: int) -> torch.Tensor:
    """scores [T, N] -> bool [T, N] keeping the k highest. Ties go to the earlier token (time, then raster)."""
    flat = scores.flatten()
    order = torch.sort(flat, descending=True, stable=True).indices[:k]
    keep = torch.zeros(flat.numel(), dtype=torch.bool, device=scores.device)
    keep[order] = True
    return keep.view(scores.shape)


def per_frame_topk(scores: torch.Tensor, budgets: torch.Tensor) -> torch.Tensor:
    """scores [T, N], budgets int [T] -> bool [T, N] keeping the budgets[t] highest of frame t (ties: raster)."""
    T, N = scores.shape
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices  # [T, N]
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(N, device=scores.device).expand(T, N))  # rank[t, i] of token i in frame t
    return rank < budgets.to(scores.device).view(T, 1)


def evenly_spaced(count: int, total: int) -> torch.Tensor:
    """`count` distinct indices spread evenly over range(total): the centre of each of `count` equal slices."""
    if not 0 <= count <= total:
        raise CompressorError(f"cannot pick {count} of {total} evenly")
    return ((torch.arange(count, dtype=torch.float64) + 0.5) * total / count).floor().long()


def cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """1 - cos(a, b) over the last dim (broadcasting), in [0, 2]. A zero vector gives distance 1, never NaN."""
    return 1.0 - F.cosine_similarity(a.float(), b.float(), dim=-1, eps=1e-8)
