"""FastV inside the LLM: layers < K see every token, layers >= K only the visual tokens the prompt attends to most.

The published FastV (Chen et al., "An Image is Worth 1/2 Tokens After Layer 2", ECCV 2024, arXiv 2403.06764;
official code github.com/pkunlp-icler/FastV, `LlamaModel.forward` with `fast_v_inplace`) prunes in the middle of
ONE forward. Reading that code: when the layer loop reaches index K (0-based, `fast_v_agg_layer`, 2 in the paper),
`layer_outputs[1]` is the attention map [B, H, L, L] returned by the PREVIOUS layer, K-1; it takes its mean over
heads, batch element 0, the LAST query row ([-1]: the last token of the prompt, since the official code runs a
prefill over the prompt), slices the image-token columns and keeps their top-k; the kept image tokens and every
other token go on to layers K.. with `position_ids = keep_indexs`, i.e. their original positions. Layers 0..K-1 run
on the full sequence.

Here the same, batched and for teacher-forced scoring (`env.score`'s quantity):

  1. left_pad the requests' full sequences (`HFVideoEnv.build_sequence`: kept tokens at their original
     positions, 3-D M-RoPE ids for Qwen2.5-VL), embed, rotary embeddings from the model's own `rotary_emb`
  2. run decoder layers 0..K-2; from the input of layer K-1 compute the attention row of each request's last
     PROMPT token (the column just before its target), heads averaged (`last_query_attention`), then layer K-1
  3. keep each row's top-k visual columns (ties: the earlier token) and every non-visual column (text, the
     LLaVA-OneVision newline suffix, the target), re-pack them right-aligned (`_repack`): hidden states and
     position ids are SLICED, never recomputed, so each kept token keeps its original position
  4. layers K.. on the pruned batch (a fresh causal mask of the new width), final norm, lm_head on the last
     columns -> logits

One pass serves both the ranking and the scoring: attention is causal, so the last prompt token's row never sees
the target tokens after it, and the hidden states it reads (layers < K) do not depend on them either. The ranking
is therefore exactly the one a target-less prefill would give (what FastV does at inference), without a second
forward. The row is computed from the layer's own q/k projections and rotary function (Qwen2-style attention, which
both architectures here share) for the B query rows only, so no [B, H, L, L] attention map is materialised and the
layers themselves keep their attention implementation (sdpa). tests/core/test_fastv.py pins it against the eager
attention maps (`HFVideoEnv.last_token_attention`).

Shapes: B requests in a chunk, W padded width, D hidden size, P position rows (3 for Qwen2.5-VL, 1 otherwise),
V vocabulary.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import torch

from scorerl.budget import num_keep
from scorerl.envs.hf import Sequence, choice_scores, chunk_by_budget, left_pad, target_logprobs
from scorerl.errors import EnvError
from scorerl.types import ScoreRequest


@dataclass
class PrunedOutput:
    """What one layer-pruned pass gives for one request."""

    logits: torch.Tensor  # [need, V] at the request's last `need` positions
    kept: torch.Tensor  # [k] flat indices (t * N + n) of the visual tokens kept from layer K on, increasing


# --------------------------------------------------------------------------------------------- model pieces


def _language_model(env):
    """The decoder stack (embeddings, layers, norm, rotary_emb) of both architectures' transformers classes."""
    return env.model.model.language_model


def _causal_masks(lm, embeds: torch.Tensor, mask: torch.Tensor) -> dict:
    """{layer type: mask} for embeds [B, W, D] and the 2-D padding mask [B, W], built as the model's forward
    builds them (so each attention implementation gets the mask form it expects). position_ids are not passed:
    with an explicit 2-D mask transformers never reads them (they only matter for packed sequences)."""
    from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask

    kwargs = dict(config=lm.config, inputs_embeds=embeds, attention_mask=mask, cache=None, position_ids=None)
    masks = {"full_attention": create_causal_mask(**kwargs)}
    if getattr(lm, "has_sliding_layers", False):
        masks["sliding_attention"] = create_sliding_window_causal_mask(**kwargs)
    return masks


@dataclass
class _Batch:
    """The padded batch as the decoder layers take it."""

    hidden: torch.Tensor  # [B, W, D]
    mask: torch.Tensor  # [B, W] 1 = real token, 0 = left padding
    positions: torch.Tensor  # [P, B, W] our position ids (original positions of every token present)


