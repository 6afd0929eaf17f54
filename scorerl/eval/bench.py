"""`scorerl bench`: wall-clock LLM prefill with all visual tokens vs the tokens SCORE keeps at each ratio.

Recipe (run_bench):
  1. the frozen model: env.path, or (bench.random_init) a real-size architecture with random weights, built on the
     device in env.dtype; prefill time does not depend on the weights' values, so no download is needed
  2. one synthetic video of bench.num_frames frames of bench.frame_size px -> the vision tower once (timed apart:
     it runs once per video whatever the method, so it is not part of the prefill being compared)
  3. full: the LLM prefill over every visual token + the prompt (env.score, batch 1: the sequence layout with its
     full-sequence position ids, then one LLM forward that also yields the answer's likelihood)
  4. each ratio: policy time (surprise state + MLP + top-k) + the prefill over the kept tokens only
  5. median of bench.repeats timed runs after bench.warmup untimed ones; CUDA is synchronised around each run
  6. analytic prefill FLOPs (flops.py) next to the times; FILE.json + FILE.md

With no --policy a fresh policy of cfg.policy is timed: its cost depends on its sizes, not on training.
"""

from __future__ import annotations

import logging
import os
import platform
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from scorerl.config import Config
from scorerl.envs.base import VideoEnv
from scorerl.types import ScoreRequest
from scorerl.errors import ConfigError
from scorerl.envs.build import build_random_env
from scorerl.eval.flops import lm_dims, policy_flops, prefill_flops
from scorerl.eval.report import write_bench_report

log = logging.getLogger(__name__)

_TARGET = "A"  # one answer token scored by teacher forcing: the prefill also yields the answer's likelihood


def run_bench(cfg: Config, out: str | Path, policy_dir: str | Path | None = None, *,
              env: VideoEnv | None = None) -> dict:
    """Time the LLM prefill, full vs kept, at cfg.bench.ratios; write FILE.json and FILE.md; return the dict."""
    from scorerl.compress.select import topk_mask

    b = cfg.bench
    torch.manual_seed(cfg.run.seed)
    if env is None:
        env, source = bench_env(cfg)
    else:
        source = "in-memory environment"
    device = _env_device(env)
    sync = _synchronizer(device)

    frames = np.random.default_rng(cfg.run.seed).integers(0, 256, (b.num_frames, b.frame_size, b.frame_size, 3),
                                                           dtype=np.uint8)  # content does not change the cost
    with torch.inference_mode():
        vision_times = time_runs(lambda: env.encode(frames), b.warmup, b.repeats, sync)
        visual = env.encode(frames)
    T, N, D = visual.features.shape
    suffix = 0 if visual.suffix is None else int(visual.suffix.shape[0])

    policy, policy_source = _bench_policy(cfg, policy_dir, D, device)
    prompt = bench_prompt(env, b.prompt_tokens)
    n_text = text_tokens(env, ScoreRequest(visual=visual, prompt=prompt, target=_TARGET))
    scope = policy.config.topk_scope

    def prefill(keep):
        return env.score([ScoreRequest(visual=visual, prompt=prompt, target=_TARGET, keep=keep)])

    def select(rho):
        from scorerl.compress.policy import keep_logits

        return topk_mask(keep_logits(policy, visual.features, visual.grid), rho, scope)

    dims = _dims(env)
    with torch.inference_mode():
        full_times = time_runs(lambda: prefill(None), b.warmup, b.repeats, sync)
        full = {"visual_tokens": T * N + suffix, "text_tokens": n_text, "prefill_s": _median(full_times),
                "prefill_times_s": full_times, "flops": _flops(dims, T * N + suffix + n_text)}
        rows = []
        for rho in sorted({float(r) for r in b.ratios}):
            policy_times = time_runs(lambda: select(rho), b.warmup, b.repeats, sync)
            keep = select(rho)
            kept = int(keep.sum())
            prefill_times = time_runs(lambda: prefill(keep), b.warmup, b.repeats, sync)
            rows.append(_ratio_row(rho, kept, suffix, n_text, policy_times, prefill_times, full, dims,
                                   policy, T * N))

    result = {
        "meta": _meta(cfg, env, source, device, policy, policy_source, (T, N, D), visual.grid, dims),
        "vision_s": _median(vision_times),
        "vision_times_s": vision_times,
        "full": full,
        "results": rows,
    }
    paths = write_bench_report(result, out)
    log.info("wrote %s and %s", paths["json"], paths["md"])
    return result


# --------------------------------------------------------------------------------------------- timing


