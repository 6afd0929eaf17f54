"""Turning keep logits into masks: Bernoulli sampling for training, deterministic top-k for inference.

Shapes: logits / scores [..., T, N] (leading dims optional), masks bool.
"""

from __future__ import annotations


import torch

from scorerl.budget import num_keep  # noqa: F401  (re-exported: the compressors' budget rule)


def _top_order(scores_flat: torch.Tensor) -> torch.Tensor:
    """Indices sorting [..., M] from highest score to lowest; equal scores keep index order (lower first)."""
    return torch.argsort(scores_flat, dim=-1, descending=True, stable=True)


def sample_masks(logits: torch.Tensor, K: int, generator: torch.Generator | None = None, min_keep: int = 1,
                 return_num_guarded: bool = False):
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


def topk_mask(scores: torch.Tensor, rho: float, scope: str = "global") -> torch.Tensor:
    """Deterministic inference mask: scores [..., T, N] -> bool [..., T, N] keeping the highest scores.

    global: k = ceil(rho * T * N) over the whole video, so eventful units get more tokens.
    per_unit: ceil(rho * N) in every temporal unit. Ties: lower flat index (earlier unit, then token) first.
    """
    T, N = scores.shape[-2], scores.shape[-1]
    if scope == "global":
        k = num_keep(rho, T, N)
        flat = scores.flatten(-2)  # [..., T*N]
    elif scope == "per_unit":
        k = num_keep(rho, N)
        flat = scores  # [..., T, N]: each unit on its own
    else:
        raise ValueError(f"scope must be global or per_unit, not {scope!r}")
    idx = _top_order(flat)[..., :k]
    mask = torch.zeros_like(flat, dtype=torch.bool).scatter_(-1, idx, True)
    return mask.view(scores.shape)


def mask_to_indices(mask: torch.Tensor) -> torch.Tensor:
    """Kept tokens of mask bool [T, N] as increasing flat indices t * N + i -> long [k] (the order they keep)."""
    if mask.dim() != 2:
        raise ValueError(f"mask must be [T, N], got shape {tuple(mask.shape)}")
    return torch.nonzero(mask.reshape(-1), as_tuple=False).squeeze(1)