def _layer_inputs(env, lm, batch: _Batch) -> dict:
    """Keyword arguments every decoder layer gets for this batch: causal masks, rotary (cos, sin) of the
    batch's position ids, and the 2-D position ids the layer itself sees (Qwen2.5-VL passes none for its 3-D
    M-RoPE ids; Qwen2 passes its [B, W] ids), as the model's own forward does."""
    model_positions = env.model_positions(batch.positions)  # [3, B, W] or [B, W]
    return {
        "masks": _causal_masks(lm, batch.hidden, batch.mask),
        "position_embeddings": lm.rotary_emb(batch.hidden, model_positions),  # ([B, W, hd], [B, W, hd])
        "position_ids": model_positions if model_positions.ndim == 2 else None,
    }


def _run_layers(lm, layers: range, hidden: torch.Tensor, inputs: dict) -> torch.Tensor:
    """hidden [B, W, D] through decoder layers `layers` (no cache) -> [B, W, D]."""
    for i in layers:
        hidden = lm.layers[i](
            hidden,
            attention_mask=inputs["masks"][lm.config.layer_types[i]],
            position_embeddings=inputs["position_embeddings"],
            position_ids=inputs["position_ids"],
            use_cache=False,
        )
    return hidden


def last_query_attention(
    layer, hidden: torch.Tensor, position_embeddings, mask: torch.Tensor, query: torch.Tensor
) -> torch.Tensor:
    """Attention [B, W] (float32, mean over heads) that query column query[b] of each row pays every column in
    decoder `layer`, given the layer's INPUT hidden [B, W, D].

    The layer's own input norm, q/k projections and rotary function, GQA key sharing, its scaling, a causal +
    padding mask and a float32 softmax: the row eager attention would return, for B query rows only.
    """
    attn = layer.self_attn
    rotary = sys.modules[type(attn).__module__].apply_rotary_pos_emb  # the function the layer itself applies
    B, W, _ = hidden.shape
    rows = torch.arange(B, device=hidden.device)
    normed = layer.input_layernorm(hidden)  # [B, W, D]
    q = attn.q_proj(normed[rows, query]).view(B, -1, 1, attn.head_dim)  # [B, H, 1, hd]
    k = attn.k_proj(normed).view(B, W, -1, attn.head_dim).transpose(1, 2)  # [B, Hkv, W, hd]
    cos, sin = position_embeddings  # [B, W, hd] each
    q = rotary(q, q, cos[rows, query][:, None], sin[rows, query][:, None])[0]
    k = rotary(k, k, cos, sin)[1]
    k = k.repeat_interleave(attn.num_key_value_groups, dim=1)  # [B, H, W, hd]: each query head's key head
    scores = (q @ k.transpose(2, 3)).squeeze(2).float() * attn.scaling  # [B, H, W]
    # causal (nothing after the query, so never the target) and no padding
    seen = mask.bool() & (torch.arange(W, device=hidden.device)[None] <= query[:, None])  # [B, W]
    scores = scores.masked_fill(~seen[:, None], float("-inf"))
    return torch.softmax(scores, dim=-1).mean(1)  # [B, W]


# --------------------------------------------------------------------------------------------- pruning


def _visual_columns(seqs: list[Sequence], width: int) -> list[torch.Tensor]:
    """For each right-aligned sequence, the padded-batch columns [n_vis] of its visual tokens (suffix excluded)."""
    return [torch.arange(s.kept.numel()) + (width - len(s)) + s.visual_start for s in seqs]


def _select(attention: torch.Tensor, columns: list[torch.Tensor], counts: list[int]) -> list[torch.Tensor]:
    """Per row, which of its visual columns stay: the counts[b] with the highest attention[b] (ties: the earlier
    token, as compress.select.topk_mask breaks them) -> positions in `columns[b]` [k_b], increasing."""
    out = []
    for b, (cols, k) in enumerate(zip(columns, counts)):
        scores = attention[b, cols.to(attention.device)].cpu()  # [n_vis]
        order = torch.argsort(scores, descending=True, stable=True)
        out.append(order[:k].sort().values)
    return out


