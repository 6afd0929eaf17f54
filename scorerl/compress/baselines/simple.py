"""The trivial baselines: keep everything, keep evenly spaced frames, keep random tokens."""

from __future__ import annotations

import torch

from scorerl.compress.baselines.base import Compressor, evenly_spaced


class Full(Compressor):
    """Keeps every token, whatever rho (the uncompressed reference: k = T * N, not ceil(rho * T * N))."""

    name = "full"

    def expected_count(self, rho: float, T: int, N: int) -> int:
        return T * N

    def _keep(
        self, features: torch.Tensor, k: int, grid: tuple[int, int], generator: torch.Generator | None
    ) -> torch.Tensor:
        return torch.ones(features.shape[:2], dtype=torch.bool, device=features.device)


class Uniform(Compressor):
    """Uniform frame sampling: whole frames, evenly spaced in time, as when a model is simply given fewer frames.

    Exact k: m = ceil(k / N) frames are picked at the centres of m equal time slices. The first floor(k / N) of
    them keep all N tokens; if N does not divide k, the last picked frame keeps the remaining k mod N tokens,
    spread evenly over its raster order (not its top rows, which would bias the partial frame to one edge).
    """

    name = "uniform"

    def _keep(
        self, features: torch.Tensor, k: int, grid: tuple[int, int], generator: torch.Generator | None
    ) -> torch.Tensor:
        T, N, _ = features.shape
        whole, rest = divmod(k, N)
        frames = evenly_spaced(whole + (rest > 0), T)  # [m] frame indices, increasing
        keep = torch.zeros(T, N, dtype=torch.bool)
        keep[frames[:whole]] = True
        if rest:
            keep[frames[-1], evenly_spaced(rest, N)] = True
        return keep.to(features.device)


class RandomTokens(Compressor):
    """Random tokens: k tokens drawn uniformly without replacement over the whole video.

    Pass a seeded `torch.Generator` for reproducible masks; the draw happens on the CPU so a given seed gives the
    same mask on any device.
    """

    name = "random"

    def _keep(
        self, features: torch.Tensor, k: int, grid: tuple[int, int], generator: torch.Generator | None
    ) -> torch.Tensor:
        T, N, _ = features.shape
        chosen = torch.randperm(T * N, generator=generator)[:k]
        keep = torch.zeros(T * N, dtype=torch.bool)
        keep[chosen] = True
        return keep.view(T, N).to(features.device)
