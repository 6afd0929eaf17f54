"""The training recipe end to end on a tiny environment and a tiny data set: runs, resumes exactly, refuses a changed
config, survives a crash mid-checkpoint, and a 2-process run follows the 1-process trajectory.

Setting shared by every test: 8 video + 8 image samples of 4 frames at 32 px, K = 4 masks, batch 2, stage 1 for 2
steps, 4 steps in all, a checkpoint every 2 steps. The feature cache is shared, so each sample is encoded once.
"""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from scorerl.config import load_config
from scorerl.errors import CheckpointError
from scorerl.io import checkpoint as ckpt
from scorerl.rl.metrics import read_metrics
from scorerl.rl.trainer import METRIC_NAMES, train

REPO = Path(__file__).resolve().parents[2]
S = 4  # steps of a full test run
STAGE1 = 2  # stage-1 steps (the boundary)


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """A tiny data set (8 clips, 8 images) and a tiny saved environment, built once for this module."""
    from conftest import write_tiny_dataset

    from scorerl.envs.build import build_tiny_env

    root = tmp_path_factory.mktemp("trainer_assets")
    world = write_tiny_dataset(root / "world", videos=8, images=8, frames=6, size=32, seed=0)
    env = build_tiny_env("qwen2_5_vl", seed=0)
    env.save_pretrained(root / "env")
    return {"world": Path(world), "env": root / "env", "cache": root / "features", "root": root}


def make_cfg(assets, out: Path, *overrides: str):
    return load_config(
        None,
        [
            f"run.output_dir={out}",
            "run.name=run",
            "run.seed=0",
            f"env.path={assets['env']}",
            "env.arch=qwen2_5_vl",
            "env.device=cpu",
            f"data.stage1_manifest={assets['world'] / 'static_train.jsonl'}",
            f"data.stage2_manifest={assets['world'] / 'train.jsonl'}",
            "data.num_frames=4",
            "data.frame_size=32",
            f"data.cache_dir={assets['cache']}",
            "rl.group_size=4",
            "policy.hidden=16",
            "curriculum.stage1_steps=2",
            f"train.max_steps={S}",
            "train.batch_size=2",
            "train.lr=0.05",
            "train.checkpoint_every=2",
            "train.keep_last=5",
            *overrides,
        ],
    )


def params(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(Path(run_dir) / "policy" / "policy.safetensors"))


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


@pytest.fixture(scope="module")
def reference(assets, tmp_path_factory):
    """The uninterrupted S-step run every resume is compared with."""
    out = tmp_path_factory.mktemp("reference")
    return train(make_cfg(assets, out))


# ------------------------------------------------------------------------------------------------ a plain run


def test_run_logs_checkpoints_and_exports(reference):
    lines = read_metrics(reference)
    assert [r["step"] for r in lines] == list(range(1, S + 1))
    for r in lines:
        missing = set(METRIC_NAMES) - set(r)
        assert not missing, f"metrics.jsonl line lacks {missing}"
        assert all(math.isfinite(r[k]) for k in METRIC_NAMES)
    assert [r["stage"] for r in lines] == [1] * STAGE1 + [2] * (S - STAGE1)
    assert [p.name for p in ckpt.list_checkpoints(reference)] == ["step-000002", "step-000004"]
    assert (reference / "config.yaml").is_file()

    from scorerl.compress.policy import TokenPolicy
    from scorerl.export import load_policy, read_export_info

    info = read_export_info(reference / "policy")
    assert info["step"] == S and info["config"]["rl"]["group_size"] == 4
    assert info["env"]["arch"] == "qwen2_5_vl" and info["env"]["fingerprint"]
    p = TokenPolicy.from_pretrained(reference / "policy")
    # The policy has learned something (lr 0.05): it is not the initial one any more.
    first = load_policy(ckpt.list_checkpoints(reference)[0])
    assert max_diff(first.state_dict(), p.state_dict()) > 1e-4


def test_export_round_trip(reference, tmp_path):
    from scorerl.export import export_policy, load_policy, read_export_info

    out = export_policy(reference, tmp_path / "exported")  # the run's latest checkpoint
    assert {f.name for f in out.iterdir()} == {"policy.safetensors", "policy_config.json", "export.json"}
    assert read_export_info(out)["step"] == S
    want = params(reference)
    for source in (out, reference, reference / "checkpoints" / "step-000004"):
        assert max_diff(load_policy(source).state_dict(), want) == 0.0
    with pytest.raises(CheckpointError, match="neither a checkpoint"):
        export_policy(tmp_path, tmp_path / "x")


