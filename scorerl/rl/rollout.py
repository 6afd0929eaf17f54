"""Collect: one RL step's experience for B samples (groups), with no gradient.

    cached features, each sample its own [T_b, N_b, D] (a ragged batch: compress/batch.py)
    -> keep logits [B, T, N] (one packed policy forward; padded) -> K masks per sample [B, K, T, N], drawn on the
       sample's own [T_b, N_b] (Bernoulli, or ranked draws of a budget k_b = ceil(rho T_b N_b): rl.sampling), so a
       sample's masks are what it would get alone, and each sample's K masks stay its own group
    -> ONE env.score over all B * K requests (each at its own shape) -> CE [B, K];  CE_base [B] (all tokens;
       cached per sample, the batch's new samples scored in one call)

What is learnt from it comes after, in the trainer's own phases: rewards and advantages (rewards.py,
advantages.py), then every update epoch through the one loss path (update.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from scorerl.compress.batch import TokenBatch, pad_stack
from scorerl.compress.policy import batch_keep_logits
from scorerl.compress.select import num_keep, sample_masks, sample_ranked_masks
from scorerl.data.manifest import answer_target, format_prompt
from scorerl.envs.base import VideoEnv
from scorerl.rng import mask_generator
from scorerl.types import Sample, ScoreRequest, VisualTokens


@dataclass
class RolloutItem:
    """One sample of the batch with what the rollout needs to know about it."""

    sample: Sample
    visual: VisualTokens  # cached features [T, N, D] (CPU float32)
    position: int  # index of this sample in the GLOBAL batch of this optimizer step (all ranks, all micro-steps)
    key: str  # identity for the CE_base cache (stage + sample id: two manifests may reuse an id)


@dataclass
class Rollout:
    """What one micro-batch's collect phase gathered; everything here is a constant of the updates."""

    batch: TokenBatch  # the samples' visual tokens [T_b, N_b, D], re-scored by each update epoch
    masks: torch.Tensor  # bool [B, K, T, N] the sampled masks (padding: False)
    old_logits: torch.Tensor  # [B, T, N] keep logits of the policy that sampled them (detached; padding: 0)
    ce: torch.Tensor  # [B, K] answer cross-entropy with each mask's tokens
    ce_base: torch.Tensor  # [B] ... with all tokens
    masks_guarded: int  # masks the empty-mask guard topped up
    order: torch.Tensor | None = None  # long [B, K, L] rl.sampling: ranked: each mask's tokens in the order drawn,
    #                                    as flat indices t * N + i of the padded [T, N] (-1: no draw)
    valid: torch.Tensor | None = None  # bool [B, T, N] real tokens; None when every sample has one shape
    new_ce_base: dict[str, float] = field(default_factory=dict)  # CE_base entries this collect computed
    timings: dict[str, float] = field(default_factory=dict)  # env_ms, policy_ms


def base_ce(
    env: VideoEnv, items: list[RolloutItem], cache: dict[str, float], answer_format: str = "letter"
) -> tuple[torch.Tensor, dict]:
    """CE_base [B] of every item (all visual tokens) from `cache`; the missing ones are scored in one call, stored
    in `cache` and also returned as {key: CE_base} so the trainer can share them with the other processes.

    The cache is part of every checkpoint: a resumed run then scores exactly the batches the uninterrupted run
    scored (a batched forward is only reproducible to the bit when it sees the same batch).
    """
    fmt = answer_format
    missing: dict[str, RolloutItem] = {}
    for it in items:
        if it.key not in cache:
            missing.setdefault(it.key, it)  # a sample can come twice in a batch when an epoch wraps
    new = {}
    if missing or env.lockstep is not None:  # a partitioned env: every process takes part in every scoring call
        requests = [
            ScoreRequest(it.visual, format_prompt(it.sample, fmt), target=answer_target(it.sample, fmt), keep=None)
            for it in missing.values()
        ]
        ce = env.score(requests).detach().float().cpu()  # [M]
        new = {key: float(c) for key, c in zip(missing, ce.tolist())}
        cache.update(new)
    return torch.tensor([cache[it.key] for it in items], dtype=torch.float32), new


