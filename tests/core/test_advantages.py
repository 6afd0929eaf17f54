import pytest
import torch

from scorerl.config import RLSection
from scorerl.rl.advantages import ESTIMATORS, compute_advantages

CFG = RLSection(std_eps=0.0, std_floor=0.05)
R = torch.tensor([[1.0, 2.0, 3.0, 4.0]])  # mean 2.5, unbiased std sqrt(5/3) = 1.290994
Z_R = [-1.161895, -0.387298, 0.387298, 1.161895]  # (r - 2.5) / 1.290994
S_SMALL = torch.tensor([[0.0, 0.0, 0.0, 0.02]])  # mean 0.005, unbiased std 0.01 < floor 0.05


def close(a, b, atol=1e-5):
    return torch.allclose(a, torch.as_tensor(b, dtype=a.dtype), atol=atol)


def test_registry():
    assert set(ESTIMATORS) == {"grpo", "split", "split_action", "dr_grpo"}
    with pytest.raises(ValueError, match="unknown advantage estimator"):
        compute_advantages("ppo", R, R, R, CFG)
    with pytest.raises(ValueError):
        compute_advantages("grpo", R[:, :1], R[:, :1], R[:, :1], CFG)  # K = 1 has no baseline


def test_grpo_zscore():
    a = compute_advantages("grpo", R, R, R, CFG)
    assert close(a.per_mask, [Z_R])
    assert a.kept is None and a.frac_zero_std == 0.0
    a = compute_advantages("grpo", R, R, R, RLSection(std_eps=0.1))
    assert close(a.per_mask, [[x * 1.290994 / 1.390994 for x in Z_R]])  # eps added to the std


def test_dr_grpo_mean_centring_only():
    a = compute_advantages("dr_grpo", R, R, 10 * R, CFG)
    assert close(a.per_mask, [[-15.0, -5.0, 5.0, 15.0]])


def test_split_with_std_floor():
    # z(F) = Z_R; S has std 0.01 < floor: z(S) = (S - 0.005) / 0.05 = (-0.1, -0.1, -0.1, 0.3); lam = 2
    a = compute_advantages("split", R, S_SMALL, R, CFG, lam=2.0)
    assert close(a.per_mask, [[Z_R[0] - 0.2, Z_R[1] - 0.2, Z_R[2] - 0.2, Z_R[3] + 0.6]])
    # without the floor the near-constant S would weigh as much as F: (S - 0.005) / 0.01 = (-0.5, ..., 1.5)
    a = compute_advantages("split", R, S_SMALL, R, RLSection(std_eps=0.0, std_floor=0.0), lam=1.0)
    assert close(a.per_mask, [[Z_R[0] - 0.5, Z_R[1] - 0.5, Z_R[2] - 0.5, Z_R[3] + 1.5]])
    # a component whose std is above the floor uses its own std
    a = compute_advantages("split", R, R, R, CFG, lam=1.0)
    assert close(a.per_mask, [[2 * z for z in Z_R]])


def test_split_action_weights_kept_and_dropped():
    a = compute_advantages("split_action", R, S_SMALL, R, CFG, lam=2.0)
    assert close(a.kept, [Z_R])
    assert close(a.dropped, [[-0.2, -0.2, -0.2, 0.6]])  # lam * z(S)
    assert close(a.per_mask, a.kept + a.dropped)


def test_equal_rewards_give_zero_and_are_counted():
    r = torch.tensor([[1.0, 2.0, 3.0], [0.7, 0.7, 0.7]])  # [B=2, K=3]; row 0: mean 2, std 1
    for name in ("grpo", "dr_grpo"):
        a = compute_advantages(name, r, r, r, RLSection(std_eps=1e-4))
        assert torch.equal(a.per_mask[1], torch.zeros(3))
        assert a.zero_std.tolist() == [False, True] and a.frac_zero_std == 0.5
    a = compute_advantages("grpo", r, r, r, CFG)
    assert close(a.per_mask[0], [-1.0, 0.0, 1.0])
    # split: zero only when fidelity AND sparsity are constant in the group
    f = torch.tensor([[0.3, 0.3, 0.3], [0.3, 0.3, 0.3]])
    s = torch.tensor([[0.1, 0.2, 0.3], [0.5, 0.5, 0.5]])
    a = compute_advantages("split", f, s, f + s, CFG, lam=1.0)
    assert a.zero_std.tolist() == [False, True] and a.frac_zero_std == 0.5
    assert close(a.per_mask, [[-1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])  # constant F contributes exactly 0
