"""Methods that MERGE tokens as well as drop them, in the harness's terms: a keep mask plus replacement features.

A merging method's output tokens are of two kinds, both at positions of the input's own tokens:
  kept     an input token unchanged, at its original position
  merged   a token the method defines as a weighted mean of the tokens it absorbs, placed at the position of an
           input token the method names (its anchor: FastVID's density peak, HoliTom's cluster centre). The anchor
           is one of the output tokens, so its row simply carries the merge.

So one `Merged` record says it all: `keep` bool [T, N] (kept tokens and anchors), `features` [T, N, D] (the input
with each anchor's row replaced by its merge) and `anchors` bool [T, N]. The environment scores it like any other
method, `ScoreRequest(visual=merged.visual(visual), keep=merged.keep)`: the kept rows are gathered at their
original position ids (for Qwen2.5-VL the 3-D M-RoPE ids of the full sequence), an anchor's row is its merge, so a
merged token takes the anchor's position exactly as a kept token takes its own. No environment code knows about
merging, and a `Merged` with no anchors scores exactly as the plain keep mask (tests/core/test_merging.py).

Budgets count OUTPUT tokens: keep.sum() (kept + merged), the figure the harness reports as `kept_fraction`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from scorerl.compress.baselines.base import Compressor, CompressorError, check_inputs
from scorerl.types import VisualTokens


@dataclass
class Merged:
    """One video's output from a merging method."""

    keep: torch.Tensor  # bool [T, N]: output tokens (kept unchanged, or anchors carrying a merge)
    features: torch.Tensor  # [T, N, D]: the input features, each anchor's row replaced by its merge
    anchors: torch.Tensor  # bool [T, N]: output tokens whose row is a merge (a subset of keep)

    @property
    def count(self) -> int:
        """Output tokens: what a merging method's budget counts."""
        return int(self.keep.sum())

    def visual(self, visual: VisualTokens) -> VisualTokens:
        """The same video with the merged rows in place: score it with `keep` as the request's mask."""
        if tuple(self.features.shape) != tuple(visual.features.shape):
            raise CompressorError(
                f"merged features {tuple(self.features.shape)} do not match the video's {tuple(visual.features.shape)}"
            )
        return replace(visual, features=self.features.to(visual.features.dtype))

    def check(self, shape: tuple[int, int, int], name: str) -> "Merged":
        """RuntimeError (a bug in the method, not a user error) unless the record is consistent for `shape`."""
        T, N, _ = shape
        ok = (
            self.keep.shape == (T, N)
            and self.keep.dtype == torch.bool
            and self.anchors.shape == (T, N)
            and self.anchors.dtype == torch.bool
            and tuple(self.features.shape) == tuple(shape)
            and not bool((self.anchors & ~self.keep).any())
            and bool(self.keep.any())
        )
        if not ok:
            raise RuntimeError(
                f"{name}: inconsistent merge output (keep {tuple(self.keep.shape)} {self.keep.dtype}, "
                f"anchors {tuple(self.anchors.shape)}, features {tuple(self.features.shape)}; "
                f"expected {shape}, anchors within keep, at least one token)"
            )
        return self


def unmerged(features: torch.Tensor, keep: torch.Tensor) -> Merged:
    """A plain keep mask as a Merged record (no anchors): scores exactly as the mask does."""
    return Merged(keep=keep, features=features, anchors=torch.zeros_like(keep))


class MergingCompressor(Compressor):
    """A training-free method whose output includes merged tokens. Subclasses implement `_merge`.

    `select` (a keep mask alone) is refused: the kept rows without their merges would silently be another method.
    """

    def compress(
        self, features: torch.Tensor, rho: float, grid: tuple[int, int], *, generator: torch.Generator | None = None
    ) -> Merged:
        """features [T, N, D], ratio rho in (0, 1], grid (rows, cols) -> Merged (keep, features, anchors)."""
        T, N, D = check_inputs(features, rho, grid)
        out = self._merge(features, float(rho), (int(grid[0]), int(grid[1])), generator)
        return out.check((T, N, D), self.name)

    def select(
        self,
        features: torch.Tensor,
        rho: float,
        grid: tuple[int, int],
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        check_inputs(features, rho, grid)  # a bad input is named first, as every compressor names it
        raise CompressorError(
            f"{self.name} merges tokens, so a keep mask alone is not its output: call "
            f"compress(features, rho, grid) for its kept tokens and their merged features"
        )

    def _keep(
        self, features: torch.Tensor, k: int, grid: tuple[int, int], generator: torch.Generator | None
    ) -> torch.Tensor:  # never reached: select is refused
        raise CompressorError(f"{self.name} merges tokens; use compress")

    def _merge(
        self, features: torch.Tensor, rho: float, grid: tuple[int, int], generator: torch.Generator | None
    ) -> Merged:
        """features [T, N, D] (validated) -> Merged."""
        raise NotImplementedError
