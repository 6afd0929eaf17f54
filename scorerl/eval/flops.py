"""Analytic prefill FLOPs of a decoder LLM, to put next to measured latencies.

Counting convention (the one token-pruning papers use): a matmul of [L, a] by [a, b] costs 2 * L * a * b FLOPs;
norms, activations, rotary embeddings and softmax are ignored (a few % at most). Per decoder layer with L tokens:

    projections  2 * L * d * (d_q + 2 * d_kv) + 2 * L * d_q * d     q, k, v, o      (d_q = heads * head_dim)
    attention    4 * L^2 * d_q                                       Q K^T and A V over the full L x L square
    MLP          2 * L * d * I * 3                                   gate, up, down (SwiGLU)

plus the LM head on the last `logits` tokens only (the answer's likelihood needs one prefill, `logits_to_keep`).
FastV prunes inside the LLM, so its prefill is counted as it runs (`fastv_prefill_flops`): layers < K at the full
length, layers >= K at the pruned length.
The attention term counts the whole square, not the causal half, as FastV and its followers do; the ratio
full / kept is what matters and the quadratic term is why pruning pays off more than linearly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class LMDims:
    """The sizes of a decoder LLM that decide its prefill cost."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int

    def to_dict(self) -> dict:
        return asdict(self)


def lm_dims(config) -> LMDims:
    """LMDims of a transformers config: a VLM config (its text_config is used) or a plain LLM config."""
    text = getattr(config, "text_config", None) or config
    hidden, heads = int(text.hidden_size), int(text.num_attention_heads)
    head_dim = getattr(text, "head_dim", None) or hidden // heads
    return LMDims(
        hidden=hidden,
        layers=int(text.num_hidden_layers),
        heads=heads,
        kv_heads=int(getattr(text, "num_key_value_heads", None) or heads),
        head_dim=int(head_dim),
        intermediate=int(text.intermediate_size),
        vocab=int(text.vocab_size),
    )


def prefill_flops(dims: LMDims, tokens: int, logits: int = 1) -> dict:
    """FLOPs of one prefill over `tokens` tokens -> {"linear", "attention", "head", "total"} (floats)."""
    if tokens < 0 or logits < 0:
        raise ValueError(f"tokens and logits must be >= 0, got {tokens}, {logits}")
    L, d = float(tokens), float(dims.hidden)
    d_q, d_kv = float(dims.heads * dims.head_dim), float(dims.kv_heads * dims.head_dim)
    per_layer_linear = 2 * L * d * (d_q + 2 * d_kv) + 2 * L * d_q * d + 2 * L * d * dims.intermediate * 3
    per_layer_attention = 4 * L * L * d_q
    linear = dims.layers * per_layer_linear
    attention = dims.layers * per_layer_attention
    head = 2.0 * min(logits, tokens) * d * dims.vocab
    return {"linear": linear, "attention": attention, "head": head, "total": linear + attention + head}


def fastv_prefill_flops(dims: LMDims, full_tokens: int, kept_tokens: int, layer: int, logits: int = 1) -> dict:
    """FLOPs of a FastV prefill -> {"linear", "attention", "head", "total"}: its first `layer` (K) layers run over
    full_tokens, the other layers over kept_tokens (the sequence after pruning), the LM head on the last `logits`.

    K = 0 is pruning at the input (prefill_flops(dims, kept_tokens)); K = dims.layers is no pruning at all
    (prefill_flops(dims, full_tokens)). The ranking itself, one query row's attention in layer K-1, costs about
    4 * full_tokens * d_q and is left out, like the other vector operations."""
    if not 0 <= layer <= dims.layers:
        raise ValueError(f"layer must be in [0, {dims.layers}], got {layer}")
    if kept_tokens > full_tokens:
        raise ValueError(f"kept_tokens ({kept_tokens}) cannot exceed full_tokens ({full_tokens})")
    before = prefill_flops(replace(dims, layers=layer), full_tokens, logits=0)  # layers 0..K-1, no head
    after = prefill_flops(replace(dims, layers=dims.layers - layer), kept_tokens, logits)  # layers K.., the head
    out = {key: before[key] + after[key] for key in ("linear", "attention", "head")}
    out["total"] = out["linear"] + out["attention"] + out["head"]
    return out


def policy_flops(num_tokens: int, state_dim: int, hidden: int, layers: int) -> float:
    """FLOPs of the SCORE policy MLP (S -> hidden -> ... -> 1) over num_tokens tokens (state building ignored)."""
    widths = [state_dim] + [hidden] * (layers - 1) + [1]
    return float(sum(2 * num_tokens * a * b for a, b in zip(widths[:-1], widths[1:])))
