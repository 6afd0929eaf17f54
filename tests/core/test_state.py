import pytest
import torch

from scorerl.compress.state import residuals, state_dim, state_width, surprise_state
from scorerl.config import PolicySection, load_config
from scorerl.errors import ConfigError

# v [T=3, N=2, D=1]
V = torch.tensor([[[1.0], [2.0]], [[4.0], [3.0]], [[4.0], [7.0]]])


def test_residuals_first_unit_self():
    # dv[0] = v[0]; dv[1] = (4-1, 3-2); dv[2] = (4-4, 7-3)
    expected = torch.tensor([[[1.0], [2.0]], [[3.0], [1.0]], [[0.0], [4.0]]])
    assert torch.equal(residuals(V, "self"), expected)


def test_residuals_first_unit_zero():
    expected = torch.tensor([[[0.0], [0.0]], [[3.0], [1.0]], [[0.0], [4.0]]])
    assert torch.equal(residuals(V, "zero"), expected)


def test_residuals_batched_and_bad_mode():
    vb = torch.stack([V, 2 * V])  # [2, 3, 2, 1]
    assert torch.equal(residuals(vb)[1], 2 * residuals(V))
    with pytest.raises(ValueError):
        residuals(V, "previous")


def test_state_width_with_options():
    v = torch.randn(3, 6, 4)
    assert state_width(4) == 8
    assert surprise_state(v, norm="none").shape == (3, 6, 8)
    assert surprise_state(v, surprise_scalar=True).shape == (3, 6, 9)
    assert surprise_state(v, surprise_scalar=True, positions=True, grid=(2, 3)).shape == (3, 6, 12)
    assert state_dim(4, PolicySection(surprise_scalar=True, positions=True)) == 12
    with pytest.raises(ValueError):
        surprise_state(v, positions=True, grid=(2, 2))  # 2 * 2 != N = 6


def test_norm_none_is_raw_concat():
    h = surprise_state(V, norm="none")
    assert torch.equal(h[..., 0], V[..., 0])
    assert torch.equal(h[..., 1], residuals(V)[..., 0])


def test_layer_norm_makes_state_scale_free():
    torch.manual_seed(0)
    v = torch.randn(4, 5, 16) * 3 + 1
    h = surprise_state(v, norm="layer")
    # the v half of every token has mean 0 and (biased) variance 1 over D
    assert torch.allclose(h[..., :16].mean(-1), torch.zeros(4, 5), atol=1e-5)
    assert torch.allclose(h[..., :16].var(-1, unbiased=False), torch.ones(4, 5), atol=1e-3)
    # features 1000x larger (another MLLM's scale) give the same state with layer and l2 norms, not with none
    for norm in ("layer", "l2"):
        assert torch.allclose(surprise_state(1000 * v, norm=norm), surprise_state(v, norm=norm), atol=1e-4)
    assert not torch.allclose(surprise_state(1000 * v, norm="none"), surprise_state(v, norm="none"))


def test_shared_residual_norm_keeps_tiny_surprise_tiny():
    # a static pseudo-video of features at scale 100 with noise 1e-4 relative (well under bf16 rounding):
    # "no surprise" must stay small under the default `shared`
    torch.manual_seed(0)
    frame = 100 * torch.randn(1, 5, 16)
    v = frame + 1e-2 * torch.randn(4, 5, 16)
    dv_shared = surprise_state(v, norm="layer", norm_residual="shared")[1:, :, 16:]
    dv_own = surprise_state(v, norm="layer", norm_residual="own")[1:, :, 16:]
    assert dv_shared.abs().max() < 1e-3
    assert dv_own.abs().max() > 0.5  # own-scale layer norm blows the noise up to unit size
    # the first unit (dv[0] = v[0]) is fully surprising either way
    h = surprise_state(v, norm="layer")
    assert torch.allclose(h[0, :, 16:], h[0, :, :16], atol=1e-4)


def test_surprise_scalar_by_hand():
    # v [T=2, N=1, D=2]: v0 = (3, 4), v1 = (0, 4): dv1 = (-3, 0), |dv1| / |v1| = 3 / 4
    v = torch.tensor([[[3.0, 4.0]], [[0.0, 4.0]]])
    s = surprise_state(v, surprise_scalar=True)[..., -1]
    assert torch.allclose(s, torch.tensor([[1.0], [0.75]]))  # first unit with dv0 = v0: ratio 1
    s0 = surprise_state(v, first_unit="zero", surprise_scalar=True)[..., -1]
    assert torch.allclose(s0, torch.tensor([[0.0], [0.75]]))


def test_positions_by_hand():
    v = torch.randn(3, 6, 2)  # T=3, grid 2 rows x 3 cols
    pos = surprise_state(v, positions=True, grid=(2, 3))[..., -3:]
    # token 4 = row 1, col 1 -> (row, col) = (1/1, 1/2); unit 1 of 3 -> t = 0.5
    assert torch.allclose(pos[1, 4], torch.tensor([0.5, 1.0, 0.5]))
    assert torch.allclose(pos[0, 0], torch.tensor([0.0, 0.0, 0.0]))
    assert torch.allclose(pos[2, 5], torch.tensor([1.0, 1.0, 1.0]))


def test_batched_equals_per_video():
    torch.manual_seed(1)
    vb = torch.randn(2, 3, 4, 5)
    hb = surprise_state(vb, surprise_scalar=True, positions=True, grid=(2, 2))
    for b in range(2):
        assert torch.allclose(hb[b], surprise_state(vb[b], surprise_scalar=True, positions=True, grid=(2, 2)))


def test_norm_residual_is_a_checked_config_field():
    assert load_config(None, ["policy.norm_residual=own"]).policy.norm_residual == "own"
    with pytest.raises(ConfigError, match="policy.norm_residual"):
        load_config(None, ["policy.norm_residual=mean"])


def test_state_without_the_residual_is_v_alone():
    """policy.residual=false (the ablation of SCORE's surprise term): h = norm(v), width D, and a policy over it."""
    from scorerl.compress.policy import TokenPolicy
    from scorerl.compress.state import state_from_config
    from scorerl.config.schema import PolicySection

    v = torch.randn(3, 4, 8)
    with_dv, without = PolicySection(), PolicySection(residual=False)
    h = state_from_config(v, without)
    assert h.shape == (3, 4, 8) and torch.equal(h, state_from_config(v, with_dv)[..., :8])
    assert TokenPolicy(8, without).state_dim == 8 and TokenPolicy(8, with_dv).state_dim == 16
