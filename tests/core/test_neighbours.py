"""policy.mixer: conv, the policy that sees its neighbours (docs/method.md, "A policy that sees its neighbours").

The paper's per-token MLP stays the default, bit for bit (its weights, their names, its saved folder and a
library's identity of it); a fresh conv policy computes exactly what the MLP of the same seed computes; once its
convolution is non-zero a token's logit depends on its (t, row, col) neighbours and on nothing farther; a sample's
logits in a ragged batch equal its logits alone (to 1e-6; bit for bit for a batch of one shape), from ONE call of
the (DDP-style) wrapper per batch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest
import torch
import yaml

from scorerl.compress.batch import TokenBatch
from scorerl.compress.policy import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    TokenPolicy,
    batch_keep_logits,
    keep_logits,
    parameter_shapes,
    policy_fields,
)
from scorerl.config import PolicySection, load_config
from scorerl.errors import CheckpointError, ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")

D = 6
CONV = PolicySection(hidden=8, mixer="conv")
CONFIGS = Path(__file__).resolve().parents[2] / "scorerl" / "configs" / "world"


def conv_policy(seed: int = 0, config: PolicySection = CONV) -> TokenPolicy:
    """A conv policy whose convolution is no longer zero (as after training)."""
    torch.manual_seed(seed)
    policy = TokenPolicy(D, config)
    assert policy.conv is not None
    with torch.no_grad():
        policy.conv.weight.normal_(0, 0.2)
        policy.conv.bias.normal_(0, 0.2)
        policy.mlp[-1].weight.normal_(0, 0.5)  # the last layer starts tiny; make the logits react visibly
    return policy


class Counting(torch.nn.Module):
    """How DDP holds the policy: called through (with whatever arguments), unwrapped for its config."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.module, self.calls = module, 0

    def forward(self, *args):
        self.calls += 1
        return self.module(*args)


def test_the_default_policy_is_unchanged(tmp_path):
    from scorerl.export import ScoreCompressor
    from scorerl.integrations.library import compressor_identity

    torch.manual_seed(0)
    policy = TokenPolicy(D)
    assert policy.config.mixer == "none" and policy.conv is None
    assert list(policy.state_dict()) == ["mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias"]
    assert set(parameter_shapes(D, policy.config)) == set(policy.state_dict())
    old_fields = {k: v for k, v in dataclasses.asdict(policy.config).items() if k not in ("mixer", "mixer_kernel")}
    # The folder's policy mapping holds exactly the fields it held before `mixer` existed ...
    policy.save_pretrained(tmp_path / "pol")
    assert json.loads((tmp_path / "pol" / CONFIG_NAME).read_text())["policy"] == old_fields
    # ... and a library identifies the policy as it did (config digest, then the weights by name).
    h = hashlib.sha256(json.dumps(old_fields, sort_keys=True, default=str).encode())
    for name, t in sorted(policy.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().float().cpu().numpy().tobytes())
    compressor = ScoreCompressor.from_pretrained(tmp_path / "pol")
    assert compressor_identity(compressor) == "weights-" + h.hexdigest()[:16]
    # The MLP is called as it always was: with the states alone (a wrapper of one argument still works).
    v = torch.randn(3, 4, D)

    class OneArgument(torch.nn.Module):
        def __init__(self, module):
            super().__init__()
            self.module = module

        def forward(self, h):
            return self.module(h)

    assert torch.equal(keep_logits(OneArgument(policy), v), keep_logits(policy, v))
    assert torch.equal(keep_logits(policy, v, (2, 2)), keep_logits(policy, v))


def test_a_folder_saved_before_the_mixer_existed_loads_as_the_mlp(tmp_path):
    torch.manual_seed(1)
    TokenPolicy(D, PolicySection(hidden=8)).save_pretrained(tmp_path / "pol")
    meta = json.loads((tmp_path / "pol" / CONFIG_NAME).read_text())
    assert "mixer" not in meta["policy"] and "mixer_kernel" not in meta["policy"]
    loaded = TokenPolicy.from_pretrained(tmp_path / "pol")
    assert loaded.config == PolicySection(hidden=8) and loaded.conv is None