def collect(
    policy: torch.nn.Module, env: VideoEnv, items: list[RolloutItem], cfg, *, step: int, ce_base_cache: dict[str, float]
) -> Rollout:
    """Sample K masks per item from the current policy and score them with the frozen env (no gradient).

    policy: the (possibly accelerate-wrapped) TokenPolicy. cfg: the Config (rl.group_size, rl.min_keep, run.seed,
    data.answer_format). step: 0-based optimizer step (seeds the masks, with each item's global position).
    """
    if not items:
        raise ValueError("collect needs at least one item")
    K, fmt = cfg.rl.group_size, cfg.data.answer_format
    t0 = time.perf_counter()
    batch = TokenBatch.of(it.visual for it in items)
    shape = batch.padded_shape  # (T, N)
    with torch.no_grad():
        logits = batch_keep_logits(policy, batch)  # [B, T, N]
    own_masks: list[torch.Tensor] = []  # per sample [K, T_b, N_b]
    guarded, orders = 0, []
    for b, (it, (t, n)) in enumerate(zip(items, batch.shapes)):
        own = logits[b, :t, :n]  # [T_b, N_b] this sample's logits: its masks are drawn on its own shape
        g = mask_generator(cfg.run.seed, step, it.position, logits.device)
        if cfg.rl.sampling == "ranked":
            m, o = sample_ranked_masks(own, K, group_budget(cfg.rl.budgets, (t, n), g), g)
            orders.append(o // n * shape[1] + o % n)  # [K, k_b] flat indices of the padded [T, N]
        else:
            m, n_guarded = sample_masks(own, K, generator=g, min_keep=cfg.rl.min_keep, return_num_guarded=True)
            guarded += n_guarded
        own_masks.append(m)  # [K, T_b, N_b]
    masks = pad_stack(own_masks, shape, value=False)  # [B, K, T, N]
    B = masks.shape[0]
    order = None
    if orders:  # groups may draw different budgets: pad to the longest with -1 (no draw)
        L = max(o.shape[1] for o in orders)
        order = torch.stack([torch.nn.functional.pad(o, (0, L - o.shape[1]), value=-1) for o in orders])
    t_policy = time.perf_counter() - t0

    # One batched scoring call over all B * K masked requests (plus CE_base for new samples).
    t0 = time.perf_counter()
    with torch.inference_mode():
        ce_base, new_ce_base = base_ce(env, items, ce_base_cache, fmt)  # [B]
        masks_cpu = masks.cpu()
        requests = [
            ScoreRequest(
                it.visual,
                format_prompt(it.sample, fmt),
                target=answer_target(it.sample, fmt),
                keep=masks_cpu[b, k, :t, :n],
            )
            for b, (it, (t, n)) in enumerate(zip(items, batch.shapes))
            for k in range(K)
        ]
        ce = env.score(requests).detach().float().cpu().view(B, K)  # [B, K]
    t_env = time.perf_counter() - t0
    valid = None if batch.uniform else batch.valid.to(masks.device)
    return Rollout(
        batch,
        masks,
        logits.detach(),
        ce,
        ce_base,
        guarded,
        order,
        valid,
        new_ce_base,
        {"env_ms": 1000 * t_env, "policy_ms": 1000 * t_policy},
    )


def group_budget(budgets: list[float], shape: tuple[int, int], generator: torch.Generator) -> int:
    """k of one group under rl.sampling: ranked: a keep ratio drawn uniformly from `budgets` (from the group's own
    generator, before its masks: resume-exact), as the token count num_keep(rho, T, N) every method keeps."""
    pick = int(torch.randint(len(budgets), (1,), generator=generator, device=generator.device))
    return num_keep(budgets[pick], *shape)
