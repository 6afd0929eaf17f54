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
  6. analytic prefill FLOPs (flops.py) next to the times, and how much of that limit the speed-up reaches;
     FILE.json + FILE.md
  7. FastV at each ratio, FLOPs only (not timed): it prunes inside the LLM, so its prefill is counted as it runs,
     the first K = eval.fastv_layer layers over every token and the rest over the kept ones
     (flops.fastv_prefill_flops)

Options: bench.static_shapes pads each prefill up to a bucket length (few shapes) and bench.compile adds
torch.compile(mode="reduce-overhead") on CUDA (CUDA graphs): the eager floor of short prefills is kernel launches.
bench.ttft adds time to first token: a synthetic clip written at bench start is decoded (decord, else PyAV), then
vision tower + policy + prefill; full vs each ratio, and the pipeline at bench.ttft_ratio run end to end once.

With no --policy a fresh policy of cfg.policy is timed: its cost depends on its sizes, not on training.
"""

from __future__ import annotations

import logging
import os
import platform
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from scorerl.config import Config
from scorerl.envs.base import VideoEnv
from scorerl.envs.build import build_random_env
from scorerl.errors import ConfigError
from scorerl.eval.flops import fastv_prefill_flops, lm_dims, prefill_flops
from scorerl.eval.report import write_bench_report
from scorerl.types import ScoreRequest

log = logging.getLogger(__name__)

_TARGET = "A"  # one answer token scored by teacher forcing: the prefill also yields the answer's likelihood


def run_bench(
    cfg: Config, out: str | Path, policy_dir: str | Path | None = None, *, env: VideoEnv | None = None
) -> dict:
    """Time the LLM prefill, full vs kept, at cfg.bench.ratios; write FILE.json and FILE.md; return the dict."""
    from scorerl.compress.select import num_keep, topk_mask

    b = cfg.bench
    torch.manual_seed(cfg.run.seed)
    if env is None:
        env, source = bench_env(cfg)
    else:
        source = "in-memory environment"
    device = _env_device(env)
    sync = _synchronizer(device)
    static = static_setup(env, b)

    with tempfile.TemporaryDirectory(prefix="scorerl_bench_") as tmp:
        clip = write_bench_clip(Path(tmp) / "clip.mp4", b.num_frames, b.frame_size) if b.ttft else None
        frames = np.random.default_rng(cfg.run.seed).integers(
            0, 256, (b.num_frames, b.frame_size, b.frame_size, 3), dtype=np.uint8
        )  # content does not change the cost
        with torch.inference_mode():
            vision_times = time_runs(lambda: env.encode(frames), b.warmup, b.repeats, sync)
            visual = env.encode(frames)
        T, N, D = visual.features.shape
        suffix = 0 if visual.suffix is None else int(visual.suffix.shape[0])

        policy, policy_source = _bench_policy(cfg, policy_dir, D, device)
        prompt = bench_prompt(env, b.prompt_tokens)
        n_text = text_tokens(env, ScoreRequest(visual=visual, prompt=prompt, target=_TARGET))
        scope = policy.config.topk_scope
        last: dict = {}  # the last prefill's score tensor, read after timing (no extra sync inside a timed run)

        def prefill(keep, v=visual):
            last["nll"] = env.score([ScoreRequest(visual=v, prompt=prompt, target=_TARGET, keep=keep)])
            return last["nll"]

        def select(rho, v=visual):
            from scorerl.compress.policy import keep_logits

            return topk_mask(keep_logits(policy, v.features, v.grid), rho, scope)

        dims = _dims(env)
        fastv_layer = None if dims is None else min(cfg.eval.fastv_layer, dims.layers)
        with torch.inference_mode():
            n_full = T * N + suffix + n_text
            full_times, full_first = time_prefill(lambda: prefill(None), _warmup(b, static, n_full), b.repeats, sync)
            full = {
                "visual_tokens": T * N + suffix,
                "text_tokens": n_text,
                "prefill_s": _median(full_times),
                "prefill_times_s": full_times,
                "first_call_s": full_first,
                "flops": _flops(dims, n_full),
                "padded_tokens": padded_tokens(n_full, static),
                "nll": float(last["nll"][0]),
            }
            rows = []
            for rho in sorted({float(r) for r in b.ratios}):
                policy_times = time_runs(lambda rho=rho: select(rho), b.warmup, b.repeats, sync)
                keep = select(rho)
                kept = int(keep.sum())
                n_kept = kept + suffix + n_text
                prefill_times, first = time_prefill(
                    lambda keep=keep: prefill(keep), _warmup(b, static, n_kept), b.repeats, sync
                )
                row = _ratio_row(rho, kept, suffix, n_text, policy_times, prefill_times, full, dims, policy, T * N)
                row.update(
                    first_call_s=first,
                    padded_tokens=padded_tokens(n_kept, static),
                    nll=float(last["nll"][0]),
                    fastv=_fastv_row(dims, fastv_layer, n_full, num_keep(rho, T, N) + suffix + n_text, full),
                )
                rows.append(row)
            ttft = None
            if b.ttft:
                pipeline = _pipeline(env, frames, select, prefill)
                ttft = ttft_block(clip, _median(vision_times), full, rows, pipeline, b, sync)

    result = {
        "meta": _meta(cfg, env, source, device, policy, policy_source, (T, N, D), visual.grid, dims),
        "static": static,
        "vision_s": _median(vision_times),
        "vision_times_s": vision_times,
        "full": full,
        "results": rows,
    }
    if ttft is not None:
        result["ttft"] = ttft
    paths = write_bench_report(result, out)
    log.info("wrote %s and %s", paths["json"], paths["md"])
    return result


# --------------------------------------------------------------------------------------------- static shapes


def static_setup(env: VideoEnv, b) -> dict:
    """Put the environment in the mode bench asks for (every run sets it: an env passed in may come from a run
    in the other mode) -> the record of what took effect."""
    if not hasattr(env, "use_static_shapes"):
        if b.static_shapes:
            return {
                "static_shapes": False,
                "compile": "off",
                "reason": f"{type(env).__name__} has no static-shape forward",
            }
        return {"static_shapes": False, "compile": "off"}
    from scorerl.envs.hf import StaticShapes

    settings = (
        StaticShapes(bucket=b.bucket, compile=b.compile, max_tokens=b.static_max_tokens) if b.static_shapes else None
    )
    return env.use_static_shapes(settings)


def _warmup(b, static: dict, tokens: int) -> int:
    """Untimed runs before timing a prefill: a compiled one needs 3 (compile, record the CUDA graph, replay)."""
    from scorerl.envs.hf import bucket_length

    compiled = (
        static.get("compile") == "reduce-overhead" and bucket_length(tokens, static["bucket"]) <= static["max_tokens"]
    )
    return max(b.warmup, 3) if compiled else b.warmup


def padded_tokens(tokens: int, static: dict) -> int:
    """The sequence length the model actually runs on: tokens, or its bucket under static shapes."""
    from scorerl.envs.hf import bucket_length

    if not static.get("static_shapes"):
        return tokens
    width = bucket_length(tokens, static["bucket"])
    return width if width <= static["max_tokens"] else tokens


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


def time_prefill(fn, warmup: int, repeats: int, sync) -> tuple[list[float], float | None]:
    """time_runs, with the first warm-up call timed apart (it holds a compile, when there is one)."""
    first = time_runs(fn, 0, 1, sync)[0] if warmup > 0 else None
    return time_runs(fn, max(warmup - 1, 0), repeats, sync), first


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
        flops["policy"] = policy.flops(total)
        flops["total"] += flops["policy"]
    speedup = full["prefill_s"] / (policy_s + prefill_s)  # what a user sees: policy cost included
    flops_speedup = None if flops is None else full["flops"]["total"] / flops["total"]
    return {
        "ratio": rho,
        "visual_tokens": kept + suffix,
        "policy_s": policy_s,
        "prefill_s": prefill_s,
        "total_s": policy_s + prefill_s,
        "speedup": speedup,
        "prefill_speedup": full["prefill_s"] / prefill_s,
        "flops": flops,
        "flops_speedup": flops_speedup,
        # the FLOPs ratio is the limit pruning could reach: how much of it the measured speed-up gets
        "limit_pct": None if flops_speedup is None else 100 * speedup / flops_speedup,
        "policy_times_s": policy_times,
        "prefill_times_s": prefill_times,
    }


def _fastv_row(dims, layer: int | None, n_full: int, n_kept: int, full: dict) -> dict | None:
    """FastV's analytic prefill at this ratio: ceil(rho T N) visual tokens kept from LLM layer K on (every token
    before), the same count a global top-k keeps; None without model dimensions."""
    if dims is None or layer is None:
        return None
    flops = fastv_prefill_flops(dims, n_full, n_kept, layer)
    return {
        "layer": layer,
        "tokens_from_layer": n_kept,
        "flops": flops,
        "flops_speedup": full["flops"]["total"] / flops["total"],
    }


def _flops(dims, tokens: int) -> dict | None:
    return None if dims is None else prefill_flops(dims, tokens)


def _dims(env: VideoEnv):
    model = getattr(env, "model", None)
    return None if model is None else lm_dims(model.config)


# --------------------------------------------------------------------------------------------- time to first token


def synthetic_clip(num_frames: int, size: int) -> np.ndarray:
    """uint8 [F, size, size, 3]: gradients sliding with time (cheap to encode, unlike noise, so writing the clip
    stays short; decoding cost depends on the size, frame count and codec)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.int64)  # [size, size] each
    out = np.empty((num_frames, size, size, 3), dtype=np.uint8)
    for t in range(num_frames):  # one frame at a time: a 320-frame 448 px clip stays ~190 MB
        out[t, ..., 0] = (x + 3 * t) % 256
        out[t, ..., 1] = (y + 2 * t) % 256
        out[t, ..., 2] = (x + y + t) // 2 % 256
    return out