def test_a_fresh_conv_policy_computes_what_the_mlp_of_the_same_seed_computes():
    torch.manual_seed(0)
    mlp = TokenPolicy(D, PolicySection(hidden=8))
    torch.manual_seed(0)
    conv = TokenPolicy(D, CONV)
    assert conv.conv is not None and not conv.conv.weight.any() and not conv.conv.bias.any()
    assert list(conv.state_dict()) == list(mlp.state_dict()) + ["conv.weight", "conv.bias"]
    for name, t in mlp.state_dict().items():
        assert torch.equal(conv.state_dict()[name], t), name
    v = torch.randn(2, 5, 6, D)  # [B, T, N, D] with N = 2 x 3
    assert torch.equal(keep_logits(conv, v, (2, 3)), keep_logits(mlp, v, (2, 3)))
    batch = TokenBatch((v[0], v[1, :3, :4]), ((2, 3), (2, 2)))
    assert torch.equal(batch_keep_logits(conv, batch), batch_keep_logits(mlp, batch))


def test_a_token_changes_its_neighbours_logits_and_nothing_farther():
    T, rows, cols = 6, 4, 5
    v = torch.randn(T, rows * cols, D)
    t0, r0, c0 = 2, 2, 1
    moved = v.clone()
    moved[t0, r0 * cols + c0] += 3 * torch.randn(D)
    i = torch.arange(rows * cols)
    t, r, c = torch.arange(T)[:, None].expand(T, -1), (i // cols).expand(T, -1), (i % cols).expand(T, -1)  # [T, N]
    # The token's own state changes at t0, and at t0 + 1 through the residual dv[t0 + 1] = v[t0 + 1] - v[t0].
    own = (c == c0) & (r == r0) & ((t == t0) | (t == t0 + 1))
    near = ((r - r0).abs() <= 1) & ((c - c0).abs() <= 1) & (t >= t0 - 1) & (t <= t0 + 2)  # 3 x 3 x 3 around those

    torch.manual_seed(0)
    mlp = TokenPolicy(D, PolicySection(hidden=8))
    changed = keep_logits(mlp, moved, (rows, cols)) != keep_logits(mlp, v, (rows, cols))
    assert torch.equal(changed, own)  # the paper's MLP: each token sees itself alone

    conv = conv_policy()
    changed = keep_logits(conv, moved, (rows, cols)) != keep_logits(conv, v, (rows, cols))
    assert torch.equal(changed, near)  # its neighbours too (every one of them), and nothing farther


def test_a_ragged_batch_gives_each_samples_own_logits_in_one_call():
    torch.manual_seed(3)
    layouts = [(4, 2, 3), (7, 3, 2), (5, 2, 2), (4, 2, 3)]  # (T, rows, cols): ragged, two of one shape
    samples = [torch.randn(T, r * c, D) for T, r, c in layouts]
    batch = TokenBatch(tuple(samples), tuple((r, c) for _, r, c in layouts))
    assert batch.layout == layouts
    policy = Counting(conv_policy())
    logits = batch_keep_logits(policy, batch)  # [4, 7, 6]
    assert policy.calls == 1  # one forward per backward: what DDP needs
    assert logits.shape == (4, 7, 6) and (logits[~batch.valid] == 0).all()
    for b, (v, (T, r, c)) in enumerate(zip(samples, layouts)):
        alone = keep_logits(policy, v, (r, c))
        assert torch.allclose(logits[b, :T, : r * c], alone, atol=1e-6), b
    same = TokenBatch((samples[0], samples[3]), ((2, 3), (2, 3)))
    stacked = torch.stack([samples[0], samples[3]])
    assert torch.equal(batch_keep_logits(policy, same), keep_logits(policy, stacked, (2, 3)))


def test_the_ragged_gradient_is_the_sum_of_the_samples_gradients():
    torch.manual_seed(4)
    layouts = [(3, 2, 3), (5, 3, 2)]
    samples = [torch.randn(T, r * c, D) for T, r, c in layouts]
    policy = conv_policy()
    weights = [torch.randn(T, r * c) for T, r, c in layouts]

    def grads(loss):
        policy.zero_grad()
        loss.backward()
        return [p.grad.clone() for p in policy.parameters()]

    batch = TokenBatch(tuple(samples), ((2, 3), (3, 2)))
    logits = batch_keep_logits(policy, batch)
    whole = grads(sum((logits[b, :T, : r * c] * w).sum() for b, ((T, r, c), w) in enumerate(zip(layouts, weights))))
    parts = [grads((keep_logits(policy, v, (r, c)) * w).sum()) for v, (T, r, c), w in zip(samples, layouts, weights)]
    for g, a, b in zip(whole, *parts):
        assert torch.allclose(g, a + b, atol=1e-5, rtol=1e-5)
    assert whole[-2].abs().sum() > 0  # the convolution learns (its weights get a gradient)


def test_keep_logits_with_leading_batch_dims():
    policy = conv_policy()
    v = torch.randn(2, 3, 4, 6, D)  # [2, 3, T, N, D]
    out = keep_logits(policy, v, (3, 2))
    assert out.shape == (2, 3, 4, 6)
    for a in range(2):
        for b in range(3):
            assert torch.allclose(out[a, b], keep_logits(policy, v[a, b], (3, 2)), atol=1e-6)


def test_save_load_round_trip_and_the_header_check(tmp_path):
    cfg = dataclasses.replace(CONV, mixer_kernel=5, positions=True)
    policy = conv_policy(config=cfg)
    policy.save_pretrained(tmp_path / "pol")
    meta = json.loads((tmp_path / "pol" / CONFIG_NAME).read_text())
    assert meta["policy"]["mixer"] == "conv" and meta["policy"]["mixer_kernel"] == 5
    assert policy_fields(cfg) == dataclasses.asdict(cfg)  # nothing left out when the variant is on
    loaded = TokenPolicy.from_pretrained(tmp_path / "pol")
    assert loaded.config == cfg
    assert tuple(loaded.conv.weight.shape) == (8, 1, 5, 5, 5) == parameter_shapes(D, cfg)["conv.weight"]
    for name, t in policy.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], t), name
    v = torch.randn(4, 6, D)
    assert torch.equal(keep_logits(loaded, v, (2, 3)), keep_logits(policy, v, (2, 3)))
    # The MLP's weights under a conv config (or the reverse) are refused from the header, naming the conv weights.
    TokenPolicy(D, PolicySection(hidden=8)).save_pretrained(tmp_path / "mlp")
    (tmp_path / "mlp" / CONFIG_NAME).write_text(
        json.dumps({**meta, "state_dim": 2 * D, "policy": {**meta["policy"], "mixer_kernel": 3, "positions": False}})
    )
    with pytest.raises(CheckpointError, match=rf"{WEIGHTS_NAME}.*missing \['conv.bias', 'conv.weight'\]"):
        TokenPolicy.from_pretrained(tmp_path / "mlp")


