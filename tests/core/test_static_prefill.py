"""The static-shape prefill (bucketed left padding, scorerl/envs/hf.py) gives the eager prefill's answer log-probs,
on tiny fp32 models of both architectures; the bench reports it; the GPU check's CPU dry run runs end to end."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from scorerl.compress.select import topk_mask
from scorerl.config import config_from_dict
from scorerl.envs.build import build_tiny_env
from scorerl.envs.hf import StaticShapes, bucket_length, left_pad, pad_left_to
from scorerl.eval.bench import run_bench
from scorerl.types import ScoreRequest

ROOT = Path(__file__).resolve().parents[2]
TOLERANCE = 1e-5  # fp32: padding only changes reduction order, never which tokens a real token attends to

pytestmark = pytest.mark.usefixtures("one_thread")


def test_bucket_length():
    assert [bucket_length(n, 64) for n in (1, 63, 64, 65, 3297)] == [64, 64, 64, 128, 3328]
    assert [bucket_length(n, 0) for n in (1, 2, 3, 64, 65, 3297)] == [1, 2, 4, 64, 128, 4096]
    with pytest.raises(ValueError):
        bucket_length(0, 64)


def test_pad_left_to_keeps_tokens_right_aligned():
    embeds, mask, positions = torch.randn(2, 5, 3), torch.ones(2, 5, dtype=torch.long), torch.arange(15).view(3, 1, 5)
    positions = positions.expand(3, 2, 5)
    e, m, p = pad_left_to(embeds, mask, positions, 8)  # [2, 8, 3], [2, 8], [3, 2, 8]
    assert e.shape == (2, 8, 3) and m.shape == (2, 8) and p.shape == (3, 2, 8)
    assert torch.equal(e[:, 3:], embeds) and not e[:, :3].any()
    assert m[:, :3].sum() == 0 and m[:, 3:].all()
    assert torch.equal(p[..., 3:], positions) and (p[..., :3] == 1).all()
    with pytest.raises(ValueError):
        pad_left_to(embeds, mask, positions, 4)


def _requests(env, rhos, frames: int = 16, seed: int = 0) -> list[ScoreRequest]:
    """One random video; one request per keep ratio (1.0 = every token), so the batch mixes lengths."""
    clip = np.random.default_rng(seed).integers(0, 256, (frames, 64, 64, 3), dtype=np.uint8)
    visual = env.encode(clip)
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


def _max_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b))


def _widths(env, fn) -> list[int]:
    """Sequence lengths the model's forward was called with while fn runs."""
    seen: list[int] = []
    handle = env.model.register_forward_pre_hook(
        lambda m, a, kw: seen.append(kw["inputs_embeds"].shape[1]), with_kwargs=True
    )
    try:
        fn()
    finally:
        handle.remove()
    return seen


@pytest.mark.parametrize("arch", ["qwen2_5_vl", "llava_onevision"])
def test_static_prefill_equals_eager(arch):
    """10% and 25% kept subsets and the full sequence, batched together (different lengths) and one by one:
    answer log-probs of the bucketed forward (multiple of 64, and power of two) match eager within 1e-5."""
    env = build_tiny_env(arch, seed=0)
    requests = _requests(env, [0.1, 0.25, 1.0, 0.1])
    lengths = [len(env.build_sequence(r)) for r in requests]
    assert len(set(lengths)) == 3  # a batch of different lengths
    with torch.no_grad():
        env.use_static_shapes(None)
        eager_batch = env.token_logprobs(requests)
        eager_single = [env.token_logprobs([r])[0] for r in requests]
        for bucket in (64, 0):
            record = env.use_static_shapes(StaticShapes(bucket=bucket))
            assert record["static_shapes"] and record["compile"] == "off"
            static_batch = env.token_logprobs(requests)
            widths = _widths(env, lambda: env.token_logprobs([requests[0]]))
            static_single = [env.token_logprobs([r])[0] for r in requests]
            assert widths == [bucket_length(lengths[0], bucket)] and widths[0] > lengths[0]  # padded, not exact
            assert _max_diff(static_batch, eager_batch) <= TOLERANCE
            assert _max_diff(static_single, eager_single) <= TOLERANCE
            assert _max_diff(static_batch, eager_single) <= TOLERANCE  # the batch also matches unbatched runs
    env.use_static_shapes(None)


def test_static_shapes_limits_and_compile_on_cpu():
    """Above max_tokens a forward keeps its exact length; compile is CUDA-only and says so on a CPU."""
    env = build_tiny_env("qwen2_5_vl", seed=0)
    request = _requests(env, [0.25], frames=4)[0]
    n = len(env.build_sequence(request))
    record = env.use_static_shapes(StaticShapes(bucket=64, compile=True, max_tokens=n))
    assert record["compile"].startswith("skipped") and env._compiled is None
    assert _widths(env, lambda: env.score([request])) == [n]
    env.use_static_shapes(StaticShapes(bucket=64, max_tokens=4096))
    assert _widths(env, lambda: env.score([request])) == [bucket_length(n, 64)]
    env.use_static_shapes(None)
    assert _widths(env, lambda: env.score([request])) == [n]


