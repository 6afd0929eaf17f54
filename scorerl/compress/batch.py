"""A training batch of videos that differ in length and shape: each sample keeps its own [T_b, N_b, D].

Real clips are ragged: rate sampling gives each clip its own number of temporal units T_b, the model's own resize
rule (aspect kept) its own tokens per unit N_b = rows_b x cols_b; only D (the LLM width) is shared. Tensors that
span the batch are PADDED to [B, T, N] (T = max T_b, N = max N_b) with `valid` marking the real tokens:

    sample b's token (t, i) sits at [b, t, i] for t < T_b, i < N_b; everything else is padding.

Padding at the END of each axis keeps a token's own index i, so the residual v[t, i] - v[t-1, i] and the flat
order t * N_b + i of the sample are unchanged when its slice [b, :T_b, :N_b] is taken back out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from scorerl.types import VisualTokens


@dataclass(frozen=True)
class TokenBatch:
    """B samples' visual tokens, each at its own shape."""

    features: tuple[torch.Tensor, ...]  # B tensors [T_b, N_b, D]
    grids: tuple[tuple[int, int], ...]  # (rows_b, cols_b), rows_b * cols_b == N_b

    def __post_init__(self) -> None:
        if not self.features:
            raise ValueError("a TokenBatch needs at least one sample")
        widths = {f.shape[-1] for f in self.features}
        if len(widths) != 1 or any(f.dim() != 3 for f in self.features):
            raise ValueError(
                f"every sample must be [T, N, D] with one D; got {[tuple(f.shape) for f in self.features]}"
            )
        if len(self.grids) != len(self.features):
            raise ValueError(f"{len(self.features)} samples but {len(self.grids)} grids")
        for f, (rows, cols) in zip(self.features, self.grids):
            if rows * cols != f.shape[1]:
                raise ValueError(f"grid {(rows, cols)} does not match N={f.shape[1]} tokens per unit")

    @classmethod
    def of(cls, visuals: Iterable[VisualTokens]) -> "TokenBatch":
        """From VisualTokens (anything with .features [T, N, D] and .grid)."""
        visuals = list(visuals)
        return cls(tuple(v.features for v in visuals), tuple((*v.grid,) for v in visuals))  # (*g,) == tuple(g)

    def __len__(self) -> int:
        return len(self.features)

    @property
    def shapes(self) -> list[tuple[int, int]]:
        """(T_b, N_b) of every sample."""
        return [(int(f.shape[0]), int(f.shape[1])) for f in self.features]

    @property
    def layout(self) -> list[tuple[int, int, int]]:
        """(T_b, rows_b, cols_b) of every sample: where each token sits on its own grid (a policy that mixes
        neighbours reads it)."""
        return [(int(f.shape[0]), int(rows), int(cols)) for f, (rows, cols) in zip(self.features, self.grids)]

    @property
    def padded_shape(self) -> tuple[int, int]:
        """(T, N) = (max T_b, max N_b)."""
        shapes = self.shapes
        return max(t for t, _ in shapes), max(n for _, n in shapes)

    @property
    def uniform(self) -> bool:
        """Every sample has the same (T, N): nothing is padded."""
        return len(set(self.shapes)) == 1

    @property
    def valid(self) -> torch.Tensor:
        """bool [B, T, N]: True on real tokens."""
        T, N = self.padded_shape
        out = torch.zeros(len(self), T, N, dtype=torch.bool)
        for b, (t, n) in enumerate(self.shapes):
            out[b, :t, :n] = True
        return out

    def token_counts(self) -> list[int]:
        """T_b * N_b of every sample."""
        return [t * n for t, n in self.shapes]


def pad_stack(parts: list[torch.Tensor], shape: tuple[int, int], value: float = 0) -> torch.Tensor:
    """Per-sample tensors [..., T_b, N_b] -> [B, ..., T, N], each padded at the end of its last two axes."""
    T, N = shape
    return torch.stack(
        [torch.nn.functional.pad(p, (0, N - p.shape[-1], 0, T - p.shape[-2]), value=value) for p in parts]
    )
