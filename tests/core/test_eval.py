"""Evaluation harness: batching never changes an answer, the report files, manifest errors, method masks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from scorerl.compress.policy import TokenPolicy
from scorerl.compress.select import num_keep
from scorerl.config import load_config
from scorerl.data.manifest import read_manifest
from scorerl.envs import load_env
from scorerl.envs.base import ScoreRequest
from scorerl.errors import CheckpointError, ConfigError, DataError
from scorerl.eval.harness import encode_samples, run_eval
from scorerl.eval.methods import MethodContext, method_masks

FRAMES, SIZE = 4, 64  # tiny Qwen2.5-VL: patch 8, merge 2, one unit per frame -> T=4, N=16
METHODS = ["full", "uniform", "random", "framediff", "fastv", "fastv_input", "score"]


def _line(i: int, **over) -> str:
    rec = {
        "id": f"s{i}",
        "video": f"v{i % 4}.mp4",
        "question": f"Which colour moves in clip {i}?",
        "options": ["red", "blue", "green", "cyan"][: 2 + i % 3],
        "answer": "AB"[i % 2],
        "family": "fg"[i % 2],
    }
    rec.update(over)
    return json.dumps(rec)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A saved tiny environment, four random-pixel H.264 clips, a manifest of 8 questions, a random policy."""
    from scorerl.data.video_io import write_mp4
    from scorerl.envs.build import build_tiny_env

    root = tmp_path_factory.mktemp("eval_world")
    # A wide init makes the random model's answers depend on the pixels, so a batching bug would show.
    build_tiny_env("qwen2_5_vl", seed=0, initializer_range=0.5).save_pretrained(root / "env")
    rng = np.random.default_rng(0)
    for i in range(4):
        write_mp4(root / f"v{i}.mp4", rng.integers(0, 256, (8, SIZE, SIZE, 3), dtype=np.uint8))
    (root / "test.jsonl").write_text("\n".join(_line(i) for i in range(8)) + "\n")
    TokenPolicy(64).save_pretrained(root / "policy")
    return root


def _cfg(root: Path, *overrides: str):
    return load_config(
        None,
        [
            f"env.path={root / 'env'}",
            "env.device=cpu",
            f"data.num_frames={FRAMES}",
            f"data.frame_size={SIZE}",
            f"data.cache_dir={root / 'cache'}",
            f"data.eval_manifest={root / 'test.jsonl'}",
            f"eval.methods={','.join(METHODS)}",
            # K=1 on this 2-layer model: fastv's second layer really sees the pruned set
            "eval.ratios=[0.25,0.5]",
            "eval.fastv_layer=1",
            *overrides,
        ],
    )


@pytest.mark.parametrize("answer_format", ["letter", "option"])
def test_batch_size_never_changes_results(world, tmp_path, answer_format):
    fmt = f"data.answer_format={answer_format}"
    one = run_eval(_cfg(world, "eval.batch_size=1", fmt), policy_dir=world / "policy", out=tmp_path / "b1.json")
    four = run_eval(_cfg(world, "eval.batch_size=4", fmt), policy_dir=world / "policy", out=tmp_path / "b4.json")
    assert one["results"] == four["results"]
    assert one["predictions"] == four["predictions"]
    assert len(set(one["predictions"].values())) > 1  # the answers do depend on the kept tokens


