"""scripts/frontier.py: accuracy against prefill FLOPs over eval reports, on synthetic reports (50 questions, two
environments) and end to end on two reports of the real harness."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from scorerl.eval import stats

REPO = Path(__file__).resolve().parents[2]
N = 50
IDS = [f"q{i}" for i in range(N)]
B = 400  # resamples: enough for the clear-cut cases below, quick


@pytest.fixture(scope="module")
def fr():
    spec = importlib.util.spec_from_file_location("frontier", REPO / "scripts" / "frontier.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["frontier"] = module  # its dataclasses look their module up while being defined
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("frontier", None)


def bits(*ranges: tuple[int, int], n: int = N) -> str:
    """'0'/'1' per question: 1 on the questions in [a, b) of each range."""
    on = {i for a, b in ranges for i in range(a, b)}
    return "".join("1" if i in on else "0" for i in range(n))


def report(rows: dict, fastv_layer: int = 2, ids=IDS, fingerprint: str = "env-a") -> dict:
    """A FILE.json as scorerl eval writes it, reduced to what frontier.py reads. rows: (method, ratio) ->
    (flops_fraction, one '0'/'1' string or a list of them, one per training seed)."""
    results, correct = [], {}
    for (method, ratio), (flops, strings) in rows.items():
        strings = strings if isinstance(strings, list) else [strings]
        row = {
            "method": method,
            "ratio": ratio,
            "accuracy": stats.accuracy(stats.decode_bits(strings)),
            "n": len(ids),
            "kept_fraction": ratio,
            "flops_fraction": flops,
        }
        if method == "fastv":
            row["kept_from_layer"] = fastv_layer
        results.append(row)
        correct[f"{method}@{ratio:g}"] = strings
    meta = {"sample_ids": list(ids), "fastv_layer": fastv_layer, "env": {"fingerprint": fingerprint}}
    return {"meta": meta, "results": results, "correct": correct}


FULL = (1.0, bits((0, 46)))
SCORE = {  # reference: 80% / 84% / 88% at 10% / 20% / 40% of full's FLOPs
    ("score", 0.1): (0.10, bits((0, 40))),
    ("score", 0.2): (0.20, bits((0, 42))),
    ("score", 0.4): (0.40, bits((0, 44))),
}


def test_fastv_rows_are_labelled_with_their_k_and_duplicates_kept_once(fr):
    main = report({("full", 1.0): FULL, ("fastv", 0.1): (0.15, bits((0, 30))), **SCORE}, fastv_layer=2)
    k1 = report({("full", 1.0): FULL, ("fastv", 0.1): (0.12, bits((0, 20)))}, fastv_layer=1)
    env = fr.env_from_reports("w", [("main.json", main), ("k1.json", k1)])
    assert set(env.settings) == {("full", 1.0), ("fastv (K=2)", 0.1), ("fastv (K=1)", 0.1), *SCORE}
    assert env.settings[("fastv (K=1)", 0.1)].fastv_layer == 1 and env.settings[("full", 1.0)].source == "main.json"
    assert (
        fr.method_label("fastv_input", 1, []) == "fastv_input (K=1)" and fr.method_label("uniform", 1, []) == "uniform"
    )

    # Another policy set: its own report, its `score` rows renamed by a rename that matches only that report.
    nbr = report({("full", 1.0): FULL, ("score", 0.1): (0.10, bits((0, 45)))})
    renames = [fr.parse_rename("*nbr*.json:score=score_nbr")]
    env = fr.env_from_reports("w", [("a/main.json", main), ("a/nbr.json", nbr)], renames)
    assert ("score_nbr", 0.1) in env.settings and env.settings[("score", 0.1)].source == "a/main.json"
    assert fr.parse_rename("fastv=fv") == fr.Rename("fastv", "fv", None)

    # The same label and ratio with other answers is refused, not silently dropped.
    with pytest.raises(ValueError, match=r"score@0\.1 is in a/main\.json and a/nbr\.json .*--rename"):
        fr.env_from_reports("w", [("a/main.json", main), ("a/nbr.json", nbr)])
    with pytest.raises(ValueError, match="not the questions"):
        fr.env_from_reports("w", [("a.json", main), ("b.json", report(SCORE, ids=IDS[:-1] + ["other"]))])
    no_flops = report(SCORE)
    del no_flops["results"][0]["flops_fraction"]
    with pytest.raises(ValueError, match="no flops_fraction"):
        fr.env_from_reports("w", [("old.json", no_flops)])


def test_questions_are_aligned_by_id(fr):
    """A report over the same questions in another order is put in the first one's order."""
    perm = np.random.default_rng(0).permutation(N)
    shuffled_ids = [IDS[i] for i in perm]
    strings = bits((0, 10))
    shuffled = "".join(strings[i] for i in perm)
    a = report({("uniform", 0.1): (0.1, strings)})
    b = report({("random", 0.1): (0.1, shuffled)}, ids=shuffled_ids)
    env = fr.env_from_reports("w", [("a.json", a), ("b.json", b)])
    assert np.array_equal(env.settings[("random", 0.1)].correct, env.settings[("uniform", 0.1)].correct)