def test_already_finished_run_returns_without_loading_the_env(assets, reference, monkeypatch):
    import scorerl.envs

    monkeypatch.setattr(scorerl.envs, "load_env", lambda *a, **k: pytest.fail("env loaded for a finished run"))
    cfg = make_cfg(assets, reference.parent)
    assert train(cfg, resume="auto") == reference


# ------------------------------------------------------------------------------------------------ resume


@pytest.mark.parametrize("stop", [1, STAGE1, 3], ids=["in-stage1", "stage-boundary", "in-stage2"])
def test_resume_is_exact(assets, reference, tmp_path, stop):
    train(make_cfg(assets, tmp_path, f"train.max_steps={stop}"))
    run = train(make_cfg(assets, tmp_path), resume="auto")
    assert max_diff(params(run), params(reference)) <= 1e-6
    # The history is the uninterrupted one too: same steps, same losses.
    got, want = read_metrics(run), read_metrics(reference)
    assert [r["step"] for r in got] == [r["step"] for r in want]
    assert max(abs(a["loss"] - b["loss"]) for a, b in zip(got, want)) <= 1e-6


def test_resume_refuses_a_changed_config_unless_forced(assets, tmp_path):
    train(make_cfg(assets, tmp_path, "train.max_steps=2"))
    with pytest.raises(CheckpointError, match=r"rl\.group_size"):
        train(make_cfg(assets, tmp_path, "rl.group_size=3"), resume="auto")
    # What the trainer never reads (eval, bench, the world's sections) or what does not change its computation
    # (train.log_every) may differ: the check passes and the run reaches its first step.
    from scorerl.rl.resume import check_resume_config

    saved = json.loads((ckpt.latest_checkpoint(tmp_path / "run") / "state.json").read_text())["config"]
    moved = make_cfg(
        assets,
        tmp_path,
        "train.max_steps=2",
        "eval.batch_size=3",
        "bench.repeats=9",
        "train.log_every=5",
        "data.eval_manifest=other.jsonl",
    ).to_dict()
    moved["fit"] = {"steps": 1}  # a client's section, e.g. the world's, is not the trainer's business
    assert check_resume_config(saved, moved) == []
    run = train(make_cfg(assets, tmp_path, "rl.group_size=3"), resume="auto", force=True)
    assert read_metrics(run)[-1]["step"] == S


def test_fresh_start_over_an_existing_run_needs_force(assets, tmp_path):
    train(make_cfg(assets, tmp_path, "train.max_steps=2"))
    with pytest.raises(CheckpointError, match="--resume auto"):
        train(make_cfg(assets, tmp_path, "train.max_steps=2"))
    run = train(make_cfg(assets, tmp_path, "train.max_steps=2"), force=True)
    assert [p.name for p in ckpt.list_checkpoints(run)] == ["step-000002"]