def write_bench_clip(path: Path, num_frames: int, size: int) -> dict:
    """Write the clip that time-to-first-token decodes -> {"path"} or {"path": None, "reason"} when it cannot be
    written (PyAV missing: decoding is then reported as n/a, not skipped silently)."""
    from scorerl.data.video_io import write_mp4

    try:
        t0 = time.perf_counter()
        write_mp4(path, synthetic_clip(num_frames, size + size % 2))  # yuv420p needs even sides
        return {
            "path": str(path),
            "frames": num_frames,
            "size": size,
            "write_s": time.perf_counter() - t0,
            "bytes": path.stat().st_size,
        }
    except Exception as e:  # ImportError (no PyAV) or an encoder failure
        return {"path": None, "reason": f"the clip could not be written: {type(e).__name__}: {e}"}


def decoder_name() -> str:
    """Which reader frames.read_clip uses here: decord when installed, else PyAV."""
    import importlib.util

    return "decord" if importlib.util.find_spec("decord") is not None else "PyAV"


def _decode_fn(clip: dict | None, num_frames: int, size: int):
    """() -> frames [F, size, size, 3] decoded from the clip; None when there is no clip to decode."""
    if clip is None or clip.get("path") is None:
        return None
    from scorerl.data.frames import FrameSampling, read_clip

    return lambda: read_clip(clip["path"], FrameSampling(num_frames=num_frames, size=size)).frames


