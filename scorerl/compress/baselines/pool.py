"""Spatial average pooling, realised as a selection so it fits an environment that only drops tokens.

Pooling by nature merges tokens into new ones. The environments here accept only a subset of the original tokens
at their original positions, so `Pool.select` keeps, for each pooling region, one *representative*: the region's
token nearest (L2) to the region's mean feature (ties: first in raster order). `pool_features` additionally
returns the region means themselves, for an environment that accepts replaced features at kept positions.

Regions, exactly k in all: the budget k is spread equally over frames with `allocate` (the first k mod T frames
get one more). A frame with budget b is cut into exactly b rectangles, as square as the grid allows (an adaptive
average pool): `bands` horizontal bands of near-equal height, with bands ~ sqrt(b * rows / cols), then each band
into near-equal column segments, b in all (bands differ by at most one segment). A budget of N gives every token
its own region, i.e. no pooling.
"""

from __future__ import annotations

import math

import torch

from scorerl.compress.baselines.base import Compressor, CompressorError, allocate, check_inputs, keep_count


def pool_regions(rows: int, cols: int, b: int) -> torch.Tensor:
    """Region id in [0, b) of each token of a (rows, cols) grid, raster order -> int64 [rows * cols].

    Regions are numbered band by band, left to right, so ids increase along the raster order.
    """
    if not 1 <= b <= rows * cols:
        raise CompressorError(f"pool: cannot cut a {rows}x{cols} grid into {b} regions")
    lowest = -(-b // cols)  # each band holds at most `cols` segments
    bands = min(max(round(math.sqrt(b * rows / cols)), lowest, 1), rows, b)
    band_of_row = torch.arange(rows) * bands // rows  # [rows], near-equal band heights
    segments = allocate(b, torch.ones(bands), cols)  # [bands] segments per band, sums to b
    first_id = torch.cumsum(segments, 0) - segments  # [bands] id of each band's leftmost region
    seg = segments[band_of_row].view(rows, 1)  # [rows, 1]
    ids = first_id[band_of_row].view(rows, 1) + torch.arange(cols).view(1, cols) * seg // cols  # [rows, cols]
    return ids.flatten()


def _pool(features: torch.Tensor, k: int, grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """features [T, N, D] -> (keep bool [T, N] with k True, region means [k, D] in the order of features[keep])."""
    T, N, D = features.shape
    keep = torch.zeros(T, N, dtype=torch.bool, device=features.device)
    means_out = []
    for t, b in enumerate(allocate(k, torch.ones(T), N).tolist()):
        if b == 0:
            continue
        ids = pool_regions(grid[0], grid[1], b).to(features.device)  # [N]
        v = features[t].float()  # [N, D]
        counts = torch.bincount(ids, minlength=b).clamp(min=1).view(b, 1).float()
        means = torch.zeros(b, D, device=v.device).index_add_(0, ids, v) / counts  # [b, D]
        dist = (v - means[ids]).norm(dim=-1)  # [N] distance of each token to its region's mean
        # Sort by distance, then (stably) by region: the first token of each region's run is its representative.
        by_dist = torch.sort(dist, stable=True).indices
        by_region = torch.sort(ids[by_dist], stable=True)
        starts = torch.ones(N, dtype=torch.bool, device=v.device)
        starts[1:] = by_region.values[1:] != by_region.values[:-1]
        reps = by_dist[by_region.indices][starts]  # [b] representative token of region 0..b-1
        keep[t, reps] = True
        means_out.append(means[torch.argsort(reps)])  # region means in raster order of their representatives
    return keep, torch.cat(means_out).to(features.dtype)


def pool_features(features: torch.Tensor, rho: float, grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Real average pooling for an environment that accepts replaced features at kept positions.

    features [T, N, D] -> (keep bool [T, N] with k = ceil(rho * T * N) True, pooled [k, D]). pooled[j] is the mean
    of the region whose representative is the j-th kept token in (time, raster) order, i.e. it lines up with
    features[keep]; feed it as `features.clone().index_put_((keep,), pooled)` or directly as the kept-token
    features. The result is flat [k, D], not [T, n, D], because per-frame counts differ by one when T does not
    divide k.
    """
    T, N, _ = check_inputs(features, rho, grid)
    return _pool(features, keep_count(rho, T * N), (int(grid[0]), int(grid[1])))


class Pool(Compressor):
    """Spatial average pooling as selection: one representative token per pooling region, k regions in all."""

    name = "pool"

    def _keep(
        self, features: torch.Tensor, k: int, grid: tuple[int, int], generator: torch.Generator | None
    ) -> torch.Tensor:
        return _pool(features, k, grid)[0]