def test_report_files_and_schema(world, tmp_path):
    result = run_eval(_cfg(world, "eval.batch_size=3"), policy_dir=world, out=tmp_path / "res.json")
    on_disk = json.loads((tmp_path / "res.json").read_text())
    assert on_disk == json.loads(json.dumps(result))
    meta = on_disk["meta"]
    for key in (
        "manifest",
        "env",
        "num_frames",
        "frame_size",
        "seed",
        "methods",
        "ratios",
        "batch_size",
        "versions",
        "date",
        "skipped",
    ):
        assert key in meta, key
    assert len(meta["manifest"]["sha256"]) == 64 and meta["env"]["fingerprint"]
    assert set(meta["versions"]) == {"scorerl", "torch", "transformers"}
    rows = on_disk["results"]
    assert [(r["method"], r["ratio"]) for r in rows][:3] == [("full", 1.0), ("uniform", 0.25), ("uniform", 0.5)]
    assert len(rows) == 1 + (len(METHODS) - 1) * 2
    full = rows[0]
    assert full["relative"] == 1.0 and full["kept_fraction"] == 1.0 and full["n"] == 8
    for r in rows:
        extra = {"kept_from_layer"} if r["method"] == "fastv" else set()  # fastv keeps its fraction from layer K on
        extra |= {"seeds", "policy_flops"} if r["method"] == "score" else set()  # one seed per trained policy
        extra |= set() if r is full else {"diff_vs_full", "diff_vs_full_ci95"}
        extra |= {"score_minus_method", "score_minus_method_ci95"} if r["method"] not in ("full", "score") else set()
        base = {"method", "ratio", "accuracy", "ci95", "relative", "n", "kept_fraction", "flops", "flops_fraction"}
        assert set(r) == base | {"families"} | extra
        assert r.get("kept_from_layer", 1) == 1
        assert set(r["families"]) == {"f", "g"} and sum(f["n"] for f in r["families"].values()) == 8
        lo, hi = r["ci95"]  # eval.bootstrap defaults to 2000 resamples
        assert 0 <= lo <= r["accuracy"] <= hi <= 1
        assert all(f["ci95"][0] <= f["accuracy"] <= f["ci95"][1] for f in r["families"].values())
        if r is not full:
            assert r["diff_vs_full"] == pytest.approx(r["accuracy"] - full["accuracy"])
            assert r["diff_vs_full_ci95"][0] <= r["diff_vs_full"] <= r["diff_vs_full_ci95"][1]
        if "score_minus_method" in r:  # score - method: positive when score is ahead
            score = next(s for s in rows if s["method"] == "score" and s["ratio"] == r["ratio"])
            assert r["score_minus_method"] == pytest.approx(score["accuracy"] - r["accuracy"])
            assert r["score_minus_method_ci95"][0] <= r["score_minus_method"] <= r["score_minus_method_ci95"][1]
        if r["method"] != "full":
            assert r["kept_fraction"] == pytest.approx(num_keep(r["ratio"], FRAMES, 16) / (FRAMES * 16))
            assert r["relative"] == pytest.approx(r["accuracy"] / full["accuracy"])
    assert len(on_disk["correct"]["full@1"]) == 1 and len(on_disk["correct"]["full@1"][0]) == 8
    assert on_disk["correct"]["full@1"][0].count("1") == round(8 * full["accuracy"])
    assert meta["bootstrap"]["resamples"] == 2000 and len(meta["policies"]) == 1
    md = (tmp_path / "res.md").read_text()
    assert "| method | 0.25 | 0.5 | 1 |" in md and "| score |" in md
    lo, hi = full["ci95"]
    assert f"| full | - | - | {100 * full['accuracy']:.1f} [{100 * lo:.1f}, {100 * hi:.1f}] (100.0) |" in md
    assert "## Difference to `full` (method - full," in md
    assert (
        "## Difference: `score` - method (accuracy points; paired 95% interval; * = excludes 0; positive = SCORE" in md
    )
    assert "## Prefill FLOPs, % of full (kept visual tokens %)" in md and "| full | - | - | 100.0 (100.0) |" in md
    assert "diff_vs_score" not in json.dumps(on_disk)
    assert "`fastv` prunes inside the LLM: its first layer sees every visual token" in md
    assert (tmp_path / "res.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "bad, reason",
    [
        ("{not json", "invalid JSON"),
        (_line(9, video="missing.mp4"), "not found"),
        (json.dumps({"id": "x", "video": "v0.mp4", "options": ["a", "b"], "answer": "A"}), "question"),
    ],
)
def test_bad_manifest_line_is_named_and_skippable(world, tmp_path, bad, reason):
    lines = [_line(i) for i in range(3)]
    lines.insert(1, bad)  # line 2
    manifest = world / f"bad_{tmp_path.name}.jsonl"  # beside the clips its lines name
    manifest.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=rf"{manifest.name}:2: .*{reason}"):
        run_eval(_cfg(world, "eval.methods=[uniform]"), out=tmp_path / "r.json", manifest=manifest)
    result = run_eval(
        _cfg(world, "eval.methods=[uniform]", "data.skip_bad=true"), out=tmp_path / "r.json", manifest=manifest
    )
    assert result["meta"]["skipped"] == 1 and result["meta"]["skipped_lines"][0]["line"] == 2
    assert all(r["n"] == 3 for r in result["results"])


def _items(world):
    cfg = _cfg(world)
    env = load_env(cfg.env)
    samples, _ = read_manifest(world / "test.jsonl")
    return env, encode_samples(env, "test-env", samples[:3], cfg)[1]


