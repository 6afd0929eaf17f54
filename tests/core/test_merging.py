"""Merged tokens in the harness: a merge rides in its anchor's row, at the anchor's original (M-RoPE) position;
no merge scores exactly as the plain keep mask; merging methods are refused where only a mask would be used."""

from __future__ import annotations

import json

import pytest
import torch

from scorerl.compress.baselines import get_compressor, is_merging
from scorerl.compress.baselines.base import CompressorError
from scorerl.compress.baselines.merging import Merged, unmerged
from scorerl.data.manifest import Sample
from scorerl.errors import ConfigError
from scorerl.eval.harness import answer_batch
from scorerl.eval.methods import EvalItem, MethodContext, method_masks, method_merges
from scorerl.types import ScoreRequest, VisualTokens

pytestmark = pytest.mark.usefixtures("one_thread")
T, ROWS, COLS = 3, 2, 4
N = ROWS * COLS


@pytest.fixture(scope="module")
def env():
    from scorerl.envs.build import build_tiny_env

    return build_tiny_env("qwen2_5_vl", seed=0, initializer_range=0.5)


def _visual(env, seed=0) -> VisualTokens:
    g = torch.Generator().manual_seed(seed)
    return VisualTokens(torch.randn(T, N, env.hidden_size, generator=g), grid=(ROWS, COLS))


def _hand_merge(V: torch.Tensor) -> Merged:
    """Anchor (1, 5) absorbs (0, 3) and (2, 7) with weight 0.6 on itself: 0.6 a + 0.4 (b + c) / 2, by hand."""
    keep = torch.zeros(T, N, dtype=torch.bool)
    keep[0, 0] = keep[1, 2] = keep[1, 5] = keep[2, 6] = True
    features = V.clone()
    features[1, 5] = 0.6 * V[1, 5] + 0.2 * V[0, 3] + 0.2 * V[2, 7]
    anchors = torch.zeros_like(keep)
    anchors[1, 5] = True
    return Merged(keep=keep, features=features, anchors=anchors)


def test_a_merge_takes_its_anchors_row_and_3d_position(env):
    visual = _visual(env)
    V = visual.features
    merged = _hand_merge(V)
    request = ScoreRequest(visual=merged.visual(visual), prompt="Which colour?", target="A", keep=merged.keep)
    seq = env.build_sequence(request)
    full = env.build_sequence(ScoreRequest(visual=visual, prompt="Which colour?", target="A"))  # every token
    start = seq.visual_start
    assert seq.kept.tolist() == [0, N + 2, N + 5, 2 * N + 6]  # kept and merged tokens, in original order
    rows = seq.embeds[start : start + 4]  # [4, D]
    assert torch.equal(rows[0], V[0, 0]) and torch.equal(rows[1], V[1, 2]) and torch.equal(rows[3], V[2, 6])
    by_hand = 0.6 * V[1, 5] + 0.4 * (V[0, 3] + V[2, 7]) / 2
    assert torch.allclose(rows[2], by_hand, atol=1e-6)
    # positions: each output token's 3-D M-RoPE id in the full sequence (the merge: its anchor's, (t=1, r=1, c=1))
    for j, flat in enumerate(seq.kept.tolist()):
        assert torch.equal(seq.positions[:, start + j], full.positions[:, start + flat])
    anchor_pos = seq.positions[:, start + 2] - full.positions[:, start]  # relative to token (0, 0)
    assert anchor_pos.tolist() == [anchor_pos[0].item(), 1, 1] and anchor_pos[0] > 0


def test_no_merge_scores_exactly_as_the_plain_mask(env):
    visual = _visual(env, seed=1)
    keep = torch.rand(T, N, generator=torch.Generator().manual_seed(2)) < 0.5
    plain = ScoreRequest(visual=visual, prompt="Which colour?", target="B", keep=keep)
    none = unmerged(visual.features, keep)
    as_merge = ScoreRequest(visual=none.visual(visual), prompt="Which colour?", target="B", keep=none.keep)
    a, b = env.score([plain, plain]), env.score([as_merge, plain])
    assert (a - b).abs().max().item() == 0.0
    merged = _hand_merge(visual.features)  # and a real merge does change what the model sees
    changed = ScoreRequest(visual=merged.visual(visual), prompt="Which colour?", target="B", keep=merged.keep)
    unchanged = ScoreRequest(visual=visual, prompt="Which colour?", target="B", keep=merged.keep)
    assert env.score([changed]).item() != env.score([unchanged]).item()


def test_an_inconsistent_merge_is_a_bug_not_a_score():
    V = torch.randn(T, N, 4)
    bad = Merged(keep=torch.zeros(T, N, dtype=torch.bool), features=V, anchors=torch.ones(T, N, dtype=torch.bool))
    with pytest.raises(RuntimeError, match="anchors within keep"):
        bad.check((T, N, 4), "x")
    with pytest.raises(CompressorError, match="do not match"):
        unmerged(V[:2], torch.ones(2, N, dtype=torch.bool)).visual(VisualTokens(V, grid=(ROWS, COLS)))


