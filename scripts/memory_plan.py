"""Memory per GPU of a run file, computed from its architecture (no weights loaded: the model is built on the meta
device from the run file's `bench.random_init` sizes) and its settings.

    python scripts/memory_plan.py configs/qwen2_5_vl_7b/stage2_video.yaml [--gpus 8] [--markdown]

What a GPU holds, by env.placement (envs/partition.py):
  environment weights      replicate: all parameters x bytes of env.dtype.
                           zero3: the language model (decoder + LM head) / P over the P GPUs of the job, plus the
                           vision tower and projector whole, plus the whole copy of the embedding table that text is
                           embedded with; and, while it scores, the gathered weights of the widest module in flight
                           (a decoder layer or the LM head) plus DeepSpeed's prefetch bucket.
                           device_map: all parameters / the GPUs of one node (one process per node).
  scoring activations      the widest transient of one decoder layer over env.token_budget tokens (hidden states,
                           q/k/v, the MLP's two intermediate projections), at env.dtype; the LLM scores one chunk
                           of at most token_budget tokens at a time and keeps only the target's logits
  vision tower             one video's patches through the widest ViT layer (features are usually precomputed)
  policy + AdamW           policy parameters x 16 bytes (fp32 weights, gradients, two moments)
Compute per optimizer step and GPU: batch_size x grad_accum x group_size masked prefills of policy.rho_init x the
visual tokens of one video at max_frames (what an untrained policy keeps) plus TEXT_TOKENS, at 2 FLOPs per language-
model parameter per token (attention's quadratic term is left out: under 10% at these lengths).
These are estimates of the peak, not measurements: allocator fragmentation and CUDA context (~0.5-1 GB) come on top.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
GPU_GB = 80  # the GPU the tables are checked against (A100/H100 80 GB)
TEXT_TOKENS = 128  # chat template, question, options and answer of one request


def build_on_meta(cfg):
    """The environment's transformers model with the run file's sizes, on the meta device (no memory)."""
    from scorerl.envs import env_class
    from scorerl.envs.build import model_config_from_dict
    from scorerl.envs.tokenizer import build_tokenizer

    if not cfg.bench.random_init:
        raise SystemExit("the run file has no bench.random_init (the architecture's sizes)")
    cls = env_class(cfg.env.arch).model_class()
    hf = model_config_from_dict(
        cfg.env.arch, cfg.bench.random_init, build_tokenizer(arch=cfg.env.arch), cls.config_class
    )
    with torch.device("meta"):
        return cls._from_config(hf, dtype=torch.bfloat16), hf


def _numel(module) -> int:
    return sum(p.numel() for p in module.parameters())


def _language_numel(model) -> int:
    """Parameters of the language model (decoder + LM head): what zero3 partitions and what each token runs."""
    return _numel(model.model.language_model) + _numel(model.lm_head)


def environment_weights(cfg, model, gpus: int) -> dict:
    """Bytes of environment weights one GPU holds under env.placement (see the module doc), with the pieces."""
    from scorerl.envs.partition import zero3_config

    b = BYTES[cfg.env.dtype]
    total = _numel(model)
    if cfg.env.placement == "replicate":
        return {"weights": total * b}
    if cfg.env.placement == "device_map":
        return {"weights": total * b / gpus}
    language = _language_numel(model)
    embedding = _numel(model.get_input_embeddings())
    widest = max(_numel(model.lm_head), *(_numel(layer) for layer in model.model.language_model.layers))
    zero = zero3_config(torch.bfloat16, cfg.env.zero3_config)["zero_optimization"]
    prefetch = zero.get("stage3_prefetch_bucket_size", 0)
    return {
        "weights": (language / gpus + (total - language) + embedding + widest + prefetch) * b,
        "partitioned": language / gpus * b,
        "whole": (total - language + embedding) * b,
        "gathered": (widest + prefetch) * b,
    }


def plan(cfg, gpus: int = 8) -> dict:
    from scorerl.compress.policy import TokenPolicy

    model, hf = build_on_meta(cfg)
    text, vision = hf.text_config, hf.vision_config
    b = BYTES[cfg.env.dtype]
    params = _numel(model)
    weights = environment_weights(cfg, model, gpus)
    tokens = cfg.env.token_budget
    widest = max(3 * text.hidden_size, 2 * text.intermediate_size)  # q,k,v or the MLP's gate+up projections
    activations = tokens * (text.hidden_size + widest) * b
    v_hidden = getattr(vision, "hidden_size", 0)
    v_inter = getattr(vision, "intermediate_size", 0)
    patches = _patches_per_video(cfg, vision)
    vision_act = patches * (v_hidden + max(3 * v_hidden, v_inter)) * b
    policy = TokenPolicy(text.hidden_size, cfg.policy)
    policy_bytes = sum(p.numel() for p in policy.parameters()) * 16
    total = weights["weights"] + activations + vision_act + policy_bytes
    language = _language_numel(model)
    prefill_tokens = cfg.policy.rho_init * _visual_tokens(cfg, vision) + TEXT_TOKENS
    step_tokens = cfg.train.batch_size * cfg.train.grad_accum * cfg.rl.group_size * prefill_tokens
    return {
        "parameters": params,
        "placement": cfg.env.placement,
        "gpus": gpus,
        "all_weights_gb": params * b / 1e9,
        "weights_gb": weights["weights"] / 1e9,
        **{f"{k}_gb": v / 1e9 for k, v in weights.items() if k != "weights"},
        "scoring_activations_gb": activations / 1e9,
        "vision_activations_gb": vision_act / 1e9,
        "policy_optimizer_gb": policy_bytes / 1e9,
        "total_gb": total / 1e9,
        "fits_80gb": total / 1e9 < GPU_GB,
        "token_budget": tokens,
        "dtype": cfg.env.dtype,
        "step_tokens": step_tokens,
        "step_tflops": 2 * language * step_tokens / 1e12,
    }


def _frames(cfg) -> int:
    """Frames of one video: max_frames when sampling by rate (the longest clips), else num_frames."""
    return cfg.data.max_frames if cfg.data.sample_fps > 0 else cfg.data.num_frames


def _visual_tokens(cfg, vision) -> int:
    """Visual tokens one video gives the LLM at the run file's frame settings: Qwen merges 2x2 patches, LLaVA-
    OneVision pools each frame's grid 2x (ceil), as envs/ do."""
    import math

    if cfg.env.arch == "qwen2_5_vl":
        return _patches_per_video(cfg, vision) // getattr(vision, "spatial_merge_size", 2) ** 2
    side = math.ceil(getattr(vision, "image_size", 384) // getattr(vision, "patch_size", 14) / 2)
    return _frames(cfg) * side * side


# Native frames (data.frame_size: 0) have the size of the footage: the plan assumes 720p clips, sized by the pixel
# limits the real Qwen2.5-VL release folders give their video processor (it falls back to preprocessor_config.json's
# image limits, docs/data.md): 1280x720 -> 1288x728, 1196 visual tokens per temporal unit.
SOURCE_HW = (720, 1280)
RELEASE_PIXELS = {"min_pixels": 3136, "max_pixels": 12845056}


def _patches_per_video(cfg, vision) -> int:
    """Vision-tower tokens of one video at the run file's frame settings (max_frames when sampling by rate)."""
    from scorerl.data.frames import target_size

    frames = _frames(cfg)
    patch = getattr(vision, "patch_size", 14)
    if cfg.env.arch == "qwen2_5_vl":
        from scorerl.envs.qwen2_5_vl import video_grid

        height, width = target_size(*SOURCE_HW, cfg.data.frame_size, cfg.data.keep_aspect)
        t, h, w = video_grid(
            frames,
            height,
            width,
            RELEASE_PIXELS,
            patch,
            getattr(vision, "spatial_merge_size", 2),
            getattr(vision, "temporal_patch_size", 2),
        )
        return t * h * w
    side = getattr(vision, "image_size", 384) // patch
    return frames * side * side


HEADER = (
    "| run file | placement, GPUs | environment parameters | all weights GB | weights per GPU GB | scoring "
    "activations GB | vision GB | policy + AdamW GB | per GPU GB | prefill tokens, TFLOPs per step and GPU |\n"
    "|---|---|---|---|---|---|---|---|---|---|"
)


def markdown(name: str, p: dict) -> str:
    held = f"{p['weights_gb']:.1f}"
    if p["placement"] == "zero3":
        held += (
            f" ({p['partitioned_gb']:.1f} partitioned + {p['whole_gb']:.1f} whole + {p['gathered_gb']:.1f} gathered)"
        )
    return (
        f"| {name} | {p['placement']}, {p['gpus']} | {p['parameters'] / 1e9:.2f} B | {p['all_weights_gb']:.1f} | "
        f"{held} | {p['scoring_activations_gb']:.1f} ({p['token_budget']} tokens) | "
        f"{p['vision_activations_gb']:.1f} | {p['policy_optimizer_gb']:.3f} | {p['total_gb']:.1f} | "
        f"{p['step_tokens']:,.0f}, {p['step_tflops']:,.0f} |"
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("configs", nargs="+", help="run files")
    ap.add_argument(
        "--gpus",
        type=int,
        default=8,
        help="GPUs the environment is spread over: the job's for zero3, one node's for device_map",
    )
    ap.add_argument(
        "--placement",
        choices=("replicate", "zero3", "device_map"),
        help="plan for this env.placement instead of the run file's",
    )
    ap.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = ap.parse_args(argv)
    from scorerl.config import load_config

    rows = []
    for path in args.configs:
        cfg = load_config(path, [f"env.placement={args.placement}"] if args.placement else [])
        p = plan(cfg, args.gpus)
        rows.append(markdown(path, p) if args.markdown else f"{path}: {json.dumps(p)}")
    if args.markdown:
        print(HEADER)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
