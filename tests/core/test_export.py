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
        state = {
            "step": step,
            "config": cfg.to_dict(),
            "feature_dim": D,
            "env": {"arch": "qwen2_5_vl", "path": "/somewhere", "fingerprint": "abc"},
        }
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


def test_score_compressor_selects_what_the_run_policy_selects(tmp_path):
    from scorerl import ScoreCompressor
    from scorerl.compress.policy import keep_logits
    from scorerl.compress.select import topk_mask

    policies = fake_run(tmp_path / "run")
    out = export_policy(tmp_path / "run", tmp_path / "exported")
    v, grid = torch.randn(4, 6, D), (2, 3)
    want = topk_mask(keep_logits(policies[4], v, grid), 0.25, policies[4].config.topk_scope).flatten().nonzero()[:, 0]
    for source in (out, tmp_path / "run", tmp_path / "run" / "checkpoints" / "step-000004"):
        kept = ScoreCompressor.from_pretrained(source).select(v, 0.25, grid)
        assert torch.equal(kept, want), source
    assert kept.tolist() == sorted(kept.tolist()) and len(kept) == 6  # ceil(0.25 * 24), original order
    # Re-exporting an exported folder copies it, checked; the copy selects the same.
    again = export_policy(out, tmp_path / "again")
    assert torch.equal(ScoreCompressor.from_pretrained(again).select(v, 0.25, grid), want)


def test_score_compressor_card_and_baselines(tmp_path):
    from scorerl import ScoreCompressor
    from scorerl.compress.baselines import get_compressor

    fake_run(tmp_path / "run")
    compressor = ScoreCompressor.from_pretrained(tmp_path / "run")
    out = compressor.save_pretrained(tmp_path / "card", eval_report="| method | 0.1 |\n|---|---|\n| score | 91.2 |")
    card = (out / "README.md").read_text()
    assert "4 steps, K = 5 masks" in card and "| score | 91.2 |" in card and "ScoreCompressor.from_pretrained" in card
    assert ScoreCompressor.from_pretrained(out).info["step"] == 4
    v = torch.randn(16, 9, D)
    mask = get_compressor("vidcom2").select(v, 0.1, (3, 3))
    assert torch.equal(ScoreCompressor.baseline("vidcom2").select(v, 0.1, (3, 3)), mask.flatten().nonzero()[:, 0])
    with pytest.raises(ValueError, match="no per-token scores"):
        ScoreCompressor.baseline("uniform").keep_scores(v)


def test_score_compressor_refuses_by_name(tmp_path):
    from scorerl import ScoreCompressor
    from scorerl.compress.policy import WEIGHTS_NAME

    fake_run(tmp_path / "run")
    out = export_policy(tmp_path / "run", tmp_path / "exported")
    with pytest.raises(CheckpointError, match=r"policy_config.json\), these have D=7"):
        ScoreCompressor.from_pretrained(out).select(torch.randn(2, 4, 7), 0.5, (2, 2))
    (out / "pytorch_model.bin").write_bytes(b"\x80\x04pickled")
    with pytest.raises(CheckpointError, match=r"pytorch_model.bin: a pickle-format file"):
        ScoreCompressor.from_pretrained(out)
    (out / "pytorch_model.bin").unlink()
    weights = (out / WEIGHTS_NAME).read_bytes()
    (out / WEIGHTS_NAME).write_bytes(weights[:40])
    with pytest.raises(CheckpointError, match=WEIGHTS_NAME):
        ScoreCompressor.from_pretrained(out)
    (out / WEIGHTS_NAME).unlink()
    with pytest.raises(CheckpointError, match=f"{WEIGHTS_NAME}: missing"):
        ScoreCompressor.from_pretrained(out)