def test_nearest_flops_matching(fr):
    env = fr.env_from_reports("w", [("r.json", report(SCORE))])
    ref = list(env.settings.values())
    assert fr.nearest(ref, 0.17).ratio == 0.2
    assert fr.nearest(ref, 0.15).ratio == 0.1  # a tie goes to the cheaper setting
    assert fr.nearest(ref, 0.01).ratio == 0.1 and fr.nearest(ref, 0.9).ratio == 0.4
    lo, hi, w = fr.interpolation(ref, 0.3)
    assert (lo.ratio, hi.ratio, w) == (0.2, 0.4, pytest.approx(0.5))
    assert fr.interpolation(ref, 0.05) is None and fr.interpolation(ref, 0.5) is None  # no extrapolation


def test_interpolation_is_exact_on_a_linear_reference_and_per_resample(fr):
    """The reference is linear in FLOPs (80 + 20 x flops points): a method exactly on the line is 0 behind at any
    FLOPs, the nearest setting is not; the interval is interpolated resample by resample."""
    method = {("uniform", 0.3): (0.30, bits((0, 43)))}  # 86% at 30% of the FLOPs: on the line 84 -> 88
    env = fr.env_from_reports("w", [("r.json", report({**SCORE, **method}))])
    draws = fr.resample(env, B, 0)
    (c,) = fr.compare(env, draws, "score")
    rec = c.record
    assert rec["interpolated"]["reference_minus_method"] == pytest.approx(0.0, abs=1e-9)
    assert rec["interpolated"]["accuracy"] == pytest.approx(0.86)
    assert rec["interpolated"]["weight"] == pytest.approx(0.5)
    assert [b["ratio"] for b in rec["interpolated"]["between"]] == [0.2, 0.4]
    assert rec["nearest"]["ratio"] in (0.2, 0.4)  # 0.1 away from both: the cheaper, 84% -> 2 points behind
    assert rec["nearest"]["reference_minus_method"] == pytest.approx(-0.02)
    want = 0.5 * draws[("score", 0.2)] + 0.5 * draws[("score", 0.4)] - draws[("uniform", 0.3)]
    assert np.allclose(c.interp_draws, want)
    assert rec["interpolated"]["ci95"] == list(stats.percentile_interval(want))
    assert rec["basis"] == "interpolated" and rec["verdict"] == "level"

    # At exactly a reference setting's FLOPs the interpolated comparison is the nearest one.
    env = fr.env_from_reports("w", [("r.json", report({**SCORE, ("uniform", 0.2): (0.20, bits((0, 30)))}))])
    (c,) = fr.compare(env, fr.resample(env, B, 0), "score")
    assert c.record["interpolated"]["ci95"] == c.record["nearest"]["ci95"]
    assert c.record["interpolated"]["reference_minus_method"] == pytest.approx(0.24)


def test_intervals_and_verdicts(fr):
    rows = {
        **SCORE,
        # a subset of score@0.2's right answers: 20 points behind on every resample -> reference ahead
        ("framediff", 0.2): (0.20, bits((0, 32))),
        # score@0.2's answers with 3 questions traded for 3 others: 0 difference, interval across 0 -> level
        ("vidcom2", 0.2): (0.20, bits((3, 42), (42, 45))),
        # every question score@0.2 gets right, and 6 more -> behind
        ("fastv", 0.2): (0.20, bits((0, 48))),
        # above --max-flops: not compared
        ("uniform", 0.6): (0.60, bits((0, 10))),
    }
    env = fr.env_from_reports("w", [("r.json", report(rows))])
    comps = {c.record["method"]: c.record for c in fr.compare(env, fr.resample(env, B, 0), "score", max_flops=0.5)}
    assert set(comps) == {"framediff", "vidcom2", "fastv (K=2)"}
    ahead, level, behind = comps["framediff"], comps["vidcom2"], comps["fastv (K=2)"]
    assert ahead["interpolated"]["reference_minus_method"] == pytest.approx(0.2)
    assert ahead["interpolated"]["ci95"][0] > 0 and ahead["interpolated"]["excludes_zero"]
    assert ahead["verdict"] == "reference ahead"
    assert level["interpolated"]["reference_minus_method"] == pytest.approx(0.0, abs=1e-9)
    lo, hi = level["interpolated"]["ci95"]
    assert lo < 0 < hi and not level["interpolated"]["excludes_zero"] and level["verdict"] == "level"
    assert behind["interpolated"]["ci95"][1] < 0 and behind["verdict"] == "behind"
    assert fr.verdict(None) is None and fr.verdict([0.01, 0.2]) == "reference ahead"


