"""FastV inside the LLM (scorerl/envs/layer_prune.py): exact against a one-request reference, really prunes.

Tiny random models (fp32, CPU) of both architectures with 4 decoder layers, so K = 2 (the paper's) has layers on
both sides of the cut. initializer_range 0.1 makes the answer depend visibly on the visual tokens.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scorerl.compress.select import num_keep, topk_mask
from scorerl.envs import ARCHS, env_class
from scorerl.envs.build import build_tiny_env
from scorerl.envs.layer_prune import FastVView
from scorerl.errors import ConfigError, EnvError
from scorerl.eval.flops import LMDims, fastv_prefill_flops, prefill_flops
from scorerl.types import ScoreRequest

TOL = 1e-5
LAYERS = 4
F, SIZE = 4, 64  # 4 frames of 64x64 -> [T, N] = [4, 16] in both tiny archs
PROMPT = "What color is the ball? A. red B. blue C. green D. yellow"

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module", params=ARCHS)
def env(request):
    return build_tiny_env(request.param, seed=0, initializer_range=0.1, num_layers=LAYERS)


@pytest.fixture(scope="module")
def visual(env):
    return env.encode(np.random.default_rng(0).integers(0, 256, (F, SIZE, SIZE, 3), dtype=np.uint8))


def _requests(visual) -> list[ScoreRequest]:
    """Targets and prompts of different lengths (so the batch is padded), one with an input keep mask."""
    T, N = visual.features.shape[:2]
    keep = torch.rand(T, N, generator=torch.Generator().manual_seed(3)) < 0.6
    return [
        ScoreRequest(visual, PROMPT, target="B. blue"),
        ScoreRequest(visual, PROMPT, target="A"),
        ScoreRequest(visual, "Is it moving? A. yes B. no", target="A. yes"),
        ScoreRequest(visual, PROMPT, target="D. yellow", keep=keep),
    ]


# --------------------------------------------------------------------------------------------- reference


def _run_layers(env, layers, hidden, positions):
    """hidden [1, L, D] through `layers` with an explicit additive causal mask (eager attention)."""
    lm = env.model.model.language_model
    L = hidden.shape[1]
    causal = torch.full((L, L), torch.finfo(hidden.dtype).min).triu(1)[None, None]  # [1, 1, L, L]
    model_positions = env.model_positions(positions)
    rope = lm.rotary_emb(hidden, model_positions)
    for i in layers:
        hidden = lm.layers[i](
            hidden,
            attention_mask=causal,
            position_embeddings=rope,
            position_ids=model_positions if model_positions.ndim == 2 else None,
        )
    return hidden


def reference_fastv(env, request: ScoreRequest, K: int, rho: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The official in-place FastV written out for ONE request, no padding: layers 0..K-1 on every token (eager,
    so layer K-1 returns its attention map), that map's last prompt-token row averaged over heads ranks the visual
    tokens, the hidden states and position ids are SLICED to the kept columns, layers K.. run on them.
    -> (target log-probs [t], kept flat indices)."""
    lm = env.model.model.language_model
    seq = env.build_sequence(request)
    L, t = len(seq), seq.target.numel()
    T, N = request.visual.features.shape[:2]
    captured = {}
    hook = lm.layers[K - 1].self_attn.register_forward_hook(lambda m, a, out: captured.update(w=out[1]))
    previous = env.model.config.text_config._attn_implementation
    env.model.set_attn_implementation({"text_config": "eager"})
    try:
        with torch.no_grad():
            hidden = _run_layers(env, range(K), seq.embeds[None], seq.positions[:, None])
            row = captured["w"][0, :, L - t - 1].float().mean(0)  # [L]: the last prompt token, heads averaged
            visual_cols = torch.arange(seq.kept.numel()) + seq.visual_start
            k = min(num_keep(rho, T, N), visual_cols.numel())
            top = torch.argsort(row[visual_cols], descending=True, stable=True)[:k]
            keep = torch.ones(L, dtype=torch.bool)
            keep[visual_cols] = False
            keep[visual_cols[top]] = True
            cols = keep.nonzero().squeeze(1)
            hidden = _run_layers(env, range(K, LAYERS), hidden[:, cols], seq.positions[:, None][:, :, cols])
            logits = env.model.lm_head(lm.norm(hidden))[0, -t - 1 : -1]  # [t, V]
    finally:
        hook.remove()
        env.model.set_attn_implementation({"text_config": previous})
    logp = torch.log_softmax(logits.float(), dim=-1).gather(1, seq.target[:, None]).squeeze(1)
    return logp, seq.kept[top.sort().values]


