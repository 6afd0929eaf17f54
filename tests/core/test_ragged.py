"""Ragged training batches: samples of different length T and grid N in one batch give what each gives alone.

Tolerances: masks, kept fractions and budgets are equal exactly (each sample draws from its own generator on its
own [T_b, N_b]); CE per mask is equal to 1e-5 (the batched scoring forward left-pads, which is exact in fp32 to
about 1e-6 on the tiny model); the policy gradient of the batch equals the mean of the one-sample gradients to 1e-6
relative (the loss is a mean over groups, each group's token means over its own real tokens only).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from scorerl.compress.batch import TokenBatch, pad_stack
from scorerl.compress.policy import TokenPolicy, batch_keep_logits, keep_logits
from scorerl.config import load_config
from scorerl.rl.advantages import compute_advantages
from scorerl.rl.rewards import combine, kept_fraction
from scorerl.rl.rollout import RolloutItem, collect
from scorerl.rl.update import update_loss
from scorerl.types import Sample

pytestmark = pytest.mark.usefixtures("one_thread")

# (frames, height, width): three lengths, three aspect ratios -> (T, rows, cols) = (4,2,2), (8,2,3), (6,3,2)
CLIPS = [(4, 32, 32), (8, 32, 48), (6, 48, 32)]


@pytest.fixture(scope="module")
def setup():
    from scorerl.envs.build import build_tiny_env

    env = build_tiny_env("qwen2_5_vl", seed=0)
    rng = np.random.default_rng(0)
    items = []
    for j, (f, h, w) in enumerate(CLIPS):
        visual = env.encode(rng.integers(0, 255, (f, h, w, 3), dtype=np.uint8))
        sample = Sample(
            id=f"s{j}",
            media=f"s{j}.mp4",
            kind="video",
            question="Which way?",
            options=["left", "right", "up", "down"],
            answer="ABCD"[j],
            answer_index=j,
        )
        items.append(RolloutItem(sample, visual, position=j, key=f"2:s{j}"))
    assert len({tuple(it.visual.features.shape[:2]) for it in items}) == 3  # truly ragged
    cfg = load_config(
        None,
        ["rl.group_size=4", "policy.hidden=16", "run.seed=0", "policy.positions=true", "policy.surprise_scalar=true"],
    )
    torch.manual_seed(0)
    policy = TokenPolicy(items[0].visual.features.shape[-1], cfg.policy)
    return env, items, cfg, policy


def _judge(ro, cfg):
    rewards = combine(ro.ce - ro.ce_base[:, None], kept_fraction(ro.masks, ro.valid), cfg.reward)
    return rewards, compute_advantages(
        cfg.rl.estimator, rewards["fidelity"], rewards["sparsity"], rewards["reward"], cfg.rl, lam=cfg.reward.lam
    )


def _grads(policy, ro, adv, rl) -> list[torch.Tensor]:
    policy.zero_grad()
    loss, _ = update_loss(policy, ro, adv, rl)
    loss.backward()
    return [p.grad.clone() for p in policy.parameters()]


def test_batch_logits_are_each_samples_own_and_bit_exact_for_one_shape(setup):
    env, items, cfg, policy = setup
    batch = TokenBatch.of(it.visual for it in items)
    logits = batch_keep_logits(policy, batch)  # [3, 8, 6]
    assert logits.shape == (3, 8, 6) and batch.valid.sum().item() == sum(batch.token_counts())
    for b, it in enumerate(items):
        T, N = it.visual.features.shape[:2]
        alone = keep_logits(policy, it.visual.features, it.visual.grid)
        assert torch.allclose(logits[b, :T, :N], alone, atol=1e-6)
    assert (logits[~batch.valid] == 0).all()
    same = TokenBatch.of([items[0].visual, items[0].visual])
    stacked = torch.stack([items[0].visual.features] * 2)
    assert torch.equal(batch_keep_logits(policy, same), keep_logits(policy, stacked, items[0].visual.grid))


@pytest.mark.parametrize("sampling", ["bernoulli", "ranked"])
def test_a_ragged_batch_gives_the_rewards_and_gradient_of_its_samples_one_at_a_time(setup, sampling):
    env, items, cfg, policy = setup
    cfg = copy.deepcopy(cfg)
    if sampling == "ranked":
        cfg.rl.sampling, cfg.rl.budgets = "ranked", [0.1, 0.25]
    whole = collect(policy, env, items, cfg, step=5, ce_base_cache={})
    alone = [collect(policy, env, [it], cfg, step=5, ce_base_cache={}) for it in items]
    assert whole.valid is not None and whole.masks.shape == (3, 4, 8, 6)
    assert not whole.masks[~whole.valid.unsqueeze(1).expand_as(whole.masks)].any()  # padding is never kept
    for b, (it, one) in enumerate(zip(items, alone)):
        T, N = it.visual.features.shape[:2]
        assert torch.equal(whole.masks[b, :, :T, :N], one.masks[0])
    torch.testing.assert_close(whole.ce, torch.cat([o.ce for o in alone]), atol=1e-5, rtol=0)
    torch.testing.assert_close(whole.ce_base, torch.cat([o.ce_base for o in alone]), atol=1e-5, rtol=0)
    rewards, adv = _judge(whole, cfg)
    parts = [_judge(o, cfg) for o in alone]
    kept = kept_fraction(whole.masks, whole.valid)
    assert torch.equal(kept, torch.cat([kept_fraction(o.masks) for o in alone]))  # each of its own tokens
    torch.testing.assert_close(rewards["reward"], torch.cat([r["reward"] for r, _ in parts]), atol=1e-5, rtol=0)
    if sampling == "ranked":  # each group's budget is ceil(rho T_b N_b) of its own tokens
        from scorerl.compress.select import num_keep

        counts = whole.masks.flatten(2).sum(-1)  # [B, K]
        for b, it in enumerate(items):
            T, N = it.visual.features.shape[:2]
            assert counts[b, 0].item() in {num_keep(r, T, N) for r in (0.1, 0.25)} and (counts[b] == counts[b, 0]).all()

    # Gradient: the batch's is the mean of the samples' (same advantages fed to both, so only the loss is compared).
    grads = _grads(policy, whole, adv.per_mask, cfg.rl)
    singles = [_grads(policy, one, adv.per_mask[b : b + 1], cfg.rl) for b, one in enumerate(alone)]
    for j, g in enumerate(grads):
        mean = torch.stack([s[j] for s in singles]).mean(0)
        torch.testing.assert_close(g, mean, rtol=1e-6, atol=1e-8)
    assert any(g.abs().max() > 0 for g in grads)


def test_pad_stack_pads_at_the_end_of_each_axis():
    parts = [torch.ones(2, 3), torch.full((1, 2), 2.0)]
    out = pad_stack(parts, (2, 3), value=-1)
    assert out.tolist() == [[[1, 1, 1], [1, 1, 1]], [[2, 2, -1], [-1, -1, -1]]]
    masks = pad_stack([torch.ones(4, 1, 2, dtype=torch.bool)], (3, 3), value=False)
    assert masks.shape == (1, 4, 3, 3) and masks.sum() == 8


# ------------------------------------------------------------------------------ the trainer on ragged data

# (frames at 4 fps, height, width): at data.sample_fps=2 they give 3, 4, 5 and 2 frames at their own aspect
RAGGED_CLIPS = [(6, 32, 32), (8, 32, 64), (10, 64, 32), (4, 64, 64)]
RAGGED_IMAGES = [(32, 32), (32, 48), (48, 32)]


@pytest.fixture(scope="module")
def ragged_data(tmp_path_factory):
    import json

    from scorerl.data.video_io import write_mp4, write_png
    from scorerl.envs.build import build_tiny_env

    root = tmp_path_factory.mktemp("ragged")
    rng = np.random.default_rng(1)
    lines = {"train": [], "static": []}
    for j, (f, h, w) in enumerate(RAGGED_CLIPS):
        write_mp4(root / f"v{j}.mp4", rng.integers(0, 255, (f, h, w, 3), dtype=np.uint8), fps=4)
        lines["train"].append(
            {
                "id": f"v{j}",
                "video": f"v{j}.mp4",
                "question": "Which way?",
                "options": ["left", "right", "up", "down"],
                "answer": "ABCD"[j % 4],
            }
        )
    for j, (h, w) in enumerate(RAGGED_IMAGES):
        write_png(root / f"i{j}.png", rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        lines["static"].append(
            {
                "id": f"i{j}",
                "image": f"i{j}.png",
                "question": "Which colour?",
                "options": ["red", "green", "blue", "grey"],
                "answer": "ABCD"[j % 4],
            }
        )
    for name, records in lines.items():
        (root / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    build_tiny_env("qwen2_5_vl", seed=0).save_pretrained(root / "env")
    return root


def test_ragged_data_trains_alike_from_cache_store_and_online(ragged_data, tmp_path):
    """Native frames (data.frame_size=0) sampled by rate: every sample its own T and grid, in both stages; training
    at batch 2 from the per-sample cache, the store and online ends at the same policy, bit for bit."""
    import json

    from safetensors.torch import load_file

    from scorerl.envs.features import build_features
    from scorerl.rl.trainer import train

    common = [
        f"env.path={ragged_data / 'env'}",
        "env.device=cpu",
        "data.frame_size=0",
        "data.sample_fps=2",
        "data.min_frames=2",
        "data.num_frames=3",
        f"data.stage1_manifest={ragged_data / 'static.jsonl'}",
        f"data.stage2_manifest={ragged_data / 'train.jsonl'}",
        f"data.eval_manifest={ragged_data / 'train.jsonl'}",
        f"run.output_dir={tmp_path}",
        "rl.group_size=4",
        "policy.hidden=16",
        "policy.positions=true",
        "curriculum.stage1_steps=2",
        "train.max_steps=5",
        "train.batch_size=2",
        "train.lr=0.05",
        f"data.cache_dir={tmp_path / 'cache'}",
    ]
    store = tmp_path / "feature_store"  # not tmp_path/store: that is the run folder of run("store")
    build_features(load_config(None, common), out=store, shard_size=2, progress=False)

    def run(name, *extra):
        return train(load_config(None, [*common, f"run.name={name}", *extra]))

    runs = {
        "cache": run("cache"),
        "store": run("store", "data.features=store", f"data.store_dir={store}"),
        "online": run("online", "data.features=online"),
    }
    report = json.loads((runs["cache"] / "data_report.json").read_text())
    assert report["sampling"]["size"] == "native" and report["sampling"]["by"] == "rate"
    assert report["1"]["visual_tokens"]["min"] < report["1"]["visual_tokens"]["max"]  # images of three shapes
    assert report["2"]["visual_tokens"]["min"] < report["2"]["visual_tokens"]["max"]  # clips of four
    assert (
        json.loads((runs["store"] / "data_report.json").read_text())["2"]["visual_tokens"]
        == report["2"]["visual_tokens"]
    )
    policies = {k: load_file(str(v / "policy" / "policy.safetensors")) for k, v in runs.items()}
    for other in ("store", "online"):
        assert all(torch.equal(policies["cache"][k], policies[other][k]) for k in policies["cache"])