def _pipeline(env, frames, select, prefill):
    """(rho or None = full, decode or None) -> one run of decode + vision tower + policy + prefill; without a
    decoder the in-memory frames go to the vision tower."""

    def run(rho, decode):
        visual = env.encode(frames if decode is None else decode())
        prefill(None if rho is None else select(rho, visual), visual)

    return run


def ttft_block(clip, vision_s, full, rows, pipeline, b, sync) -> dict:
    """Time to first token per arm = decode + vision tower + policy + prefill (medians of their own runs), and the
    arm at b.ttft_ratio (and full) run end to end once as a check of that sum."""
    decode = _decode_fn(clip, b.num_frames, b.frame_size)
    decode_s, reason = None, None
    if decode is None:
        reason = (clip or {}).get("reason", "no clip")
    else:
        try:
            decode_s = _median(time_runs(decode, b.warmup, b.repeats, lambda: None))
        except Exception as e:  # DataError: neither decord nor PyAV could read it
            reason = f"decoding failed: {type(e).__name__}: {e}"
    d = decode_s or 0.0
    full_ttft = d + vision_s + full["prefill_s"]
    arms = [
        {
            "arm": "full",
            "decode_s": decode_s,
            "vision_s": vision_s,
            "policy_s": 0.0,
            "prefill_s": full["prefill_s"],
            "ttft_s": full_ttft,
            "speedup": 1.0,
        }
    ]
    for r in rows:
        total = d + vision_s + r["policy_s"] + r["prefill_s"]
        arms.append(
            {
                "arm": r["ratio"],
                "decode_s": decode_s,
                "vision_s": vision_s,
                "policy_s": r["policy_s"],
                "prefill_s": r["prefill_s"],
                "ttft_s": total,
                "speedup": full_ttft / total,
            }
        )
    e2e_rho = min((r["ratio"] for r in rows), key=lambda x: abs(x - b.ttft_ratio), default=None)
    decode = decode if decode_s is not None else None  # a clip that failed to decode is not decoded again
    for arm in arms:
        if arm["arm"] == "full" or arm["arm"] == e2e_rho:
            rho = None if arm["arm"] == "full" else arm["arm"]
            arm["e2e_s"] = time_runs(lambda rho=rho: pipeline(rho, decode), 0, 1, sync)[0]
    clip = {k: v for k, v in (clip or {}).items() if k != "path"}  # a temporary file: gone once bench ends
    return {
        "decoder": decoder_name() if decode_s is not None else None,
        "decode_s": decode_s,
        "decode_na_reason": reason,
        "clip": clip,
        "e2e_ratio": e2e_rho,
        "arms": arms,
        "note": "TTFT is the sum of each stage's median; end-to-end is one synchronised run of the whole chain"
        + ("" if decode_s is not None else " (decoding n/a: not included)"),
    }