def _repack(batch: _Batch, keep: torch.Tensor) -> _Batch:
    """The columns keep [B, W] (bool) of each row, right-aligned again in a batch of the new width W'.

    Hidden states and position ids are gathered (sliced), so every kept token keeps its original position;
    padding columns get hidden 0, mask 0, position 1, as left_pad fills them.
    """
    B, W, D = batch.hidden.shape
    lengths = keep.sum(1).tolist()
    width = max(lengths)
    device = batch.hidden.device
    index = torch.zeros(B, width, dtype=torch.long, device=device)  # [B, W'] source column of each new column
    mask = torch.zeros(B, width, dtype=batch.mask.dtype, device=device)  # [B, W']
    for b, n in enumerate(lengths):
        index[b, width - n :] = keep[b].nonzero().squeeze(1)
        mask[b, width - n :] = 1
    real = mask.bool()
    hidden = batch.hidden.gather(1, index[..., None].expand(B, width, D))  # [B, W', D]
    hidden = torch.where(real[..., None], hidden, torch.zeros((), dtype=hidden.dtype, device=device))
    positions = batch.positions.gather(2, index[None].expand(batch.positions.shape[0], B, width))  # [P, B, W']
    positions = positions.masked_fill(~real[None], 1)
    return _Batch(hidden=hidden, mask=mask, positions=positions)


def _check_layer(env, layer: int) -> int:
    n = len(_language_model(env).layers)
    if not 1 <= layer <= n:
        raise EnvError(
            f"FastV layer K={layer} is out of range: need 1 <= K <= {n} (the LLM's layers); layers < K "
            f"see every token and layer K-1's attention ranks them"
        )
    return n


# --------------------------------------------------------------------------------------------- the pass


@torch.no_grad()
def layer_pruned_forward(
    env, seqs: list[Sequence], layer: int, counts: list[int], need: list[int]
) -> list[PrunedOutput]:
    """FastV-pruned forwards of `seqs` (grouped by env.token_budget, like env._last_logits): layers < `layer` on
    every token, layer `layer`-1's last-prompt-token attention ranks each sequence's visual tokens, layers >=
    `layer` on its top counts[i] visual tokens and all its other tokens. The last prompt token of a sequence is the
    one before its target (seq.target, its last tokens). -> per sequence, logits [need[i], V] of its last need[i]
    positions and the visual tokens kept."""
    _check_layer(env, layer)
    out: list[PrunedOutput | None] = [None] * len(seqs)
    for chunk in chunk_by_budget([len(s) for s in seqs], env.token_budget):
        results = _pruned_chunk(
            env, [seqs[i] for i in chunk], layer, [counts[i] for i in chunk], max(need[i] for i in chunk)
        )
        for (logits, kept), i in zip(results, chunk):
            out[i] = PrunedOutput(logits=logits[logits.shape[0] - need[i] :], kept=kept)
    return [o for o in out if o is not None]  # every sequence belongs to one chunk: none is left None


def _pruned_chunk(env, seqs: list[Sequence], layer: int, counts: list[int], need: int):
    """One batched layer-pruned forward -> [(logits [need, V], kept flat indices [k])] per sequence."""
    lm = _language_model(env)
    embeds, mask, positions = left_pad(seqs)  # [B, W, D], [B, W], [P, B, W]
    batch = _Batch(hidden=embeds, mask=mask, positions=positions)
    B, W, _ = embeds.shape
    inputs = _layer_inputs(env, lm, batch)
    hidden = _run_layers(lm, range(layer - 1), embeds, inputs)  # the input of layer K-1
    # the last prompt token: the column before the target (targets end at the last column, right-aligned)
    query = torch.tensor([W - 1 - s.target.numel() for s in seqs], device=embeds.device)  # [B]
    attention = last_query_attention(lm.layers[layer - 1], hidden, inputs["position_embeddings"], mask, query)
    hidden = _run_layers(lm, range(layer - 1, layer), hidden, inputs)  # layer K-1 itself, still on every token

    columns = _visual_columns(seqs, W)
    chosen = _select(attention, columns, [min(k, c.numel()) for k, c in zip(counts, columns)])
    keep = mask.bool().clone()  # [B, W]: every real token ...
    for b, (cols, pick) in enumerate(zip(columns, chosen)):
        keep[b, cols.to(keep.device)] = False  # ... but the visual ones, ...
        keep[b, cols[pick].to(keep.device)] = True  # ... of which only the chosen stay
    batch = _repack(_Batch(hidden=hidden, mask=mask, positions=positions), keep)

    hidden = _run_layers(lm, range(layer, len(lm.layers)), batch.hidden, _layer_inputs(env, lm, batch))
    logits = env.model.lm_head(lm.norm(hidden[:, -need:]))  # [B, need, V]: the norm is per token
    return [(logits[b], s.kept[pick]) for b, (s, pick) in enumerate(zip(seqs, chosen))]


# --------------------------------------------------------------------------------------------- the env view


