"""The README's main job, end to end at toy scale: world -> env fit -> SCORE training -> evaluation at 0.1."""

import json
from pathlib import Path

import pytest

from scorerl.world.demo import DEMO_METHODS, run_demo

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("config, version", [("quickstart.yaml", 3), ("world/score_v4.yaml", 4)])
def test_demo_runs_the_whole_path_and_reuses_what_it_built(tmp_path, monkeypatch, config, version):
    from scorerl.config import load_config

    monkeypatch.setenv("SCORERL_HOME", str(tmp_path / "home"))
    path = CONFIGS / config
    overrides = [
        "world.train=24",
        "world.test=12",
        "world.static_train=12",
        "world.frames=8",
        "world.size=32",
        "data.num_frames=8",
        "data.frame_size=32",
        "fit.steps=3",
        "fit.batch_size=4",
        "fit.checkpoint_every=2",
        "fit.model={}",
        "train.max_steps=3",
        "curriculum.stage1_steps=1",
        "train.batch_size=2",
        "rl.group_size=2",
        "train.checkpoint_every=2",
        f"run.output_dir={tmp_path}",
    ]
    report = run_demo(str(path), overrides)
    methods = DEMO_METHODS if version == 3 else load_config(path).eval.methods  # v4 prints every baseline
    rows = {(r["method"], r["ratio"]) for r in report["results"]}
    assert rows == {("full", 1.0)} | {(m, 0.1) for m in methods if m != "full"}
    assert (tmp_path / "home" / ("world" if version == 3 else "world_v4") / "world.json").is_file()
    run_dir = tmp_path / load_config(path).run.name
    assert (run_dir / "policy" / "policy.safetensors").is_file()
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]

    again = run_demo(str(path), overrides)  # everything cached: the run is already at max_steps
    assert again["results"] == report["results"]
    assert [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()] == steps