# --------------------------------------------------------------------------------------------- exactness


@pytest.mark.parametrize("K", [1, 2, LAYERS])
def test_everything_kept_equals_score(env, visual, K):
    reqs = _requests(visual)
    view = FastVView(env, K, 1.0)
    assert (view.score(reqs) - env.score(reqs)).abs().max() <= TOL
    letters = ["A", "B", "C", "D"]
    assert (view.choice_logprobs(reqs, letters) - env.choice_logprobs(reqs, letters)).abs().max() <= TOL


@pytest.mark.parametrize("K, rho", [(2, 0.1), (2, 0.3), (1, 0.2), (3, 0.5)])
def test_batched_equals_one_request_reference(env, visual, K, rho):
    reqs = _requests(visual)
    view = FastVView(env, K, rho)
    batched = view.token_logprobs(reqs)
    kept = view.last_kept
    for i, req in enumerate(reqs):
        ref, ref_kept = reference_fastv(env, req, K, rho)
        assert (batched[i] - ref).abs().max() <= TOL, i
        assert torch.equal(kept[i], ref_kept), i
    # grouped into several forwards by the token budget: the same numbers
    small = env_class(env.arch)(env.model, env.tokenizer, token_budget=150)
    chunked = FastVView(small, K, rho).token_logprobs(reqs)
    assert max(float((a - b).abs().max()) for a, b in zip(batched, chunked)) <= TOL


@pytest.mark.parametrize("rho", [0.1, 0.25, 0.5])
def test_kept_tokens_are_the_top_of_layer_k_minus_1_attention(env, visual, rho):
    reqs = _requests(visual)[:3]  # no input mask: FastV ranks every visual token
    view = FastVView(env, 2, rho)
    view.score(reqs)
    for req, kept in zip(reqs, view.last_kept):
        T, N = req.visual.features.shape[:2]
        attention = env.last_token_attention(ScoreRequest(req.visual, req.prompt), layer=1)  # [T, N], eager
        expected = topk_mask(attention, rho, "global").view(-1).nonzero().squeeze(1)
        assert kept.numel() == num_keep(rho, T, N)
        assert torch.equal(kept, expected)
    # the target never takes part in the ranking: a target-less pass (choice_logprobs) keeps the same tokens
    first = view.last_kept
    view.choice_logprobs(reqs, ["A", "B"])
    assert all(torch.equal(a, b) for a, b in zip(first, view.last_kept))


def test_ranking_row_equals_eager_attention_in_a_padded_batch(env, visual):
    """last_query_attention (B query rows from the layer's own projections) is the eager map's row."""
    from scorerl.envs import layer_prune as lp
    from scorerl.envs.hf import left_pad

    reqs = _requests(visual)[:3]
    seqs = [env.build_sequence(r) for r in reqs]
    lm = lp._language_model(env)
    embeds, mask, positions = left_pad(seqs)  # padded: the targets and prompts differ in length
    inputs = lp._layer_inputs(env, lm, lp._Batch(embeds, mask, positions))
    query = torch.tensor([embeds.shape[1] - 1 - s.target.numel() for s in seqs])
    columns = lp._visual_columns(seqs, embeds.shape[1])
    for K in (1, 2, 3):
        with torch.no_grad():
            hidden = lp._run_layers(lm, range(K - 1), embeds, inputs)
            rows = lp.last_query_attention(lm.layers[K - 1], hidden, inputs["position_embeddings"], mask, query)
        for b, req in enumerate(reqs):
            eager = env.last_token_attention(ScoreRequest(req.visual, req.prompt), layer=K - 1).view(-1)
            assert (rows[b, columns[b]] - eager).abs().max() <= 1e-6
        assert torch.allclose(rows.sum(1), torch.ones(len(reqs)))  # padding and the target get nothing


