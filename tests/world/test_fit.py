"""`scorerl env fit`: a short fit on a tiny world saves a loadable environment, resumes exactly, and is a no-op when
already fitted; plus the pure pieces (augmentation, derived questions, deterministic draws, the loss)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from scorerl.config import EnvSection, config_from_dict
from scorerl.data.manifest import answer_target, format_prompt, read_manifest
from scorerl.envs import load_env
from scorerl.errors import CheckpointError, ConfigError
from scorerl.rng import fit_step_rng
from scorerl.world import fit as F
from scorerl.world import fit_data as FD
from scorerl.world import render, scenes
from scorerl.world import synthetic as syn
from scorerl.world.fit_params import PROJECTOR, VISION_ENCODER, param_groups
from scorerl.world.projector_warmup import warm_up_projector, warmup_targets

FRAMES, SIZE = 8, 32  # 32 px, patch 8, merge 2 -> 2 x 2 tokens per frame, 32 visual tokens


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return syn.build_world(
        tmp_path_factory.mktemp("world"),
        train=15,
        test=6,
        static_train=6,
        frames=FRAMES,
        size=SIZE,
        seed=0,
        progress=False,
    )


def tiny_cfg(world: Path, answer_format: str = "option", **fit):
    fit_section = {
        "steps": 4,
        "batch_size": 3,
        "lr": 3e-3,
        "warmup_steps": 1,
        "checkpoint_every": 2,
        "keep_last": 5,
        "threads": 1,
        "eval_batch_size": 4,
        "extra_questions": 1,
        "model": {
            "hidden_size": 32,
            "num_layers": 2,
            "num_heads": 2,
            "num_kv_heads": 1,
            "vision_depth": 1,
            "vision_hidden": 16,
            "vision_heads": 1,
            "patch_size": 8,
            "spatial_merge_size": 2,
            "temporal_patch_size": 1,
            "window_size": SIZE,
            "rope_theta": 10.0,
        },
        **fit,
    }
    return config_from_dict(
        {
            "env": {"arch": "qwen2_5_vl", "device": "cpu"},
            "data": {
                "stage1_manifest": str(world / "static_train.jsonl"),
                "stage2_manifest": str(world / "train.jsonl"),
                "eval_manifest": str(world / "test.jsonl"),
                "num_frames": FRAMES,
                "frame_size": SIZE,
                "answer_format": answer_format,
            },
            "fit": fit_section,
        }
    )


@pytest.fixture(scope="module")
def fitted(world, tmp_path_factory) -> Path:
    return F.fit_env(tiny_cfg(world), out=tmp_path_factory.mktemp("env") / "world_env")


# --------------------------------------------------------------------------------------------- end to end


def test_fit_saves_an_environment_that_load_env_reloads_and_scores(world, fitted):
    record = json.loads((fitted / F.FIT_FILE).read_text())
    assert record["steps"] == 4 and record["visual_tokens"] == [FRAMES, 4]
    assert set(record["test"]["families"]) <= set(scenes.VIDEO_FAMILIES) and record["test"]["n"] == 6
    assert record["wall_time_s"]["train"] > 0

    env = load_env(EnvSection(arch="qwen2_5_vl", path=str(fitted), device="cpu"))
    assert not env.grad and not any(p.requires_grad for p in env.model.parameters())
    test = FD.load_split(str(world / "test.jsonl"), FRAMES, SIZE, "test")
    again = F.evaluate(env, test, "option", batch_size=4)
    assert again == record["test"]  # the saved weights give exactly the accuracy recorded at fit time

    from scorerl.envs.base import ScoreRequest

    visual = env.encode(test.frames[0])
    sample = test.samples[0]
    request = ScoreRequest(visual, format_prompt(sample, "option"), target=answer_target(sample, "option"))
    ce = env.score([request])
    logp = env.choice_logprobs([request], sample.options)  # every world answer is one token of the fitted tokenizer
    assert torch.isfinite(ce).all() and torch.allclose(logp.exp().sum(1), torch.ones(1), atol=1e-5)


def test_letter_format_fits_too(world, tmp_path):
    out = F.fit_env(tiny_cfg(world, answer_format="letter", steps=2), out=tmp_path / "letter")
    record = json.loads((out / F.FIT_FILE).read_text())
    assert record["config"]["data"]["answer_format"] == "letter" and 0 <= record["test"]["accuracy"] <= 1


def test_fit_loss_is_the_answer_cross_entropy_env_score_computes(world, fitted):
    """One fit step's loss equals env.score's mean target CE recomputed by hand (no augmentation, no dropout)."""
    cfg = tiny_cfg(world, augment=False, extra_questions=0, full_prob=1.0)
    env = load_env(EnvSection(arch="qwen2_5_vl", path=str(fitted), device="cpu"))
    data = FD.load_split(str(world / "train.jsonl"), FRAMES, SIZE, "train")
    idx = np.array([0, 3])
    with torch.no_grad():
        result = F.fit_step_loss(env, data, idx, cfg, step=0)
    from scorerl.envs.base import ScoreRequest

    requests = [
        ScoreRequest(
            env.encode(data.frames[i]),
            format_prompt(data.samples[i], "option"),
            target=answer_target(data.samples[i], "option"),
        )
        for i in idx
    ]
    by_hand = torch.stack([-lp.sum() for lp in env.token_logprobs(requests)]).mean()
    assert result.questions == 2 and torch.allclose(result.loss, by_hand, atol=1e-5)


def test_resume_from_a_checkpoint_ends_at_the_same_weights(world, fitted, tmp_path):
    checkpoints = sorted((fitted / "checkpoints").glob("step-*"))
    assert [c.name for c in checkpoints] == ["step-000002", "step-000004"]
    # An interrupted run: only the step-2 checkpoint survived.
    out = tmp_path / "resumed"
    shutil.copytree(checkpoints[0], out / "checkpoints" / checkpoints[0].name)
    F.fit_env(tiny_cfg(world), out=out, resume="auto")
    assert json.loads((out / F.FIT_FILE).read_text())["resumed_from_step"] == 2
    a, b = load_file(str(fitted / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    # An explicit PATH works too; a checkpoint of another config is refused, not silently used.
    out2 = tmp_path / "by_path"
    F.fit_env(tiny_cfg(world), out=out2, resume=str(checkpoints[0]))
    c = load_file(str(out2 / "model.safetensors"))
    assert all(torch.equal(a[k], c[k]) for k in a)
    with pytest.raises(CheckpointError, match="different fit"):
        F.fit_env(tiny_cfg(world, lr=1e-3), out=tmp_path / "other", resume=str(checkpoints[0]))


def test_noop_when_already_fitted_and_refit_when_the_config_changes(world, fitted, monkeypatch):
    stamp = (fitted / "model.safetensors").stat().st_mtime_ns

    def no_decoding(*args, **kwargs):
        raise AssertionError("a fitted environment must not be decoded or trained again")

    monkeypatch.setattr(F, "load_split", no_decoding)
    started = time.perf_counter()
    assert F.fit_env(tiny_cfg(world), out=fitted, resume="auto") == fitted
    assert time.perf_counter() - started < 2.0
    assert (fitted / "model.safetensors").stat().st_mtime_ns == stamp
    assert F.is_fitted(tiny_cfg(world, checkpoint_every=1, threads=2), fitted)  # bookkeeping keys do not count
    assert not F.is_fitted(tiny_cfg(world, lr=1e-3), fitted)
    assert not F.is_fitted(tiny_cfg(world, model={"hidden_size": 64}), fitted)
    assert not F.is_fitted(tiny_cfg(world, answer_format="letter"), fitted)  # another loss target: refit


@pytest.mark.parametrize("arch", ["qwen2_5_vl", "llava_onevision"])
def test_lr_scales_group_and_freeze_the_encoder_and_projector(arch):
    from scorerl.envs.build import build_tiny_env

    env = build_tiny_env(arch)
    names = {id(p): n for n, p in env.model.named_parameters()}
    rest, encoder, projector = param_groups(env, 0.25, 0.5)
    assert (rest["lr_scale"], encoder["lr_scale"], projector["lr_scale"]) == (1.0, 0.25, 0.5)
    encoder_names = [names[id(p)] for p in encoder["params"]]
    projector_names = [names[id(p)] for p in projector["params"]]
    assert encoder_names and all(n.startswith(VISION_ENCODER) and not n.startswith(PROJECTOR) for n in encoder_names)
    assert projector_names and all(n.startswith(PROJECTOR) for n in projector_names)
    assert not any(names[id(p)].startswith(VISION_ENCODER) for p in rest["params"])

    (only,) = param_groups(env, 0.0, 0.0)  # frozen: left out, and no gradient reaches them
    assert len(only["params"]) == len(rest["params"])
    assert not any(p.requires_grad for p in encoder["params"] + projector["params"])


def split_weights(state: dict) -> tuple[list[str], list[str]]:
    """(vision-encoder keys without the projector, projector keys) of a model state dict."""
    encoder = [k for k in state if k.startswith(VISION_ENCODER) and not k.startswith(PROJECTOR)]
    return encoder, [k for k in state if k.startswith(PROJECTOR)]


def test_a_frozen_vision_encoder_keeps_its_initial_weights(world, tmp_path):
    out = F.fit_env(tiny_cfg(world, vision_lr_scale=0.0, steps=2), out=tmp_path / "env")
    initial = F.build_fit_env(tiny_cfg(world), ["a prompt"]).model.state_dict()  # same seed, same init
    fitted = load_env(EnvSection(arch="qwen2_5_vl", path=str(out), device="cpu")).model.state_dict()
    encoder, merger = split_weights(initial)
    assert encoder and merger
    assert all(torch.equal(fitted[k], initial[k]) for k in encoder)
    assert not all(torch.equal(fitted[k], initial[k]) for k in merger)


# --------------------------------------------------------------------------------------------- projector warm-up

WARMUP = {"projector_warmup_steps": 3, "projector_warmup_families": ["direction", "count"]}


def test_warmup_targets_are_each_videos_answer_text(world):
    samples, _ = read_manifest(world / "train.jsonl")
    t = warmup_targets(samples, ["direction", "count"], "train.jsonl")
    assert len(t.index) == sum(s.family in ("direction", "count") for s in samples) > 0
    for i, f, c in zip(t.index, t.family, t.label):
        s = samples[i]
        assert s.family == t.families[f]
        if s.family == "direction":  # checked against the scene, not against the manifest's own answer
            mover = next(o for o in s.meta["scene"]["objects"] if o["role"] == "moving")
            assert t.classes[f][c] == mover["direction"]
        else:
            assert t.classes[f][c] == str(len(scenes.coloured(s.meta["scene"])))
    with pytest.raises(ConfigError, match=r"fit.projector_warmup_families.*'shape'.*train.jsonl"):
        warmup_targets(samples, ["direction", "shape"], "train.jsonl")


def llava_cfg(world: Path, **fit):
    """tiny_cfg for LLaVA-OneVision: its size keys differ (no merge / temporal patch / window)."""
    cfg = tiny_cfg(world, **fit)
    cfg.env.arch = "llava_onevision"
    for key in ("spatial_merge_size", "temporal_patch_size", "window_size"):
        cfg.fit.model.pop(key)
    cfg.fit.model["image_size"] = SIZE
    return cfg


@pytest.mark.parametrize("arch", ["qwen2_5_vl", "llava_onevision"])
def test_warmup_trains_only_the_projector_and_is_deterministic(world, arch):
    cfg = tiny_cfg(world, **WARMUP) if arch == "qwen2_5_vl" else llava_cfg(world, **WARMUP)
    train = F._load_train(cfg)
    envs, records = [], []
    for _ in range(2):
        env = F.build_fit_env(cfg, ["a prompt"])
        records.append(warm_up_projector(env, cfg, train))
        envs.append(env.model.state_dict())
    initial = F.build_fit_env(cfg, ["a prompt"]).model.state_dict()
    encoder, merger = split_weights(initial)
    changed = {k for k in initial if not torch.equal(initial[k], envs[0][k])}
    assert changed and changed <= set(merger)  # the encoder and the LLM are untouched
    assert all(torch.equal(envs[0][k], envs[1][k]) for k in initial)  # same seed, same projector
    assert records[0]["classes"]["count"] and set(records[0]["probe_accuracy_last_quarter"]) == {"direction", "count"}


def test_fit_after_warmup_keeps_the_warmed_frozen_projector_and_resumes_exactly(world, tmp_path, monkeypatch):
    cfg = tiny_cfg(world, vision_lr_scale=0.0, projector_lr_scale=0.0, **WARMUP)
    out = F.fit_env(cfg, out=tmp_path / "env")
    record = json.loads((out / F.FIT_FILE).read_text())
    assert record["projector_warmup"]["steps"] == 3

    warmed = F.build_fit_env(cfg, ["a prompt"])
    warm_up_projector(warmed, cfg, F._load_train(cfg))
    fitted = load_env(EnvSection(arch="qwen2_5_vl", path=str(out), device="cpu")).model.state_dict()
    _, merger = split_weights(fitted)
    assert merger and all(torch.equal(fitted[k], warmed.model.state_dict()[k]) for k in merger)

    # Resuming from the step-2 checkpoint must not warm up again (the checkpoint holds the warmed projector).
    resumed = tmp_path / "resumed"
    first = sorted((out / "checkpoints").glob("step-*"))[0]
    shutil.copytree(first, resumed / "checkpoints" / first.name)
    monkeypatch.setattr(F, "warm_up_projector", lambda *a: pytest.fail("a resumed fit warmed up again"))
    F.fit_env(cfg, out=resumed, resume="auto")
    again = load_env(EnvSection(arch="qwen2_5_vl", path=str(resumed), device="cpu")).model.state_dict()
    assert all(torch.equal(fitted[k], again[k]) for k in fitted)
    assert json.loads((resumed / F.FIT_FILE).read_text())["projector_warmup"] == record["projector_warmup"]


def test_fit_needs_float32(world, tmp_path):
    cfg = tiny_cfg(world)
    cfg.env.dtype = "bfloat16"
    with pytest.raises(ConfigError, match="env.dtype"):
        F.fit_env(cfg, out=tmp_path / "x")


# --------------------------------------------------------------------------------------------- pieces


def test_swap_words_swaps_whole_words_at_once():
    text = "In which direction? left right up down top-left leftover"
    assert FD.swap_words(text, FD.MIRROR_WORDS) == "In which direction? right left up down top-right leftover"
    assert FD.swap_words(text, {}) == text


def test_a_mirrored_video_keeps_the_answer_true(world):
    """After a mirror the (renamed) correct option still describes the mirrored video, drawn pixels included."""
    samples, _ = read_manifest(world / "train.jsonl")
    directions = [x for x in samples if x.family == "direction"]
    assert directions
    for s in directions:
        mover = next(o for o in s.meta["scene"]["objects"] if o["role"] == "moving")
        (x0, _), (x1, _) = mover["positions"][0], mover["positions"][-1]
        mirrored_dx = -(x1 - x0)
        answer = FD.swap_words(s.options[s.answer_index], FD.MIRROR_WORDS)
        if mirrored_dx:
            assert answer == ("right" if mirrored_dx > 0 else "left")
        else:
            assert answer == mover["direction"] and answer in ("up", "down")
    frames = render.render_video(directions[0].meta["scene"])
    assert np.array_equal(FD.mirror_frames(frames)[:, :, 0], frames[:, :, -1])


def test_derived_questions_match_the_generator(world):
    samples, _ = read_manifest(world / "train.jsonl")
    rng = np.random.default_rng(0)
    made = 0
    for s in samples:
        for family in scenes.VIDEO_FAMILIES:
            q = FD.scene_question(s, family, 2, rng)
            if q is None:
                continue
            made += 1
            assert q.answer == "C" and q.family == family and len(set(q.options)) == 4
            coloured = scenes.coloured(s.meta["scene"])
            if family == "moving_color":
                assert [o["role"] for o in coloured] == ["moving"] and q.options[2] == coloured[0]["color"]
            if family == "count":
                assert q.options[2] == str(len(coloured))
    # every scene carries its own family's question and `count`; moving scenes carry both moving families
    assert made >= len(samples) * 2


def test_family_weights_draw_families_in_proportion(world):
    samples, _ = read_manifest(world / "train.jsonl")
    weights = FD.sample_weights(samples, {"direction": 4})
    assert FD.sample_weights(samples, {}) is None
    is_dir = np.array([s.family == "direction" for s in samples])
    assert (weights[is_dir] == 4).all() and (weights[~is_dir] == 1).all()
    batches = [FD.batch_indices(len(samples), 3, step, 0, weights) for step in range(300)]
    assert all(len(set(b.tolist())) == 3 for b in batches)  # distinct within a batch
    assert (batches[7] == FD.batch_indices(len(samples), 3, 7, 0, weights)).all()  # a pure function of the step
    share = is_dir[np.concatenate(batches)].mean()
    expected = 4 * is_dir.sum() / weights.sum()  # 4 * 3 / 24 = 0.5 for the 15-sample world (without replacement
    assert abs(share - expected) < 0.08, (share, expected)  # in a batch of 3 it is a little lower)
    # derived questions choose families by the same weights; a mover's scene carries moving_color, direction and
    # count questions (event and static_attr draws give none), so direction is 4 of 4 + 1 + 1
    mover = next(s for s in samples if s.family == "moving_color")
    rng = np.random.default_rng(0)
    derived = [q.family for _ in range(400) for q in FD.questions_for(mover, 1, rng, {"direction": 4})[1:]]
    assert abs(derived.count("direction") / len(derived) - 4 / 6) < 0.07
    with pytest.raises(ConfigError, match=r"fit.family_weights.direction: must be a number > 0"):
        tiny_cfg(world, family_weights={"direction": 0})


def test_deterministic_draws():
    n, b = 10, 4
    seen = np.concatenate([FD.batch_indices(n, b, step, seed=3) for step in range(5)])  # 20 = two epochs
    assert sorted(seen[:10]) == list(range(10)) and sorted(seen[10:20]) == list(range(10))
    assert (FD.batch_indices(n, b, 2, 3) == FD.batch_indices(n, b, 2, 3)).all()
    masks = FD.random_keep_masks(50, 4, 4, keep_min=0.1, full_prob=0.3, generator=fit_step_rng(0, 0, 1)[0])
    again = FD.random_keep_masks(50, 4, 4, keep_min=0.1, full_prob=0.3, generator=fit_step_rng(0, 0, 1)[0])
    assert all((m is None and a is None) or torch.equal(m, a) for m, a in zip(masks, again))
    partial = [m for m in masks if m is not None]
    assert 0 < len(partial) < 50 and all(2 <= int(m.sum()) <= 16 for m in partial)
    assert F.lr_at(0, 100, 1.0, 10, 0.1) == pytest.approx(0.1) and F.lr_at(100, 100, 1.0, 10, 0.1) == pytest.approx(0.1)


def test_scoring_in_another_answer_format_than_fitted_is_refused(fitted):
    from scorerl.envs import check_answer_format, load_env
    from scorerl.envs.build import build_tiny_env

    env = load_env(EnvSection(arch="qwen2_5_vl", path=str(fitted)))
    check_answer_format(env, "option")  # as fitted (its scorerl_env.json says so): fine
    with pytest.raises(ConfigError, match=r"data.answer_format: 'letter'.*fitted to answer with 'option'"):
        check_answer_format(env, "letter")
    check_answer_format(build_tiny_env(), "letter")  # declares no format (a real checkpoint): nothing to check


# --------------------------------------------------------------------------------------------- evidence-first masks


def test_evidence_first_masks_keep_the_objects_first_at_the_same_size():
    T, N = 4, 4
    evidence = np.zeros((T, N), bool)
    evidence[1, [0, 3]] = evidence[2, 2] = True  # 3 evidence tokens
    masks = [torch.zeros(T, N, dtype=torch.bool) for _ in range(3)] + [None]
    masks[0].view(-1)[:8] = True  # k = 8 >= 3: every evidence token, then 5 others
    masks[1].view(-1)[:2] = True  # k = 2 < 3: two of the evidence tokens
    masks[2].view(-1)[:5] = True
    ev = [evidence, evidence, None, evidence]  # no scene -> unchanged
    out = FD.evidence_first(masks, ev, 1.0, fit_step_rng(0, 0, 3)[0])
    again = FD.evidence_first(masks, ev, 1.0, fit_step_rng(0, 0, 3)[0])
    assert all((a is None and b is None) or torch.equal(a, b) for a, b in zip(out, again))  # pure in (seed, step)
    assert int(out[0].sum()) == 8 and bool(out[0][torch.as_tensor(evidence)].all())
    assert int(out[1].sum()) == 2 and int((out[1] & torch.as_tensor(evidence)).sum()) == 2
    assert torch.equal(out[2], masks[2]) and out[3] is None  # no evidence known; all tokens stay all tokens
    assert FD.evidence_first(masks, ev, 0.0, fit_step_rng(0, 0, 3)[0]) is masks  # off: the masks as drawn
    half = FD.evidence_first([masks[0]] * 400, [evidence] * 400, 0.5, fit_step_rng(0, 1, 3)[0])
    changed = sum(not torch.equal(h, masks[0]) for h in half)
    assert 160 < changed < 240  # about half (the drawn mask lacks evidence token 10: evidence-first always differs)


def test_evidence_tokens_follow_the_mirror_and_fill_an_image_pseudo_video():
    from scorerl.world.regions import evidence_tokens

    video = {
        "kind": "video",
        "frames": 4,
        "size": 32,
        "objects": [
            {
                "role": "static",
                "color": "red",
                "shape": "square",
                "size": 8,
                "first": 2,
                "last": 3,
                "positions": [[0, 16], [0, 16]],
            }
        ],
    }
    ev = evidence_tokens(video, 2, (2, 2))  # 16 px tokens: the square sits in unit 1, row 1, column 0
    assert ev.tolist() == [[False] * 4, [False, False, True, False]]
    assert evidence_tokens(video, 2, (2, 2), mirrored=True).tolist() == [[False] * 4, [False, False, False, True]]
    image = {
        **video,
        "kind": "image",
        "frames": 1,
        "objects": [{**video["objects"][0], "first": 0, "last": 0, "positions": [[0, 16]]}],
    }
    assert evidence_tokens(image, 3, (2, 2)).tolist() == [[False, False, True, False]] * 3  # the image in every unit


def test_fit_identity_leaves_out_evidence_prob_at_zero_so_earlier_fits_stay_valid(world):
    assert "evidence_prob" not in F.fit_identity(tiny_cfg(world))
    assert F.fit_identity(tiny_cfg(world, evidence_prob=0.5))["fit"]["evidence_prob"] == 0.5


def test_a_fit_step_with_evidence_first_masks_scores_other_tokens(world, fitted):
    """The same step with evidence_prob 1: the same questions and draws, other kept tokens, so another loss."""
    env = load_env(EnvSection(arch="qwen2_5_vl", path=str(fitted), device="cpu"))
    data = FD.load_split(str(world / "train.jsonl"), FRAMES, SIZE, "train")
    idx = np.arange(3)
    with torch.no_grad():
        plain = F.fit_step_loss(env, data, idx, tiny_cfg(world, full_prob=0.0, keep_min=0.1), step=0)
        evidence = F.fit_step_loss(
            env, data, idx, tiny_cfg(world, full_prob=0.0, keep_min=0.1, evidence_prob=1.0), step=0
        )
    assert plain.questions == evidence.questions and torch.isfinite(evidence.loss)
    assert not torch.allclose(plain.loss, evidence.loss)
