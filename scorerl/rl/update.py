"""Update: the one loss path every update epoch of a collected batch takes (rl.ppo_epochs of them).

    features, each sample [T_b, N_b, D] -> batch_keep_logits (the shared scoring path) -> logits [B, T, N]
    -> policy_loss(logits, masks, advantages, old log-probs, valid)     (loss.py: the formula and its switches;
       every mean over a sample's tokens runs over its real tokens only)

The first epoch's logits equal the sampling policy's, so its ratio is exactly 1 and its gradient is the REINFORCE
gradient of the paper's loss; with rl.ppo_epochs = 1 no ratio is formed at all. Later epochs are clipped against
the logits the masks were sampled with.
"""

from __future__ import annotations

import torch

from scorerl.compress.policy import batch_keep_logits
from scorerl.rl.advantages import Advantages
from scorerl.rl.loss import mask_logprobs, policy_loss
from scorerl.rl.rollout import Rollout


def update_loss(
    policy: torch.nn.Module, ro: Rollout, adv: Advantages, rl, ref_logits: torch.Tensor | None = None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(loss, stats) of one update epoch on a collected batch. policy: possibly accelerate-wrapped (called through
    the wrapper so gradients synchronise). rl: RLSection. ref_logits [B, T, N]: the initial policy's (kl_coef > 0)."""
    logits = batch_keep_logits(policy, ro.batch)  # [B, T, N]
    old_logp = mask_logprobs(ro.old_logits, ro.masks) if rl.ppo_epochs > 1 else None  # [B, K, T, N]
    loss, stats = policy_loss(
        logits, ro.masks, adv, rl, old_logp=old_logp, ref_logits=ref_logits, valid=ro.valid, order=ro.order
    )
    stats["loss"] = loss.detach()
    p = torch.sigmoid(logits.detach())  # [B, T, N]
    stats["keep_prob"] = p.mean() if ro.valid is None else p[ro.valid].mean()
    return loss, stats


def reference_logits(ref_policy: torch.nn.Module | None, ro: Rollout) -> torch.Tensor | None:
    """The initial policy's keep logits [B, T, N] of a collected batch (for the KL term), or None without one."""
    if ref_policy is None:
        return None
    with torch.no_grad():
        return batch_keep_logits(ref_policy, ro.batch)