def test_fastv_input_keeps_exactly_k_most_attended(world):
    env, items = _items(world)
    ctx = MethodContext(env=env, fastv_layer=2)
    for rho in (0.05, 0.1, 0.3, 1.0):
        for mask in method_masks("fastv_input", items, rho, ctx):
            T, N = mask.shape
            assert mask.dtype == torch.bool and int(mask.sum()) == num_keep(rho, T, N)
    # The kept tokens are the ones the last prompt token attends to most in layer K (0-based K-1).
    item = items[0]
    attn = env.last_token_attention(ScoreRequest(visual=item.visual, prompt=item.prompt), 1)
    mask = method_masks("fastv_input", [item], 0.25, ctx)[0]
    assert attn[mask].min() >= attn[~mask].max()


def test_random_masks_are_seeded_per_sample(world):
    env, items = _items(world)
    a = method_masks("random", items, 0.25, MethodContext(seed=0))
    b = method_masks("random", items[::-1], 0.25, MethodContext(seed=0))[::-1]  # order does not matter
    c = method_masks("random", items, 0.25, MethodContext(seed=1))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


def test_a_custom_masking_rule_is_scored_like_any_method(world):
    """MethodContext.custom: a caller's own rule (the nuisance report's evidence-first reference) goes through the
    harness's one scoring path: keeping every token scores exactly like `full`."""
    from scorerl.eval.harness import evaluate_runs

    env, items = _items(world)
    samples = read_manifest(world / "test.jsonl")[0][:3]
    seen = []

    def every_token(batch, rho, ctx):
        seen.append(rho)
        return [torch.ones(it.visual.features.shape[:2], dtype=torch.bool) for it in batch]

    ctx = MethodContext(env=env, custom={"all-kept": every_token})
    rows, pred = evaluate_runs(env, samples, items, [("full", 1.0), ("all-kept", 0.1)], ctx, batch_size=2)
    assert seen == [0.1, 0.1] and pred["all-kept@0.1"] == pred["full@1"]
    assert rows[1]["method"] == "all-kept" and rows[1]["kept_fraction"] == 1.0
    assert rows[1]["accuracy"] == rows[0]["accuracy"]


def test_unknown_method_and_missing_policy_are_clear(world, tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'framediff'"):
        run_eval(_cfg(world, "eval.methods=[framedif]"), out=tmp_path / "r.json")
    with pytest.raises(ConfigError, match="--policy"):
        run_eval(_cfg(world, "eval.methods=[score]"), out=tmp_path / "r.json")
    with pytest.raises(ConfigError, match="fastv_layer"):
        run_eval(_cfg(world, "eval.methods=[fastv]", "eval.fastv_layer=3"), out=tmp_path / "r.json")


def test_unwritable_out_is_refused_before_the_evaluation(world, tmp_path, monkeypatch):
    from scorerl.errors import ScoreRLError
    from scorerl.eval import harness

    (tmp_path / "a_file").write_text("")
    monkeypatch.setattr(harness, "read_manifest", lambda *a, **k: pytest.fail("work started"))
    with pytest.raises(ScoreRLError, match=r"--out: cannot write to .*a_file"):
        run_eval(_cfg(world), out=tmp_path / "a_file" / "r.json")


def test_eval_loads_policies_through_the_one_loader(world, tmp_path):
    from scorerl.export import load_policy

    by_folder, by_run = load_policy(world / "policy"), load_policy(world)  # a run folder: its policy/
    assert all(torch.equal(by_folder.state_dict()[k], v) for k, v in by_run.state_dict().items())
    run = tmp_path / "run"
    (run / "checkpoints" / "step-000010").mkdir(parents=True)  # incomplete: no COMPLETE manifest
    with pytest.raises(CheckpointError, match="not an exported policy"):
        run_eval(_cfg(world, "eval.methods=[score]"), policy_dir=run, out=tmp_path / "r.json")
    with pytest.raises(CheckpointError, match="no such"):
        load_policy(tmp_path / "nowhere")


@pytest.mark.parametrize("options,one_token", [(["red", "blue", "green"], False), (["x", "y", "z"], True)])
def test_option_format_picks_the_option_with_the_highest_summed_likelihood(options, one_token):
    """choice_scores in option format equals the hand-summed token log-probs of each option's text, on the
    one-forward path for single-token options and on the one-forward-per-option path otherwise."""
    from scorerl.data.manifest import Sample
    from scorerl.envs.base import ScoreRequest
    from scorerl.envs.build import build_tiny_env
    from scorerl.eval.answer import _all_single_tokens, choice_scores

    env = build_tiny_env("qwen2_5_vl", seed=0)
    frames = torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8)
    visual = env.encode(frames)
    sample = Sample("s", "x.mp4", "video", "What colour?", options, "B", 1, "f")
    assert _all_single_tokens(env, [sample]) == one_token
    request = ScoreRequest(visual, "What colour?")
    wide = Sample("w", "x.mp4", "video", "What colour?", [*options, "x y", "z w"], "A", 0, "f")  # 5 options
    scores = choice_scores(env, [request, request], [sample, wide], "option")  # [2, 5]: C = the most options
    by_hand = [
        float(env.token_logprobs([ScoreRequest(visual, "What colour?", target=o)])[0].sum()) for o in sample.options
    ]
    assert torch.allclose(scores[0, :3], torch.tensor(by_hand), atol=1e-5)
    assert scores.shape == (2, 5) and (scores[0, 3:] == float("-inf")).all()  # no fourth or fifth option
    assert torch.isfinite(scores[1]).all()