def test_flops_count_the_convolution():
    mlp, conv = TokenPolicy(4, PolicySection(hidden=8)), TokenPolicy(4, PolicySection(hidden=8, mixer="conv"))
    linear = 2 * (8 * 8 + 8 * 1)  # S = 2D = 8 -> 8 -> 1
    assert mlp.flops(10) == 10 * linear
    assert conv.flops(10) == 10 * (linear + 2 * 27 * 8)
    wide = TokenPolicy(4, PolicySection(hidden=8, layers=3, mixer="conv", mixer_kernel=5))
    assert wide.flops(1) == 2 * (8 * 8 + 8 * 8 + 8) + 2 * 125 * 8


def test_a_conv_policy_without_a_grid_is_refused():
    policy = conv_policy()
    v = torch.randn(3, 6, D)
    with pytest.raises(ValueError, match=r"policy.mixer conv .* grid=\(rows, cols\) .* N=6, got None"):
        keep_logits(policy, v)
    with pytest.raises(ValueError, match=r"N=6, got \(2, 2\)"):
        keep_logits(policy, v, (2, 2))
    with pytest.raises(ValueError, match="layout"):
        policy(torch.randn(6, 2 * D))
    with pytest.raises(ValueError, match="layout"):
        policy(torch.randn(6, 2 * D), [(1, 2, 2)])  # 4 tokens laid out, 6 given


