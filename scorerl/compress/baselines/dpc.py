"""Density-peak clustering (DPC-kNN), the anchor rule FastVID and HoliTom share, written once.

For tokens x [m, D]: distances d_ij = |x_i - x_j| / sqrt(D); density rho_i = exp(-mean of the `neighbours`
smallest d_ij^2) (the token itself is one of them, at distance 0) plus uniform noise * 1e-6, the official
tie-break; delta_i = the distance to the nearest denser token (the largest distance of all for the densest). The
anchors (cluster centres) are the top-k of rho * delta: dense tokens far from any denser one.
"""

from __future__ import annotations

import math

import torch

NOISE_SCALE = 1e-6  # the official density tie-break noise (both methods)


def distances(x: torch.Tensor) -> torch.Tensor:
    """x [m, D] -> [m, m] Euclidean distances / sqrt(D), in float32 as the official code computes them."""
    d: torch.Tensor = torch.cdist(x[None].float(), x[None].float())[0] / math.sqrt(x.shape[-1])
    return d


def density_peaks(x: torch.Tensor, k: int, noise: torch.Tensor, neighbours: int) -> torch.Tensor:
    """Tokens x [m, D], noise [m] (uniform draws) -> indices [k], ascending, of the top-k density * delta."""
    dist = distances(x)  # [m, m]
    # fewer candidates than neighbours (tiny grids only) would make the official topk fail; take what there is
    nearest = torch.topk(dist, k=min(neighbours, x.shape[0]), dim=-1, largest=False).values  # [m, neighbours]
    density = (-(nearest**2).mean(dim=-1)).exp() + noise * NOISE_SCALE  # [m]
    denser = density[None, :] > density[:, None]  # [m, m]: j denser than i
    delta = torch.where(denser, dist, dist.max()).min(dim=-1).values  # [m]
    return torch.topk(delta * density, k=k).indices.sort().values
