"""GPU check: every long-video speed measurement in one run of a few minutes on one GPU (docs/bench.md, "GPU check").

What it measures, in priority order (a step that no longer fits the time budget is skipped and recorded so):
  1. exactness: the static-shape prefill (bucketed LEFT padding) vs eager, answer log-probs, tiny fp32 models of
     both architectures (Qwen2.5-VL with 3-D M-RoPE, LLaVA-OneVision), kept subsets 10% / 25% / full, batched
  2. Qwen2.5-VL-7B architecture, random weights, bf16, `scorerl bench` eager at 256 frames (32,768 visual tokens)
     and 320 frames (40,960): every ratio's speed-up beside its FLOPs ratio (the limit) and the % of it reached;
     time to first token = frame decoding + vision tower + policy + prefill, full vs each ratio
  3. 256 frames with static shapes + torch.compile(mode="reduce-overhead") (CUDA graphs) at 10%
  4. torch.profiler of one 10% prefill before (eager) and after (static + CUDA graphs): top kernels, launches
  5. 320 frames with static shapes + CUDA graphs at 10%
  6. exactness of the compiled path itself (tiny fp32 Qwen2.5-VL on CUDA; the 7B runs compare NLLs in bf16)
A compile that fails once is not tried again (its later steps are skipped with the reason).
The 7B model is built once and shared by every step. Results: OUT.json + OUT.md (default docs/results/gpu_check),
each bench run's own report in OUT_runs/, all rewritten after every step (a run cut short keeps what it measured),
and copied to $OUT when that folder exists (the device runner brings back only $OUT).

    bash scripts/gpu_check.sh                 # on a CUDA machine (>= 48 GB), about 5-7 minutes
    bash scripts/gpu_check.sh --dry-run       # CPU, tiny random models, seconds: the same code paths
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

TOLERANCE = 1e-5  # fp32 answer log-probs, static vs eager
LONG_CONFIGS = {
    "256f": REPO / "configs/bench/qwen2_5_vl_7b_256f.yaml",
    "320f": REPO / "configs/bench/qwen2_5_vl_7b_320f.yaml",
}
STATIC = ["bench.static_shapes=true", "bench.compile=true"]
DRY_BENCH = {  # Qwen2.5-VL patching (14 px, 2x2 merge, 2 frames per unit) on a 2-layer, 64-wide model
    "env": {"arch": "qwen2_5_vl", "device": "cpu", "dtype": "float32"},
    "bench": {
        "ratios": [0.1, 0.5],
        "num_frames": 4,
        "frame_size": 112,
        "prompt_tokens": 16,
        "warmup": 1,
        "repeats": 2,
        "ttft": True,
        "ttft_ratio": 0.1,
        "random_init": {
            "text_config": {
                "hidden_size": 64,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
                "intermediate_size": 128,
                "vocab_size": 1000,
            },
            "vision_config": {
                "depth": 1,
                "hidden_size": 32,
                "num_heads": 2,
                "intermediate_size": 64,
                "patch_size": 14,
                "spatial_merge_size": 2,
                "temporal_patch_size": 2,
                "window_size": 112,
                "fullatt_block_indexes": [0],
            },
        },
    },
    "policy": {"hidden": 32, "layers": 2},
}


@dataclass
class Step:
    """One measurement: a bench run (config + overrides), a profile, or an exactness check; estimate_s = the
    time it is expected to take on an H100/H200, so the budget can skip what no longer fits."""

    name: str
    kind: str  # "bench" | "profile" | "exactness" | "compile_exactness"
    estimate_s: float
    config: str = ""  # key of LONG_CONFIGS, or "dry"
    mode: str = "eager"  # "eager" | "static"
    overrides: list[str] = field(default_factory=list)


def gpu_plan() -> list[Step]:
    return [
        Step("exactness", "exactness", 20),
        Step("256f eager", "bench", 60, "256f"),
        Step("320f eager", "bench", 70, "320f"),
        Step("256f static + CUDA graphs", "bench", 150, "256f", "static", STATIC + ["bench.ratios=[0.1]"]),
        Step("profile 256f at 0.1", "profile", 25, "256f"),
        Step("320f static + CUDA graphs", "bench", 120, "320f", "static", STATIC + ["bench.ratios=[0.1]"]),
        Step("compiled exactness", "compile_exactness", 60),
    ]


def dry_plan() -> list[Step]:
    return [
        Step("exactness", "exactness", 5),
        Step("dry eager", "bench", 3, "dry"),
        Step("dry static (compile: skipped on CPU)", "bench", 3, "dry", "static", STATIC + ["bench.ratios=[0.1]"]),
        Step("profile dry at 0.1", "profile", 2, "dry"),
        Step("compiled exactness", "compile_exactness", 1),
    ]


# --------------------------------------------------------------------------------------------- configs and models


def load_step_config(step: Step, work: Path):
    """The step's Config: a shipped long-video config (GPU) or the tiny dry-run one (written as a YAML file into
    `work`, so both go through the same loader and the same `a.b=value` overrides)."""
    import yaml

    from scorerl.config import load_config

    path = LONG_CONFIGS.get(step.config)
    if step.config == "dry":
        path = work / "dry_run_config.yaml"
        path.write_text(yaml.safe_dump(DRY_BENCH, sort_keys=False))
    return load_config(path, list(step.overrides))


class Envs:
    """Environments built once per model (the 7B takes seconds to build and 16.6 GB): every step shares them."""

    def __init__(self):
        self._envs: dict[str, object] = {}

    def get(self, cfg):
        from scorerl.eval.bench import bench_env

        key = json.dumps([cfg.env.arch, cfg.env.dtype, cfg.env.device, cfg.bench.random_init], sort_keys=True)
        if key not in self._envs:
            self._envs[key] = bench_env(cfg)[0]
        return self._envs[key]


# --------------------------------------------------------------------------------------------- exactness


def _requests(env, rhos, frames: int, size: int, seed: int = 0):
    """One random video, one request per keep ratio (1.0 = all tokens): a batch of different lengths."""
    from scorerl.compress.select import topk_mask
    from scorerl.types import ScoreRequest

    visual = env.encode(np.random.default_rng(seed).integers(0, 256, (frames, size, size, 3), dtype=np.uint8))
    T, N = visual.features.shape[:2]
    g = torch.Generator().manual_seed(seed)
    return [
        ScoreRequest(
            visual=visual,
            prompt="Which way does the square move?",
            target="left, then up",
            keep=None if rho >= 1 else topk_mask(torch.rand(T, N, generator=g), rho, "global"),
        )
        for rho in rhos
    ]


def _diff(a, b) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b))


def static_exactness(arch: str, device: str, compile: bool = False) -> dict:
    """Max abs diff of answer log-probs, static-shape (or compiled) prefill vs eager, fp32, batched and single."""
    from scorerl.envs.build import build_tiny_env
    from scorerl.envs.hf import StaticShapes

    env = build_tiny_env(arch, seed=0)
    env.model.to(device)
    rhos = [0.1, 0.25, 1.0, 0.1]
    requests = _requests(env, rhos, frames=16, size=64)
    with torch.inference_mode():
        env.use_static_shapes(None)
        eager = env.token_logprobs(requests)
        single = [env.token_logprobs([r])[0] for r in requests]
        out = {
            "arch": arch,
            "device": device,
            "dtype": "float32",
            "ratios": rhos,
            "lengths": [len(env.build_sequence(r)) for r in requests],
            "by_bucket": {},
        }
        for bucket in [64] if compile else [64, 0]:
            record = env.use_static_shapes(StaticShapes(bucket=bucket, compile=compile))
            calls = 3 if compile else 1  # compiled: the first calls compile and record, the last replays
            for _ in range(calls):
                batch = env.token_logprobs(requests)
                ones = [env.token_logprobs([r])[0] for r in requests]
            out["by_bucket"][str(bucket)] = {
                "batched": _diff(batch, eager),
                "single": _diff(ones, single),
                "batched_vs_single_eager": _diff(batch, single),
                "compile": record["compile"],
            }
        env.use_static_shapes(None)
    out["max_abs_diff"] = max(max(v for k, v in d.items() if k != "compile") for d in out["by_bucket"].values())
    out["pass"] = out["max_abs_diff"] <= TOLERANCE
    return out


# --------------------------------------------------------------------------------------------- profiling


def _kernels(prof, on_cuda: bool, top: int = 15) -> dict:
    """Top kernels (CUDA) or ops (CPU) by self time, and how many kernels were launched."""
    from torch.autograd import DeviceType

    rows = []
    for e in prof.key_averages():
        cuda = getattr(e, "device_type", None) == DeviceType.CUDA
        if on_cuda and not cuda:
            continue
        t = getattr(e, "self_device_time_total", 0) if on_cuda else e.self_cpu_time_total
        rows.append({"name": e.key[:120], "calls": int(e.count), "self_ms": float(t) / 1000})
    rows.sort(key=lambda r: -r["self_ms"])
    launches = {
        e.key: int(e.count)
        for e in prof.key_averages()
        if e.key in ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC", "cudaGraphLaunch")
    }
    return {
        "top": rows[:top],
        "total_self_ms": sum(r["self_ms"] for r in rows),
        "launch_calls": launches,
        "kernels": sum(r["calls"] for r in rows) if on_cuda else None,
    }


def profile_prefill(env, cfg, steps: int = 3) -> dict:
    """torch.profiler over `steps` prefills at bench.ttft_ratio of the kept tokens, eager then static (+ CUDA
    graphs when bench.compile and CUDA): what the time goes to, before and after."""
    from torch.profiler import ProfilerActivity, profile

    from scorerl.compress.select import topk_mask
    from scorerl.envs.hf import StaticShapes
    from scorerl.eval.bench import _synchronizer, bench_prompt, time_runs
    from scorerl.types import ScoreRequest

    b = cfg.bench
    on_cuda = env.device.type == "cuda"
    sync = _synchronizer(env.device)
    frames = np.random.default_rng(cfg.run.seed).integers(
        0, 256, (b.num_frames, b.frame_size, b.frame_size, 3), dtype=np.uint8
    )
    out = {}
    with torch.inference_mode():
        visual = env.encode(frames)
        T, N = visual.features.shape[:2]
        keep = topk_mask(torch.rand(T, N, generator=torch.Generator().manual_seed(0)), b.ttft_ratio, "global")
        request = ScoreRequest(visual=visual, prompt=bench_prompt(env, b.prompt_tokens), target="A", keep=keep)
        modes = {"eager": None, "static": StaticShapes(bucket=b.bucket, compile=True, max_tokens=b.static_max_tokens)}
        for name, settings in modes.items():
            out[name] = {
                "ratio": b.ttft_ratio,
                "kept": int(keep.sum()),
                "steps": steps,
                "wall_ms": [],
                "top": [],
                "total_self_ms": 0.0,
                "launch_calls": {},
                "kernels": None,
            }
            try:  # a failed compile, or a CUPTI that cannot profile graph replays, keeps what was measured
                out[name]["mode"] = env.use_static_shapes(settings)
                wall = time_runs(lambda: env.score([request]), 3, steps, sync)  # warm: compile/record happen here
                out[name]["wall_ms"] = [1000 * w for w in wall]
                activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_cuda else [])
                with profile(activities=activities) as prof:
                    for _ in range(steps):
                        env.score([request])
                    sync()
                out[name].update(_kernels(prof, on_cuda))
            except Exception as e:
                out[name]["error"] = f"{type(e).__name__}: {e}"
        env.use_static_shapes(None)
    return out


def compile_counters() -> dict:
    """What torch.compile did so far: graphs, graph breaks, recompiles and CUDA-graph skips (why graphs were not
    used, if they were not): the evidence that the static path really replays CUDA graphs."""
    try:
        from torch._dynamo.utils import counters
    except ImportError:
        return {}
    return {
        group: {str(k)[:200]: int(v) for k, v in counters[group].items()}
        for group in ("stats", "graph_break", "recompiles", "inductor")
        if counters.get(group)
    }


# --------------------------------------------------------------------------------------------- the run


def machine_meta(args, plan) -> dict:
    import transformers

    from scorerl.eval.bench import machine
    from scorerl.version import __version__

    versions = {
        "python": platform.python_version(),
        "scorerl": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
    }
    for name in ("triton", "av", "decord", "numpy"):
        try:
            versions[name] = __import__(name).__version__
        except Exception:  # not installed, or no __version__
            versions[name] = None
    gpu = None
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        gpu = {
            "name": p.name,
            "memory_gib": round(p.total_memory / 2**30, 1),
            "capability": f"{p.major}.{p.minor}",
            "count": torch.cuda.device_count(),
        }
    date = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return {
        "mode": "dry-run" if args.dry_run else "gpu",
        "date": date,
        "machine": {**machine(), "gpu_properties": gpu, "platform": platform.platform()},
        "versions": versions,
        "budget_s": args.budget_s,
        "tolerance": TOLERANCE,
        "plan": [
            {
                "name": s.name,
                "kind": s.kind,
                "estimate_s": s.estimate_s,
                "config": s.config,
                "mode": s.mode,
                "overrides": s.overrides,
            }
            for s in plan
        ],
        "configs": {k: str(v.relative_to(REPO)) for k, v in LONG_CONFIGS.items()}
        if not args.dry_run
        else {"dry": "scripts/gpu_check.py DRY_BENCH"},
    }


def run_step(step: Step, envs: Envs, result: dict, runs_dir: Path, device: str) -> str | None:
    """Run one step into `result`; returns why it did nothing, if it did nothing."""
    from scorerl.eval.bench import run_bench

    if step.kind == "exactness":
        result["exactness"] = [static_exactness(arch, device) for arch in ("qwen2_5_vl", "llava_onevision")]
    elif step.kind == "compile_exactness":
        if device != "cuda":
            return "compile (CUDA graphs) runs on CUDA only"
        result["compile_exactness"] = static_exactness("qwen2_5_vl", device, compile=True)
    elif step.kind == "bench":
        cfg = load_step_config(step, runs_dir)
        name = f"bench_{step.config}_{step.mode}"
        bench = run_bench(cfg, out=runs_dir / f"{name}.json", env=envs.get(cfg))
        result["runs"].append(
            {
                "name": step.name,
                "config": step.config,
                "mode": step.mode,
                "overrides": step.overrides,
                "report": f"{runs_dir.name}/{name}.md",
                "result": bench,
            }
        )
    elif step.kind == "profile":
        cfg = load_step_config(step, runs_dir)
        result["profile"][step.config] = profile_prefill(envs.get(cfg), cfg)
    return None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny random models, seconds")
    p.add_argument(
        "--out", default=None, help="output prefix (default docs/results/gpu_check, dry run outputs/gpu_check_dry_run)"
    )
    p.add_argument("--budget-s", type=float, default=None, help="seconds for all steps (default 330; dry run 60)")
    args = p.parse_args(argv)
    # + ~30 s start-up, + ~90 s of scripts/bench_train_scale.py that gpu_check.sh runs after: under 8 minutes
    args.budget_s = args.budget_s or (60.0 if args.dry_run else 330.0)
    out = Path(args.out or ("outputs/gpu_check_dry_run" if args.dry_run else "docs/results/gpu_check"))
    if not out.is_absolute():
        out = REPO / out
    if args.dry_run:
        torch.set_num_threads(1)  # tiny models: a second thread only contends on a shared machine
    elif not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; run with --dry-run on a CPU", file=sys.stderr)
        return 2
    device = "cpu" if args.dry_run else "cuda"
    plan = dry_plan() if args.dry_run else gpu_plan()
    runs_dir = out.with_name(out.name + "_runs")
    runs_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    result = {"meta": machine_meta(args, plan), "exactness": [], "runs": [], "profile": {}, "steps": []}
    envs = Envs()
    compile_failed = None
    for step in plan:
        left = args.budget_s - (time.perf_counter() - t0)
        entry = {"name": step.name, "estimate_s": step.estimate_s}
        compiles = "bench.compile=true" in step.overrides or step.kind == "compile_exactness"
        if left < step.estimate_s:
            entry["skipped"] = f"time budget: {left:.0f} s left, the step needs about {step.estimate_s:.0f} s"
        elif compiles and compile_failed and not args.dry_run:
            entry["skipped"] = f"compile failed in an earlier step ({compile_failed[:200]})"
        else:
            print(f"[{time.perf_counter() - t0:6.1f} s] {step.name} ...", flush=True)
            s0 = time.perf_counter()
            try:
                skipped = run_step(step, envs, result, runs_dir, device)
                if skipped:
                    entry["skipped"] = skipped
            except Exception as e:  # record and go on: one failed step must not lose the others' figures
                entry["error"] = f"{type(e).__name__}: {e}"
                entry["traceback"] = traceback.format_exc()[-3000:]
                print(entry["traceback"], file=sys.stderr, flush=True)
                if step.kind == "bench":
                    result["runs"].append(
                        {"name": step.name, "config": step.config, "mode": step.mode, "error": entry["error"]}
                    )
                if compiles:
                    compile_failed = entry["error"]
            entry["elapsed_s"] = time.perf_counter() - s0
            result["compile_counters"] = compile_counters()
        result["steps"].append(entry)
        result["meta"]["elapsed_s"] = time.perf_counter() - t0
        write_outputs(result, out)
        copy_to_device_out(out, runs_dir, args.dry_run)  # after every step: a run cut short still brings back figures
    print(f"[{time.perf_counter() - t0:6.1f} s] wrote {out}.json and {out}.md", flush=True)
    return 0


def write_outputs(result: dict, out: Path) -> None:
    from scorerl.eval.report import write_json
    from scorerl.io import atomic

    result["summary"] = summarize(result)
    write_json(result, out.with_suffix(".json"))
    atomic.write_text(out.with_suffix(".md"), gpu_check_markdown(result))


def copy_to_device_out(out: Path, runs_dir: Path, dry_run: bool) -> None:
    """The device runner brings back only $OUT: copy the results there when it exists (never on a dry run)."""
    dest = os.environ.get("OUT")
    if dry_run or not dest or not Path(dest).is_dir():
        return
    for suffix in (".json", ".md"):
        shutil.copy2(out.with_suffix(suffix), Path(dest) / (out.name + suffix))
    shutil.copytree(runs_dir, Path(dest) / runs_dir.name, dirs_exist_ok=True)


# --------------------------------------------------------------------------------------------- summary


def summarize(result: dict) -> list[dict]:
    """One row per (config, ratio): eager and static speed-ups beside the FLOPs limit, TTFT, NLL agreement."""
    runs = {(r["config"], r["mode"]): r["result"] for r in result["runs"] if "result" in r}
    rows = []
    for config in dict.fromkeys(c for c, _ in runs):
        eager, static = runs.get((config, "eager")), runs.get((config, "static"))
        base = eager or static
        ratios = sorted({r["ratio"] for run in (eager, static) if run for r in run["results"]})
        for rho in ratios:
            row = {"config": config, "ratio": rho, "full_visual_tokens": base["full"]["visual_tokens"]}
            for mode, run in (("eager", eager), ("static", static)):
                r = next((x for x in run["results"] if x["ratio"] == rho), None) if run else None
                if r is None:
                    continue
                row.update(
                    {
                        "visual_tokens": r["visual_tokens"],
                        "flops_speedup": r["flops_speedup"],
                        f"{mode}_full_ms": 1000 * run["full"]["prefill_s"],
                        f"{mode}_prefill_ms": 1000 * r["prefill_s"],
                        f"{mode}_speedup": r["speedup"],
                        f"{mode}_prefill_speedup": r["prefill_speedup"],
                        f"{mode}_limit_pct": r["limit_pct"],
                        f"{mode}_nll": r["nll"],
                        f"{mode}_padded_tokens": r["padded_tokens"],
                    }
                )
                arm = next((a for a in (run.get("ttft") or {}).get("arms", []) if a["arm"] == rho), None)
                if arm is not None:
                    row[f"{mode}_ttft_ms"] = 1000 * arm["ttft_s"]
                    row[f"{mode}_ttft_speedup"] = arm["speedup"]
            if "eager_nll" in row and "static_nll" in row:
                row["nll_abs_diff"] = abs(row["eager_nll"] - row["static_nll"])
            rows.append(row)
    return rows


def _f(x, fmt="{:.2f}", na="n/a") -> str:
    return na if x is None else fmt.format(x)


def gpu_check_markdown(result: dict) -> str:
    meta = result["meta"]
    m, v = meta["machine"], meta["versions"]
    lines = [
        f"# GPU check ({meta['mode']})",
        "",
        f"{m['device_name']} ({m['cpu_count']} CPU cores), torch {v['torch']} (CUDA {v['cuda']}), transformers "
        f"{v['transformers']}, triton {v['triton']}, PyAV {v['av']}, decord {v['decord']}; {meta['date']}; "
        f"{meta['elapsed_s']:.0f} s of a {meta['budget_s']:.0f} s budget. Full data: the .json beside this file; "
        "each bench run's own report in the _runs folder.",
        "",
    ]
    lines += [
        "## Speed-up at each ratio vs its FLOPs limit",
        "",
        'eager = transformers as is; static = bucketed static shapes + torch.compile(mode="reduce-overhead") '
        "(CUDA graphs; on a CPU compile is skipped). Speed-ups include the policy's time; % = speed-up / "
        "FLOPs speed-up.",
        "",
        "| config | ratio | visual tokens | full ms (eager) | prefill ms eager | prefill ms static | speed-up "
        "eager | speed-up static | FLOPs speed-up (limit) | % of limit eager | % of limit static | "
        "TTFT speed-up eager | TTFT speed-up static | NLL diff |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["summary"]:
        lines.append(
            f"| {r['config']} ({r['full_visual_tokens']}) | {r['ratio']:g} | {r.get('visual_tokens', '-')} | "
            f"{_f(r.get('eager_full_ms'), '{:.1f}')} | {_f(r.get('eager_prefill_ms'), '{:.1f}')} | "
            f"{_f(r.get('static_prefill_ms'), '{:.1f}')} | {_f(r.get('eager_speedup'))} | "
            f"{_f(r.get('static_speedup'))} | {_f(r.get('flops_speedup'))} | "
            f"{_f(r.get('eager_limit_pct'), '{:.0f}%')} | {_f(r.get('static_limit_pct'), '{:.0f}%')} | "
            f"{_f(r.get('eager_ttft_speedup'))} | {_f(r.get('static_ttft_speedup'))} | "
            f"{_f(r.get('nll_abs_diff'), '{:.2g}')} |"
        )
    lines += _ttft_lines(result)
    lines += _profile_lines(result.get("profile") or {})
    lines += _exactness_lines(result)
    if result.get("compile_counters"):
        lines += [
            "",
            "## torch.compile counters",
            "",
            "Graphs, graph breaks, recompiles and CUDA-graph skips so far "
            "(an `inductor` entry naming cudagraph skips means the graphs were not used):",
            "",
            "```json",
            json.dumps(result["compile_counters"], indent=1)[:3000],
            "```",
        ]
    lines += ["", "## Steps", "", "| step | estimate s | took s | outcome |", "|---|---|---|---|"]
    for s in result["steps"]:
        outcome = s.get("skipped") or s.get("error") or "ok"
        lines.append(
            f"| {s['name']} | {s['estimate_s']:.0f} | {_f(s.get('elapsed_s'), '{:.1f}', '-')} | "
            f"{outcome.replace('|', '/')[:200]} |"
        )
    return "\n".join(lines) + "\n"


def _ttft_lines(result: dict) -> list[str]:
    lines = [
        "",
        "## Time to first token (decode + vision tower + policy + prefill)",
        "",
        "| config | mode | arm | decode ms | vision ms | policy ms | prefill ms | TTFT ms | speed-up | end-to-end ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in result["runs"]:
        ttft = (run.get("result") or {}).get("ttft")
        if not ttft:
            continue
        for a in ttft["arms"]:
            arm = a["arm"] if a["arm"] == "full" else f"{a['arm']:g}"
            lines.append(
                f"| {run['config']} | {run['mode']} | {arm} | "
                f"{_f(a['decode_s'] and 1000 * a['decode_s'], '{:.1f}')} | {1000 * a['vision_s']:.1f} | "
                f"{1000 * a['policy_s']:.1f} | {1000 * a['prefill_s']:.1f} | {1000 * a['ttft_s']:.1f} | "
                f"{a['speedup']:.2f} | {_f(a.get('e2e_s') and 1000 * a['e2e_s'], '{:.1f}', '-')} |"
            )
        if ttft["decode_s"] is None:
            lines.append(f"| {run['config']} | {run['mode']} | decoding n/a: {ttft['decode_na_reason']} |" + " |" * 7)
    return lines


def _profile_lines(profile: dict) -> list[str]:
    lines = []
    for config, modes in profile.items():
        lines += ["", f"## Profile: {config}, one prefill at the TTFT ratio, before (eager) and after (static)", ""]
        for mode, p in modes.items():
            per = p["steps"]
            if p.get("error"):
                lines += [
                    f"**{mode}**: profiler failed ({p['error']}); wall "
                    f"{', '.join(f'{w:.1f}' for w in p['wall_ms'])} ms per prefill.",
                    "",
                ]
                continue
            lines += [
                f"**{mode}** ({p['mode'].get('compile')}): {p['kept']} kept visual tokens; wall "
                f"{', '.join(f'{w:.1f}' for w in p['wall_ms'])} ms per prefill; "
                f"{_f(p['kernels'] and p['kernels'] / per, '{:.0f}')} kernels and "
                f"{p['total_self_ms'] / per:.1f} ms of self time per prefill; launch calls "
                f"{ {k: v // per for k, v in p['launch_calls'].items()} }.",
                "",
                "| kernel / op | calls per prefill | self ms per prefill |",
                "|---|---|---|",
            ]
            for k in p["top"][:10]:
                lines.append(
                    f"| `{k['name'][:90].replace('|', '/')}` | {k['calls'] / per:.0f} | {k['self_ms'] / per:.2f} |"
                )
            lines.append("")
    return lines


def _exactness_lines(result: dict) -> list[str]:
    lines = [
        "",
        f"## Exactness: static-shape prefill vs eager (answer log-probs, max abs diff, tolerance {TOLERANCE:g})",
        "",
        "| arch | device | bucket | batched | one by one | batched vs eager one by one | compile | pass |",
        "|---|---|---|---|---|---|---|---|",
    ]
    checks = list(result.get("exactness") or [])
    if isinstance(result.get("compile_exactness"), dict) and "by_bucket" in result["compile_exactness"]:
        checks.append(result["compile_exactness"])
    for e in checks:
        for bucket, d in e["by_bucket"].items():
            lines.append(
                f"| {e['arch']} | {e['device']} | {bucket} | {d['batched']:.2g} | {d['single']:.2g} | "
                f"{d['batched_vs_single_eager']:.2g} | {d['compile']} | {e['pass']} |"
            )
    return lines


if __name__ == "__main__":
    sys.exit(main())