# --------------------------------------------------------------------------------------------- inputs


def bench_prompt(env: VideoEnv, n_tokens: int) -> str:
    """A question-like prompt of about n_tokens tokens as the environment's tokenizer counts them."""
    words = (
        "Question: what does the person in the video do after the red car passes the crossing, and in which "
        "direction does the camera move while the crowd gathers near the station entrance"
    ).split()
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
            raise ConfigError(
                f"{policy_dir}: the policy takes D={policy.feature_dim} features, the benchmarked "
                f"model gives D={feature_dim}"
            )
        return policy, str(Path(policy_dir).resolve())
    return TokenPolicy(feature_dim, cfg.policy).to(device).eval(), "random (cfg.policy)"


# --------------------------------------------------------------------------------------------- the model


def bench_env(cfg: Config) -> tuple[VideoEnv, str]:
    """(environment, description of its source): random weights of cfg.bench.random_init, else env.path."""
    if cfg.bench.random_init:
        env = build_random_env(
            cfg.env.arch,
            cfg.bench.random_init,
            dtype=cfg.env.dtype,
            device=cfg.env.device,
            attn_implementation=cfg.env.attn_implementation,
            token_budget=cfg.env.token_budget,
            seed=cfg.run.seed,
        )
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
        "versions": {
            "scorerl": __version__,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "cuda": torch.version.cuda,
        },
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "dtype": cfg.env.dtype,
        "attn_implementation": cfg.env.attn_implementation,
        "model": {
            "source": source,
            "arch": cfg.env.arch,
            "random_init": cfg.bench.random_init or None,
            "lm": None if dims is None else dims.to_dict(),
        },
        "num_frames": cfg.bench.num_frames,
        "frame_size": cfg.bench.frame_size,
        "features": {"T": T, "N": N, "D": D, "grid": list(grid)},
        "prompt_tokens": cfg.bench.prompt_tokens,
        "warmup": cfg.bench.warmup,
        "options": {
            "static_shapes": cfg.bench.static_shapes,
            "bucket": cfg.bench.bucket,
            "static_max_tokens": cfg.bench.static_max_tokens,
            "compile": cfg.bench.compile,
            "ttft": cfg.bench.ttft,
            "ttft_ratio": cfg.bench.ttft_ratio,
        },
        "repeats": cfg.bench.repeats,
        "batch_size": 1,
        "seed": cfg.run.seed,
        "policy": {
            "source": policy_source,
            "hidden": policy.config.hidden,
            "layers": policy.config.layers,
            "topk_scope": policy.config.topk_scope,
            "parameters": int(sum(p.numel() for p in policy.parameters())),
        },
        "flops_note": "2*params-style matmul FLOPs + 4*L^2*d_q attention per layer, LM head on 1 token "
        "(scorerl/eval/flops.py); results' totals include the policy MLP; results' fastv: layers < "
        "K at the full length, layers >= K at the pruned one (not timed)",
        "fastv_layer": None if dims is None else min(cfg.eval.fastv_layer, dims.layers),
    }
