"""Turning keep logits into masks: sampling for training (Bernoulli, or ranked draws of a fixed budget),
deterministic top-k for inference.

Shapes: logits / scores [..., T, N] (leading dims optional), masks bool.
"""

from __future__ import annotations

from typing import Literal, overload

import torch

from scorerl.budget import num_keep as num_keep  # re-exported: the compressors' budget rule


def _top_order(scores_flat: torch.Tensor) -> torch.Tensor:
    """Indices sorting [..., M] from highest score to lowest; equal scores keep index order (lower first)."""
    return torch.argsort(scores_flat, dim=-1, descending=True, stable=True)


@overload
def sample_masks(
    logits: torch.Tensor,
    K: int,
    generator: torch.Generator | None = None,
    min_keep: int = 1,
    return_num_guarded: Literal[False] = False,
) -> torch.Tensor: ...
@overload
def sample_masks(
    logits: torch.Tensor,
    K: int,
    generator: torch.Generator | None = None,
    min_keep: int = 1,
    *,
    return_num_guarded: Literal[True],
) -> tuple[torch.Tensor, int]: ...
@overload
def sample_masks(
    logits: torch.Tensor,
    K: int,
    generator: torch.Generator | None = None,
    min_keep: int = 1,
    return_num_guarded: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, int]: ...
def sample_masks(
    logits: torch.Tensor,
    K: int,
    generator: torch.Generator | None = None,
    min_keep: int = 1,
    return_num_guarded: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, int]:
    """K independent Bernoulli masks per video: logits [..., T, N] -> masks bool [..., K, T, N].

    Token (t, i) of mask k is kept with probability sigmoid(logits[t, i]), independently.
    Empty-mask guard: a mask keeping fewer than min_keep tokens also gets the min_keep most probable tokens
    (ties: lower index first), because the frozen MLLM cannot score a video without visual tokens. The guarded
    mask is then not exactly a draw from pi, so its Bernoulli log-prob in the loss is slightly off; this is rare
    (probability prod(1 - p), negligible for thousands of tokens at p ~ rho) and the count can be returned to log.
    Padding tokens can be given logit -inf: they are never sampled and never added by the guard before real ones.
    generator (for reproducible rollouts) must live on logits.device.
    """
    if K < 1:
        raise ValueError(f"K must be >= 1, got {K}")
    T, N = logits.shape[-2], logits.shape[-1]
    p = torch.sigmoid(logits.detach().float()).unsqueeze(-3)  # [..., 1, T, N]
    shape = (*logits.shape[:-2], K, T, N)
    u = torch.rand(shape, generator=generator, device=logits.device)
    masks = u < p  # [..., K, T, N]
    min_keep = min(min_keep, T * N)
    if min_keep < 1:
        return (masks, 0) if return_num_guarded else masks
    short = masks.flatten(-2).sum(-1) < min_keep  # [..., K]
    if short.any():
        order = _top_order(logits.detach().flatten(-2))[..., :min_keep]  # [..., min_keep]
        top = torch.zeros(*logits.shape[:-2], T * N, dtype=torch.bool, device=logits.device)
        top.scatter_(-1, order, True)
        top = top.view(*logits.shape[:-2], 1, T, N)  # [..., 1, T, N]
        masks = torch.where(short[..., None, None], masks | top, masks)
    return (masks, int(short.sum())) if return_num_guarded else masks


def sample_ranked_masks(
    logits: torch.Tensor, K: int, k: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """K ranked draws of k tokens per video (rl.sampling: ranked): logits [T, N] -> (masks bool [K, T, N],
    order long [K, k]).

    Each draw is k tokens without replacement from softmax(logits over the video), one after another (the
    Plackett-Luce model), done at once by the Gumbel-top-k trick: the k largest of logits + Gumbel noise. order
    holds the flat indices t * N + i in the order drawn; its log-probability is loss.ranking_logprobs. Padding
    tokens with logit -inf are never drawn while real tokens are left. generator must live on logits.device.
    """
    if K < 1 or k < 1:
        raise ValueError(f"K and k must be >= 1, got K={K}, k={k}")
    T, N = logits.shape[-2], logits.shape[-1]
    if k > T * N:
        raise ValueError(f"cannot draw k={k} of {T * N} tokens")
    u = torch.rand((K, T * N), generator=generator, device=logits.device).clamp_min(1e-20)
    keys = logits.detach().float().reshape(1, T * N) - torch.log(-torch.log(u))  # + Gumbel(0, 1) noise
    order = _top_order(keys)[:, :k]  # [K, k]
    masks = torch.zeros(K, T * N, dtype=torch.bool, device=logits.device).scatter_(1, order, True)
    return masks.view(K, T, N), order


def topk_mask(scores: torch.Tensor, rho: float, scope: str = "global") -> torch.Tensor:
    """Deterministic inference mask: scores [..., T, N] -> bool [..., T, N] keeping the highest scores.

    Both scopes keep the same k = ceil(rho * T * N) tokens as every other method at ratio rho (a comparison at equal
    budgets):
    global: the top k over the whole video, so eventful units get more tokens.
    per_unit: floor(k / T) in every temporal unit, then the k mod T left over by score over the whole video (so a
    brief event in any unit is not starved, yet the total is k; below one token per unit it is the global top k).
    Ties: lower flat index (earlier unit, then token) first.
    """
    T, N = scores.shape[-2], scores.shape[-1]
    k = num_keep(rho, T, N)
    flat = scores.flatten(-2)  # [..., T*N]
    if scope == "global":
        return _top_k_of(flat, k).view(scores.shape)
    if scope != "per_unit":
        raise ValueError(f"scope must be global or per_unit, not {scope!r}")
    each = k // T
    mask = _top_k_of(scores, each).flatten(-2)  # [..., T*N]: each unit's top floor(k/T)
    rest = flat.masked_fill(mask, float("-inf"))  # the left-over tokens compete over the whole video
    return (mask | _top_k_of(rest, k - each * T)).view(scores.shape)


def _top_k_of(scores: torch.Tensor, k: int) -> torch.Tensor:
    """bool mask [..., M] of the k highest of scores [..., M] (ties: lower index first)."""
    idx = _top_order(scores)[..., :k]
    return torch.zeros_like(scores, dtype=torch.bool).scatter_(-1, idx, True)


def mask_to_indices(mask: torch.Tensor) -> torch.Tensor:
    """Kept tokens of mask bool [T, N] as increasing flat indices t * N + i -> long [k] (the order they keep)."""
    if mask.dim() != 2:
        raise ValueError(f"mask must be [T, N], got shape {tuple(mask.shape)}")
    return torch.nonzero(mask.reshape(-1), as_tuple=False).squeeze(1)
