import json

import pytest
import torch
import torch.nn as nn

from scorerl.compress.policy import CONFIG_NAME, WEIGHTS_NAME, TokenPolicy, keep_logits
from scorerl.config import PolicySection
from scorerl.errors import CheckpointError


def test_initial_keep_prob_is_rho_init():
    torch.manual_seed(0)
    cfg = PolicySection(hidden=32, layers=3, rho_init=0.1)
    policy = TokenPolicy.from_config(cfg, feature_dim=8)
    h = torch.randn(4, 10, 16)  # [T, N, S = 2D]
    p = policy.keep_prob(h)
    assert p.shape == (4, 10)
    assert (p - 0.1).abs().max() < 0.01


def test_layer_count_and_state_width():
    one = TokenPolicy(8, PolicySection(layers=1, surprise_scalar=True, positions=True))
    assert one.state_dim == 2 * 8 + 1 + 3
    assert sum(isinstance(m, nn.Linear) for m in one.mlp) == 1
    three = TokenPolicy(8, PolicySection(layers=3, hidden=5))
    assert [m.out_features for m in three.mlp if isinstance(m, nn.Linear)] == [5, 5, 1]
    assert sum(isinstance(m, nn.GELU) for m in three.mlp) == 2
    with pytest.raises(ValueError):
        three(torch.randn(3, 7))  # wrong state width


def test_keep_logits_chains_state_and_mlp():
    torch.manual_seed(0)
    cfg = PolicySection(hidden=16, positions=True)
    policy = TokenPolicy(4, cfg)
    v = torch.randn(3, 6, 4)
    out = keep_logits(policy, v, grid=(2, 3))
    assert out.shape == (3, 6)
    assert torch.allclose(keep_logits(policy, v.unsqueeze(0).repeat(2, 1, 1, 1), grid=(2, 3))[1], out)

    class Wrapper(torch.nn.Module):  # how DDP / DeepSpeed hold the policy: called through, unwrapped for config
        def __init__(self, module):
            super().__init__()
            self.module = module

        def forward(self, h):
            return self.module(h)

    assert torch.equal(keep_logits(Wrapper(policy), v, grid=(2, 3)), out)
    with pytest.raises(ValueError):
        keep_logits(policy, torch.randn(3, 6, 5), grid=(2, 3))


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    cfg = PolicySection(hidden=16, layers=2, norm="l2", surprise_scalar=True, rho_init=0.2)
    policy = TokenPolicy(4, cfg)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(torch.randn_like(p))  # trained-looking weights
    policy.save_pretrained(tmp_path / "pol")
    meta = json.loads((tmp_path / "pol" / CONFIG_NAME).read_text())
    assert meta["feature_dim"] == 4 and meta["format_version"] == 1 and "scorerl_version" in meta
    loaded = TokenPolicy.from_pretrained(tmp_path / "pol")
    assert loaded.config == cfg
    for (k, a), (_, b) in zip(policy.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    v = torch.randn(3, 5, 4)
    assert torch.equal(keep_logits(policy, v), keep_logits(loaded, v))


def test_load_errors_name_the_file(tmp_path):
    TokenPolicy(4, PolicySection(hidden=8)).save_pretrained(tmp_path / "pol")
    d = tmp_path / "pol"

    with pytest.raises(CheckpointError, match="not found"):
        TokenPolicy.from_pretrained(tmp_path / "nowhere")

    weights = (d / WEIGHTS_NAME).read_bytes()
    (d / WEIGHTS_NAME).write_bytes(weights[: len(weights) // 2])  # truncated
    with pytest.raises(CheckpointError, match=WEIGHTS_NAME):
        TokenPolicy.from_pretrained(d)
    (d / WEIGHTS_NAME).write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=WEIGHTS_NAME):
        TokenPolicy.from_pretrained(d)
    (d / WEIGHTS_NAME).unlink()
    with pytest.raises(CheckpointError, match=WEIGHTS_NAME):
        TokenPolicy.from_pretrained(d)
    (d / WEIGHTS_NAME).write_bytes(weights)

    good = (d / CONFIG_NAME).read_text()
    meta = json.loads(good)
    meta["feature_dim"] = 5  # the description no longer agrees with itself ...
    (d / CONFIG_NAME).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="state_dim"):
        TokenPolicy.from_pretrained(d)
    del meta["state_dim"]  # ... nor with the weights
    (d / CONFIG_NAME).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=f"{WEIGHTS_NAME}.*shape"):
        TokenPolicy.from_pretrained(d)
    meta["feature_dim"], meta["policy"]["norm"] = 4, "batch"
    (d / CONFIG_NAME).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="policy.norm"):
        TokenPolicy.from_pretrained(d)
    (d / CONFIG_NAME).write_text("{not json")
    with pytest.raises(CheckpointError, match=CONFIG_NAME):
        TokenPolicy.from_pretrained(d)
    (d / CONFIG_NAME).unlink()
    with pytest.raises(CheckpointError, match=CONFIG_NAME):
        TokenPolicy.from_pretrained(d)
    (d / CONFIG_NAME).write_text(good)
    assert TokenPolicy.from_pretrained(d).feature_dim == 4