class FastVView:
    """An HFVideoEnv scoring with FastV pruning inside its LLM: layers < `layer` (K) see every visual token, layers
    >= K only the num_keep(rho, T * N) the last prompt token attends to most in layer K-1 (heads averaged).

    It answers what the evaluation asks of an environment (score, token_logprobs, choice_logprobs, choice_ids,
    generate, tokenizer) with the same semantics as HFVideoEnv's own methods. A request's `keep` mask, if any,
    drops tokens at the input as usual; FastV then ranks the tokens present.
    """

    def __init__(self, env, layer: int, rho: float):
        _check_layer(env, layer)
        num_keep(rho, 1)  # checks rho
        self.env, self.layer, self.rho = env, int(layer), float(rho)
        self.tokenizer = env.tokenizer
        self.last_kept: list[torch.Tensor] = []  # flat kept indices [k] per request of the latest call

    def _counts(self, requests: list[ScoreRequest]) -> list[int]:
        return [num_keep(self.rho, int(r.visual.features.shape[0] * r.visual.features.shape[1])) for r in requests]

    def _forward(self, requests: list[ScoreRequest], seqs: list[Sequence], need: list[int]) -> list[torch.Tensor]:
        outputs = layer_pruned_forward(self.env, seqs, self.layer, self._counts(requests), need)
        self.last_kept = [o.kept for o in outputs]
        return [o.logits for o in outputs]

    def token_logprobs(self, requests: list[ScoreRequest], with_greedy: bool = False) -> list:
        """As HFVideoEnv.token_logprobs: log-prob [t] of each target token (and whether it is the argmax)."""
        seqs = [self.env.build_sequence(r) for r in requests]
        return target_logprobs(seqs, lambda need: self._forward(requests, seqs, need), with_greedy)

    def score(self, requests: list[ScoreRequest]) -> torch.Tensor:
        """Mean cross-entropy of each request's target tokens -> [R] (env.score's quantity, FastV-pruned)."""
        if not requests:
            return torch.zeros(0)
        return torch.stack([-lp.mean() for lp in self.token_logprobs(requests)]).cpu()

    def choice_ids(self, choices: list[str]) -> list[int]:
        return self.env.choice_ids(choices)

    def choice_logprobs(self, requests: list[ScoreRequest], choices: list[str], normalize: bool = True) -> torch.Tensor:
        """As HFVideoEnv.choice_logprobs: [R, C] log-probs of each single-token choice at the answer position."""
        ids = torch.tensor(self.choice_ids(choices), device=self.env.device)
        if not requests:
            return torch.zeros(0, len(choices))
        seqs = [self.env.build_sequence(r, with_target=False) for r in requests]
        logits = torch.stack([lg[-1] for lg in self._forward(requests, seqs, [1] * len(seqs))]).float()  # [R, V]
        return choice_scores(logits, ids, normalize)

    def generate(self, request: ScoreRequest, max_new_tokens: int = 16) -> str:
        return self.tokenizer.decode(self.generate_ids(request, max_new_tokens), skip_special_tokens=True)

    @torch.no_grad()
    def generate_ids(self, request: ScoreRequest, max_new_tokens: int = 16) -> list[int]:
        """Greedy decoding, FastV-pruned -> new token ids (stop token excluded).

        Each step re-runs the pruned pass with the tokens generated so far as the target: the ranking row stays
        the last PROMPT token's, so this is exactly what a KV cache pruned at prefill gives (layers < K cache every
        token, layers >= K the kept ones), at the cost of one pass per new token (answers here are short). New
        tokens continue the text positions (last prompt position + 1, ...), as in HFVideoEnv.generate_ids.
        """
        prompt = self.env.build_sequence(request, with_target=False)
        embed = self.env.model.get_input_embeddings()
        stop = self.env._stop_ids()
        new: list[int] = []
        for _ in range(max_new_tokens):
            seq = _extend(prompt, torch.tensor(new, dtype=torch.long, device=prompt.embeds.device), embed)
            token = int(self._forward([request], [seq], [1])[0][-1].argmax())
            if token in stop:
                break
            new.append(token)
        return new


def _extend(prompt: Sequence, ids: torch.Tensor, embed) -> Sequence:
    """The prompt sequence followed by tokens ids [n] as its target, at positions last prompt position + 1.. ."""
    steps = torch.arange(1, ids.numel() + 1, device=prompt.positions.device)  # [n]
    positions = prompt.positions[:, -1:] + steps[None]  # [P, n]
    return Sequence(
        embeds=torch.cat([prompt.embeds, embed(ids).to(prompt.embeds.dtype)]),
        positions=torch.cat([prompt.positions, positions], dim=1),
        target=ids,
        visual_start=prompt.visual_start,
        kept=prompt.kept,
    )
