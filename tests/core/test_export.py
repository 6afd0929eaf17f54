"""export.py: a policy from a run or checkpoint as a self-describing folder, and load_policy from any of them.

Checkpoints here are written with the checkpoint module directly (no training), in the layout the trainer uses.
"""

from __future__ import annotations

import json

import pytest
import torch

from scorerl.compress.policy import TokenPolicy
from scorerl.config import Config
from scorerl.errors import CheckpointError
from scorerl.export import EXPORT_FILE, export_policy, load_policy, read_export_info, write_export
from scorerl.io import checkpoint as ckpt

D = 6


def fake_run(run_dir, steps=(2, 4)):
    """A run folder with trainer-style checkpoints; returns the policy of each step."""
    cfg = Config()
    cfg.policy.hidden = 8
    cfg.rl.group_size = 5
    policies = {}
    for step in steps:
        torch.manual_seed(step)
        policy = TokenPolicy(D, cfg.policy)
        state = {"step": step, "config": cfg.to_dict(), "feature_dim": D,
                 "env": {"arch": "qwen2_5_vl", "path": "/somewhere", "fingerprint": "abc"}}
        ckpt.save_checkpoint(run_dir, step, tensors={"policy": policy.state_dict()}, state=state)
        policies[step] = policy
    return policies


def same(a: TokenPolicy, b: TokenPolicy) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_export_from_run_uses_the_latest_checkpoint(tmp_path):
    policies = fake_run(tmp_path / "run")
    out = export_policy(tmp_path / "run", tmp_path / "out")
    assert sorted(f.name for f in out.iterdir()) == sorted(["policy.safetensors", "policy_config.json", EXPORT_FILE])
    info = json.loads((out / EXPORT_FILE).read_text())
    assert info["step"] == 4 and info["env"]["fingerprint"] == "abc" and info["config"]["rl"]["group_size"] == 5
    assert info["source"].endswith("step-000004")
    assert same(TokenPolicy.from_pretrained(out), policies[4])


def test_export_from_a_checkpoint_folder_and_overwrite(tmp_path):
    policies = fake_run(tmp_path / "run")
    out = tmp_path / "out"
    export_policy(tmp_path / "run" / "checkpoints" / "step-000002", out)
    assert read_export_info(out)["step"] == 2
    export_policy(tmp_path / "run", out)  # replaces the earlier export atomically
    assert read_export_info(out)["step"] == 4 and same(load_policy(out), policies[4])
    assert not any(p.name.startswith((".tmp-", ".trash-")) for p in tmp_path.iterdir())


def test_load_policy_accepts_export_run_and_checkpoint(tmp_path):
    policies = fake_run(tmp_path / "run")
    assert same(load_policy(tmp_path / "run"), policies[4])  # no policy/: latest checkpoint
    assert same(load_policy(tmp_path / "run" / "checkpoints" / "step-000002"), policies[2])
    write_export(policies[2], tmp_path / "run" / "policy", config=Config().to_dict(), step=2, env={})
    assert same(load_policy(tmp_path / "run"), policies[2])  # policy/ wins: the run's final policy
    assert not load_policy(tmp_path / "run").training


def test_errors_name_the_folder(tmp_path):
    with pytest.raises(CheckpointError, match="no such"):
        load_policy(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="empty"):
        load_policy(tmp_path / "empty")
    with pytest.raises(CheckpointError, match="neither a checkpoint"):
        export_policy(tmp_path / "empty", tmp_path / "out")
    # A checkpoint not written by the trainer (no config / feature_dim).
    ckpt.save_checkpoint(tmp_path / "other", 1, tensors={"policy": {"w": torch.zeros(1)}}, state={"step": 1})
    with pytest.raises(CheckpointError, match="not a checkpoint written by scorerl's trainer"):
        load_policy(tmp_path / "other")


def test_export_of_a_bare_run_policy_folder(tmp_path):
    """A run whose checkpoints were deleted but which holds its final policy/ still exports."""
    torch.manual_seed(0)
    policy = TokenPolicy(D)
    write_export(policy, tmp_path / "run" / "policy", config=Config().to_dict(), step=7, env={"arch": "x"})
    out = export_policy(tmp_path / "run", tmp_path / "out")
    assert read_export_info(out)["step"] == 7 and same(load_policy(out), policy)


def test_a_non_finite_policy_is_never_exported_nor_loaded(tmp_path):
    from safetensors.torch import save_file

    from scorerl.compress.policy import WEIGHTS_NAME

    policy = TokenPolicy(D)
    good = tmp_path / "good"
    policy.save_pretrained(good)
    with torch.no_grad():
        policy.mlp[0].weight[0, 0] = float("nan")
    with pytest.raises(CheckpointError, match=r"mlp.0.weight is not finite"):
        write_export(policy, tmp_path / "out", config={}, step=1, env={})
    assert not (tmp_path / "out").exists()
    # A NaN written by other means (an older version, a hand edit) is refused on load, so eval never scores it.
    save_file({k: v.contiguous() for k, v in policy.state_dict().items()}, str(good / WEIGHTS_NAME))
    with pytest.raises(CheckpointError, match=r"policy.safetensors: weight mlp.0.weight is not finite"):
        load_policy(good)
    run = tmp_path / "run"
    state = {"step": 3, "config": Config().to_dict(), "feature_dim": D, "env": {}}
    ckpt.save_checkpoint(run, 3, tensors={"policy": policy.state_dict()}, state=state)
    with pytest.raises(CheckpointError, match="not finite"):
        export_policy(run, tmp_path / "exported")
