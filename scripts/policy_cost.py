"""What the SCORE policy costs next to the LLM prefill it saves, for the paper's MLP (policy.mixer none) and the
variant that sees its neighbours (policy.mixer conv): the numbers of docs/method.md, "A policy that sees its
neighbours".

    python scripts/policy_cost.py [--visual 8192] [--text 30] [--hidden 128] [--layers 2] [--kernel 3]

Counting convention of scorerl/eval/flops.py (a matmul of [L, a] by [a, b] costs 2 L a b; norms, activations and
the state's residuals are ignored): the policy's FLOPs are TokenPolicy.flops over the visual tokens (the conv
counted as 2 k^3 hidden^2 per token); the full prefill is prefill_flops of Qwen2.5-VL-7B's language model over every
visual and text token (one logit row). Nothing is loaded or run: the sizes below are the 7B's config.json.
"""

from __future__ import annotations

import argparse
from types import SimpleNamespace

# Qwen2.5-VL-7B-Instruct's language model (its config.json; head_dim = hidden / heads = 128).
QWEN2_5_VL_7B = SimpleNamespace(
    hidden_size=3584,
    num_hidden_layers=28,
    intermediate_size=18944,
    num_attention_heads=28,
    num_key_value_heads=4,
    vocab_size=152064,
)


def costs(visual: int, text: int, hidden: int, layers: int, kernel: int) -> list[dict]:
    """One row per mixer: policy FLOPs, full prefill FLOPs and the policy's share of the prefill in percent."""
    from scorerl.compress.policy import TokenPolicy
    from scorerl.config import PolicySection
    from scorerl.eval.flops import lm_dims, prefill_flops

    dims = lm_dims(QWEN2_5_VL_7B)
    full = prefill_flops(dims, visual + text)["total"]
    rows = []
    for mixer in ("none", "conv"):
        section = PolicySection(hidden=hidden, layers=layers, mixer=mixer, mixer_kernel=kernel)
        policy = TokenPolicy(dims.hidden, section)  # feature width D = the LLM's; state S = 2D
        flops = policy.flops(visual)
        rows.append(
            {
                "mixer": mixer,
                "state_dim": policy.state_dim,
                "policy": flops,
                "prefill": full,
                "percent": 100 * flops / full,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--visual", type=int, default=8192, help="visual tokens (64 frames of a 720p-ish video)")
    parser.add_argument("--text", type=int, default=30, help="text tokens of the prompt")
    parser.add_argument("--hidden", type=int, default=128, help="policy.hidden")
    parser.add_argument("--layers", type=int, default=2, help="policy.layers")
    parser.add_argument("--kernel", type=int, default=3, help="policy.mixer_kernel")
    args = parser.parse_args()
    print(
        f"Qwen2.5-VL-7B, {args.visual} visual + {args.text} text tokens; policy hidden {args.hidden}, "
        f"layers {args.layers}, conv kernel {args.kernel}^3"
    )
    print(f"{'mixer':<6} {'S':>6} {'policy GFLOPs':>14} {'prefill TFLOPs':>15} {'policy / prefill':>17}")
    for r in costs(args.visual, args.text, args.hidden, args.layers, args.kernel):
        print(
            f"{r['mixer']:<6} {r['state_dim']:>6} {r['policy'] / 1e9:>14.2f} {r['prefill'] / 1e12:>15.1f} "
            f"{r['percent']:>16.3f}%"
        )


if __name__ == "__main__":
    main()