def test_settings_reuse_the_stats_bootstrap_and_pool_seeds(fr):
    """A row of 3 training seeds is resampled over questions and seeds by eval/stats.py: its interval is
    stats.bootstrap_ci of its [n, 3] correctness, its accuracy the mean of the seeds'."""
    seeds = [bits((0, 40)), bits((5, 44)), bits((0, 38))]
    env = fr.env_from_reports("w", [("r.json", report({("score", 0.1): (0.1, seeds)}))])
    (row,) = fr.settings_table(env, fr.resample(env, B, 3))
    assert row["seeds"] == 3 and row["accuracy"] == pytest.approx((40 + 39 + 38) / 150)
    assert row["ci95"] == list(stats.bootstrap_ci(stats.decode_bits(seeds), B, 3))


def test_frontier_marks_the_undominated_points(fr):
    points = [
        {"method": "m", "ratio": 0.1, "flops_fraction": 0.1, "accuracy": 0.5},
        {"method": "m", "ratio": 0.3, "flops_fraction": 0.3, "accuracy": 0.4},  # dearer and worse: off
        {"method": "m", "ratio": 0.2, "flops_fraction": 0.2, "accuracy": 0.6},
        {"method": "n", "ratio": 0.1, "flops_fraction": 0.05, "accuracy": 0.1},
    ]
    f = fr.frontiers(points)
    assert [p["ratio"] for p in f["m"]] == [0.1, 0.2, 0.3]  # sorted by FLOPs
    assert [p["on_frontier"] for p in f["m"]] == [True, True, False] and f["n"][0]["on_frontier"]


def _two_envs(fr):
    """Env a: score clearly ahead of framediff; env b (the same questions): level."""
    a = report({("full", 1.0): FULL, **SCORE, ("framediff", 0.2): (0.20, bits((0, 30)))}, fingerprint="a")
    b = report({("full", 1.0): FULL, **SCORE, ("framediff", 0.2): (0.22, bits((2, 42), (42, 44)))}, fingerprint="b")
    return [fr.env_from_reports("a", [("a.json", a)]), fr.env_from_reports("b", [("b.json", b)])]


def test_pooled_over_environments(fr):
    result = fr.analyse(_two_envs(fr), ["score"], resamples=B, seed=0)
    pooled = {(r["method"], r["ratio"]): r for r in result["pooled"]["settings"]}
    fd = pooled[("framediff", 0.2)]
    assert fd["accuracy"] == pytest.approx((0.60 + 0.84) / 2)
    assert (fd["min"], fd["max"]) == (pytest.approx(0.60), pytest.approx(0.84))
    assert fd["flops_fraction"] == pytest.approx(0.21)
    assert fd["per_env"] == {"a": pytest.approx(0.6), "b": pytest.approx(0.84)}
    (comp,) = result["pooled"]["comparisons"]["score"]
    per_env = {n: result["envs"][n]["comparisons"]["score"][0] for n in ("a", "b")}
    assert per_env["a"]["verdict"] == "reference ahead" and per_env["b"]["verdict"] == "level"
    assert comp["interpolated"]["reference_minus_method"] == pytest.approx(
        (
            per_env["a"]["interpolated"]["reference_minus_method"]
            + per_env["b"]["interpolated"]["reference_minus_method"]
        )
        / 2
    )
    assert comp["verdict"] == "reference ahead" and comp["per_env"] == {"a": "reference ahead", "b": "level"}
    assert comp["holds_on_every_env"] is False
    # same questions -> resampled together: the pooled interval averages the same resamples of both
    assert result["meta"]["bootstrap"]["environments"]["b"].startswith("resampled with the first")


