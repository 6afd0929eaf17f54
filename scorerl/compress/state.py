"""Surprise-augmented state of each visual token (docs/method.md, surprise state).

    dv[t, i] = v[t, i] - v[t-1, i]          same spatial index, full D-dim vector        [paper]
    h[t, i]  = concat(norm(v[t, i]), norm(dv[t, i]) [, |dv|/|v|] [, t, row, col])       [paper: concat; ours: rest]

Every function accepts extra leading batch dims: v [..., T, N, D] -> h [..., T, N, S].
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from scorerl.config.schema import PolicySection

_EPS = 1e-5  # keeps the norms finite for an all-zero vector (e.g. the residual of a static pseudo-video)


def residuals(v: torch.Tensor, first_unit: str = "self") -> torch.Tensor:
    """Temporal residuals dv [..., T, N, D] of projected tokens v [..., T, N, D].

    The first unit has no predecessor: `self` treats it as fully surprising (dv[0] = v[0], i.e. the previous
    unit is zero), `zero` as unsurprising (dv[0] = 0).
    """
    if v.dim() < 3:
        raise ValueError(f"v must be [..., T, N, D], got shape {tuple(v.shape)}")
    if first_unit not in ("self", "zero"):
        raise ValueError(f"first_unit must be self or zero, not {first_unit!r}")
    first = v[..., :1, :, :] if first_unit == "self" else torch.zeros_like(v[..., :1, :, :])
    return torch.cat([first, v[..., 1:, :, :] - v[..., :-1, :, :]], dim=-3)


def _normalise(x: torch.Tensor, norm: str, scale_of: torch.Tensor | None = None) -> torch.Tensor:
    """Normalise each D-vector of x [..., D]; with scale_of, divide by *that* vector's scale instead of x's own.

    `layer`: parameter-free layer norm over D. Features of different MLLMs (and of different layers or dtypes of
    one MLLM) have very different scales; normalising each token makes the policy's input scale-free, so the same
    hidden sizes, init and learning rate work whatever environment produced the features.
    `l2`: unit L2 norm (keeps the mean, drops only the length). `none`: raw features.
    """
    if norm == "none":
        return x
    ref = x if scale_of is None else scale_of
    if norm == "layer":
        if scale_of is None:
            return F.layer_norm(x, x.shape[-1:], eps=_EPS)
        centred = x - x.mean(dim=-1, keepdim=True)
        return centred / torch.sqrt(ref.var(dim=-1, unbiased=False, keepdim=True) + _EPS)
    if norm == "l2":
        length: torch.Tensor = ref.norm(dim=-1, keepdim=True).clamp_min(_EPS)
        return x / length
    raise ValueError(f"norm must be layer, l2 or none, not {norm!r}")


def surprise_state(
    v: torch.Tensor,
    first_unit: str = "self",
    norm: str = "layer",
    surprise_scalar: bool = False,
    positions: bool = False,
    grid: tuple[int, int] | None = None,
    norm_residual: str = "shared",
    residual: bool = True,
) -> torch.Tensor:
    """State h [..., T, N, S] of tokens v [..., T, N, D]; S = state_width(D, surprise_scalar, positions, residual).

    residual=False leaves dv out (h = norm(v) [+ extras]): the ablation of SCORE's surprise term.

    norm_residual `shared` scales dv by v's own statistics (same token), so a tiny residual stays tiny: a static
    pseudo-video with rounding noise must read as "no surprise". `own` normalises dv by itself, which blows any
    residual, even pure noise, up to unit scale.
    Extra columns: |dv|/|v| (scale-free surprise), and (t/(T-1), row/(rows-1), col/(cols-1)) in [0, 1] from
    grid = (rows, cols) with rows * cols == N, token i at row i // cols, column i % cols.
    """
    if norm_residual not in ("shared", "own"):
        raise ValueError(f"norm_residual must be shared or own, not {norm_residual!r}")
    dv = residuals(v, first_unit)  # [..., T, N, D]
    parts = [_normalise(v, norm)]
    if residual:
        parts.append(_normalise(dv, norm, scale_of=v if norm_residual == "shared" else None))
    if surprise_scalar:
        ratio = dv.norm(dim=-1) / v.norm(dim=-1).clamp_min(_EPS)  # [..., T, N]
        parts.append(ratio.unsqueeze(-1))
    if positions:
        parts.append(_positions(v, grid))
    return torch.cat(parts, dim=-1)


def _positions(v: torch.Tensor, grid: tuple[int, int] | None) -> torch.Tensor:
    """Normalised (t, row, col) of every token -> [..., T, N, 3], broadcast over leading dims."""
    T, N = v.shape[-3], v.shape[-2]
    if grid is None or len(grid) != 2 or grid[0] * grid[1] != N:
        raise ValueError(f"positions need grid=(rows, cols) with rows * cols == N={N}, got {grid!r}")
    rows, cols = int(grid[0]), int(grid[1])

    def ramp(n: int) -> torch.Tensor:  # 0 .. 1 over n steps; a single step sits at 0
        return torch.arange(n, dtype=v.dtype, device=v.device) / max(n - 1, 1)

    t = ramp(T)[:, None].expand(T, N)  # [T, N]
    i = torch.arange(N, device=v.device)
    row = ramp(rows)[i // cols][None, :].expand(T, N)
    col = ramp(cols)[i % cols][None, :].expand(T, N)
    pos = torch.stack([t, row, col], dim=-1)  # [T, N, 3]
    return pos.expand(*v.shape[:-1], 3)


def state_width(feature_dim: int, surprise_scalar: bool = False, positions: bool = False, residual: bool = True) -> int:
    """S = 2D (D without the residual) (+1 for the surprise scalar) (+3 for positions)."""
    return (1 + int(residual)) * feature_dim + int(surprise_scalar) + 3 * int(positions)


def state_dim(feature_dim: int, cfg: PolicySection) -> int:
    """State width S for a PolicySection cfg."""
    return state_width(feature_dim, cfg.surprise_scalar, cfg.positions, cfg.residual)


def state_from_config(v: torch.Tensor, cfg: PolicySection, grid: tuple[int, int] | None = None) -> torch.Tensor:
    """surprise_state with every option read from a PolicySection cfg: v [..., T, N, D] -> h [..., T, N, S]."""
    return surprise_state(
        v,
        first_unit=cfg.first_unit,
        norm=cfg.norm,
        surprise_scalar=cfg.surprise_scalar,
        positions=cfg.positions,
        grid=grid,
        norm_residual=cfg.norm_residual,
        residual=cfg.residual,
    )
