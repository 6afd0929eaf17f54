"""Ragged training batches: samples of different length T and grid N in one batch give what each gives alone.

Tolerances: masks, kept fractions and budgets are equal exactly (each sample draws from its own generator on its
own [T_b, N_b]); CE per mask is equal to 1e-5 (the batched scoring forward left-pads, which is exact in fp32 to
about 1e-6 on the tiny model); the policy gradient of the batch equals the mean of the one-sample gradients to 1e-6
relative (the loss is a mean over groups, each group's token means over its own real tokens only).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from scorerl.compress.batch import TokenBatch, pad_stack
from scorerl.compress.policy import TokenPolicy, batch_keep_logits, keep_logits
from scorerl.config import load_config
from scorerl.rl.advantages import compute_advantages
from scorerl.rl.rewards import combine, kept_fraction
from scorerl.rl.rollout import RolloutItem, collect
from scorerl.rl.update import update_loss
from scorerl.types import Sample

pytestmark = pytest.mark.usefixtures("one_thread")

# (frames, height, width): three lengths, three aspect ratios -> (T, rows, cols) = (4,2,2), (8,2,3), (6,3,2)
CLIPS = [(4, 32, 32), (8, 32, 48), (6, 48, 32)]


@pytest.fixture(scope="module")
def setup():
    from scorerl.envs.build import build_tiny_env

    env = build_tiny_env("qwen2_5_vl", seed=0)
    rng = np.random.default_rng(0)
    items = []
    for j, (f, h, w) in enumerate(CLIPS):
        visual = env.encode(rng.integers(0, 255, (f, h, w, 3), dtype=np.uint8))
        sample = Sample(id=f"s{j}", media=f"s{j}.mp4", kind="video", question="Which way?",
                        options=["left", "right", "up", "down"], answer="ABCD"[j], answer_index=j)
        items.append(RolloutItem(sample, visual, position=j, key=f"2:s{j}"))
    assert len({tuple(it.visual.features.shape[:2]) for it in items}) == 3  # truly ragged
    cfg = load_config(None, ["rl.group_size=4", "policy.hidden=16", "run.seed=0", "policy.positions=true",
                             "policy.surprise_scalar=true"])
    torch.manual_seed(0)
    policy = TokenPolicy(items[0].visual.features.shape[-1], cfg.policy)
    return env, items, cfg, policy


def _judge(ro, cfg):
    rewards = combine(ro.ce - ro.ce_base[:, None], kept_fraction(ro.masks, ro.valid), cfg.reward)
    return rewards, compute_advantages(cfg.rl.estimator, rewards["fidelity"], rewards["sparsity"], rewards["reward"],
                                       cfg.rl, lam=cfg.reward.lam)


def _grads(policy, ro, adv, rl) -> list[torch.Tensor]:
    policy.zero_grad()
    loss, _ = update_loss(policy, ro, adv, rl)
    loss.backward()
    return [p.grad.clone() for p in policy.parameters()]


def test_batch_logits_are_each_samples_own_and_bit_exact_for_one_shape(setup):
    env, items, cfg, policy = setup
    batch = TokenBatch.of(it.visual for it in items)
    logits = batch_keep_logits(policy, batch)  # [3, 8, 6]
    assert logits.shape == (3, 8, 6) and batch.valid.sum().item() == sum(batch.token_counts())
    for b, it in enumerate(items):
        T, N = it.visual.features.shape[:2]
        alone = keep_logits(policy, it.visual.features, it.visual.grid)
        assert torch.allclose(logits[b, :T, :N], alone, atol=1e-6)
    assert (logits[~batch.valid] == 0).all()
    same = TokenBatch.of([items[0].visual, items[0].visual])
    stacked = torch.stack([items[0].visual.features] * 2)
    assert torch.equal(batch_keep_logits(policy, same), keep_logits(policy, stacked, items[0].visual.grid))


@pytest.mark.parametrize("sampling", ["bernoulli", "ranked"])
def test_a_ragged_batch_gives_the_rewards_and_gradient_of_its_samples_one_at_a_time(setup, sampling):
    env, items, cfg, policy = setup
    cfg = copy.deepcopy(cfg)
    if sampling == "ranked":
        cfg.rl.sampling, cfg.rl.budgets = "ranked", [0.1, 0.25]
    whole = collect(policy, env, items, cfg, step=5, ce_base_cache={})
    alone = [collect(policy, env, [it], cfg, step=5, ce_base_cache={}) for it in items]
    assert whole.valid is not None and whole.masks.shape == (3, 4, 8, 6)
    assert not whole.masks[~whole.valid.unsqueeze(1).expand_as(whole.masks)].any()  # padding is never kept
    for b, (it, one) in enumerate(zip(items, alone)):
        T, N = it.visual.features.shape[:2]
        assert torch.equal(whole.masks[b, :, :T, :N], one.masks[0])
    torch.testing.assert_close(whole.ce, torch.cat([o.ce for o in alone]), atol=1e-5, rtol=0)
    torch.testing.assert_close(whole.ce_base, torch.cat([o.ce_base for o in alone]), atol=1e-5, rtol=0)
    rewards, adv = _judge(whole, cfg)
    parts = [_judge(o, cfg) for o in alone]
    kept = kept_fraction(whole.masks, whole.valid)
    assert torch.equal(kept, torch.cat([kept_fraction(o.masks) for o in alone]))  # each of its own tokens
    torch.testing.assert_close(rewards["reward"], torch.cat([r["reward"] for r, _ in parts]), atol=1e-5, rtol=0)
    if sampling == "ranked":  # each group's budget is ceil(rho T_b N_b) of its own tokens
        from scorerl.compress.select import num_keep

        counts = whole.masks.flatten(2).sum(-1)  # [B, K]
        for b, it in enumerate(items):
            T, N = it.visual.features.shape[:2]
            assert counts[b, 0].item() in {num_keep(r, T, N) for r in (0.1, 0.25)} and (counts[b] == counts[b, 0]).all()

    # Gradient: the batch's is the mean of the samples' (same advantages fed to both, so only the loss is compared).
    grads = _grads(policy, whole, adv.per_mask, cfg.rl)
    singles = [_grads(policy, one, adv.per_mask[b:b + 1], cfg.rl) for b, one in enumerate(alone)]
    for j, g in enumerate(grads):
        mean = torch.stack([s[j] for s in singles]).mean(0)
        torch.testing.assert_close(g, mean, rtol=1e-6, atol=1e-8)
    assert any(g.abs().max() > 0 for g in grads)


def test_pad_stack_pads_at_the_end_of_each_axis():
    parts = [torch.ones(2, 3), torch.full((1, 2), 2.0)]
    out = pad_stack(parts, (2, 3), value=-1)
    assert out.tolist() == [[[1, 1, 1], [1, 1, 1]], [[2, 2, -1], [-1, -1, -1]]]
    masks = pad_stack([torch.ones(4, 1, 2, dtype=torch.bool)], (3, 3), value=False)
    assert masks.shape == (1, 4, 3, 3) and masks.sum() == 8
