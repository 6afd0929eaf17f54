"""Memory per GPU of a run file, computed from its architecture (no weights loaded: the model is built on the meta
device from the run file's `bench.random_init` sizes) and its settings.

    python scripts/memory_plan.py configs/qwen2_5_vl_7b/stage2_video.yaml [--gpus 8] [--markdown]

What a GPU holds in a plain data-parallel run (each process holds the whole frozen environment):
  environment weights      parameters x bytes of env.dtype
  scoring activations      the widest transient of one decoder layer over env.token_budget tokens (hidden states,
                           q/k/v, the MLP's two intermediate projections), at env.dtype; the LLM scores one chunk
                           of at most token_budget tokens at a time and keeps only the target's logits
  vision tower             one video's patches through the widest ViT layer (features are usually precomputed)
  policy + AdamW           policy parameters x 16 bytes (fp32 weights, gradients, two moments)
These are estimates of the peak, not measurements: allocator fragmentation and CUDA context (~0.5-1 GB) come on top.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def build_on_meta(cfg):
    """The environment's transformers model with the run file's sizes, on the meta device (no memory)."""
    from scorerl.envs import env_class
    from scorerl.envs.build import model_config_from_dict
    from scorerl.envs.tokenizer import build_tokenizer

    if not cfg.bench.random_init:
        raise SystemExit("the run file has no bench.random_init (the architecture's sizes)")
    cls = env_class(cfg.env.arch).model_class()
    hf = model_config_from_dict(cfg.env.arch, cfg.bench.random_init, build_tokenizer(arch=cfg.env.arch),
                                cls.config_class)
    with torch.device("meta"):
        return cls._from_config(hf, dtype=torch.bfloat16), hf


def plan(cfg) -> dict:
    from scorerl.compress.policy import TokenPolicy

    model, hf = build_on_meta(cfg)
    text, vision = hf.text_config, hf.vision_config
    b = BYTES[cfg.env.dtype]
    params = sum(p.numel() for p in model.parameters())
    tokens = cfg.env.token_budget
    widest = max(3 * text.hidden_size, 2 * text.intermediate_size)  # q,k,v or the MLP's gate+up projections
    activations = tokens * (text.hidden_size + widest) * b
    v_hidden = getattr(vision, "hidden_size", 0)
    v_inter = getattr(vision, "intermediate_size", 0)
    patches = _patches_per_video(cfg, vision)
    vision_act = patches * (v_hidden + max(3 * v_hidden, v_inter)) * b
    policy = TokenPolicy(text.hidden_size, cfg.policy)
    policy_bytes = sum(p.numel() for p in policy.parameters()) * 16
    total = params * b + activations + vision_act + policy_bytes
    return {"parameters": params, "weights_gb": params * b / 1e9, "scoring_activations_gb": activations / 1e9,
            "vision_activations_gb": vision_act / 1e9, "policy_optimizer_gb": policy_bytes / 1e9,
            "total_gb": total / 1e9, "token_budget": tokens, "dtype": cfg.env.dtype}


def _patches_per_video(cfg, vision) -> int:
    """Vision-tower tokens of one video at the run file's frame settings (max_frames when sampling by rate)."""
    frames = cfg.data.max_frames if cfg.data.sample_fps > 0 else cfg.data.num_frames
    patch = getattr(vision, "patch_size", 14)
    if cfg.env.arch == "qwen2_5_vl":
        side = cfg.data.frame_size // patch
        return (frames // getattr(vision, "temporal_patch_size", 2)) * side * side
    side = getattr(vision, "image_size", 384) // patch
    return frames * side * side


def markdown(name: str, p: dict, gpus: int) -> str:
    return (f"| {name} | {p['parameters'] / 1e9:.2f} B | {p['weights_gb']:.1f} | {p['scoring_activations_gb']:.1f} "
            f"({p['token_budget']} tokens) | {p['vision_activations_gb']:.1f} | {p['policy_optimizer_gb']:.3f} | "
            f"{p['total_gb']:.1f} | {gpus} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("configs", nargs="+", help="run files")
    ap.add_argument("--gpus", type=int, default=8, help="GPUs of the data-parallel run (each holds a full copy)")
    ap.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = ap.parse_args(argv)
    from scorerl.config import load_config

    rows = []
    for path in args.configs:
        cfg = load_config(path)
        p = plan(cfg)
        rows.append(markdown(path, p, args.gpus) if args.markdown else f"{path}: {p}")
    if args.markdown:
        print("| run file | environment parameters | weights GB | scoring activations GB | vision GB | "
              "policy + AdamW GB | per GPU GB | GPUs |")
        print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