def test_pruning_changes_the_answer_likelihood(env, visual):
    reqs = _requests(visual)[:3]
    full = env.score(reqs)
    fastv = FastVView(env, 2, 0.1).score(reqs)
    assert (fastv - full).abs().min() > 1e-3  # the path really prunes
    # pruned at the input (fastv_input: the same tokens, but every layer sees only them) is another number
    T, N = visual.features.shape[:2]
    masks = [topk_mask(env.last_token_attention(ScoreRequest(r.visual, r.prompt), 1), 0.1) for r in reqs]
    at_input = env.score([ScoreRequest(r.visual, r.prompt, r.target, keep=m) for r, m in zip(reqs, masks)])
    assert (fastv - at_input).abs().min() > 1e-3
    # pruning after the last layer changes nothing
    assert (FastVView(env, LAYERS, 0.1).score(reqs) - full).abs().max() <= TOL


def test_generate(env, visual):
    req = ScoreRequest(visual, PROMPT)
    assert FastVView(env, 2, 1.0).generate_ids(req, max_new_tokens=4) == env.generate_ids(req, max_new_tokens=4)
    ids = FastVView(env, 2, 0.1).generate_ids(req, max_new_tokens=3)
    assert isinstance(ids, list) and len(ids) <= 3


def test_bad_arguments(env, visual):
    with pytest.raises(EnvError, match="out of range"):
        FastVView(env, LAYERS + 1, 0.5)
    with pytest.raises(EnvError, match="out of range"):
        FastVView(env, 0, 0.5)
    with pytest.raises(ValueError, match="rho"):
        FastVView(env, 2, 0.0)
    with pytest.raises(EnvError, match="empty target"):
        FastVView(env, 2, 0.5).score([ScoreRequest(visual, PROMPT)])


# --------------------------------------------------------------------------------------------- FLOPs


def test_fastv_prefill_flops():
    d = LMDims(hidden=4, layers=2, heads=2, kv_heads=1, head_dim=2, intermediate=8, vocab=10)
    assert fastv_prefill_flops(d, 10, 3, layer=0) == prefill_flops(d, 3)  # pruned at the input
    assert fastv_prefill_flops(d, 10, 3, layer=2) == prefill_flops(d, 10)  # never pruned
    one = fastv_prefill_flops(d, 10, 3, layer=1)  # one layer at 10 tokens, one at 3, the head once
    full, kept = prefill_flops(d, 10), prefill_flops(d, 3)
    assert one["linear"] == (full["linear"] + kept["linear"]) / 2
    assert one["attention"] == (full["attention"] + kept["attention"]) / 2
    assert one["head"] == kept["head"] and one["total"] == one["linear"] + one["attention"] + one["head"]
    real = LMDims(hidden=3584, layers=28, heads=28, kv_heads=4, head_dim=128, intermediate=18944, vocab=152064)
    pruned = fastv_prefill_flops(real, 8192 + 100, 820 + 100, layer=2)["total"]
    assert prefill_flops(real, 920)["total"] < pruned < prefill_flops(real, 8292)["total"]
    with pytest.raises(ValueError):
        fastv_prefill_flops(d, 10, 3, layer=3)
    with pytest.raises(ValueError):
        fastv_prefill_flops(d, 3, 10, layer=1)


# --------------------------------------------------------------------------------------------- the harness


def test_harness_scores_fastv_inside_the_llm(env, visual):
    from scorerl.eval.answer import predict
    from scorerl.eval.harness import answer_batch
    from scorerl.eval.methods import EvalItem, MethodContext, layer_pruned_env, method_masks
    from scorerl.types import Sample

    ctx = MethodContext(env=env, fastv_layer=2)
    items = [EvalItem(id=f"s{i}", visual=visual, prompt=p) for i, p in enumerate([PROMPT, "Is it red? A. yes B. no"])]
    samples = [
        Sample(id=it.id, media=None, kind="video", question="q", options=["a", "b"], answer="A", answer_index=0)
        for it in items
    ]
    with pytest.raises(ConfigError, match="inside the LLM"):
        method_masks("fastv", items, 0.1, ctx)
    answers, kept, _ = answer_batch(env, samples, items, "fastv", 0.1, ctx)
    T, N = visual.features.shape[:2]
    assert kept == [num_keep(0.1, T, N) / (T * N)] * 2
    view = layer_pruned_env("fastv", 0.1, ctx)
    requests = [ScoreRequest(it.visual, it.prompt) for it in items]
    assert answers == predict(view, requests, samples, "letter")
    # fastv_input is a keep mask: the top-k of the same attention
    masks = method_masks("fastv_input", items, 0.1, ctx)
    assert [int(m.sum()) for m in masks] == [num_keep(0.1, T, N)] * 2