def test_script_end_to_end_on_json_files(fr, tmp_path, capsys):
    paths = []
    for env in ("a", "b"):
        main = report({("full", 1.0): FULL, **SCORE, ("fastv", 0.1): (0.15, bits((0, 30)))}, fingerprint=env)
        k1 = report({("full", 1.0): FULL, ("fastv", 0.1): (0.12, bits((0, 25)))}, fastv_layer=1, fingerprint=env)
        for name, r in (("main", main), ("k1", k1)):
            (tmp_path / f"{env}_{name}.json").write_text(json.dumps(r))
        paths.append(f"{env}={tmp_path / f'{env}_main.json'},{tmp_path / f'{env}_k1.json'}")
    out = tmp_path / "out" / "frontier"
    argv = [a for p in paths for a in ("--env", p)] + ["--resamples", "200", "--out", str(out)]
    assert fr.main(argv) == 0
    printed = capsys.readouterr().out
    assert "## Pooled over 2 environments (a, b)" in printed and "| fastv (K=1) | ratio 0.1, K=1 |" in printed
    assert "### `score` - method at matched FLOPs" in printed and "wrote" in printed
    result = json.loads(out.with_suffix(".json").read_text())
    assert set(result["envs"]) == {"a", "b"} and result["meta"]["references"] == ["score"]
    labels = {r["method"] for r in result["pooled"]["settings"]}
    assert labels == {"full", "score", "fastv (K=2)", "fastv (K=1)"}
    md = out.with_suffix(".md").read_text()
    assert "## Environment `a`" in md and "interpolated" in md
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(SystemExit):  # no rows of the reference: a usage error, not a traceback
        fr.main(argv[:4] + ["--reference", "nothing", "--out", str(out)])


# ----------------------------------------------------------------------------------- through the real harness


@pytest.mark.usefixtures("one_thread")
def test_two_reports_of_the_harness_feed_the_script(fr, tmp_path):
    """Two `scorerl eval` reports of a tiny environment (all methods with K=1; fastv alone with K=2) -> the
    script: fastv at both K, full kept once, the harness's FLOPs fractions, SCORE's pooled seeds."""
    import torch

    from scorerl.compress.policy import TokenPolicy
    from scorerl.config import load_config
    from scorerl.data.video_io import write_mp4
    from scorerl.envs.build import build_tiny_env
    from scorerl.eval.harness import run_eval

    build_tiny_env("qwen2_5_vl", seed=0, initializer_range=0.5).save_pretrained(tmp_path / "env")
    rng = np.random.default_rng(0)
    lines = []
    for i in range(6):
        write_mp4(tmp_path / f"v{i}.mp4", rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8))
        rec = {"id": f"s{i}", "video": f"v{i}.mp4", "question": f"Which colour, clip {i}?",
               "options": ["red", "blue", "green"], "answer": "ABC"[i % 3]}  # fmt: skip
        lines.append(json.dumps(rec))
    (tmp_path / "test.jsonl").write_text("\n".join(lines) + "\n")
    policies = []
    for k in range(2):
        torch.manual_seed(k)
        TokenPolicy(64).save_pretrained(tmp_path / f"p{k}")
        policies.append(tmp_path / f"p{k}")

    def cfg(*over):
        return load_config(
            None,
            [
                f"env.path={tmp_path / 'env'}",
                "env.device=cpu",
                "data.num_frames=4",
                "data.frame_size=64",
                f"data.cache_dir={tmp_path / 'cache'}",
                f"data.eval_manifest={tmp_path / 'test.jsonl'}",
                "eval.ratios=[0.25,0.5]",
                "eval.bootstrap=50",
                *over,
            ],
        )

    main = run_eval(cfg("eval.methods=[uniform,fastv,score]", "eval.fastv_layer=1"), policies, tmp_path / "m.json")
    run_eval(cfg("eval.methods=[fastv]", "eval.fastv_layer=2"), None, tmp_path / "k2.json")
    out = tmp_path / "frontier"
    spec = f"tiny={tmp_path / 'm.json'},{tmp_path / 'k2.json'}"
    assert fr.main(["--env", spec, "--resamples", "100", "--max-flops", "0.9", "--out", str(out)]) == 0
    result = json.loads(out.with_suffix(".json").read_text())
    settings = {(r["method"], r["ratio"]): r for r in result["envs"]["tiny"]["settings"]}
    assert set(settings) == {
        ("full", 1.0),
        *((m, r) for m in ("uniform", "fastv (K=1)", "fastv (K=2)", "score") for r in (0.25, 0.5)),
    }
    rows = {(r["method"], r["ratio"]): r for r in main["results"]}
    assert settings[("score", 0.25)]["seeds"] == 2
    assert settings[("score", 0.25)]["flops_fraction"] == rows[("score", 0.25)]["flops_fraction"]
    assert settings[("score", 0.25)]["accuracy"] == pytest.approx(rows[("score", 0.25)]["accuracy"])
    # K=2 on this 2-layer model: every layer sees every token, the cost of full
    assert settings[("fastv (K=2)", 0.25)]["flops_fraction"] == pytest.approx(1.0)
    assert settings[("fastv (K=1)", 0.25)]["flops_fraction"] < 1.0
    assert out.with_suffix(".png").exists() and out.with_suffix(".md").exists()
