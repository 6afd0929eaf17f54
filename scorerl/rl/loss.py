"""Policy-gradient loss of SCORE (docs/method.md, loss), the math in plain sight.

    logits  [B, T, N]      keep logits of the policy, p = sigmoid(logits)
    masks   [B, K, T, N]   the K sampled Bernoulli masks of each video (bool)
    A       [B, K]         advantages (split_action: A_kept, A_dropped [B, K])

    log pi(m | h) = m * log p + (1 - m) * log(1 - p) = m * logsigmoid(l) + (1 - m) * logsigmoid(-l)   per token
    L = -(1/B) sum_b (1/K) sum_k A_bk * mean_{t,i} log pi(m_bk[t,i] | h_b[t,i])                       the paper
      = -mean_{b,k} mean_{t,i} A_tok * logpi_tok     with A_tok = A_bk (split_action: A_kept or A_dropped by m)

Ranked draws (rl.sampling: ranked): mask k of video b is k tokens drawn in order o_1..o_k without replacement from
softmax(logits) (Plackett-Luce), so its log-probability is a sum over the draws, not over the tokens:
    log pi(o | h) = sum_j [ l_{o_j} - logsumexp_{tokens not drawn before j} l ]
and the loss uses its mean over the draws, A_bk * (1/k) log pi(o_bk | h_b), in place of the per-token mean.

Optional switches, all off by default (RLSection):
    PPO clipping (old_logp given, for ppo_epochs > 1): per-token ratio = pi / pi_old, surrogate
        min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A) replaces A * log pi (same gradient at ratio = 1).
    entropy bonus: L -= entropy_coef * mean Bernoulli entropy.
    KL to the initial policy (ref_logits given): L += kl_coef * mean exact Bernoulli KL(pi || pi_ref).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from scorerl.rl.advantages import Advantages

if TYPE_CHECKING:
    from scorerl.config.schema import RLSection


def mask_logprobs(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Per-token log pi(m | h): logits [B, T, N], masks bool [B, K, T, N] -> [B, K, T, N]. logsigmoid: stable."""
    lg = logits.unsqueeze(1)  # [B, 1, T, N]
    return torch.where(masks, F.logsigmoid(lg), F.logsigmoid(-lg))