def test_crash_during_checkpoint_write_resumes_from_the_previous_one(assets, reference, tmp_path, monkeypatch):
    real = ckpt._write_manifest

    def crash_at_step_4(tmp, step, world_size):
        if step == 4:
            raise KeyboardInterrupt("killed while writing checkpoint 4")
        real(tmp, step, world_size)

    monkeypatch.setattr(ckpt, "_write_manifest", crash_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        train(make_cfg(assets, tmp_path))
    run = tmp_path / "run"
    assert (run / "checkpoints" / ".tmp-step-000004").is_dir()  # the half-written one
    assert ckpt.latest_checkpoint(run).name == "step-000002"
    monkeypatch.setattr(ckpt, "_write_manifest", real)

    train(make_cfg(assets, tmp_path), resume="auto")
    assert not (run / "checkpoints" / ".tmp-step-000004").exists()
    assert max_diff(params(run), params(reference)) <= 1e-6


def test_a_corrupt_newest_checkpoint_falls_back_to_the_previous_one(assets, reference, tmp_path):
    train(make_cfg(assets, tmp_path, "train.checkpoint_every=1", "train.max_steps=3"))
    run = tmp_path / "run"
    newest = ckpt.latest_checkpoint(run)
    (newest / "policy.safetensors").write_bytes(b"garbage")  # disk damage after the save
    with pytest.raises(CheckpointError, match="corrupt.*--resume auto"):
        train(make_cfg(assets, tmp_path), resume=str(newest))
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable newer checkpoint.*resuming from step-000002"):
        train(make_cfg(assets, tmp_path), resume="auto")
    assert max_diff(params(run), params(reference)) <= 1e-6  # the same run, redone from step 2
    for step in ckpt.list_checkpoints(run):
        (step / "state.json").write_text("{}")
    with pytest.raises(CheckpointError, match="no checkpoint reads back intact.*--force"):
        train(make_cfg(assets, tmp_path), resume="auto")


def test_a_non_finite_loss_stops_the_run_and_exports_nothing(assets, tmp_path, monkeypatch):
    from scorerl.errors import DivergedError
    from scorerl.rl import trainer as trainer_module

    real, calls = trainer_module.combine, []

    def nan_from_step_2(dce, kappa, cfg):  # a reward turning NaN, as a diverging run would produce
        calls.append(1)
        r = real(dce, kappa, cfg)
        return {k: v * math.nan for k, v in r.items()} if len(calls) > 1 else r

    monkeypatch.setattr(trainer_module, "combine", nan_from_step_2)
    with pytest.raises(DivergedError, match=r"step 2: .*not finite.*last good checkpoint is .*step-000001"):
        train(make_cfg(assets, tmp_path, "train.checkpoint_every=1"))
    run = tmp_path / "run"
    assert not (run / "policy").exists()
    assert [p.name for p in ckpt.list_checkpoints(run)] == ["step-000001"]
    assert all(
        torch.isfinite(t).all()
        for t in ckpt.load_checkpoint(run / "checkpoints" / "step-000001").tensors["policy"].values()
    )


def test_unwritable_outputs_are_refused_before_any_work(assets, tmp_path, monkeypatch):
    from scorerl.errors import ScoreRLError
    from scorerl.rl import trainer as trainer_module

    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setattr(trainer_module, "_make_accelerator", lambda *a: pytest.fail("work started"))
    with pytest.raises(ScoreRLError, match=r"data.cache_dir: cannot write to .*a_file/cache"):
        train(make_cfg(assets, tmp_path, f"data.cache_dir={blocker / 'cache'}"))
    with pytest.raises(ScoreRLError, match=r"run.output_dir: cannot write to .*a_file"):
        train(make_cfg(assets, blocker))


def test_config_show_output_trains_unchanged(assets, tmp_path):
    from scorerl.cli import main

    cfg = make_cfg(assets, tmp_path, "train.max_steps=1")
    src = tmp_path / "in.yaml"
    src.write_text(cfg.to_yaml())
    shown = tmp_path / "shown.yaml"

    def show(path):
        return subprocess.run(
            [sys.executable, "-m", "scorerl", "config", "show", str(path)], capture_output=True, text=True, check=True
        ).stdout

    shown.write_text(show(src))
    assert show(shown) == shown.read_text()  # the shown YAML reads back to the very same config
    assert (
        f"output_dir: {tmp_path}" in shown.read_text() and "  # AdamW learning rate of the policy." in shown.read_text()
    )
    assert main(["train", str(shown), "train.max_steps=1"]) == 0
    assert read_metrics(tmp_path / "run")[-1]["step"] == 1 and (tmp_path / "run" / "policy").is_dir()


# ------------------------------------------------------------------------------------------------ batching


# Runs that batch the same work differently agree to float rounding: the frozen env's batched forward rounds
# differently for a batch of 2 than of 4, so CE, rewards and losses differ by ~1e-7 (checked to 1e-5). Adam turns a
# rounding-level difference in a near-zero gradient into up to a full lr-sized step (m / sqrt(v) ~ +-1), so the
# parameters are compared at 1e-3 (lr = 0.05 here); bit-exact runs (resume) are compared at 1e-6.
PARAM_TOL = 1e-3


def test_grad_accum_matches_the_larger_batch(assets, tmp_path):
    """2 micro-steps of 2 groups = 1 step of 4 groups: same samples, same masks, same averaged gradient."""
    big = train(make_cfg(assets, tmp_path / "big", "train.batch_size=4"))
    acc = train(make_cfg(assets, tmp_path / "acc", "train.batch_size=2", "train.grad_accum=2"))
    assert max_diff(params(big), params(acc)) <= PARAM_TOL
    for a, b in zip(read_metrics(big), read_metrics(acc)):
        assert abs(a["loss"] - b["loss"]) <= 1e-5 and abs(a["reward"] - b["reward"]) <= 1e-5


def test_two_processes_follow_the_single_process_trajectory(assets, tmp_path):
    """accelerate launch, 2 CPU processes x batch 2 vs 1 process x batch 4: same global batches and masks, so the
    losses agree to float rounding (different thread counts and batch shapes reorder sums: tolerance 1e-5)."""
    single = train(make_cfg(assets, tmp_path / "one", "train.batch_size=4"))

    cfg = make_cfg(assets, tmp_path / "two", "train.batch_size=2")
    cfg_file = tmp_path / "two.yaml"
    cfg_file.write_text(cfg.to_yaml())
    env = dict(os.environ, PYTHONPATH=str(REPO))
    # `--multi_gpu` is accelerate's torchrun launcher; without CUDA the trainer asks accelerate for CPU, which
    # then forms a gloo group (accelerate 1.15's `--cpu --num_processes 2` starts only one process without mpirun).
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(29500 + os.getpid() % 1000),
        "-m",
        "scorerl",
        "train",
        str(cfg_file),
    ]
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    two = tmp_path / "two" / "run"

    one_lines, two_lines = read_metrics(single), read_metrics(two)
    assert len(one_lines) == len(two_lines) == S
    for a, b in zip(one_lines, two_lines):
        for key in ("loss", "reward", "kept_fraction", "ce_base", "grad_norm"):
            assert abs(a[key] - b[key]) <= 1e-5, (a["step"], key, a[key], b[key])
    assert max_diff(params(single), params(two)) <= PARAM_TOL
    state = json.loads((two / "checkpoints" / "step-000004" / "state.json").read_text())
    assert state["world_size"] == 2
    assert (two / "checkpoints" / "step-000004" / "rng-rank1.json").is_file()


