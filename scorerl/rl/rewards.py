"""Reward of each sampled mask from the frozen MLLM's cross-entropy (docs/method.md, reward).

All tensors are group tensors [B, K] (B videos, K masks each):
    dce   = CE_k - CE_base        (negative: the compressed input is *better* than the full one)
    kappa = kept fraction of mask k in [0, 1]
    F     = -clip(dce)            fidelity
    S     = sparsity(kappa)       drop: 1 - kappa | target: -|kappa - rho| | over: -max(0, kappa - rho)
    add:  r = F + lam * S
    mul:  r = exp(F) * g(S) ** lam,   g = S for drop, 1 + S for target / over                     [ours]
The `mul` term g is in [0, 1] for every mode (kappa, rho in [0, 1] so |kappa - rho| <= 1), equal to 1 at the best
sparsity, so r = exp(-dCE) scaled down by how far the mask is from the sparsity goal; lam is the exponent, so
log r = F + lam * log g mirrors `add` and lam = 0 is pure fidelity. drop keeps the paper's plain product.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from scorerl.config.schema import RewardSection


def kept_fraction(masks: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """kappa [..., K] of masks bool [..., K, T, N]; valid bool [..., T, N] excludes padding tokens."""
    m = masks.float()
    if valid is None:
        return m.mean(dim=(-1, -2))
    v = valid.unsqueeze(-3).float()  # [..., 1, T, N]
    return (m * v).sum(dim=(-1, -2)) / v.sum(dim=(-1, -2)).clamp_min(1)


def fidelity(dce: torch.Tensor, clip: float = 0.0) -> torch.Tensor:
    """F = -dCE, with dCE clipped to [-clip, clip] first when clip > 0 (one bad forward cannot dominate a group)."""
    if clip > 0:
        dce = dce.clamp(-clip, clip)
    return -dce


def sparsity(kappa: torch.Tensor, rho: float, mode: str = "target") -> torch.Tensor:
    """S from the kept fraction kappa [B, K]: drop 1 - kappa | target -|kappa - rho| | over -max(0, kappa - rho)."""
    if mode == "drop":
        return 1.0 - kappa
    if mode == "target":
        return -(kappa - rho).abs()
    if mode == "over":
        return -(kappa - rho).clamp_min(0.0)
    raise ValueError(f"sparsity mode must be drop, target or over, not {mode!r}")


def combine(dce: torch.Tensor, kappa: torch.Tensor, cfg: RewardSection) -> dict[str, torch.Tensor]:
    """Reward of each mask: dce, kappa [B, K] and a RewardSection cfg -> {reward, fidelity, sparsity} each [B, K]."""
    F = fidelity(dce, cfg.fidelity_clip)
    S = sparsity(kappa, cfg.rho, cfg.sparsity)
    if cfg.combine == "add":
        r = F + cfg.lam * S
    elif cfg.combine == "mul":
        g = S if cfg.sparsity == "drop" else 1.0 + S  # in [0, 1] for every mode
        r = torch.exp(F) * g.clamp_min(0.0).pow(cfg.lam)
    else:
        raise ValueError(f"combine must be add or mul, not {cfg.combine!r}")
    return {"reward": r, "fidelity": F, "sparsity": S}
