"""`scorerl env fit`: a short fit on a tiny world saves a loadable environment, resumes exactly, and is a no-op when
already fitted; plus the pure pieces (augmentation, labels, derived questions, deterministic draws)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from scorerl.config import EnvSection, config_from_dict
from scorerl.data import synthetic as syn
from scorerl.data.manifest import LETTERS, format_prompt, read_manifest
from scorerl.envs import fit as F
from scorerl.envs import load_env
from scorerl.errors import CheckpointError, ConfigError

FRAMES, SIZE = 8, 32  # 32 px, patch 8, merge 2 -> 2 x 2 tokens per frame, 32 visual tokens


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return syn.build_world(tmp_path_factory.mktemp("world"), train=12, test=6, static_train=6, frames=FRAMES,
                           size=SIZE, seed=0, progress=False)


def tiny_cfg(world: Path, **fit):
    fit_section = {
        "steps": 4, "batch_size": 3, "lr": 3e-3, "warmup_steps": 1, "checkpoint_every": 2, "keep_last": 5,
        "threads": 1, "eval_batch_size": 4, "extra_questions": 1, "answer_layer": 1, "option_layer": -2,
        "token_layer": 1,
        "model": {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "num_kv_heads": 1, "vision_depth": 1,
                  "vision_hidden": 16, "vision_heads": 1, "patch_size": 8, "spatial_merge_size": 2,
                  "temporal_patch_size": 1, "window_size": SIZE, "rope_theta": 10.0},
        **fit,
    }
    return config_from_dict({
        "env": {"arch": "qwen2_5_vl", "device": "cpu"},
        "data": {"stage1_manifest": str(world / "static_train.jsonl"), "stage2_manifest": str(world / "train.jsonl"),
                 "eval_manifest": str(world / "test.jsonl"), "num_frames": FRAMES, "frame_size": SIZE},
        "fit": fit_section,
    })


@pytest.fixture(scope="module")
def fitted(world, tmp_path_factory) -> Path:
    return F.fit_env(tiny_cfg(world), out=tmp_path_factory.mktemp("env") / "world_env")


# --------------------------------------------------------------------------------------------- end to end


def test_fit_saves_an_environment_that_load_env_reloads_and_scores(world, fitted):
    record = json.loads((fitted / F.FIT_FILE).read_text())
    assert record["steps"] == 4 and record["visual_tokens"] == [FRAMES, 4]
    assert set(record["test"]["families"]) <= set(syn.VIDEO_FAMILIES) and record["test"]["n"] == 6
    assert record["wall_time_s"]["train"] > 0
    assert not (fitted / "probes.safetensors").exists()  # fit-only probes never ship with the environment

    env = load_env(EnvSection(arch="qwen2_5_vl", path=str(fitted), device="cpu"))
    assert not env.grad and not any(p.requires_grad for p in env.model.parameters())
    test = F.load_split(str(world / "test.jsonl"), FRAMES, SIZE, "test")
    again = F.evaluate(env, test, batch_size=4)
    assert again == record["test"]  # the saved weights give exactly the accuracy recorded at fit time

    from scorerl.envs.base import ScoreRequest

    visual = env.encode(test.frames[0])
    request = ScoreRequest(visual, format_prompt(test.samples[0]), target=test.samples[0].answer)
    ce = env.score([request])
    logp = env.choice_logprobs([request], list(LETTERS))
    assert torch.isfinite(ce).all() and torch.allclose(logp.exp().sum(1), torch.ones(1), atol=1e-5)


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


def test_bad_probe_layer_is_a_config_error(world, tmp_path):
    with pytest.raises(ConfigError, match="token_layer"):
        F.fit_env(tiny_cfg(world, token_layer=5), out=tmp_path / "x")


# --------------------------------------------------------------------------------------------- pieces


def test_word_swaps_compose_mirror_and_time_reversal():
    assert F.word_swaps(False, False) == {}
    assert F.word_swaps(True, False) == {"left": "right", "right": "left"}
    assert F.word_swaps(False, True) == {"left": "right", "right": "left", "up": "down", "down": "up"}
    assert F.word_swaps(True, True) == {"up": "down", "down": "up"}  # the two mirrors of left/right cancel
    text = "In which direction? left right up down top-left leftover"
    assert F.swap_words(text, F.word_swaps(True, False)) == "In which direction? right left up down top-right leftover"


def test_mirror_and_reversal_keep_the_answer_true(world):
    """After a mirror / time reversal the (renamed) correct option still describes the transformed video."""
    samples, _ = read_manifest(world / "train.jsonl")
    for s in (x for x in samples if x.family == "direction"):
        for hflip, reverse in ((True, False), (False, True), (True, True)):
            mover = next(o for o in s.scene["objects"] if o["role"] == "moving")
            path = np.array(mover["positions"], dtype=float)  # [F, 2] x, y
            if hflip:
                path[:, 0] = -path[:, 0]
            if reverse:
                path = path[::-1]
            dx, dy = path[-1] - path[0]
            truth = ("right" if dx > 0 else "left") if abs(dx) > abs(dy) else ("down" if dy > 0 else "up")
            pairs = F.word_swaps(hflip, reverse)
            assert F.swap_words(s.options[s.answer_index], pairs) == truth


def test_scene_token_labels_follow_the_objects():
    scene = {"kind": "video", "frames": 4, "size": 32, "objects": [
        {"role": "static", "color": "red", "shape": "square", "size": 10, "first": 0, "last": 3,
         "positions": [[1, 1]] * 4},
        {"role": "event", "color": "blue", "shape": "circle", "size": 10, "first": 1, "last": 2,
         "positions": [[20, 20]] * 2},
        {"role": "moving", "color": "green", "shape": "cross", "size": 10, "first": 0, "last": 3,
         "direction": "right", "positions": [[1, 20], [6, 20], [12, 20], [18, 20]]},
    ]}
    lab = F.scene_token_labels(scene, 4, 2, 2)  # [3, F, rows, cols]
    role, color = lab[0], lab[1]
    assert (role[:, 0, 0] == F.ROLES.index("static")).all()
    assert (color[:, 0, 0] == 1 + list(syn.COLORS).index("red")).all()
    assert role[0, 1, 1] == 0 and role[1, 1, 1] == F.ROLES.index("event")  # the event shows in frames 1-2 only
    assert role[0, 1, 0] == F.ROLES.index("right") and role[3, 1, 1] == F.ROLES.index("right")  # it moved over
    assert (F.scene_token_labels(None, 4, 2, 2) == F.IGNORE).all()
    # Mirror: columns flip and a rightward mover becomes a leftward one.
    flipped = F.augment_labels(lab, F.word_swaps(True, False), True, False)
    assert flipped[0, 0, 1, 1] == F.ROLES.index("left") and flipped[0, 0, 0, 1] == F.ROLES.index("static")


def test_derived_questions_match_the_generator(world):
    samples, _ = read_manifest(world / "train.jsonl")
    rng = np.random.default_rng(0)
    made = 0
    for s in samples:
        for family in syn.VIDEO_FAMILIES:
            q = F.scene_question(s, family, 2, rng)
            if q is None:
                continue
            made += 1
            assert q.answer == "C" and q.family == family and len(set(q.options)) == 4
            mover = next(o for o in s.scene["objects"] if o["role"] == "moving")
            if family == "moving_color":
                assert q.options[2] == mover["color"]
            if family == "count":
                assert q.options[2] == str(sum(o["role"] == "static" for o in s.scene["objects"]))
    assert made >= len(samples) * 4


def test_deterministic_draws():
    n, b = 10, 4
    seen = np.concatenate([F.batch_indices(n, b, step, seed=3) for step in range(5)])  # 20 = two epochs
    assert sorted(seen[:10]) == list(range(10)) and sorted(seen[10:20]) == list(range(10))
    assert (F.batch_indices(n, b, 2, 3) == F.batch_indices(n, b, 2, 3)).all()
    masks = F.random_keep_masks(50, 4, 4, keep_min=0.1, full_prob=0.3, generator=F.step_rng(0, 0, 1)[0])
    again = F.random_keep_masks(50, 4, 4, keep_min=0.1, full_prob=0.3, generator=F.step_rng(0, 0, 1)[0])
    assert all((m is None and a is None) or torch.equal(m, a) for m, a in zip(masks, again))
    partial = [m for m in masks if m is not None]
    assert 0 < len(partial) < 50 and all(2 <= int(m.sum()) <= 16 for m in partial)
    assert F.lr_at(0, 100, 1.0, 10, 0.1) == pytest.approx(0.1) and F.lr_at(100, 100, 1.0, 10, 0.1) == pytest.approx(0.1)


def test_prompt_positions_point_at_line_ends(fitted):
    env = load_env(EnvSection(arch="qwen2_5_vl", path=str(fitted), device="cpu"))
    sample = dataclasses.replace(
        read_manifest(Path(json.loads((fitted / F.FIT_FILE).read_text())["config"]["data"]["eval_manifest"]))[0][0])
    prompt = format_prompt(sample)
    question_end, ends = F.PromptPositions(env)(prompt, 4)
    after_ids = env.tokenizer(env.text_around_video(prompt)[1], add_special_tokens=False).input_ids
    tokens = env.tokenizer.convert_ids_to_tokens(after_ids)
    assert all("\u010a" in tokens[e] for e in [question_end, *ends])  # byte-level BPE writes "\n" as U+010A
    assert question_end < ends[0] < ends[1] < ends[2] < ends[3] < 0
