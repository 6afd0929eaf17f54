"""One RL step's math for B samples (groups), kept out of the trainer so tests can pin it:

    cached features V [B, T, N, D] -> keep logits [B, T, N] -> K Bernoulli masks [B, K, T, N]
    -> ONE env.score over all B * K requests -> CE [B, K];  CE_base [B] (cached per sample: keep=None, scored
       once, in one call for the batch's new samples)
    -> dCE = CE - CE_base -> fidelity, sparsity, reward [B, K] -> advantages [B, K] -> loss (scalar)

The trainer calls `rollout` once per micro-step (its loss is the first, REINFORCE, update) and, only when
rl.ppo_epochs > 1, `ppo_loss` for each further update on the same masks and advantages.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from scorerl.compress.select import sample_masks
from scorerl.compress.state import state_from_config
from scorerl.data.manifest import Sample, answer_target, format_prompt
from scorerl.envs.base import ScoreRequest, VideoEnv, VisualTokens
from scorerl.errors import EnvError
from scorerl.rl.advantages import Advantages, compute_advantages
from scorerl.rl.loss import mask_logprobs, policy_loss
from scorerl.rl.rewards import combine, kept_fraction

_MASK_STREAM = 0x6D61736B  # "mask": second seed word, so mask draws never share a stream with other seeded RNGs


@dataclass
class RolloutItem:
    """One sample of the batch with what the rollout needs to know about it."""

    sample: Sample
    visual: VisualTokens  # cached features [T, N, D] (CPU float32)
    position: int  # index of this sample in the GLOBAL batch of this optimizer step (all ranks, all micro-steps)
    key: str  # identity for the CE_base cache (stage + sample id: two manifests may reuse an id)


@dataclass
class Rollout:
    loss: torch.Tensor  # scalar, differentiable: the REINFORCE update of this batch
    metrics: dict[str, float]  # local (this process, this micro-step) means; the trainer averages them
    masks: torch.Tensor  # bool [B, K, T, N]
    adv: Advantages  # per_mask [B, K]
    states: torch.Tensor  # [B, T, N, S] policy inputs, reused by the PPO epochs
    old_logits: torch.Tensor  # [B, T, N] detached logits of the policy that sampled the masks
    ref_logits: torch.Tensor | None = None  # [B, T, N] initial policy's logits (kl_coef > 0)
    new_ce_base: dict[str, float] = field(default_factory=dict)  # CE_base entries this rollout computed


def mask_generator(seed: int, step: int, position: int, device: torch.device | str = "cpu") -> torch.Generator:
    """The generator for the K masks of one sample, a pure function of (run seed, optimizer step, global position).

    Why not one generator carried through the run: its state would depend on how many draws each process made, so
    1 process x batch 4 and 2 processes x batch 2 would sample different masks for the same sample, and a resume
    would have to restore every process's generator exactly. Seeding from the sample's place in the *global* batch
    makes the masks independent of the sharding and of where a run was interrupted: nothing to save, nothing to
    get wrong on resume.
    """
    words = np.random.SeedSequence([seed, _MASK_STREAM, step, position]).generate_state(2, dtype=np.uint32)
    g = torch.Generator(device=device)
    g.manual_seed(int(words[0]) << 31 ^ int(words[1]))  # 63 bits: fits manual_seed's range
    return g


def _core(policy: torch.nn.Module) -> torch.nn.Module:
    """The TokenPolicy inside an accelerate/DDP/DeepSpeed wrapper (for its config; never for the forward)."""
    while hasattr(policy, "module"):
        policy = policy.module
    return policy


def policy_states(policy: torch.nn.Module, items: list[RolloutItem]) -> torch.Tensor:
    """Surprise states h [B, T, N, S] of the batch, with the state options the policy was built with."""
    core = _core(policy)
    shapes = {tuple(it.visual.features.shape) for it in items}
    if len(shapes) != 1:
        raise EnvError(f"a training batch needs one feature shape [T, N, D]; got {sorted(shapes)} "
                       "(every sample is encoded at data.num_frames x data.frame_size, so this means a mixed cache)")
    (T, N, D), = shapes
    if D != core.feature_dim:
        raise EnvError(f"features have width D={D}, the policy was built for D={core.feature_dim}")
    param = next(core.parameters())
    v = torch.stack([it.visual.features for it in items]).to(param.device)  # [B, T, N, D]
    h = state_from_config(v.float(), core.config, items[0].visual.grid)  # [B, T, N, S]
    return h.to(param.dtype)


def base_ce(env: VideoEnv, items: list[RolloutItem], cache: dict[str, float],
            answer_format: str = "letter") -> tuple[torch.Tensor, dict]:
    """CE_base [B] of every item (all visual tokens) from `cache`; the missing ones are scored in one call, stored
    in `cache` and also returned as {key: CE_base} so the trainer can share them with the other processes.

    The cache is part of every checkpoint: a resumed run then scores exactly the batches the uninterrupted run
    scored (a batched forward is only reproducible to the bit when it sees the same batch).
    """
    fmt = answer_format
    missing = {}
    for it in items:
        if it.key not in cache:
            missing.setdefault(it.key, it)  # a sample can come twice in a batch when an epoch wraps
    new = {}
    if missing:
        requests = [ScoreRequest(it.visual, format_prompt(it.sample, fmt), target=answer_target(it.sample, fmt), keep=None)
                    for it in missing.values()]
        ce = env.score(requests).detach().float().cpu()  # [M]
        new = {key: float(c) for key, c in zip(missing, ce.tolist())}
        cache.update(new)
    return torch.tensor([cache[it.key] for it in items], dtype=torch.float32), new


def rollout(policy: torch.nn.Module, env: VideoEnv, items: list[RolloutItem], cfg, *, step: int,
            ce_base_cache: dict[str, float], ref_policy: torch.nn.Module | None = None) -> Rollout:
    """Sample K masks per item, score them with the frozen env, and return the REINFORCE loss with metrics.

    policy: the (possibly accelerate-wrapped) TokenPolicy; it is called through the wrapper so DDP syncs gradients.
    cfg: the full Config (reward, rl, run.seed). step: 0-based optimizer step (seeds the masks).
    """
    if not items:
        raise ValueError("rollout needs at least one item")
    K = cfg.rl.group_size
    fmt = cfg.data.answer_format
    t0 = time.perf_counter()

    # Policy: states -> keep logits -> K masks per sample, each from its own position-seeded generator.
    h = policy_states(policy, items)  # [B, T, N, S]
    logits = policy(h)  # [B, T, N]
    masks, guarded = [], 0
    for b, it in enumerate(items):
        g = mask_generator(cfg.run.seed, step, it.position, logits.device)
        m, n = sample_masks(logits[b], K, generator=g, min_keep=cfg.rl.min_keep, return_num_guarded=True)
        masks.append(m)  # [K, T, N]
        guarded += n
    masks = torch.stack(masks)  # [B, K, T, N]
    B, _, T, N = masks.shape
    t_policy = time.perf_counter() - t0

    # Environment: one batched scoring call over all B * K masked requests (plus CE_base for new samples).
    t0 = time.perf_counter()
    with torch.inference_mode():
        ce_base, new_ce_base = base_ce(env, items, ce_base_cache, cfg.data.answer_format)  # [B]
        masks_cpu = masks.cpu()
        requests = [ScoreRequest(it.visual, format_prompt(it.sample, fmt),
                                target=answer_target(it.sample, fmt), keep=masks_cpu[b, k])
                    for b, it in enumerate(items) for k in range(K)]
        ce = env.score(requests).detach().float().cpu().view(B, K)  # [B, K]
    t_env = time.perf_counter() - t0

    # Rewards and advantages (constants of the loss), then the loss.
    t0 = time.perf_counter()
    dce = ce - ce_base[:, None]  # [B, K]
    kappa = kept_fraction(masks_cpu)  # [B, K]
    r = combine(dce, kappa, cfg.reward)  # reward, fidelity, sparsity: [B, K]
    adv = compute_advantages(cfg.rl.estimator, r["fidelity"], r["sparsity"], r["reward"], cfg.rl, lam=cfg.reward.lam)
    adv = _to(adv, logits.device)
    ref_logits = None
    if ref_policy is not None:
        with torch.no_grad():
            ref_logits = ref_policy(h)  # [B, T, N]
    loss, stats = policy_loss(logits, masks, adv, cfg.rl, ref_logits=ref_logits)
    t_policy += time.perf_counter() - t0

    metrics = {
        "reward": r["reward"].mean().item(),
        "reward_std": r["reward"].std(dim=1, unbiased=True).mean().item(),  # TRL: mean of per-group stds
        "frac_reward_zero_std": adv.frac_zero_std,
        "fidelity": r["fidelity"].mean().item(),
        "sparsity": r["sparsity"].mean().item(),
        "kept_fraction": kappa.mean().item(),
        "ce_base": ce_base.mean().item(),
        "ce": ce.mean().item(),
        "dce": dce.mean().item(),
        "loss": loss.item(),
        "pg_loss": stats["pg_loss"].item(),
        "entropy": stats["entropy"].item(),
        "kl": stats["kl"].item(),
        "keep_prob": torch.sigmoid(logits.detach()).mean().item(),
        "masks_guarded": guarded / (B * K),
        "env_ms": 1000 * t_env,
        "policy_ms": 1000 * t_policy,
    }
    return Rollout(loss, metrics, masks, adv, h.detach(), logits.detach(), ref_logits, new_ce_base)


def ppo_loss(policy: torch.nn.Module, ro: Rollout, cfg) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Loss of a further update (rl.ppo_epochs > 1) on a finished rollout: ratio-clipped against its old logits."""
    logits = policy(ro.states)  # [B, T, N]
    old_logp = mask_logprobs(ro.old_logits, ro.masks)  # [B, K, T, N]
    return policy_loss(logits, ro.masks, ro.adv, cfg.rl, old_logp=old_logp, ref_logits=ro.ref_logits)


def _to(adv: Advantages, device) -> Advantages:
    move = (lambda t: None if t is None else t.to(device))
    return Advantages(move(adv.per_mask), move(adv.zero_std), adv.frac_zero_std, move(adv.kept), move(adv.dropped))
