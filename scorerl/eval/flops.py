"""Analytic prefill FLOPs of a decoder LLM, to put next to measured latencies.

Counting convention (the one token-pruning papers use): a matmul of [L, a] by [a, b] costs 2 * L * a * b FLOPs;
norms, activations, rotary embeddings and softmax are ignored (a few % at most). Per decoder layer with L tokens:

    projections  2 * L * d * (d_q + 2 * d_kv) + 2 * L * d_q * d     q, k, v, o      (d_q = heads * head_dim)
    attention    4 * L^2 * d_q                                       Q K^T and A V over the full L x L square
    MLP          2 * L * d * I * 3                                   gate, up, down (SwiGLU)

plus the LM head on the last `logits` tokens only (the answer's likelihood needs one prefill, `logits_to_keep`).
The attention term counts the whole square, not the causal half, as FastV and its followers do; the ratio
full / kept is what matters and the quadratic term is why pruning pays off more than linearly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


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
    return LMDims(hidden=hidden, layers=int(text.num_hidden_layers), heads=heads,
                  kv_heads=int(getattr(text, "num_key_value_heads", None) or heads), head_dim=int(head_dim),
                  intermediate=int(text.intermediate_size), vocab=int(text.vocab_size))


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


def policy_flops(num_tokens: int, state_dim: int, hidden: int, layers: int) -> float:
    """FLOPs of the SCORE policy MLP (S -> hidden -> ... -> 1) over num_tokens tokens (state building ignored)."""
    widths = [state_dim] + [hidden] * (layers - 1) + [1]
    return float(sum(2 * num_tokens * a * b for a, b in zip(widths[:-1], widths[1:])))
