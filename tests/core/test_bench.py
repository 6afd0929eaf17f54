"""Prefill benchmark: runs end to end on tiny models, FLOPs arithmetic, random-init configs (no timing asserts)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from scorerl.compress.policy import TokenPolicy
from scorerl.compress.select import num_keep
from scorerl.config import config_from_dict, load_config
from scorerl.envs.build import model_config_from_dict
from scorerl.errors import ConfigError
from scorerl.eval.bench import run_bench
from scorerl.eval.flops import LMDims, lm_dims, policy_flops, prefill_flops

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "bench"

TINY_QWEN = {  # Qwen2.5-VL patching (14 px, 2x2 merge, 2 frames per unit) on a 2-layer, 64-wide model
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


pytestmark = pytest.mark.usefixtures("one_thread")


def _check_result(result: dict, ratios, T: int, N: int, suffix: int = 0):
    assert result["vision_s"] > 0
    full = result["full"]
    assert full["prefill_s"] > 0 and full["visual_tokens"] == T * N + suffix and full["text_tokens"] > 0
    assert [r["ratio"] for r in result["results"]] == sorted(ratios)
    for r in result["results"]:
        assert r["visual_tokens"] == num_keep(r["ratio"], T, N) + suffix
        assert r["policy_s"] > 0 and r["prefill_s"] > 0
        assert r["total_s"] == pytest.approx(r["policy_s"] + r["prefill_s"])
        assert r["speedup"] == pytest.approx(full["prefill_s"] / r["total_s"])
        assert r["prefill_speedup"] == pytest.approx(full["prefill_s"] / r["prefill_s"])
        assert r["flops_speedup"] > 1 and len(r["prefill_times_s"]) == result["meta"]["repeats"]
        fastv = r["fastv"]  # analytic: layers < K over every token, the rest over the kept ones
        assert fastv["layer"] == result["meta"]["fastv_layer"]
        assert fastv["tokens_from_layer"] == num_keep(r["ratio"], T, N) + suffix + full["text_tokens"]
        assert fastv["flops_speedup"] >= 1
    meta = result["meta"]
    assert meta["machine"]["device_name"] and meta["versions"]["torch"] == torch.__version__


def test_bench_random_init_tiny(tmp_path):
    cfg = config_from_dict(
        {
            "env": {"device": "cpu"},
            "bench": {
                "ratios": [0.5, 0.1],
                "num_frames": 4,
                "frame_size": 112,
                "prompt_tokens": 16,
                "warmup": 1,
                "repeats": 2,
                "random_init": TINY_QWEN,
            },
        }
    )
    result = run_bench(cfg, out=tmp_path / "bench.json")
    _check_result(result, [0.1, 0.5], T=2, N=16)  # 4 frames / 2 per unit; 112 px / 28 px per token = 4 x 4
    assert result["meta"]["model"]["source"] == "random_init qwen2_5_vl"
    assert result["meta"]["policy"]["source"] == "random (cfg.policy)"
    assert json.loads((tmp_path / "bench.json").read_text()) == json.loads(json.dumps(result))
    assert "| 0.1 |" in (tmp_path / "bench.md").read_text()
    assert "## FastV at the same ratios" in (tmp_path / "bench.md").read_text()
    assert result["meta"]["fastv_layer"] == 2  # eval.fastv_layer, within the 2 layers


def test_bench_saved_env_and_policy(tmp_path):
    from scorerl.envs.build import build_tiny_env

    build_tiny_env("qwen2_5_vl", seed=0).save_pretrained(tmp_path / "env")  # patch 8, 2x2 merge, 1 frame/unit
    TokenPolicy(64).save_pretrained(tmp_path / "policy")
    cfg = config_from_dict(
        {
            "env": {"path": str(tmp_path / "env"), "device": "cpu"},
            "bench": {
                "ratios": [0.25],
                "num_frames": 3,
                "frame_size": 32,
                "prompt_tokens": 8,
                "warmup": 0,
                "repeats": 1,
            },
        }
    )
    result = run_bench(cfg, out=tmp_path / "b.json", policy_dir=tmp_path / "policy")
    _check_result(result, [0.25], T=3, N=4)
    assert result["meta"]["policy"]["source"] == str((tmp_path / "policy").resolve())


def test_prefill_flops_by_hand():
    d = LMDims(hidden=4, layers=2, heads=2, kv_heads=1, head_dim=2, intermediate=8, vocab=10)
    f = prefill_flops(d, tokens=3, logits=1)
    # per layer: q,k,v 2*3*4*(4+2+2)=192, o 2*3*4*4=96, MLP 2*3*4*8*3=576; attention 4*9*4=144
    assert f["linear"] == 2 * (192 + 96 + 576)
    assert f["attention"] == 2 * 144
    assert f["head"] == 2 * 1 * 4 * 10
    assert f["total"] == f["linear"] + f["attention"] + f["head"]
    # the attention term is quadratic: twice the tokens, four times the attention
    assert prefill_flops(d, 6)["attention"] == 4 * f["attention"]
    assert policy_flops(10, state_dim=8, hidden=4, layers=2) == 2 * 10 * (8 * 4 + 4 * 1)


def test_random_init_config_from_dict():
    from transformers import Qwen2_5_VLConfig

    from scorerl.envs.tokenizer import build_tokenizer

    tok = build_tokenizer(arch="qwen2_5_vl")
    flat = {
        "hidden_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 4,
        "vocab_size": 1000,
        "intermediate_size": 128,
        "vision_config": {"depth": 1, "hidden_size": 32, "num_heads": 2},
    }
    cfg = model_config_from_dict("qwen2_5_vl", flat, tok, Qwen2_5_VLConfig)
    assert cfg.text_config.hidden_size == 64 and cfg.vision_config.out_hidden_size == 64
    assert cfg.video_token_id == tok.convert_tokens_to_ids("<|video_pad|>")
    assert sum(cfg.text_config.rope_parameters["mrope_section"]) == 8  # head_dim 16 / 2
    with pytest.raises(ConfigError, match="vocab_size"):
        model_config_from_dict("qwen2_5_vl", {**flat, "vocab_size": 10}, tok, Qwen2_5_VLConfig)
    bad_rope = {**flat, "rope_parameters": {"rope_type": "default", "mrope_section": [16, 24, 24]}}
    with pytest.raises(ConfigError, match="mrope_section"):
        model_config_from_dict("qwen2_5_vl", bad_rope, tok, Qwen2_5_VLConfig)


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_shipped_bench_configs_build(name):
    """Every shipped config loads, and its random-init model has the intended size (built on the meta device)."""
    from scorerl.envs import env_class
    from scorerl.envs.tokenizer import build_tokenizer

    cfg = load_config(CONFIGS / name)
    model_cls = env_class(cfg.env.arch).model_class()
    hf = model_config_from_dict(
        cfg.env.arch, cfg.bench.random_init, build_tokenizer(arch=cfg.env.arch), model_cls.config_class
    )
    with torch.device("meta"):
        model = model_cls._from_config(hf)
    params = sum(p.numel() for p in model.parameters())
    if name.startswith("qwen2_5_vl_7b"):
        assert lm_dims(hf) == LMDims(
            hidden=3584, layers=28, heads=28, kv_heads=4, head_dim=128, intermediate=18944, vocab=152064
        )
        assert 8.2e9 < params < 8.4e9  # Qwen2.5-VL-7B has 8.29 B parameters
        assert cfg.env.dtype == "bfloat16" and cfg.env.device == "cuda"
    else:
        assert cfg.env.device == "cpu" and params < 1e9