# ------------------------------------------------------------------------------------------------ rollout


@pytest.fixture(scope="module")
def rollout_setup(assets):
    from scorerl.compress.policy import TokenPolicy
    from scorerl.data.cache import FeatureCache
    from scorerl.data.frames import FrameSampling
    from scorerl.data.manifest import read_manifest
    from scorerl.envs import load_env
    from scorerl.rl.rollout import RolloutItem

    cfg = make_cfg(assets, assets["root"] / "unused")
    env = load_env(cfg.env)
    cache = FeatureCache(
        env, "rollout-test", FrameSampling(num_frames=4, size=32), cache_dir=assets["root"] / "rollout_features"
    )
    samples, _ = read_manifest(assets["world"] / "train.jsonl")
    items = [RolloutItem(s, cache.get(s), position=p, key=s.id) for p, s in enumerate(samples[:4])]
    torch.manual_seed(0)
    policy = TokenPolicy(items[0].visual.features.shape[-1], cfg.policy)
    return cfg, env, items, policy


def test_masks_depend_on_the_global_position_not_the_sharding(rollout_setup):
    from scorerl.rl.rollout import collect

    cfg, env, items, policy = rollout_setup
    whole = collect(policy, env, items, cfg, step=3, ce_base_cache={})
    halves = [collect(policy, env, part, cfg, step=3, ce_base_cache={}) for part in (items[:2], items[2:])]
    assert torch.equal(whole.masks, torch.cat([h.masks for h in halves]))
    assert whole.masks.shape == (4, cfg.rl.group_size, *items[0].visual.features.shape[:2])
    again = collect(policy, env, items, cfg, step=3, ce_base_cache={})
    assert torch.equal(whole.masks, again.masks) and torch.equal(whole.ce, again.ce)
    assert not torch.equal(whole.masks, collect(policy, env, items, cfg, step=4, ce_base_cache={}).masks)


