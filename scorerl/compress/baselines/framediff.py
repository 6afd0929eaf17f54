"""Frame-difference top-k: keep the tokens that changed most since the previous temporal unit."""

from __future__ import annotations

import torch

from scorerl.compress.baselines.base import Compressor, CompressorError, keep_top


def residual_norm(features: torch.Tensor, first_unit: str = "self") -> torch.Tensor:
    """features [T, N, D] -> |v[t, i] - v[t-1, i]| [T, N] (L2 over D, same spatial index).

    The first unit has no predecessor: `self` scores it |v[0, i]| (as if the previous unit were all zeros, the
    same convention as SCORE's state, dv[0] = v[0]), so the opening frame is seen as entirely new; `zero` scores
    it 0, so it is kept only after every token that changed.
    """
    if first_unit not in ("self", "zero"):
        raise CompressorError(f"framediff: first_unit must be self or zero, not {first_unit!r}")
    v = features.float()
    first = v[:1] if first_unit == "self" else torch.zeros_like(v[:1])
    residual = torch.cat([first, v[1:] - v[:-1]], dim=0)  # [T, N, D]
    norm: torch.Tensor = residual.norm(dim=-1)  # Tensor.norm is typed as returning Any
    return norm


class FrameDiff(Compressor):
    """Global top-k of the residual norm |v[t] - v[t-1]| over the whole video (so eventful frames get more tokens).

    Exact k by construction (one global top-k); equal scores go to the earlier token (time, then raster).
    """

    name = "framediff"

    def __init__(self, first_unit: str = "self") -> None:
        residual_norm(torch.zeros(1, 1, 1), first_unit)  # reject a bad option at construction, not at first use
        self.first_unit = first_unit

    def _keep(
        self, features: torch.Tensor, k: int, grid: tuple[int, int], generator: torch.Generator | None
    ) -> torch.Tensor:
        return keep_top(residual_norm(features, self.first_unit), k)
