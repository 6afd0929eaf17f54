import math

import pytest
import torch

from scorerl.compress.policy import TokenPolicy
from scorerl.config import PolicySection, RLSection
from scorerl.rl.advantages import Advantages
from scorerl.rl.loss import mask_logprobs, policy_loss

# B=1, K=2, T=1, N=2. p = sigmoid(logits) = (0.5, 0.75). Mask 0 keeps token 0 only, mask 1 keeps both.
LOGITS = torch.tensor([[[0.0, math.log(3.0)]]])  # [1, 1, 2]
MASKS = torch.tensor([[[[True, False]], [[True, True]]]])  # [1, 2, 1, 2]
A = torch.tensor([[1.0, -1.0]])  # [1, 2]
LN2, LN3 = math.log(2.0), math.log(3.0)
# L = -(1/2) [ +1 * (ln .5 + ln .25) / 2  - 1 * (ln .5 + ln .75) / 2 ] = -(1/4) ln(.25 / .75) = ln(3) / 4
HAND_LOSS = LN3 / 4  # 0.274653
# Bernoulli entropies: H(.5) = ln 2, H(.75) = -(.75 ln .75 + .25 ln .25) = 0.562335
HAND_ENTROPY = (LN2 + 0.562335) / 2
# KL to p_ref = (.5, .5): 0 and .75 ln 1.5 + .25 ln .5 = 0.130812
HAND_KL = 0.130812 / 2


def test_loss_matches_hand_computation():
    loss, stats = policy_loss(LOGITS, MASKS, A, RLSection())
    assert loss.item() == pytest.approx(HAND_LOSS, abs=1e-6)
    assert stats["entropy"].item() == pytest.approx(HAND_ENTROPY, abs=1e-6)
    assert stats["clip_frac"].item() == 0.0 and stats["kl"].item() == 0.0


def test_mask_logprobs_by_hand():
    lp = mask_logprobs(LOGITS, MASKS)  # [1, 2, 1, 2]
    expected = torch.tensor([[[[math.log(0.5), math.log(0.25)]], [[math.log(0.5), math.log(0.75)]]]])
    assert torch.allclose(lp, expected, atol=1e-6)
    assert torch.isfinite(mask_logprobs(torch.tensor([[[200.0, -200.0]]]), MASKS)).all()  # logsigmoid: no -inf


def test_split_action_loss_by_hand():
    # kept tokens weighted (1, -1), dropped tokens (0.5, 0.5). Mask 0: kept token 0 (ln .5), dropped token 1 (ln .25);
    # mask 1 keeps both. L = -(1/2) [ (ln .5 + .5 ln .25) / 2 + (-ln .5 - ln .75) / 2 ] = -(1/4)(ln 2 - ln 3)
    adv = Advantages(
        per_mask=A + 0.5, zero_std=torch.tensor([False]), frac_zero_std=0.0, kept=A, dropped=torch.tensor([[0.5, 0.5]])
    )
    loss, _ = policy_loss(LOGITS, MASKS, adv, RLSection())
    assert loss.item() == pytest.approx(-(LN2 - LN3) / 4, abs=1e-6)  # 0.101366
    # with equal kept and dropped weights it is the ordinary loss
    same = Advantages(per_mask=A, zero_std=torch.tensor([False]), frac_zero_std=0.0, kept=A, dropped=A)
    assert policy_loss(LOGITS, MASKS, same, RLSection())[0].item() == pytest.approx(HAND_LOSS, abs=1e-6)


def test_positive_advantage_mask_becomes_more_likely():
    torch.manual_seed(0)
    h = torch.randn(1, 3, 4, 4)  # [B, T, N, S]
    masks = torch.rand(1, 2, 3, 4, generator=torch.Generator().manual_seed(0)) < 0.5  # [B, K, T, N]

    def step(adv):  # one SGD step from the same initial policy -> mask log-probs [K] before and after
        torch.manual_seed(1)
        policy = TokenPolicy(2, PolicySection(hidden=8, norm="none"))

        def logp():
            return mask_logprobs(policy(h), masks).sum(dim=(-1, -2))[0].detach()

        before = logp()
        loss, _ = policy_loss(policy(h), masks, torch.tensor([adv]), RLSection())
        loss.backward()
        torch.optim.SGD(policy.parameters(), lr=0.1).step()
        return before, logp()

    before, after = step([1.0, 0.0])
    assert after[0] > before[0]  # the mask with a positive advantage became more likely
    before, after = step([0.0, -1.0])
    assert after[1] < before[1]  # the one with a negative advantage less likely
    before, after = step([1.0, -1.0])
    assert after[0] - after[1] > before[0] - before[1]  # and together they move apart