def ranking_logprobs(logits: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Mean per-draw log-probability of ranked draws (Plackett-Luce): logits [B, T, N], order long [B, K, L] (flat
    token indices in the order drawn, -1 = no draw: groups may differ in k) -> [B, K].

    One logsumexp over the tokens not yet drawn per draw: L passes over [B, K, T*N], no [B, K, L, T*N] tensor."""
    B, K, L = order.shape
    flat = logits.flatten(1).unsqueeze(1).expand(B, K, -1)  # [B, K, M]
    drawn = order >= 0  # [B, K, L]
    idx = order.clamp_min(0)
    picked = flat.gather(-1, idx)  # [B, K, L] logit of each draw
    taken = torch.zeros(flat.shape, dtype=torch.bool, device=flat.device)  # [B, K, M]
    total = torch.zeros(B, K, dtype=logits.dtype, device=logits.device)
    for j in range(L):
        norm = torch.logsumexp(flat.masked_fill(taken, float("-inf")), dim=-1)  # [B, K]
        total = total + torch.where(drawn[..., j], picked[..., j] - norm, torch.zeros_like(norm))
        taken = taken | (F.one_hot(idx[..., j], flat.shape[-1]).bool() & drawn[..., j, None])
    return total / drawn.sum(-1).clamp_min(1)


def bernoulli_entropy(logits: torch.Tensor) -> torch.Tensor:
    """H(p) = -p log p - (1 - p) log(1 - p) per token, from logits (finite even at |l| -> inf)."""
    p = torch.sigmoid(logits)
    return -(p * F.logsigmoid(logits) + (1 - p) * F.logsigmoid(-logits))


def bernoulli_kl(logits: torch.Tensor, ref_logits: torch.Tensor) -> torch.Tensor:
    """Exact KL(Bern(p) || Bern(q)) per token: p log(p/q) + (1 - p) log((1 - p)/(1 - q))."""
    p = torch.sigmoid(logits)
    return p * (F.logsigmoid(logits) - F.logsigmoid(ref_logits)) + (1 - p) * (
        F.logsigmoid(-logits) - F.logsigmoid(-ref_logits)
    )


def policy_loss(
    logits: torch.Tensor,
    masks: torch.Tensor,
    adv: Advantages | torch.Tensor,
    cfg: RLSection,
    old_logp: torch.Tensor | None = None,
    ref_logits: torch.Tensor | None = None,
    valid: torch.Tensor | None = None,
    order: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Loss (scalar, differentiable) and stats (detached scalars: pg_loss, entropy, kl, clip_frac, ratio).

    adv: Advantages (its kept/dropped are used when set: split_action) or a plain [B, K] tensor.
    cfg: RLSection (entropy_coef, clip_eps, kl_coef). old_logp [B, K, T, N]: per-token log-probs of the masks under
    the policy that sampled them (detached); given -> PPO clipping. ref_logits [B, T, N]: the initial policy's.
    valid bool [B, T, N]: real tokens of padded videos; the means over (t, i) then run over real tokens only.
    order long [B, K, L]: the masks are ranked draws in this order (rl.sampling: ranked): each mask's log-prob is
    ranking_logprobs, weighted by its [B, K] advantage (no per-token split, no PPO ratio: config validation).
    """
    if (
        logits.dim() != 3
        or masks.dim() != 4
        or masks.shape[0] != logits.shape[0]
        or masks.shape[2:] != logits.shape[1:]
    ):
        raise ValueError(
            f"logits must be [B, T, N] and masks [B, K, T, N], got {tuple(logits.shape)} and {tuple(masks.shape)}"
        )
    masks = masks.bool()
    B, K, T, N = masks.shape

    # Per-token advantage A_tok [B, K, T, N].
    if isinstance(adv, Advantages) and adv.kept is not None and adv.dropped is not None:
        a_tok = torch.where(masks, adv.kept[:, :, None, None], adv.dropped[:, :, None, None])
    else:
        a = adv.per_mask if isinstance(adv, Advantages) else adv  # [B, K]
        a_tok = a[:, :, None, None].expand(B, K, T, N)
    a_tok = a_tok.to(logits.dtype)

    # Weights of the mean over (t, i): 1/(T N), or 1/(#real tokens) on real tokens only.
    if valid is None:
        w = torch.full((B, 1, T, N), 1.0 / (T * N), dtype=logits.dtype, device=logits.device)
    else:
        v = valid.to(logits.dtype).unsqueeze(1)  # [B, 1, T, N]
        w = v / v.sum(dim=(-1, -2), keepdim=True).clamp_min(1)

    def tok_mean(x: torch.Tensor) -> torch.Tensor:  # [B, K or 1, T, N] -> [B, K or 1]
        return (x * w).sum(dim=(-1, -2))

    clip_frac = torch.zeros((), device=logits.device)  # no ratio formed: REINFORCE, and ranked draws
    ratio_mean = torch.ones((), device=logits.device)
    if order is not None:
        if old_logp is not None or (isinstance(adv, Advantages) and adv.kept is not None):
            raise ValueError("ranked draws take one advantage per mask and no PPO ratio")
        a = (adv.per_mask if isinstance(adv, Advantages) else adv).to(logits.dtype)  # [B, K]
        ranked = logits if valid is None else logits.masked_fill(~valid, float("-inf"))  # padding: never drawn
        pg_loss = -(a * ranking_logprobs(ranked, order)).mean()
    else:
        logp = mask_logprobs(logits, masks)  # [B, K, T, N]
        if old_logp is None:
            surrogate = a_tok * logp  # REINFORCE with a group baseline
        else:
            ratio = torch.exp(logp - old_logp.detach())
            clipped = torch.clamp(ratio, 1 - cfg.clip_eps, 1 + cfg.clip_eps)
            surrogate = torch.min(ratio * a_tok, clipped * a_tok)
            # Tokens where the clipped branch is the active one (its gradient is zero), as TRL counts them.
            is_clipped = ((ratio < 1 - cfg.clip_eps) & (a_tok < 0)) | ((ratio > 1 + cfg.clip_eps) & (a_tok > 0))
            clip_frac = tok_mean(is_clipped.to(logits.dtype)).mean().detach()
            ratio_mean = tok_mean(ratio).mean().detach()
        pg_loss = -tok_mean(surrogate).mean()  # mean over K and B
    loss = pg_loss

    entropy = tok_mean(bernoulli_entropy(logits).unsqueeze(1)).mean()  # [B, 1] -> scalar
    if cfg.entropy_coef > 0:
        loss = loss - cfg.entropy_coef * entropy

    kl = torch.zeros((), device=logits.device)
    if ref_logits is not None:
        kl = tok_mean(bernoulli_kl(logits, ref_logits.detach()).unsqueeze(1)).mean()
    if cfg.kl_coef > 0:
        if ref_logits is None:
            raise ValueError("kl_coef > 0 needs ref_logits (the initial policy's logits)")
        loss = loss + cfg.kl_coef * kl

    stats = {
        "pg_loss": pg_loss.detach(),
        "entropy": entropy.detach(),
        "kl": kl.detach(),
        "clip_frac": clip_frac,
        "ratio": ratio_mean,
    }
    return loss, stats