def test_one_scoring_call_per_step_and_ce_base_once_per_sample(rollout_setup, monkeypatch):
    from scorerl.rl.advantages import compute_advantages
    from scorerl.rl.metrics import rollout_metrics
    from scorerl.rl.rewards import combine, kept_fraction
    from scorerl.rl.rollout import collect
    from scorerl.rl.update import update_loss

    cfg, env, items, policy = rollout_setup
    calls = []
    real = env.score
    monkeypatch.setattr(env, "score", lambda reqs: calls.append([r.keep is None for r in reqs]) or real(reqs))
    cache: dict[str, float] = {}
    ro = collect(policy, env, items, cfg, step=0, ce_base_cache=cache)
    # First sight of 4 samples: one call for their CE_base (all tokens), one for the 4 x K masked requests.
    assert calls == [[True] * 4, [False] * (4 * cfg.rl.group_size)]
    assert set(cache) == {it.key for it in items} and ro.new_ce_base == cache
    calls.clear()
    ro = collect(policy, env, items, cfg, step=1, ce_base_cache=cache)
    assert calls == [[False] * (4 * cfg.rl.group_size)] and ro.new_ce_base == {}
    assert not any(p.grad is not None for p in policy.parameters())  # collecting computes no gradient
    rewards = combine(ro.ce - ro.ce_base[:, None], kept_fraction(ro.masks), cfg.reward)
    adv = compute_advantages(
        cfg.rl.estimator, rewards["fidelity"], rewards["sparsity"], rewards["reward"], cfg.rl, lam=cfg.reward.lam
    )
    loss, stats = update_loss(policy, ro, adv, cfg.rl)
    assert set(rollout_metrics(ro, rewards, adv, stats)) >= {
        "reward",
        "reward_std",
        "frac_reward_zero_std",
        "fidelity",
        "sparsity",
        "kept_fraction",
        "ce_base",
        "dce",
        "loss",
        "entropy",
        "env_ms",
        "policy_ms",
    }
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in policy.parameters())
    policy.zero_grad()


def test_ranked_collect_draws_one_budget_per_group_and_sharding_does_not_matter(rollout_setup):
    """rl.sampling: ranked: every mask of a group keeps the group's k (a budget of rl.budgets), its order lists
    exactly its tokens, the sparsity term is constant in the group, and the draws follow the global position."""
    from scorerl.compress.select import num_keep
    from scorerl.rl.rewards import combine, kept_fraction
    from scorerl.rl.rollout import collect

    cfg, env, items, policy = rollout_setup
    cfg = copy.deepcopy(cfg)
    cfg.rl.sampling, cfg.rl.budgets = "ranked", [0.1, 0.5]
    T, N = items[0].visual.features.shape[:2]
    ro = collect(policy, env, items, cfg, step=2, ce_base_cache={})
    kept = ro.masks.flatten(2).sum(-1)  # [B, K]
    assert (kept == kept[:, :1]).all() and set(kept[:, 0].tolist()) <= {num_keep(r, T, N) for r in (0.1, 0.5)}
    for b in range(len(items)):
        for k in range(cfg.rl.group_size):
            drawn = ro.order[b, k][ro.order[b, k] >= 0]
            assert sorted(drawn.tolist()) == torch.nonzero(ro.masks[b, k].flatten()).squeeze(1).tolist()
    rewards = combine(ro.ce - ro.ce_base[:, None], kept_fraction(ro.masks), cfg.reward)
    assert (rewards["sparsity"] == rewards["sparsity"][:, :1]).all()
    halves = [collect(policy, env, part, cfg, step=2, ce_base_cache={}) for part in (items[:2], items[2:])]
    assert torch.equal(ro.masks, torch.cat([h.masks for h in halves]))


def test_ranked_sampling_trains_and_resumes_exactly(assets, reference, tmp_path):
    ranked = ("rl.sampling=ranked", "rl.budgets=[0.1,0.25]")
    whole = train(make_cfg(assets, tmp_path / "whole", *ranked))
    lines = read_metrics(whole)
    assert all(math.isfinite(r["loss"]) for r in lines) and len(lines) == S
    train(make_cfg(assets, tmp_path / "cut", *ranked, "train.max_steps=3"))
    resumed = train(make_cfg(assets, tmp_path / "cut", *ranked), resume="auto")
    assert max_diff(params(resumed), params(whole)) <= 1e-6
    assert max_diff(params(reference), params(whole)) > 1e-4  # Bernoulli masks: other draws, other updates


def test_removed_deepspeed_config_key_says_what_replaced_it(assets, tmp_path):
    from scorerl.errors import ConfigError

    with pytest.raises(ConfigError, match=r"command line: train.deepspeed_config: removed: .*env.placement=zero3"):
        make_cfg(assets, tmp_path, "train.deepspeed_config=ds.json")