def test_entropy_switch():
    base = policy_loss(LOGITS, MASKS, A, RLSection())[0].item()
    off, stats = policy_loss(LOGITS, MASKS, A, RLSection(entropy_coef=0.0))
    on, _ = policy_loss(LOGITS, MASKS, A, RLSection(entropy_coef=0.1))
    assert off.item() == base
    assert on.item() == pytest.approx(HAND_LOSS - 0.1 * HAND_ENTROPY, abs=1e-6)


def test_kl_switch():
    ref = torch.zeros(1, 1, 2)
    off, stats = policy_loss(LOGITS, MASKS, A, RLSection(kl_coef=0.0), ref_logits=ref)
    assert off.item() == pytest.approx(HAND_LOSS, abs=1e-6)  # measured but not added
    assert stats["kl"].item() == pytest.approx(HAND_KL, abs=1e-6)
    on, _ = policy_loss(LOGITS, MASKS, A, RLSection(kl_coef=0.5), ref_logits=ref)
    assert on.item() == pytest.approx(HAND_LOSS + 0.5 * HAND_KL, abs=1e-6)
    with pytest.raises(ValueError, match="ref_logits"):
        policy_loss(LOGITS, MASKS, A, RLSection(kl_coef=0.5))


def test_ppo_clip_switch():
    cfg = RLSection(ppo_epochs=2, clip_eps=0.2)
    # at ratio 1 (first epoch) the surrogate has the REINFORCE gradient
    l1 = LOGITS.clone().requires_grad_(True)
    policy_loss(l1, MASKS, A, cfg)[0].backward()
    l2 = LOGITS.clone().requires_grad_(True)
    old = mask_logprobs(LOGITS, MASKS)
    loss, stats = policy_loss(l2, MASKS, A, cfg, old_logp=old)
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-6)  # -mean(ratio * A) = -(1 - 1) / 2
    assert torch.allclose(l1.grad, l2.grad, atol=1e-6) and stats["clip_frac"].item() == 0.0
    # ratio e > 1.2: mask 0 (A = +1) is clipped to 1.2, mask 1 (A = -1) keeps -e; loss = -(1.2 - e) / 2
    l3 = LOGITS.clone().requires_grad_(True)
    loss, stats = policy_loss(l3, MASKS, A, cfg, old_logp=old - 1.0)
    assert loss.item() == pytest.approx((math.e - 1.2) / 2, abs=1e-6)
    assert stats["clip_frac"].item() == pytest.approx(0.5)  # both tokens of mask 0 of the two masks
    # clipped tokens pass no gradient: only mask 1 drives it, i.e. gradient = e * (that of mask 1 alone)
    loss.backward()
    l4 = LOGITS.clone().requires_grad_(True)
    policy_loss(l4, MASKS, torch.tensor([[0.0, -1.0]]), RLSection())[0].backward()
    assert torch.allclose(l3.grad, math.e * l4.grad, atol=1e-6)


def test_valid_excludes_padding():
    padded_logits = torch.tensor([[[0.0, math.log(3.0), 5.0]]])  # a third, padding token
    padded_masks = torch.cat([MASKS, torch.ones(1, 2, 1, 1, dtype=torch.bool)], dim=-1)
    valid = torch.tensor([[[True, True, False]]])
    loss, stats = policy_loss(padded_logits, padded_masks, A, RLSection(), valid=valid)
    assert loss.item() == pytest.approx(HAND_LOSS, abs=1e-6)
    assert stats["entropy"].item() == pytest.approx(HAND_ENTROPY, abs=1e-6)