def test_left_pad_unchanged_for_eager():
    env = build_tiny_env("llava_onevision", seed=0)
    seqs = [env.build_sequence(r) for r in _requests(env, [0.1, 1.0], frames=4)]
    embeds, mask, positions = left_pad(seqs)
    assert embeds.shape[1] == max(len(s) for s in seqs) and mask.sum() == sum(len(s) for s in seqs)


TINY_QWEN = {
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
}


def test_bench_static_shapes_and_ttft(tmp_path):
    """bench.static_shapes pads every prefill to its bucket and gives the eager NLLs; ttft adds decode + vision +
    policy + prefill per arm; the report has the % of the FLOPs limit and the TTFT table."""
    bench = {
        "ratios": [0.1, 0.5],
        "num_frames": 4,
        "frame_size": 112,
        "prompt_tokens": 16,
        "warmup": 1,
        "repeats": 1,
        "random_init": TINY_QWEN,
    }
    eager = run_bench(config_from_dict({"env": {"device": "cpu"}, "bench": bench}), out=tmp_path / "eager.json")
    cfg = config_from_dict(
        {"env": {"device": "cpu"}, "bench": {**bench, "static_shapes": True, "compile": True, "ttft": True}}
    )
    static = run_bench(cfg, out=tmp_path / "static.json")
    assert static["static"]["static_shapes"] and static["static"]["compile"].startswith("skipped")
    for e, s in zip([eager["full"], *eager["results"]], [static["full"], *static["results"]]):
        assert s["padded_tokens"] % 64 == 0 and s["padded_tokens"] >= e["padded_tokens"]
        assert abs(s["nll"] - e["nll"]) <= TOLERANCE
    for r in static["results"]:
        assert r["limit_pct"] == pytest.approx(100 * r["speedup"] / r["flops_speedup"])
    ttft = static["ttft"]
    arms = {a["arm"]: a for a in ttft["arms"]}
    assert set(arms) == {"full", 0.1, 0.5} and ttft["e2e_ratio"] == 0.1
    assert ttft["decode_s"] > 0 and ttft["decoder"] in ("decord", "PyAV")
    assert arms["full"]["e2e_s"] > 0 and arms[0.1]["e2e_s"] > 0 and "e2e_s" not in arms[0.5]
    a = arms[0.1]
    assert a["ttft_s"] == pytest.approx(a["decode_s"] + a["vision_s"] + a["policy_s"] + a["prefill_s"])
    md = (tmp_path / "static.md").read_text()
    assert "% of FLOPs limit" in md and "## Time to first token" in md and "Static shapes" in md


def test_gpu_check_dry_run(tmp_path):
    """`bash scripts/gpu_check.sh --dry-run`: every measurement of the GPU check on tiny CPU models (~10 s)."""
    out = tmp_path / "gpu_check"
    t0 = time.perf_counter()
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--dry-run", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "HOME": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    result = json.loads(out.with_suffix(".json").read_text())
    assert result["meta"]["mode"] == "dry-run" and result["meta"]["elapsed_s"] < time.perf_counter() - t0
    assert {e["arch"] for e in result["exactness"]} == {"qwen2_5_vl", "llava_onevision"}
    assert all(e["max_abs_diff"] <= TOLERANCE for e in result["exactness"])
    assert not [r for r in result["runs"] if r.get("error")], result["runs"]
    assert {r["mode"] for r in result["runs"]} == {"eager", "static"}
    assert all("ttft" in r["result"] for r in result["runs"])
    profile = result["profile"]["dry"]
    assert set(profile) == {"eager", "static"} and all(p["top"] for p in profile.values())
    steps = {s["name"]: s for s in result["steps"]}
    assert not [s for s in steps.values() if s.get("error")]
    assert "CUDA" in steps["compiled exactness"]["skipped"]  # compile is CUDA-only
    assert "| ratio |" in out.with_suffix(".md").read_text()


def test_training_at_scale_dry_run(tmp_path):
    """scripts/bench_train_scale.py (the GPU check's training step) on CPU with a tiny model: both modes run and
    the batched K masks take one environment call where the per-mask mode takes K."""
    import importlib.util
    import json
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("bench_train_scale", repo / "scripts" / "bench_train_scale.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert (
        script.main(
            [
                str(repo / "configs" / "qwen2_5_vl_7b" / "stage2_video.yaml"),
                "--dry-run",
                "--out",
                str(tmp_path / "scale"),
            ]
        )
        == 0
    )
    rows = json.loads((tmp_path / "scale.json").read_text())["rows"]
    assert [r["mode"] for r in rows] == ["batched", "per_mask"] and all(r["steps"] >= 2 for r in rows)
    assert all(0 < r["env_share"] < 1 for r in rows)
