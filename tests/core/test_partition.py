"""env.placement: the frozen environment partitioned across processes with DeepSpeed ZeRO-3 scores exactly what the
whole model scores, with every process doing different work (lockstep), and the placements' launch checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from scorerl.config import load_config
from scorerl.envs import load_env
from scorerl.envs.partition import check_launch, zero3_config
from scorerl.errors import ConfigError, EnvError

REPO = Path(__file__).resolve().parents[2]
TOL = 1e-6  # float32


@pytest.fixture(scope="module")
def env_folder(tmp_path_factory):
    from scorerl.envs.build import build_tiny_env

    folder = tmp_path_factory.mktemp("partition") / "env"
    build_tiny_env("qwen2_5_vl", seed=0).save_pretrained(folder)
    return folder


def env_cfg(folder, *overrides):
    return load_config(None, [f"env.path={folder}", "env.device=cpu", *overrides]).env


def test_zero3_on_two_processes_scores_what_the_whole_model_scores(env_folder, tmp_path):
    """Rank 0 scores 7 requests in several token-budget chunks while rank 1 scores 1; then rank 0 makes an empty
    call while rank 1 scores 2. Lockstep filler forwards keep the weight gathers in step, and every real CE and
    choice log-prob is the whole model's (gathering moves weights, it does not change them)."""
    pytest.importorskip("deepspeed")
    zero3 = tmp_path / "zero3.json"
    zero3.write_text(json.dumps({"zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0}}))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(28500 + os.getpid() % 1000),
        str(REPO / "tests" / "core" / "workers" / "zero3_scoring.py"),
        str(env_folder),
        str(zero3),
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    whole = r0["whole"]
    assert r1["whole"] == whole
    assert r0["second"] == [] and len(r1["second"]) == 2

    def close(got, want):  # the same arithmetic on gathered weights: equal to float rounding (seen: <= 6e-8)
        return torch.allclose(torch.tensor(got), torch.tensor(want), rtol=0, atol=TOL)

    assert close(r0["first"], whole) and close(r1["first"], whole[:1]) and close(r1["second"], whole[5:7])
    assert close(r0["choices"], r0["whole_choices"]) and close(r1["choices"], r1["whole_choices"])
    # each process holds half of the language model's weights
    assert r0["total"] == r1["total"] and r0["held"] + r1["held"] == r0["total"]
    assert r0["held"] < r0["total"] and r1["held"] < r1["total"]


def test_zero3_needs_a_distributed_launch(env_folder):
    with pytest.raises(EnvError, match="needs a distributed launch"):
        load_env(env_cfg(env_folder, "env.placement=zero3"))


def test_device_map_needs_one_process_per_node(monkeypatch):
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    with pytest.raises(ConfigError, match="one process per node; this launch starts 8"):
        check_launch("device_map")
    check_launch("zero3")  # 8 processes per node is what zero3 wants


def test_device_map_scores_what_the_whole_model_scores(env_folder):
    from scorerl.types import ScoreRequest, VisualTokens

    whole = load_env(env_cfg(env_folder))
    placed = load_env(env_cfg(env_folder, "env.placement=device_map"))
    g = torch.Generator().manual_seed(0)
    requests = [
        ScoreRequest(
            VisualTokens(torch.randn(4, 4, whole.hidden_size, generator=g), grid=(2, 2)), "Which colour?", target="A"
        )
        for _ in range(3)
    ]
    assert torch.equal(whole.score(requests), placed.score(requests))


def test_zero3_config_file_is_checked(tmp_path):
    assert zero3_config(torch.bfloat16)["bf16"] == {"enabled": True}
    assert zero3_config(torch.float32)["zero_optimization"]["stage"] == 3
    with pytest.raises(ConfigError, match="env.zero3_config: .*missing.json not found"):
        zero3_config(torch.float32, str(tmp_path / "missing.json"))
    stage2 = tmp_path / "stage2.json"
    stage2.write_text('{"zero_optimization": {"stage": 2}}')
    with pytest.raises(ConfigError, match="stage=2; partitioning weights is stage 3"):
        zero3_config(torch.float32, str(stage2))
    offload = tmp_path / "offload.json"
    offload.write_text('{"zero_optimization": {"offload_param": {"device": "cpu"}}}')
    assert zero3_config(torch.float32, str(offload))["zero_optimization"] == {
        "offload_param": {"device": "cpu"},
        "stage": 3,
    }
