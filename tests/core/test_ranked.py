"""Ranked draws (rl.sampling: ranked): Gumbel-top-k sampling, its Plackett-Luce log-probability, the loss that uses
it, the budget a group draws and the config rules around it. Small numbers, checked against brute force."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from scorerl.compress.select import num_keep, sample_ranked_masks
from scorerl.config import RLSection, load_config
from scorerl.errors import ConfigError
from scorerl.rl.loss import policy_loss, ranking_logprobs
from scorerl.rl.rollout import group_budget


def brute_sequence_prob(logits: list[float], seq: tuple[int, ...]) -> float:
    """Plackett-Luce probability of drawing `seq` in this order, by the definition."""
    left, p = list(range(len(logits))), 1.0
    for i in seq:
        p *= math.exp(logits[i]) / sum(math.exp(logits[j]) for j in left)
        left.remove(i)
    return p


def test_ranking_logprob_is_plackett_luce_and_sums_to_one():
    logits = [0.3, -1.0, 2.0, 0.0]  # one video, T = 2, N = 2
    L = torch.tensor(logits).view(1, 2, 2)
    for k in (1, 2, 3):
        seqs = list(itertools.permutations(range(4), k))
        order = torch.tensor(seqs).unsqueeze(0)  # [1, #seqs, k]
        got = ranking_logprobs(L, order)[0] * k  # mean per draw -> sum
        want = torch.tensor([math.log(brute_sequence_prob(logits, s)) for s in seqs])
        assert torch.allclose(got, want, atol=1e-5)
        assert got.exp().sum().item() == pytest.approx(1.0, abs=1e-5)  # a distribution over ordered draws


def test_padded_draws_are_ignored():
    L = torch.tensor([[[0.3, -1.0], [2.0, 0.0]]])
    short = ranking_logprobs(L, torch.tensor([[[2, 0]]]))
    padded = ranking_logprobs(L, torch.tensor([[[2, 0, -1]]]))
    assert torch.allclose(short, padded)
    assert short.item() == pytest.approx(math.log(brute_sequence_prob([0.3, -1.0, 2.0, 0.0], (2, 0))) / 2, abs=1e-6)


def test_gumbel_top_k_draws_follow_plackett_luce():
    """First draws ~ softmax(logits), ordered pairs ~ their Plackett-Luce probabilities (20,000 draws)."""
    logits = torch.tensor([[1.0, 0.0, -0.5, 0.5]])  # T = 1, N = 4
    g = torch.Generator().manual_seed(0)
    masks, order = sample_ranked_masks(logits, 20000, 2, generator=g)
    assert masks.shape == (20000, 1, 4) and order.shape == (20000, 2)
    assert (masks.flatten(1).sum(1) == 2).all()
    assert torch.equal(masks.flatten(1), torch.zeros(20000, 4, dtype=torch.bool).scatter_(1, order, True))
    first = torch.bincount(order[:, 0], minlength=4).float() / 20000
    assert torch.allclose(first, torch.softmax(logits[0], 0), atol=0.015)
    pair = ((order[:, 0] == 0) & (order[:, 1] == 3)).float().mean().item()
    assert pair == pytest.approx(brute_sequence_prob(logits[0].tolist(), (0, 3)), abs=0.015)


def test_ranked_draws_are_reproducible_and_skip_padding():
    logits = torch.tensor([[0.0, 1.0, float("-inf")], [0.5, float("-inf"), -0.2]])  # 2 padding tokens
    a = sample_ranked_masks(logits, 50, 4, generator=torch.Generator().manual_seed(3))
    b = sample_ranked_masks(logits, 50, 4, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not a[0][:, 0, 2].any() and not a[0][:, 1, 1].any()  # 4 real tokens, k = 4: padding never drawn
    with pytest.raises(ValueError, match="cannot draw"):
        sample_ranked_masks(logits, 1, 7)


def test_ranked_loss_raises_the_logits_of_a_rewarded_draw():
    logits = torch.zeros(1, 1, 4, requires_grad=True)
    order = torch.tensor([[[0, 1], [2, 3]]])  # two masks of k = 2
    masks = torch.zeros(1, 2, 1, 4, dtype=torch.bool)
    masks[0, 0, 0, :2] = True
    masks[0, 1, 0, 2:] = True
    loss, _ = policy_loss(logits, masks, torch.tensor([[1.0, -1.0]]), RLSection(sampling="ranked"), order=order)
    loss.backward()
    grad = logits.grad[0, 0]
    assert (grad[:2] < 0).all() and (grad[2:] > 0).all()  # gradient descent raises tokens 0, 1, lowers 2, 3
    # By hand at logits 0: log pi = log(1/4) + log(1/3) for either mask, so L = -(1/2)(1 - 1) * ... = 0
    assert loss.item() == pytest.approx(0.0, abs=1e-7)


def test_group_budget_draws_from_the_budgets():
    g = torch.Generator().manual_seed(0)
    ks = {group_budget([0.05, 0.1, 0.25], (8, 16), g) for _ in range(200)}
    assert ks == {num_keep(r, 8, 16) for r in (0.05, 0.1, 0.25)} == {7, 13, 32}
    same = [group_budget([0.05, 0.1, 0.25], (8, 16), torch.Generator().manual_seed(5)) for _ in range(3)]
    assert len(set(same)) == 1


@pytest.mark.parametrize(
    "override, key",
    [
        ("rl.estimator=split_action", "rl.estimator"),
        ("rl.ppo_epochs=2", "rl.ppo_epochs"),
        ("rl.entropy_coef=0.01", "rl.entropy_coef"),
        ("rl.kl_coef=0.1", "rl.kl_coef"),
        ("rl.budgets=[]", "rl.budgets"),
    ],
)
def test_ranked_sampling_refuses_per_token_switches(override, key):
    load_config(None, ["rl.sampling=ranked"])  # the defaults are fine
    load_config(None, [override])  # and each switch is fine with Bernoulli masks
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, ["rl.sampling=ranked", override])
