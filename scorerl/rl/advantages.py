"""Group-relative advantage estimators, one registry (docs/method.md, advantage).

Inputs are group tensors [B, K]: B videos (groups), K sampled masks each. Statistics are taken over K.
    grpo          A = (r - mean r) / (std r + eps)                                   what the paper's figure draws
    split         A = z(F) + lam * z(S),  z(x) = (x - mean x) / (max(std x, floor) + eps)        default [ours]
    split_action  kept tokens weighted by z(F), dropped tokens by lam * z(S)                          [ours]
    dr_grpo       A = r - mean r          (no std division: Dr. GRPO)
std is the unbiased one. A group whose signal is constant gets advantage exactly 0 (not rounding noise divided by
eps) and is counted in frac_zero_std, like TRL's frac_reward_zero_std. For grpo / dr_grpo the signal is r; for
split / split_action it is the pair (F, S): a group is "zero std" when both are constant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from scorerl.config.schema import RLSection

# A group is "all equal" when its spread is within float32 rounding of its values (TRL: std isclose to 0). A
# range test, because the std of identical float32 values need not come out exactly 0 after the mean's rounding.
_EQUAL_RTOL = 1e-6


@dataclass
class Advantages:
    per_mask: torch.Tensor  # [B, K] advantage of each mask (split_action: z(F) + lam * z(S), for logging)
    zero_std: torch.Tensor  # bool [B] groups whose signal is constant (advantage 0)
    frac_zero_std: float  # zero_std.float().mean(), TRL's frac_reward_zero_std
    kept: torch.Tensor | None = None  # [B, K] split_action: weight of the kept tokens' log-probs
    dropped: torch.Tensor | None = None  # [B, K] split_action: weight of the dropped tokens' log-probs

    def to(self, device: torch.device | str) -> "Advantages":
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        return Advantages(
            self.per_mask.to(device), self.zero_std.to(device), self.frac_zero_std, move(self.kept), move(self.dropped)
        )


def _group_std(x: torch.Tensor) -> torch.Tensor:
    """Unbiased std over the group dim: x [B, K] -> [B, 1]."""
    return x.std(dim=1, unbiased=True, keepdim=True)


def _constant(x: torch.Tensor) -> torch.Tensor:
    """Groups whose values are all equal (to float32 rounding): x [B, K] -> bool [B]."""
    spread = x.amax(dim=1) - x.amin(dim=1)
    return spread <= _EQUAL_RTOL * x.abs().amax(dim=1).clamp_min(1.0)


def _zscore(x: torch.Tensor, eps: float, floor: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(x - mean) / (max(std, floor) + eps) within each group -> ([B, K], constant bool [B]); constant groups -> 0."""
    std = _group_std(x)  # [B, 1]
    const = _constant(x)  # [B]
    z = (x - x.mean(dim=1, keepdim=True)) / (std.clamp_min(floor) + eps)
    return torch.where(const[:, None], torch.zeros_like(z), z), const


def grpo(
    fidelity: torch.Tensor, sparsity: torch.Tensor, reward: torch.Tensor, cfg: RLSection, lam: float
) -> Advantages:
    a, const = _zscore(reward, cfg.std_eps)
    return Advantages(a, const, const.float().mean().item())


def dr_grpo(
    fidelity: torch.Tensor, sparsity: torch.Tensor, reward: torch.Tensor, cfg: RLSection, lam: float
) -> Advantages:
    const = _constant(reward)
    a = reward - reward.mean(dim=1, keepdim=True)
    a = torch.where(const[:, None], torch.zeros_like(a), a)
    return Advantages(a, const, const.float().mean().item())


def split(
    fidelity: torch.Tensor, sparsity: torch.Tensor, reward: torch.Tensor, cfg: RLSection, lam: float
) -> Advantages:
    # Each component on its own scale: a big CE swing cannot drown the sparsity signal or vice versa, and the
    # floor stops a component that barely varies (e.g. kappa in a stage-1 group) from being blown up into noise.
    zf, const_f = _zscore(fidelity, cfg.std_eps, cfg.std_floor)
    zs, const_s = _zscore(sparsity, cfg.std_eps, cfg.std_floor)
    const = const_f & const_s
    return Advantages(zf + lam * zs, const, const.float().mean().item())


def split_action(
    fidelity: torch.Tensor, sparsity: torch.Tensor, reward: torch.Tensor, cfg: RLSection, lam: float
) -> Advantages:
    # Credit assignment by action: keeping a token is what fidelity rewards, dropping one is what sparsity rewards.
    zf, const_f = _zscore(fidelity, cfg.std_eps, cfg.std_floor)
    zs, const_s = _zscore(sparsity, cfg.std_eps, cfg.std_floor)
    const = const_f & const_s
    return Advantages(zf + lam * zs, const, const.float().mean().item(), kept=zf, dropped=lam * zs)


ESTIMATORS = {"grpo": grpo, "split": split, "split_action": split_action, "dr_grpo": dr_grpo}


def compute_advantages(
    name: str, fidelity: torch.Tensor, sparsity: torch.Tensor, reward: torch.Tensor, cfg: RLSection, lam: float = 1.0
) -> Advantages:
    """Advantages of a [B, K] group batch with the named estimator; cfg is the RLSection, lam RewardSection.lam."""
    if name not in ESTIMATORS:
        raise ValueError(f"unknown advantage estimator {name!r}; choose one of {', '.join(ESTIMATORS)}")
    for label, x in (("fidelity", fidelity), ("sparsity", sparsity), ("reward", reward)):
        if x.dim() != 2 or x.shape[1] < 2:
            raise ValueError(f"{label} must be [B, K] with K >= 2, got shape {tuple(x.shape)}")
    with torch.no_grad():  # advantages are constants of the loss
        return ESTIMATORS[name](fidelity.float(), sparsity.float(), reward.float(), cfg, lam)
