"""Compression methods by name -> keep masks for a batch of evaluation items (or, for a method that prunes inside
the LLM, the environment view that scores with it).

    masks = method_masks("framediff", items, rho=0.1, ctx=MethodContext(env=env, seed=0))  # list of bool [T, N]
    scorer = layer_pruned_env("fastv", rho=0.1, ctx=MethodContext(env=env))  # scorer.score(requests), ...

Names:
  full, uniform, random, pool, framediff, dycoke, dycoke_ttm+topk, vidcom2
          training-free baselines (scorerl.compress.baselines; dycoke and vidcom2 match the official code on
          the fixtures of tests/core/test_parity.py)
  fastv   the published FastV (Chen et al., "An Image is Worth 1/2 Tokens After Layer 2", ECCV 2024, arXiv
          2403.06764), pruning INSIDE the LLM: layers < K see every token; the attention the last prompt token
          pays each visual token in layer K-1 (0-based; heads averaged), the map the official code reads on
          reaching layer K, ranks them, and from layer K on only the top ceil(rho T N) (plus every text token)
          continue, at their original positions. rho is the fraction of visual tokens kept FROM LAYER K ON.
          K = eval.fastv_layer (2 in the paper). No input mask describes what the model saw, so the harness scores
          it through FastVView(env, K, rho) (scorerl/envs/layer_prune.py) and `method_masks` refuses it. It sees the
          question (the attention is the prompt's).
  fastv_input  [ours] FastV's ranking, pruned at the LLM INPUT: the same top-k of the same layer K-1 attention
          (layers < K see every token in both, so the ranking is the same), read by one eager-attention pass up
          to that layer (env.last_token_attention), then the usual prefill runs on the kept tokens alone, so
          layers < K see only them too. The cheaper (every layer at the pruned length) and harsher variant this
          harness called `fastv` before; a keep mask like every other method.
  score   the trained SCORE policy: surprise state -> MLP keep logits -> deterministic top-k at rho
  fastvid_meanq, holitom_meanq  [ours] MERGING methods (scorerl/compress/baselines/merging.py): their output
          is kept tokens plus merged tokens at their anchors' positions, so no keep mask alone describes it:
          `method_merges` gives one Merged record (keep mask + features with the merges in place) per item and
          `method_masks` refuses them. Their budget counts output tokens (kept + merged): FastVID's / HoliTom's
          own count, not ceil(rho T N)

Every method keeps exactly k = ceil(rho * T * N) tokens (`full` all; `fastv` from LLM layer K on, all before
it; `score` with a per-unit policy ceil(rho * N) per temporal unit), except the two published methods whose own
budget rules decide: `vidcom2` (per-frame budgets rounded one by one: a few tokens off k) and `dycoke` (its
retention is fixed by T and its pruning ratio and cannot go below about 31% at 16 units; `dycoke_ttm+topk` is our
named variant that reaches k). Every row reports the kept fraction it measured (`fastv`: from layer K on).
Randomised methods are seeded per (seed, sample id, rho), so a mask does not depend on batch size, order or
`eval.limit`.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from scorerl.compress.baselines import available as baseline_names
from scorerl.compress.baselines import get_compressor, is_merging
from scorerl.compress.baselines.merging import Merged, MergingCompressor
from scorerl.compress.select import num_keep, topk_mask
from scorerl.envs.base import VideoEnv
from scorerl.errors import ConfigError
from scorerl.rng import sample_generator
from scorerl.types import ScoreRequest, VisualTokens

if TYPE_CHECKING:
    from scorerl.compress.policy import TokenPolicy

HARNESS_METHODS = ("fastv", "fastv_input", "score")  # methods that need the environment or a trained policy
LAYER_PRUNED = ("fastv",)  # methods that prune inside the LLM: the harness scores them through layer_pruned_env


def available_methods() -> list[str]:
    """Every method name the harness accepts (`method_masks`; LAYER_PRUNED ones through `layer_pruned_env`)."""
    return sorted(set(baseline_names()) | set(HARNESS_METHODS))


def check_methods(names) -> list[str]:
    """Normalised method names (lower case, order kept, duplicates dropped); ConfigError names a misspelt one."""
    known = available_methods()
    out: list[str] = []
    for name in names:
        key = str(name).strip().lower()
        if key not in known:
            near = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise ConfigError(f"eval.methods: unknown method {name!r}{hint} (available: {', '.join(known)})")
        if key not in out:
            out.append(key)
    return out


@dataclass
class EvalItem:
    """One sample as the methods see it: its id (seeds random methods), its visual tokens and its prompt."""

    id: str
    visual: VisualTokens
    prompt: str


@dataclass
class MethodContext:
    """What the methods may need besides the features, shared over a whole evaluation."""

    env: VideoEnv | None = None
    policy: TokenPolicy | None = None  # for `score`
    seed: int = 0
    fastv_layer: int = 2  # FastV's K: 0-based layer K-1's attention ranks the tokens; layers >= K see the kept ones
    answer_format: str = "letter"  # data.answer_format: how an option is chosen (eval/answer.py)
    # (method, sample id) -> token scores [T, N]; attention maps and policy logits do not depend on rho, so they
    # are computed once per sample and reused at every ratio.
    scores: dict = field(default_factory=dict)
    # A caller's own masking rules, by name: fn(items, rho, ctx) -> one bool [T, N] per item (e.g. a report's
    # reference selector that reads the world's scene records); scored like any method.
    custom: dict = field(default_factory=dict)


def method_masks(name: str, items: list[EvalItem], rho: float, ctx: MethodContext) -> list[torch.Tensor]:
    """Keep masks, one bool [T, N] (on the CPU) per item, for method `name` at keep ratio rho."""
    if name in ctx.custom:
        return ctx.custom[name](items, rho, ctx)
    if name in LAYER_PRUNED:
        raise ConfigError(
            f"method {name} prunes inside the LLM, so no input keep mask describes it: score it "
            f"through layer_pruned_env({name!r}, rho, ctx) (fastv_input is FastV pruned at the input)"
        )
    if is_merging(name):
        raise ConfigError(
            f"method {name} merges tokens, so no keep mask alone describes it: use "
            f"method_merges({name!r}, items, rho, ctx)"
        )
    if name == "fastv_input":
        return [topk_mask(_cached(ctx, name, it, _fastv_scores), rho, "global") for it in items]
    if name == "score":
        if ctx.policy is None:
            raise ConfigError("method score needs a trained policy: pass --policy (policy folder or run folder)")
        scope = ctx.policy.config.topk_scope
        return [topk_mask(policy_scores(ctx, it), rho, scope) for it in items]
    compressor = get_compressor(name)
    return [
        compressor.select(
            it.visual.features, rho, it.visual.grid, generator=sample_generator(ctx.seed, it.id, rho)
        ).cpu()
        for it in items
    ]


def method_merges(name: str, items: list[EvalItem], rho: float, ctx: MethodContext) -> list[Merged]:
    """For a merging method: one Merged record per item (keep bool [T, N] and features [T, N, D] on the CPU, the
    merges in their anchors' rows); score it as ScoreRequest(visual=m.visual(item.visual), keep=m.keep)."""
    compressor = get_compressor(name) if is_merging(name) else None
    if not isinstance(compressor, MergingCompressor):
        raise ValueError(f"{name!r} does not merge tokens: use method_masks")
    out = []
    for it in items:
        m = compressor.compress(
            it.visual.features, rho, it.visual.grid, generator=sample_generator(ctx.seed, it.id, rho)
        )
        out.append(Merged(keep=m.keep.cpu(), features=m.features.cpu(), anchors=m.anchors.cpu()))
    return out


def layer_pruned_env(name: str, rho: float, ctx: MethodContext):
    """For a method of LAYER_PRUNED: the environment view that scores with its pruning inside the LLM (same
    score / choice_logprobs / token_logprobs / generate as the environment)."""
    if name != "fastv":
        raise ValueError(f"{name!r} does not prune inside the LLM (LAYER_PRUNED: {', '.join(LAYER_PRUNED)})")
    from scorerl.envs.hf import HFVideoEnv
    from scorerl.envs.layer_prune import FastVView

    if ctx.env is None:
        raise ConfigError("method fastv needs the environment (it prunes inside its LLM)")
    if not isinstance(ctx.env, HFVideoEnv):
        raise ConfigError(
            f"method fastv drives the decoder layers of a transformers environment (HFVideoEnv); "
            f"{type(ctx.env).__name__} is not one (fastv_input needs only last_token_attention)"
        )
    return FastVView(ctx.env, ctx.fastv_layer, rho)


def layer_pruned_kept(item: EvalItem, rho: float) -> float:
    """The fraction of an item's visual tokens a LAYER_PRUNED method keeps from layer K on: ceil(rho T N) / T N."""
    T, N = item.visual.features.shape[:2]
    return num_keep(rho, T, N) / (T * N)


def _cached(ctx: MethodContext, name: str, item: EvalItem, compute) -> torch.Tensor:
    key = (name, item.id)
    if key not in ctx.scores:
        ctx.scores[key] = compute(ctx, item).detach().float().cpu()
    return ctx.scores[key]


def policy_scores(ctx: MethodContext, item: EvalItem) -> torch.Tensor:
    """The trained policy's keep logits [T, N] of one item (cached in ctx: computed once for every ratio)."""
    return _cached(ctx, "score", item, _policy_scores)


def _fastv_scores(ctx: MethodContext, item: EvalItem) -> torch.Tensor:
    """Attention [T, N] from the last prompt token to each visual token in LLM layer K (1-based; heads averaged):
    FastV's ranking, for fastv_input."""
    if ctx.env is None:
        raise ConfigError("method fastv_input needs the environment (its LLM attention)")
    request = ScoreRequest(visual=item.visual, prompt=item.prompt)
    attn = ctx.env.last_token_attention(request, ctx.fastv_layer - 1)  # env layers are 0-based
    T, N = item.visual.features.shape[:2]
    if tuple(attn.shape) != (T, N):
        raise RuntimeError(f"last_token_attention returned {tuple(attn.shape)}, expected {(T, N)}")
    return attn


def _policy_scores(ctx: MethodContext, item: EvalItem) -> torch.Tensor:
    """SCORE keep logits [T, N] of one video (state + MLP); top-k of logits == top-k of probabilities."""
    from scorerl.compress.policy import keep_logits

    if ctx.policy is None:
        raise ConfigError("method score needs a trained policy: pass --policy (policy folder or run folder)")
    with torch.inference_mode():
        return keep_logits(ctx.policy, item.visual.features, item.visual.grid)