def test_open_ended_questions_report_answer_ce_and_match(world, tmp_path):
    from scorerl.eval.answer import normalise_answer

    lines = [
        _line(0, video=str(world / "v0.mp4")),
        _line(1, options=None, answer="red", video=str(world / "v1.mp4")),
        _line(2, options=None, answer="The Blue one.", video=str(world / "v2.mp4")),
    ]
    (tmp_path / "mixed.jsonl").write_text("\n".join(lines) + "\n")
    result = run_eval(
        _cfg(world, "eval.methods=[full,uniform]", "eval.ratios=[0.5]"),
        out=tmp_path / "r.json",
        manifest=tmp_path / "mixed.jsonl",
    )
    full = result["results"][0]
    assert full["n"] == 3 and full["open_ended"]["n"] == 2
    assert full["open_ended"]["answer_ce"] > 0 and 0 <= full["open_ended"]["exact_match"] <= 1
    answers = result["predictions"]["full@1"]
    assert isinstance(answers, list) and answers[0] in "ABCD" and isinstance(answers[1], str)
    # The normalised match is what the accuracy counts for an open-ended question.
    right = [answers[0] == "A", normalise_answer(answers[1]) == "red", normalise_answer(answers[2]) == "blue one"]
    assert full["accuracy"] == pytest.approx(sum(right) / 3)
    assert normalise_answer("The  Blue, one.") == "blue one"


def test_intervals_are_reproducible_and_recomputable_from_the_json(world, tmp_path):
    """The same seed gives the same intervals; add_intervals on the saved correctness gives them again; 0 = off."""
    from scorerl.eval.harness import add_intervals

    cfg = ("eval.methods=[full,uniform,random]", "eval.ratios=[0.5]", "eval.bootstrap=300")
    a = run_eval(_cfg(world, *cfg), out=tmp_path / "a.json")
    b = run_eval(_cfg(world, *cfg), out=tmp_path / "b.json")
    assert a["results"] == b["results"]
    saved = json.loads((tmp_path / "a.json").read_text())
    again = add_intervals(
        json.loads(json.dumps(saved["results"])),
        saved["correct"],
        saved["meta"]["sample_families"],
        300,
        saved["meta"]["bootstrap"]["seed"],
    )
    assert again == saved["results"]
    off = run_eval(_cfg(world, *cfg[:2], "eval.bootstrap=0"), out=tmp_path / "off.json")
    assert all(r["ci95"] is None for r in off["results"]) and off["results"][1]["diff_vs_full_ci95"] is None
    assert "[" not in (tmp_path / "off.md").read_text().split("## Accuracy % per question family")[0]


def test_several_policies_are_pooled_as_training_seeds(world, tmp_path):
    """Three policies (one per seed): score is the mean of their accuracies, each seed's accuracy is in `seeds`
    and equals a single-policy run of that policy; baselines stay one row each."""
    for k in (1, 2):
        torch.manual_seed(k)
        TokenPolicy(64).save_pretrained(tmp_path / f"p{k}")
    policies = [world / "policy", tmp_path / "p1", tmp_path / "p2"]
    cfg = ("eval.methods=[full,uniform,score]", "eval.ratios=[0.25]", "eval.bootstrap=200")
    pooled = run_eval(_cfg(world, *cfg), policy_dir=policies, out=tmp_path / "pooled.json")
    singles = [run_eval(_cfg(world, *cfg), policy_dir=p, out=tmp_path / f"s{i}.json") for i, p in enumerate(policies)]
    score = pooled["results"][-1]
    per_seed = [s["results"][-1]["accuracy"] for s in singles]
    assert [s["accuracy"] for s in score["seeds"]] == per_seed
    assert score["accuracy"] == pytest.approx(sum(per_seed) / 3)
    assert len(pooled["results"]) == 3 and "seeds" not in pooled["results"][1]  # full, uniform, score
    assert len(pooled["correct"]["score@0.25"]) == 3 and len(pooled["correct"]["uniform@0.25"]) == 1
    assert [pooled["predictions"][f"score@0.25#{k}"] for k in range(3)] == [
        s["predictions"]["score@0.25"] for s in singles
    ]
    assert pooled["meta"]["policies"] == [str(p.resolve()) for p in policies]
    md = (tmp_path / "pooled.md").read_text()
    assert "| score (3 seeds) |" in md and "## `score` per training seed" in md
    with pytest.raises(ConfigError, match="given twice"):
        run_eval(_cfg(world, *cfg), policy_dir=[world / "policy", world / "policy"], out=tmp_path / "d.json")