def test_merging_methods_refuse_a_mask_alone(env):
    assert is_merging("fastvid_meanq") and is_merging("holitom_meanq")
    assert not is_merging("vidcom2") and not is_merging("fastv")
    with pytest.raises(CompressorError, match="merges tokens"):
        get_compressor("fastvid_meanq").select(torch.randn(8, N, 4), 0.25, (ROWS, COLS))
    item = EvalItem(id="a", visual=_visual(env), prompt="Which colour?")
    with pytest.raises(ConfigError, match="method_merges"):
        method_masks("fastvid_meanq", [item], 0.25, MethodContext())
    with pytest.raises(ValueError, match="does not merge"):
        method_merges("vidcom2", [item], 0.25, MethodContext())


def test_harness_scores_a_merging_method_on_its_merged_rows(env):
    items = [
        EvalItem(id=f"s{i}", visual=_visual(env, seed=10 + i), prompt="Which colour?\nA. red\nB. blue")
        for i in range(3)
    ]
    samples = [
        Sample(
            id=it.id,
            media=None,
            kind="video",
            question="Which colour?",
            options=["red", "blue"],
            answer="AB"[i % 2],
            answer_index=i % 2,
        )
        for i, it in enumerate(items)
    ]
    ctx = MethodContext(env=env, seed=0)
    merges = method_merges("fastvid_meanq", items, 0.5, ctx)
    assert all(bool(m.anchors.any()) for m in merges)  # some tokens really are merges
    again = method_merges("fastvid_meanq", items[::-1], 0.5, ctx)[::-1]  # seeded per sample: order-free
    assert all(torch.equal(a.features, b.features) and torch.equal(a.keep, b.keep) for a, b in zip(merges, again))
    answers, kept, _ = answer_batch(env, samples, items, "fastvid_meanq", 0.5, ctx)
    assert kept == [m.count / (T * N) for m in merges]  # the budget counts output tokens (kept + merged)
    requests = [ScoreRequest(visual=m.visual(it.visual), prompt=it.prompt, keep=m.keep) for it, m in zip(items, merges)]
    logp = env.choice_logprobs(requests, ["A", "B"])
    assert answers == logp.argmax(dim=1).tolist()


@pytest.mark.parametrize("T, grid", [(1, (1, 1)), (3, (2, 2)), (5, (2, 3)), (9, (3, 3))])
@pytest.mark.parametrize("content", ["random", "static", "zeros"])
@pytest.mark.parametrize("rho", [0.05, 0.25, 1.0])
@pytest.mark.parametrize("name", ["fastvid_meanq", "holitom_meanq"])
def test_merging_methods_are_consistent_on_any_clip(name, T, grid, content, rho):
    """Short clips (T < c), one-token frames, identical frames and all-zero features: a consistent, finite
    output of at least one token, its merges inside its own output, and the same output for the same seed."""
    n = grid[0] * grid[1]
    g = torch.Generator().manual_seed(T * 100 + n)
    x = {
        "random": torch.randn(T, n, 5, generator=g),
        "static": torch.randn(1, n, 5, generator=g).expand(T, n, 5).clone(),
        "zeros": torch.zeros(T, n, 5),
    }[content]
    compressor = get_compressor(name)
    a = compressor.compress(x, rho, grid, generator=torch.Generator().manual_seed(0))
    b = compressor.compress(x, rho, grid, generator=torch.Generator().manual_seed(0))
    assert bool(torch.isfinite(a.features).all()) and 1 <= a.count <= T * n
    assert torch.equal(a.features[~a.anchors], x[~a.anchors])  # only anchors' rows change
    assert torch.equal(a.keep, b.keep) and torch.equal(a.features, b.features)


def test_scorerl_eval_runs_a_merging_method(tmp_path):
    """`scorerl eval --methods fastvid_meanq,holitom_meanq` end to end on real clips: rows, kept fraction."""
    from conftest import write_tiny_dataset

    from scorerl.cli import main
    from scorerl.envs.build import build_tiny_env

    write_tiny_dataset(tmp_path, videos=4, images=0, frames=8, size=32)
    build_tiny_env("qwen2_5_vl", seed=0).save_pretrained(tmp_path / "env")
    out = tmp_path / "res.json"
    overrides = [
        f"env.path={tmp_path / 'env'}",
        "env.device=cpu",
        "data.num_frames=8",
        "data.frame_size=32",
        f"data.cache_dir={tmp_path / 'cache'}",
        f"data.eval_manifest={tmp_path / 'train.jsonl'}",
        "eval.bootstrap=0",
    ]
    config = tmp_path / "run.yaml"
    config.write_text("run:\n  name: merging\n")
    assert main(
        [
            "eval",
            str(config),
            *overrides,
            "--methods",
            "fastvid_meanq,holitom_meanq",
            "--ratios",
            "0.25",
            "--out",
            str(out),
        ]
    ) in (0, None)

    rows = {r["method"]: r for r in json.loads(out.read_text())["results"]}
    assert set(rows) == {"full", "fastvid_meanq", "holitom_meanq"}
    for name in ("fastvid_meanq", "holitom_meanq"):
        assert rows[name]["n"] == 4 and 0 < rows[name]["kept_fraction"] < 1
