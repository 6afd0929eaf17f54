import pytest
import torch

from scorerl.config import RewardSection
from scorerl.rl.rewards import combine, fidelity, kept_fraction, sparsity

# one group of three masks [B=1, K=3]
DCE = torch.tensor([[-0.5, 0.2, 1.0]])
KAPPA = torch.tensor([[0.1, 0.3, 0.05]])


def close(a, b):
    return torch.allclose(a, torch.tensor([b]), atol=1e-5)


def test_fidelity_and_clip():
    assert close(fidelity(DCE), [0.5, -0.2, -1.0])
    assert close(fidelity(DCE, clip=0.5), [0.5, -0.2, -0.5])  # dCE 1.0 clipped to 0.5


def test_sparsity_modes():
    assert close(sparsity(KAPPA, 0.1, "drop"), [0.9, 0.7, 0.95])
    assert close(sparsity(KAPPA, 0.1, "target"), [0.0, -0.2, -0.05])
    assert close(sparsity(KAPPA, 0.1, "over"), [0.0, -0.2, 0.0])  # under budget is not punished
    with pytest.raises(ValueError):
        sparsity(KAPPA, 0.1, "budget")


def test_combine_add():
    out = combine(DCE, KAPPA, RewardSection(rho=0.1, sparsity="target", combine="add", lam=2.0))
    # F = (0.5, -0.2, -1.0), S = (0, -0.2, -0.05): r = F + 2 S
    assert close(out["reward"], [0.5, -0.6, -1.1])
    assert close(out["fidelity"], [0.5, -0.2, -1.0])
    assert close(out["sparsity"], [0.0, -0.2, -0.05])


def test_combine_mul():
    # target: r = exp(-dCE) * (1 + S) = (e^0.5 * 1, e^-0.2 * 0.8, e^-1 * 0.95)
    out = combine(DCE, KAPPA, RewardSection(rho=0.1, sparsity="target", combine="mul", lam=1.0))
    assert close(out["reward"], [1.648721, 0.654985, 0.349485])
    # over: (1 + S) = (1, 0.8, 1)
    out = combine(DCE, KAPPA, RewardSection(rho=0.1, sparsity="over", combine="mul", lam=1.0))
    assert close(out["reward"], [1.648721, 0.654985, 0.367879])
    # drop: the paper's plain product exp(-dCE) * (1 - kappa) = (1.648721 * 0.9, 0.818731 * 0.7, 0.367879 * 0.95)
    out = combine(DCE, KAPPA, RewardSection(rho=0.1, sparsity="drop", combine="mul", lam=1.0))
    assert close(out["reward"], [1.483849, 0.573112, 0.349485])
    # lam is the exponent of the sparsity term: lam = 0 is pure fidelity exp(-dCE)
    out = combine(DCE, KAPPA, RewardSection(rho=0.1, sparsity="drop", combine="mul", lam=0.0))
    assert close(out["reward"], [1.648721, 0.818731, 0.367879])
    # lam = 2 squares the term: e^-0.2 * 0.8^2
    out = combine(DCE, KAPPA, RewardSection(rho=0.1, sparsity="target", combine="mul", lam=2.0))
    assert close(out["reward"], [1.648721, 0.523988, 0.332011])


def test_kept_fraction():
    masks = torch.tensor([[[[True, False], [False, False]], [[True, True], [True, False]]]])  # [1, 2, 2, 2]
    assert close(kept_fraction(masks), [0.25, 0.75])
    valid = torch.tensor([[[True, True], [True, False]]])  # last token is padding
    assert close(kept_fraction(masks, valid), [1 / 3, 1.0])