def test_cli_takes_several_policies(world, tmp_path):
    from scorerl.cli import _policies

    assert _policies(None) is None
    assert _policies([str(world / "policy")]) == [str(world / "policy")]
    assert _policies(["a,b", "c"]) == ["a", "b", "c"]  # comma lists and repeated flags, in order


def test_rows_carry_their_prefill_flops_counted_from_token_counts(world, tmp_path):
    """flops = mean over the questions of one prefill (text + the visual tokens the method passes; fastv: the
    layer-K rule; score: + its policy over all T*N tokens); flops_fraction = that over full's."""
    from scorerl.eval.flops import fastv_prefill_flops, lm_dims, prefill_flops
    from scorerl.eval.harness import prefill_cost, text_tokens
    from scorerl.eval.report import eval_markdown

    cfg = _cfg(world, "eval.methods=[full,uniform,fastv,score]", "eval.ratios=[0.25]", "eval.bootstrap=0")
    result = run_eval(cfg, policy_dir=world / "policy", out=tmp_path / "f.json")
    env = load_env(cfg.env)
    items = encode_samples(env, "test-env", read_manifest(world / "test.jsonl")[0], cfg)[1]
    dims, policy = lm_dims(env.model.config), TokenPolicy.from_pretrained(world / "policy")
    want: dict = {"full": [], "uniform": [], "fastv": [], "score": []}
    for it in items:
        T, N = it.visual.features.shape[:2]
        request = ScoreRequest(visual=it.visual, prompt=it.prompt)
        fixed = env.build_input_ids(request, with_target=False).numel() - T * N  # the layout's text (no suffix)
        assert text_tokens(env, it) == fixed
        k = num_keep(0.25, T, N)
        want["full"].append(prefill_flops(dims, T * N + fixed)["total"])
        want["uniform"].append(prefill_flops(dims, k + fixed)["total"])
        want["fastv"].append(fastv_prefill_flops(dims, T * N + fixed, k + fixed, 1)["total"])
        want["score"].append(prefill_flops(dims, k + fixed)["total"] + policy.flops(T * N))
    rows = {r["method"]: r for r in result["results"]}
    for method, flops in want.items():
        assert rows[method]["flops"] == pytest.approx(sum(flops) / len(flops)), method
        assert rows[method]["flops_fraction"] == pytest.approx(sum(flops) / sum(want["full"])), method
    assert rows["full"]["flops_fraction"] == 1.0
    assert rows["uniform"]["flops_fraction"] < rows["score"]["flops_fraction"] < rows["fastv"]["flops_fraction"] < 1
    assert rows["score"]["policy_flops"] == pytest.approx(policy.flops(FRAMES * 16))
    assert result["meta"]["flops"]["lm"] == dims.to_dict() and result["meta"]["flops"]["fastv_layer"] == 1
    assert prefill_cost(object(), items, 2) is None  # no LLM sizes: no flops fields, the report says n/a
    bare = {
        "meta": {**result["meta"], "flops": None},
        "results": [{k: v for k, v in r.items() if "flops" not in k} for r in result["results"]],
    }
    assert "Prefill FLOPs: n/a" in eval_markdown(bare)


def test_an_old_report_redraws_its_differences_as_score_minus_method():
    """A FILE.json from before score_minus_method (diff_vs_score = method - score) is redrawn as score - method."""
    from scorerl.eval.report import eval_markdown

    def row(method, acc, **extra):
        return {
            "method": method,
            "ratio": 0.1,
            "accuracy": acc,
            "ci95": None,
            "relative": 1.0,
            "n": 10,
            "kept_fraction": 0.1,
            "families": {},
            **extra,
        }

    old = {
        "meta": {},
        "results": [
            {**row("full", 0.9), "ratio": 1.0, "kept_fraction": 1.0},
            row("uniform", 0.5, diff_vs_full=-0.4, diff_vs_score=-0.3, diff_vs_score_ci95=[-0.4, -0.2]),
            row("score", 0.8, diff_vs_full=-0.1),
        ],
    }
    md = eval_markdown(old)
    assert "## Difference: `score` - method" in md and "| uniform | +30.0 [20.0, 40.0]* |" in md