def time_runs(fn, warmup: int, repeats: int, sync) -> list[float]:
    """Seconds of each of `repeats` calls of fn after `warmup` untimed ones, synchronising the device around each."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return times


def _median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def _synchronizer(device: torch.device):
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def _ratio_row(rho, kept, suffix, n_text, policy_times, prefill_times, full, dims, policy, total) -> dict:
    policy_s, prefill_s = _median(policy_times), _median(prefill_times)
    flops = _flops(dims, kept + suffix + n_text)
    if flops is not None:
        flops["policy"] = policy_flops(total, policy.state_dim, policy.config.hidden, policy.config.layers)
        flops["total"] += flops["policy"]
    return {
        "ratio": rho,
        "visual_tokens": kept + suffix,
        "policy_s": policy_s,
        "prefill_s": prefill_s,
        "total_s": policy_s + prefill_s,
        "speedup": full["prefill_s"] / (policy_s + prefill_s),  # what a user sees: policy cost included
        "prefill_speedup": full["prefill_s"] / prefill_s,
        "flops": flops,
        "flops_speedup": None if flops is None else full["flops"]["total"] / flops["total"],
        "policy_times_s": policy_times,
        "prefill_times_s": prefill_times,
    }


def _flops(dims, tokens: int) -> dict | None:
    return None if dims is None else prefill_flops(dims, tokens)


def _dims(env: VideoEnv):
    model = getattr(env, "model", None)
    return None if model is None else lm_dims(model.config)


# --------------------------------------------------------------------------------------------- inputs


def bench_prompt(env: VideoEnv, n_tokens: int) -> str:
    """A question-like prompt of about n_tokens tokens as the environment's tokenizer counts them."""
    words = ("Question: what does the person in the video do after the red car passes the crossing, and in which "
             "direction does the camera move while the crowd gathers near the station entrance").split()
    tok = getattr(env, "tokenizer", None)

    def count(text: str) -> int:  # without a tokenizer, one word ~ one token
        return len(text.split()) if tok is None else len(tok(text, add_special_tokens=False).input_ids)

    parts: list[str] = []
    while count(" ".join(parts)) < n_tokens:
        parts.append(words[len(parts) % len(words)])
    return " ".join(parts)


def text_tokens(env: VideoEnv, request: ScoreRequest) -> int:
    """Tokens of the full sequence that are not visual: chat template, vision markers, prompt, answer."""
    v = request.visual
    n_visual = v.features.shape[0] * v.features.shape[1] + (0 if v.suffix is None else v.suffix.shape[0])
    if hasattr(env, "build_input_ids"):
        return int(env.build_input_ids(request).numel()) - n_visual
    return len(request.prompt.split()) + 1  # an environment without a layout helper: words ~ tokens, + answer


def _bench_policy(cfg: Config, policy_dir, feature_dim: int, device: torch.device):
    """(policy on the device in eval mode, where it came from): a trained one, or a fresh one of cfg.policy."""
    from scorerl.compress.policy import TokenPolicy
    from scorerl.export import load_policy

    if policy_dir is not None:
        policy = load_policy(policy_dir, device=device)
        if policy.feature_dim != feature_dim:
            raise ConfigError(f"{policy_dir}: the policy takes D={policy.feature_dim} features, the benchmarked "
                              f"model gives D={feature_dim}")
        return policy, str(Path(policy_dir).resolve())
    return TokenPolicy(feature_dim, cfg.policy).to(device).eval(), "random (cfg.policy)"


# --------------------------------------------------------------------------------------------- the model


def bench_env(cfg: Config) -> tuple[VideoEnv, str]:
    """(environment, description of its source): random weights of cfg.bench.random_init, else env.path."""
    if cfg.bench.random_init:
        env = build_random_env(cfg.env.arch, cfg.bench.random_init, dtype=cfg.env.dtype, device=cfg.env.device,
                               attn_implementation=cfg.env.attn_implementation,
                               token_budget=cfg.env.token_budget, seed=cfg.run.seed)
        return env, f"random_init {cfg.env.arch}"
    from scorerl.envs import load_env

    return load_env(cfg.env), str(cfg.env.path)


def _env_device(env: VideoEnv) -> torch.device:
    device = getattr(env, "device", None)
    if device is not None:
        return torch.device(device)
    model = getattr(env, "model", None)
    return next(model.parameters()).device if model is not None else torch.device("cpu")


# --------------------------------------------------------------------------------------------- meta


def machine() -> dict:
    """The machine a timing was taken on: GPU name (if any), CPU model, cores."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return {"gpu": gpu, "cpu": cpu, "cpu_count": os.cpu_count(), "device_name": gpu or cpu}


def _meta(cfg: Config, env, source, device, policy, policy_source, shape, grid, dims) -> dict:
    import transformers

    from scorerl.version import __version__

    T, N, D = shape
    return {
        "machine": {**machine(), "device": str(device)},
        "versions": {"scorerl": __version__, "torch": torch.__version__,
                     "transformers": transformers.__version__, "cuda": torch.version.cuda},
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "dtype": cfg.env.dtype,
        "attn_implementation": cfg.env.attn_implementation,
        "model": {"source": source, "arch": cfg.env.arch, "random_init": cfg.bench.random_init or None,
                  "lm": None if dims is None else dims.to_dict()},
        "num_frames": cfg.bench.num_frames,
        "frame_size": cfg.bench.frame_size,
        "features": {"T": T, "N": N, "D": D, "grid": list(grid)},
        "prompt_tokens": cfg.bench.prompt_tokens,
        "warmup": cfg.bench.warmup,
        "repeats": cfg.bench.repeats,
        "batch_size": 1,
        "seed": cfg.run.seed,
        "policy": {"source": policy_source, "hidden": policy.config.hidden, "layers": policy.config.layers,
                   "topk_scope": policy.config.topk_scope,
                   "parameters": int(sum(p.numel() for p in policy.parameters()))},
        "flops_note": "2*params-style matmul FLOPs + 4*L^2*d_q attention per layer, LM head on 1 token "
                      "(scorerl/eval/flops.py); results' totals include the policy MLP",
    }