# ------------------------------------------------------------------------------------- ZeRO-3 environment


def _zero3_overrides(tmp_path: Path) -> list[str]:
    """env.placement=zero3 with every tensor partitioned (the defaults keep tensors under 1e5 elements whole,
    which is every tensor of the tiny model)."""
    ds = tmp_path / "zero3.json"
    ds.write_text(json.dumps({"zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0}}))
    return ["env.placement=zero3", f"env.zero3_config={ds}"]


def _launch_two(cfg, tmp_path: Path, name: str, *args: str) -> subprocess.Popen:
    """`accelerate launch` of `scorerl train` on 2 CPU processes (gloo)."""
    cfg_file = tmp_path / f"{name}.yaml"
    cfg_file.write_text(cfg.to_yaml())
    env = dict(os.environ, PYTHONPATH=str(REPO))
    # the README's CPU launch: configs/accelerate/cpu_2proc.yaml (torchrun launcher; gloo without CUDA)
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(REPO / "configs" / "accelerate" / "cpu_2proc.yaml"),
        "--main_process_port",
        str(29500 + (os.getpid() + len(name)) % 1000),
        "-m",
        "scorerl",
        "train",
        str(cfg_file),
        *args,
    ]
    return subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen) -> None:
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-4000:]


def test_zero3_environment_follows_one_process_and_resumes_exactly_after_a_kill(assets, tmp_path):
    """The frozen environment partitioned across 2 CPU processes with DeepSpeed ZeRO-3: the same CE_base, rewards
    and losses as one process with the whole model (to float rounding, as the replicated 2-process run), and a run
    killed (SIGKILL) after its step-2 checkpoint resumes to the uninterrupted zero3 run's policy bit for bit."""
    pytest.importorskip("deepspeed")
    import signal
    import time

    steps = 6
    common = [f"train.max_steps={steps}", "train.checkpoint_every=1", "train.keep_last=10"]
    single = train(make_cfg(assets, tmp_path / "one", "train.batch_size=4", *common))
    zero3 = [*common, "train.batch_size=2", *_zero3_overrides(tmp_path)]
    uninterrupted = _launch_two(make_cfg(assets, tmp_path / "z3", *zero3), tmp_path, "z3")
    _finish(uninterrupted)
    z3 = tmp_path / "z3" / "run"
    for a, b in zip(read_metrics(single), read_metrics(z3), strict=True):
        for key in ("ce_base", "loss", "reward", "kept_fraction", "grad_norm"):
            assert abs(a[key] - b[key]) <= 1e-5, (a["step"], key, a[key], b[key])
    assert max_diff(params(single), params(z3)) <= PARAM_TOL

    # Killed: SIGSTOP the moment checkpoint 2 is complete (so it cannot finish first), then SIGKILL everything.
    cfg = make_cfg(assets, tmp_path / "killed", *zero3)
    victim = _launch_two(cfg, tmp_path, "killed")
    killed = tmp_path / "killed" / "run"
    deadline = time.monotonic() + 300
    while not [c for c in ckpt.list_checkpoints(killed) if c.name >= "step-000002"]:
        assert victim.poll() is None, victim.communicate()[0][-4000:]
        assert time.monotonic() < deadline, "no checkpoint 2 within 300 s"
        time.sleep(0.02)
    # torchrun starts each worker in a session of its own: stop and kill the launcher's whole process tree.
    import psutil  # a dependency of accelerate

    tree = [psutil.Process(victim.pid), *psutil.Process(victim.pid).children(recursive=True)]
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        for p in tree:
            try:
                p.send_signal(sig)
            except psutil.NoSuchProcess:
                pass
    victim.communicate()
    reached = max(int(c.name.split("-")[1]) for c in ckpt.list_checkpoints(killed))
    assert reached < steps and not (killed / "policy").exists(), "the run finished before it was killed"

    _finish(_launch_two(cfg, tmp_path, "killed", "--resume", "auto"))
    assert max_diff(params(killed), params(z3)) == 0.0
    got, want = read_metrics(killed), read_metrics(z3)
    assert [r["step"] for r in got] == list(range(1, steps + 1))
    assert [r["loss"] for r in got] == [r["loss"] for r in want]