def test_mixer_needs_two_layers_and_an_odd_kernel():
    with pytest.raises(ConfigError, match=r"policy\.mixer: .*policy\.layers >= 2, got 1"):
        load_config(None, ["policy.mixer=conv", "policy.layers=1"])
    with pytest.raises(ConfigError, match=r"policy\.mixer: .*policy\.layers >= 2"):
        TokenPolicy(D, PolicySection(mixer="conv", layers=1))
    with pytest.raises(ConfigError, match=r"policy\.mixer_kernel: must be odd"):
        load_config(None, ["policy.mixer=conv", "policy.mixer_kernel=4"])
    with pytest.raises(ConfigError, match=r"policy\.mixer: .*choices|policy\.mixer: .*'attention'"):
        load_config(None, ["policy.mixer=attention"])
    assert load_config(None, ["policy.layers=1"]).policy.mixer == "none"  # the MLP alone: any depth


def test_config_show_round_trips_the_mixer(tmp_path):
    from scorerl.config import describe

    cfg = load_config(None, ["policy.mixer=conv", "policy.mixer_kernel=5"])
    text = describe(cfg)
    assert "  mixer: conv" in text and "[choices: none | conv]" in text
    (tmp_path / "c.yaml").write_text(text)
    assert load_config(tmp_path / "c.yaml") == cfg


def test_the_neighbours_run_file_is_score_v4_but_for_the_mixer():
    base = yaml.safe_load((CONFIGS / "score_v4.yaml").read_text())
    nbr = yaml.safe_load((CONFIGS / "score_v4_neighbours.yaml").read_text())
    assert nbr["policy"].pop("mixer") == "conv" and nbr["policy"].pop("mixer_kernel") == 3
    assert nbr["run"].pop("name") == "score_v4_nbr"
    base["run"].pop("name")
    assert nbr == base


def test_the_trainer_trains_a_conv_policy(tmp_path):
    """Two steps of the real trainer (a tiny environment, four clips and four images): the convolution leaves zero
    and the exported policy is the conv variant."""
    from conftest import write_tiny_dataset

    from scorerl.envs.build import build_tiny_env
    from scorerl.rl.trainer import train

    world = write_tiny_dataset(tmp_path / "world", videos=4, images=4, frames=4, size=32, seed=0)
    build_tiny_env("qwen2_5_vl", seed=0).save_pretrained(tmp_path / "env")
    cfg = load_config(
        None,
        [
            f"run.output_dir={tmp_path / 'runs'}",
            "run.name=nbr",
            f"env.path={tmp_path / 'env'}",
            "env.device=cpu",
            f"data.stage1_manifest={world / 'static_train.jsonl'}",
            f"data.stage2_manifest={world / 'train.jsonl'}",
            "data.num_frames=4",
            "data.frame_size=32",
            f"data.cache_dir={tmp_path / 'features'}",
            "rl.group_size=2",
            "policy.hidden=8",
            "policy.mixer=conv",
            "curriculum.stage1_steps=1",
            "train.max_steps=2",
            "train.batch_size=2",
            "train.lr=0.05",
        ],
    )
    run = train(cfg)
    policy = TokenPolicy.from_pretrained(run / "policy")
    assert policy.config.mixer == "conv" and policy.conv is not None
    assert policy.conv.weight.abs().max() > 0


def test_the_cost_script_puts_the_conv_under_one_percent_of_a_7b_prefill():
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "scripts" / "policy_cost.py"
    spec = importlib.util.spec_from_file_location("policy_cost", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    none, conv = module.costs(visual=8192, text=30, hidden=128, layers=2, kernel=3)
    assert none["state_dim"] == conv["state_dim"] == 2 * 3584
    assert none["policy"] == 8192 * 2 * (7168 * 128 + 128)
    assert conv["policy"] == none["policy"] + 8192 * 2 * 27 * 128
    assert none["prefill"] == conv["prefill"] and conv["percent"] < 1
