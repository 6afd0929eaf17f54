"""Compression methods by name -> keep masks for a batch of evaluation items.

    masks = method_masks("framediff", items, rho=0.1, ctx=MethodContext(env=env, seed=0))  # list of bool [T, N]

Names:
  full, uniform, random, pool, framediff, dycoke, dycoke_ttm+topk, vidcom2
          training-free baselines (scorerl.compress.baselines; dycoke and vidcom2 match the official code on
          the fixtures of tests/core/test_parity.py)
  fastv   keep the top-k visual tokens by the attention the last prompt token pays them in LLM layer K
          (Chen et al., "An Image is Worth 1/2 Tokens After Layer 2", ECCV 2024, arXiv 2403.06764), then answer
          with only those tokens. K counts layers from 1 as FastV does: its code ranks tokens, on reaching layer
          index K, by the attention map the previous layer (0-based K-1) returned; K=2 is the paper's setting.
          Realised here as two passes: one eager-attention forward up to that layer reads the map, averaged over
          heads (env.last_token_attention), then the usual prefill runs on the kept tokens alone. Real FastV prunes
          *inside* a single forward (layers < K see every token), so its accuracy can differ slightly and its
          prefill saving is smaller than the kept-token prefill timed by `scorerl bench`. It is also the one
          method here that sees the question (the attention is the prompt's) and needs attention maps, which is
          why FlashAttention kernels cannot serve it.
  score   the trained SCORE policy: surprise state -> MLP keep logits -> deterministic top-k at rho

Every method keeps exactly k = ceil(rho * T * N) tokens (`full` all; `score` with a per-unit policy
ceil(rho * N) per temporal unit), except the two published methods whose own budget rules decide: `vidcom2`
(per-frame budgets rounded one by one: a few tokens off k) and `dycoke` (its retention is fixed by T and its
pruning ratio and cannot go below about 31% at 16 units; `dycoke_ttm+topk` is our named variant that reaches k).
Every row reports the kept fraction it measured. Randomised methods are seeded per (seed, sample id, rho), so a mask does not
depend on batch size, order or `eval.limit`.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

import torch

from scorerl.compress.baselines import available as baseline_names
from scorerl.compress.baselines import get_compressor
from scorerl.compress.select import topk_mask
from scorerl.envs.base import VideoEnv
from scorerl.types import ScoreRequest, VisualTokens
from scorerl.errors import ConfigError
from scorerl.rng import sample_generator

HARNESS_METHODS = ("fastv", "score")  # methods that need the environment or a trained policy


def available_methods() -> list[str]:
    """Every name `method_masks` accepts."""
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
    policy: object | None = None  # TokenPolicy, for `score`
    seed: int = 0
    fastv_layer: int = 2  # FastV's K (1-based): the attention of 0-based layer K-1 ranks the tokens
    answer_format: str = "letter"  # data.answer_format: how an option is chosen (eval/answer.py)
    # (method, sample id) -> token scores [T, N]; attention maps and policy logits do not depend on rho, so they
    # are computed once per sample and reused at every ratio.
    scores: dict = field(default_factory=dict)


def method_masks(name: str, items: list[EvalItem], rho: float, ctx: MethodContext) -> list[torch.Tensor]:
    """Keep masks, one bool [T, N] (on the CPU) per item, for method `name` at keep ratio rho."""
    if name == "fastv":
        return [topk_mask(_cached(ctx, name, it, _fastv_scores), rho, "global") for it in items]
    if name == "score":
        if ctx.policy is None:
            raise ConfigError("method score needs a trained policy: pass --policy (policy folder or run folder)")
        scope = ctx.policy.config.topk_scope
        return [topk_mask(_cached(ctx, name, it, _policy_scores), rho, scope) for it in items]
    compressor = get_compressor(name)
    return [compressor.select(it.visual.features, rho, it.visual.grid,
                              generator=sample_generator(ctx.seed, it.id, rho)).cpu() for it in items]


def _cached(ctx: MethodContext, name: str, item: EvalItem, compute) -> torch.Tensor:
    key = (name, item.id)
    if key not in ctx.scores:
        ctx.scores[key] = compute(ctx, item).detach().float().cpu()
    return ctx.scores[key]


def _fastv_scores(ctx: MethodContext, item: EvalItem) -> torch.Tensor:
    """Attention [T, N] from the last prompt token to each visual token in LLM layer K (heads averaged)."""
    if ctx.env is None:
        raise ConfigError("method fastv needs the environment (its LLM attention)")
    request = ScoreRequest(visual=item.visual, prompt=item.prompt)
    attn = ctx.env.last_token_attention(request, ctx.fastv_layer - 1)  # env layers are 0-based
    T, N = item.visual.features.shape[:2]
    if tuple(attn.shape) != (T, N):
        raise RuntimeError(f"last_token_attention returned {tuple(attn.shape)}, expected {(T, N)}")
    return attn


def _policy_scores(ctx: MethodContext, item: EvalItem) -> torch.Tensor:
    """SCORE keep logits [T, N] of one video (state + MLP); top-k of logits == top-k of probabilities."""
    from scorerl.compress.policy import keep_logits

    with torch.inference_mode():
        return keep_logits(ctx.policy, item.visual.features, item.visual.grid)
