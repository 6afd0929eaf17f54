"""Nothing of the user's is ever lost: what scorerl does to folders and values a careful user tries (issue 26).

Each test is one case of docs/training.md, "What scorerl promises about your files": a folder holding the user's
files is refused by name and left as it was; --force removes only what scorerl wrote; one training per run folder;
every flag and config value checked before any work; sizes in policy and checkpoint files bounded before anything
is allocated; a full disk or a read-only target is one line, with no temp file left; files readable as the umask
says; a saturated run is reported. The kill / crash resume cases live in test_trainer.py, test_store.py and
test_partition.py (listed in the same table).

Setting of the training cases: the tiny environment and 4 + 4 samples of 4 frames at 32 px, K = 4, batch 2, 2 steps.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from scorerl.cli import main as cli
from scorerl.config import load_config
from scorerl.errors import CheckpointError, ConfigError, DataError, WriteError
from scorerl.io import checkpoint as ckpt
from scorerl.io import owned
from scorerl.rl.metrics import read_metrics
from scorerl.rl.trainer import train

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    from conftest import write_tiny_dataset

    from scorerl.envs.build import build_tiny_env

    root = tmp_path_factory.mktemp("fault_assets")
    world = write_tiny_dataset(root / "world", videos=4, images=4, frames=4, size=32, seed=0)
    build_tiny_env("qwen2_5_vl", seed=0).save_pretrained(root / "env")
    return {"world": Path(world), "env": root / "env", "cache": root / "features"}


def overrides(assets, out: Path, *extra: str) -> list[str]:
    return [
        f"run.output_dir={out}",
        "run.name=run",
        f"env.path={assets['env']}",
        "env.device=cpu",
        f"data.stage1_manifest={assets['world'] / 'static_train.jsonl'}",
        f"data.stage2_manifest={assets['world'] / 'train.jsonl'}",
        "data.num_frames=4",
        "data.frame_size=32",
        f"data.cache_dir={assets['cache']}",
        "rl.group_size=4",
        "policy.hidden=16",
        "curriculum.stage1_steps=1",
        "train.max_steps=2",
        "train.batch_size=2",
        "train.lr=0.05",
        "train.checkpoint_every=1",
        "train.keep_last=5",
        *extra,
    ]


def make_cfg(assets, out: Path, *extra: str):
    return load_config(None, overrides(assets, out, *extra))


@pytest.fixture(scope="module")
def finished_run(assets, tmp_path_factory):
    """A finished 2-step run (checkpoints 1 and 2, policy/); tests copy it before changing anything."""
    return train(make_cfg(assets, tmp_path_factory.mktemp("finished")))


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its bytes: what a refused command must leave exactly as it was."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def copy_run(run: Path, to: Path) -> Path:
    import shutil

    shutil.copytree(run, to / "run")
    return to / "run"


def user_folder(path: Path) -> Path:
    """A user's folder: their thesis and a data file in a subfolder."""
    (path / "sub").mkdir(parents=True)
    (path / "thesis.tex").write_text("\\documentclass{article}")
    (path / "sub" / "data.csv").write_text("a,b\n1,2\n")
    return path


def cli_error(capsys, *argv: str) -> str:
    """Run the CLI, expect exit 2 and ONE line on stderr (no traceback); return that line."""
    assert cli(list(argv)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("scorerl: error: "), err
    return err[0]


# ------------------------------------------------------------------------------------------------ exports


def test_export_into_a_users_folder_is_refused_and_leaves_it_alone(finished_run, tmp_path, capsys):
    folder = user_folder(tmp_path / "mine")
    before = snapshot(folder)
    line = cli_error(capsys, "export", str(finished_run), "--out", str(folder))
    assert "sub/" in line and "thesis.tex" in line
    assert snapshot(folder) == before


def test_export_over_its_own_run_or_save_pretrained_into_it_deletes_nothing(finished_run, tmp_path, capsys):
    from scorerl.export import ScoreCompressor

    run = copy_run(finished_run, tmp_path)
    before = snapshot(run)
    line = cli_error(capsys, "export", str(run), "--out", str(run))
    assert "checkpoints/" in line and "metrics.jsonl" in line and "config.yaml" in line
    with pytest.raises(WriteError, match="checkpoints/"):
        ScoreCompressor.from_pretrained(run).save_pretrained(run)
    assert snapshot(run) == before


def test_an_earlier_export_is_replaced_and_only_its_files_are_copied(finished_run, tmp_path):
    from scorerl.export import export_policy

    out = export_policy(finished_run, tmp_path / "exported")
    export_policy(finished_run / "checkpoints" / "step-000001", out)  # an export over an export: replaced
    assert json.loads((out / "export.json").read_text())["step"] == 1
    (out / "notes.txt").write_text("mine")  # an export folder the user has since written into
    with pytest.raises(WriteError, match="notes.txt"):
        export_policy(finished_run, out)
    copied = export_policy(out, tmp_path / "copy")  # copying an export takes its own files, not the user's
    assert sorted(p.name for p in copied.iterdir()) == ["export.json", "policy.safetensors", "policy_config.json"]


# ------------------------------------------------------------------------------------------------ run folders


def test_a_fresh_run_over_an_earlier_run_without_checkpoints_needs_force(finished_run, tmp_path):
    import shutil

    run = copy_run(finished_run, tmp_path)
    shutil.rmtree(run / "checkpoints")  # config.yaml, metrics.jsonl, policy/ remain
    before = snapshot(run)
    with pytest.raises(CheckpointError, match=r"holds an earlier run \(config.yaml.*--resume auto.*--force"):
        train(make_cfg(assets_of(finished_run), tmp_path))
    assert snapshot(run) == before


def assets_of(run: Path) -> dict:
    """The assets a finished run was trained with (read back from its config), so a test can train beside it."""
    cfg = json.loads((run / "policy" / "export.json").read_text())["config"]
    return {
        "env": Path(cfg["env"]["path"]),
        "world": Path(cfg["data"]["stage2_manifest"]).parent,
        "cache": Path(cfg["data"]["cache_dir"]),
    }


def test_force_removes_only_what_scorerl_wrote_and_says_so(finished_run, tmp_path, caplog):
    run = copy_run(finished_run, tmp_path)
    cfg = make_cfg(assets_of(finished_run), tmp_path)
    (run / "notes.txt").write_text("mine")
    (run / "checkpoints" / "keep.txt").write_text("mine too")
    before = snapshot(run)
    with pytest.raises(WriteError, match=r"checkpoints/keep.txt, notes.txt, which scorerl did not write"):
        train(cfg, force=True)
    assert snapshot(run) == before  # nothing was deleted: the check comes first
    (run / "notes.txt").unlink()
    (run / "checkpoints" / "keep.txt").unlink()
    with caplog.at_level(logging.INFO, logger="scorerl"):
        train(cfg, force=True)
    assert any(
        "--force: removed checkpoints, config.yaml, data_report.json, metrics.jsonl, policy" in r.message
        for r in caplog.records
    )
    assert [r["step"] for r in read_metrics(run)] == [1, 2]


def test_a_user_file_inside_a_checkpoint_is_not_scorerls(finished_run, tmp_path):
    run = copy_run(finished_run, tmp_path)
    (run / "checkpoints" / "step-000001" / "my_notes.md").write_text("mine")
    with pytest.raises(WriteError, match="checkpoints/step-000001/my_notes.md"):
        train(make_cfg(assets_of(finished_run), tmp_path), force=True)
    assert (run / "checkpoints" / "step-000001" / "my_notes.md").is_file()


def test_a_run_into_a_users_folder_is_refused(assets, tmp_path):
    folder = user_folder(tmp_path / "run")
    before = snapshot(folder)
    with pytest.raises(WriteError, match=r"sub/, thesis.tex, which scorerl did not write"):
        train(make_cfg(assets, tmp_path), force=True)
    assert snapshot(folder) == before


@pytest.mark.parametrize("name", ["..", ".", " .. "])
def test_a_run_name_that_is_not_a_folder_of_its_own_is_refused(name):
    with pytest.raises(ConfigError, match=r"command line: run.name: .* is not a folder name"):
        load_config(None, [f"run.name={name}"])


# ------------------------------------------------------------------------------------------------ one writer per run


HOLD = textwrap.dedent("""
    import sys, time
    from scorerl.io.owned import FolderLock
    FolderLock(sys.argv[1]).acquire()
    print("locked", flush=True)
    time.sleep(60)
""")


def hold_lock(folder: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_training_in_a_locked_run_folder_is_refused_before_it_writes(finished_run, tmp_path):
    run = copy_run(finished_run, tmp_path)
    before = snapshot(run)
    holder = hold_lock(run)
    try:
        with pytest.raises(owned.FolderInUseError, match=rf"in use by another scorerl process \(pid {holder.pid}"):
            train(make_cfg(assets_of(finished_run), tmp_path, "train.max_steps=3"), resume="auto")
        assert {k: v for k, v in snapshot(run).items() if k != owned.LOCK} == {
            k: v for k, v in before.items() if k != owned.LOCK
        }
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path, caplog):
    holder = hold_lock(tmp_path)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert str(holder.pid) in (tmp_path / owned.LOCK).read_text()  # the dead process's lock file is still there
    with caplog.at_level(logging.INFO, logger="scorerl"):
        with owned.FolderLock(tmp_path):
            assert json.loads((tmp_path / owned.LOCK).read_text())["pid"] == os.getpid()
    assert any(f"took over the lock of pid {holder.pid}" in r.getMessage() for r in caplog.records)
    with owned.FolderLock(tmp_path):  # released cleanly: the next one takes it without a word
        pass


# ------------------------------------------------------------------------------------------------ flags and values


@pytest.fixture
def no_eval(monkeypatch):
    """Any evaluation that starts fails the test: every refusal must come before the work."""
    import scorerl.eval.harness

    monkeypatch.setattr(scorerl.eval.harness, "run_eval", lambda *a, **k: pytest.fail("the evaluation started"))


@pytest.fixture
def config_file(tmp_path) -> Path:
    f = tmp_path / "run.yaml"
    f.write_text("run:\n  seed: 0\n")
    return f


@pytest.mark.parametrize("ratios", ["0", "1.5", "-0.1", "nan", ""])
@pytest.mark.parametrize("methods", [None, "full"])
def test_eval_ratios_are_checked_before_any_work_naming_the_flag(
    no_eval, capsys, tmp_path, config_file, ratios, methods
):
    argv = ["eval", str(config_file), "--out", str(tmp_path / "r.json"), "--ratios", ratios] + (
        ["--methods", methods] if methods else []
    )
    line = cli_error(capsys, *argv)
    assert "--ratios: must" in line


def test_eval_methods_empty_or_unknown_is_refused(no_eval, capsys, tmp_path, config_file):
    out = str(tmp_path / "r.json")
    assert "--methods: must name at least one method" in cli_error(
        capsys, "eval", str(config_file), "--out", out, "--methods", ""
    )
    assert "did you mean 'vidcom2'" in cli_error(
        capsys, "eval", str(config_file), "--out", out, "--methods", "full,vidcom"
    )


def test_an_unknown_method_in_a_config_file_is_refused_with_file_and_line(tmp_path, capsys):
    f = tmp_path / "run.yaml"
    f.write_text("train:\n  lr: 0.01\neval:\n  methods: [full, fastvv]\n")
    with pytest.raises(ConfigError, match=rf"{f}, line 4: eval.methods: unknown method 'fastvv'; did you mean"):
        load_config(f)
    assert f"{f}, line 4: eval.methods" in cli_error(capsys, "config", "show", str(f))
    assert f"{f}, line 4: eval.methods" in cli_error(capsys, "train", str(f))


def test_the_configs_method_names_are_the_harness_methods():
    from scorerl.config.schema import EVAL_METHODS
    from scorerl.eval.methods import available_methods

    assert sorted(EVAL_METHODS) == available_methods()


@pytest.mark.parametrize("text", ["", "# only a comment\n", "\n\n"])
def test_an_empty_or_comment_only_config_file_is_refused(tmp_path, text):
    f = tmp_path / "run.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=rf"{f}: holds no settings"):
        load_config(f)


def test_a_key_given_twice_on_the_command_line_is_refused(capsys, config_file):
    line = cli_error(capsys, "config", "show", str(config_file), "train.lr=0.1", "train.lr=0.2")
    assert "command line: train.lr: given twice ('train.lr=0.1' and 'train.lr=0.2')" in line


# ------------------------------------------------------------------------------------------------ sizes in files


def test_a_crafted_policy_config_is_refused_before_anything_is_allocated(finished_run, tmp_path, monkeypatch):
    from scorerl.compress import policy as policy_module
    from scorerl.export import export_policy, load_policy

    out = export_policy(finished_run, tmp_path / "exported")
    meta = json.loads((out / "policy_config.json").read_text())
    meta["policy"]["hidden"] = 1_000_000  # 800 GB of float32 weights if it were built
    (out / "policy_config.json").write_text(json.dumps(meta))
    monkeypatch.setattr(policy_module.TokenPolicy, "__init__", lambda *a, **k: pytest.fail("a policy was built"))
    with pytest.raises(CheckpointError, match=r"mlp\.0\.\w+ has shape \(16.*the config implies \(1000000"):
        load_policy(out)

    # The same crafted size in a checkpoint's state.json (its manifest redone, so only the size is wrong).
    step = ckpt.latest_checkpoint(finished_run)
    loaded = ckpt.load_checkpoint(step)
    loaded.state["config"]["policy"]["hidden"] = 1_000_000
    forged = ckpt.save_checkpoint(tmp_path / "forged", loaded.step, tensors=loaded.tensors, state=loaded.state)
    with pytest.raises(
        CheckpointError, match=r"against state.json\): mlp\.\d\.\w+ has shape .* the config implies \([^)]*1000000"
    ):
        load_policy(forged)


# ------------------------------------------------------------------------------------------------ data


def test_the_data_report_is_written_when_every_sample_is_bad(assets, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        "".join(
            json.dumps(
                {"id": f"x{i}", "video": f"missing{i}.mp4", "question": "?", "options": ["a", "b"], "answer": "Z"}
            )
            + "\n"
            for i in range(3)
        )
    )
    cfg = make_cfg(assets, tmp_path, f"data.stage2_manifest={bad}", "curriculum.stage1_steps=0", "data.skip_bad=true")
    with pytest.raises(DataError, match=r"bad.jsonl: no usable sample left for stage 2 .*data_report.json"):
        train(cfg)
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())
    assert report["2"]["samples"] == 0 and [s["line"] for s in report["2"]["skipped_lines"]] == [1, 2, 3]


def test_every_media_unreadable_is_reported_too(assets, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(assets["world"], data)
    for clip in (data / "videos").iterdir():
        clip.write_text("not a video")
    cfg = make_cfg(
        assets,
        tmp_path,
        f"data.stage2_manifest={data / 'train.jsonl'}",
        "curriculum.stage1_steps=0",
        "data.skip_bad=true",
        f"data.cache_dir={tmp_path / 'cache'}",
    )
    with pytest.raises(DataError, match="no usable sample left for stage 2"):
        train(cfg)
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())
    assert len(report["2"]["skipped_media"]) == 4


def test_a_feature_store_is_not_built_into_a_users_folder(assets, tmp_path):
    from scorerl.envs.features import build_features

    folder = user_folder(tmp_path / "store")
    before = snapshot(folder)
    with pytest.raises(DataError, match=r"holds sub/, thesis.tex, which a feature store build does not write"):
        build_features(make_cfg(assets, tmp_path), out=folder, progress=False)
    assert snapshot(folder) == before


def test_imageqa_without_an_options_column_is_refused_when_one_exists(tmp_path, capsys):
    import numpy as np

    from scorerl.data.video_io import write_png

    write_png(tmp_path / "a.png", np.zeros((8, 8, 3), dtype=np.uint8))
    rows = [{"image": "a.png", "question": "Which?", "choices": ["red", "blue"], "answer": 1}]
    (tmp_path / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["data", "convert", "--from", "imageqa", str(tmp_path / "qa.jsonl"), "--out"]
    line = cli_error(capsys, *args, str(tmp_path / "x.jsonl"))
    assert "column 'choices' looks like the options" in line and "--options-col choices" in line
    assert not (tmp_path / "x.jsonl").exists()
    assert cli([*args, str(tmp_path / "mc.jsonl"), "--options-col", "choices"]) == 0
    converted = json.loads((tmp_path / "mc.jsonl").read_text())
    assert converted["options"] == ["red", "blue"] and converted["answer"] == "B"
    assert cli([*args, str(tmp_path / "open.jsonl"), "--open-ended"]) == 0  # said on purpose: open-ended
    assert "options" not in json.loads((tmp_path / "open.jsonl").read_text())


# ------------------------------------------------------------------------------------------------ full disks, modes


def test_a_full_disk_during_a_checkpoint_is_one_error_and_the_resume_is_exact(
    assets, finished_run, tmp_path, monkeypatch
):
    from safetensors.torch import load_file

    from scorerl.io import atomic

    real = atomic.write_synced

    def full_at_step_2(path, data, fsync=True):
        if ".tmp-step-000002" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, data, fsync)

    monkeypatch.setattr(atomic, "write_synced", full_at_step_2)
    with pytest.raises(WriteError, match=r"step-000002: cannot write: No space left on device.*--resume auto"):
        train(make_cfg(assets, tmp_path))
    checkpoints = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step-000001"]  # no temp folder left
    monkeypatch.setattr(atomic, "write_synced", real)
    run = train(make_cfg(assets, tmp_path), resume="auto")
    want = load_file(str(finished_run / "policy" / "policy.safetensors"))
    got = load_file(str(run / "policy" / "policy.safetensors"))
    assert all((got[k] - want[k]).abs().max().item() == 0.0 for k in want)


def test_export_to_a_read_only_place_is_one_line_and_leaves_no_temp_folder(finished_run, tmp_path, monkeypatch, capsys):
    real_mkdir = Path.mkdir
    target = tmp_path / "ro"
    real_mkdir(target)

    def read_only(self, *a, **k):  # the filesystem under `target` is mounted read-only (root ignores chmod)
        if str(self).startswith(str(target)):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *a, **k)

    monkeypatch.setattr(Path, "mkdir", read_only)
    line = cli_error(capsys, "export", str(finished_run), "--out", str(target / "policy"))
    assert f"{target / 'policy'}: cannot write: Read-only file system" in line
    assert list(target.iterdir()) == []


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_files_get_the_mode_the_umask_gives(finished_run, tmp_path, umask, mode):
    from scorerl.export import ScoreCompressor

    before = os.umask(umask)
    try:
        out = ScoreCompressor.from_pretrained(finished_run).save_pretrained(tmp_path / "exported")
        loaded = ckpt.load_checkpoint(ckpt.latest_checkpoint(finished_run))
        step = ckpt.save_checkpoint(tmp_path / "run", 7, tensors=loaded.tensors, state=loaded.state)
    finally:
        os.umask(before)
    files = [*out.iterdir(), *step.iterdir()]
    assert {f.name for f in files} >= {"policy.safetensors", "README.md", "state.json", "COMPLETE"}
    assert {f.name: oct(f.stat().st_mode & 0o777) for f in files} == {f.name: oct(mode) for f in files}


# ------------------------------------------------------------------------------------------------ a stalled run


def test_a_saturated_policy_is_reported(assets, tmp_path, monkeypatch, caplog):
    import scorerl.rl.metrics as metrics

    monkeypatch.setattr(metrics, "SATURATION_STEPS", 3)
    with caplog.at_level(logging.WARNING, logger="scorerl"):
        run = train(
            make_cfg(
                assets,
                tmp_path,
                "train.lr=10",
                "train.max_grad_norm=0",
                "train.max_steps=5",
                "train.checkpoint_every=5",
            )
        )
    assert [r["grad_norm"] for r in read_metrics(run)][1:] == [0.0] * 4
    warned = [r.getMessage() for r in caplog.records if "saturated" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith("step 4: the gradient norm is 0 for 3 steps in a row")
    assert "train.max_grad_norm" in warned[0]


def test_the_watch_needs_a_streak():
    from scorerl.rl.metrics import SaturationWatch

    watch = SaturationWatch(patience=2)
    healthy, stuck = {"grad_norm": 0.3, "keep_prob": 0.2}, {"grad_norm": 0.3, "keep_prob": 1.0}
    assert [watch.observe(s, m) for s, m in enumerate([stuck, healthy, stuck], 1)] == [None] * 3
    assert "keep probability is 1 (saturated)" in watch.observe(4, stuck)
    assert watch.observe(5, stuck) is None  # once


# ------------------------------------------------------------------------------------------------ launch scripts


def test_the_launch_scripts_need_no_folder_and_no_system_python():
    sbatch = (REPO / "scripts" / "slurm" / "train.sbatch").read_text()
    output = next(line for line in sbatch.splitlines() if line.startswith("#SBATCH --output"))
    assert "/" not in output.split("=", 1)[1]  # Slurm does not create a folder for its log
    assert "shared" in sbatch
    multi = (REPO / "scripts" / "train_multi_gpu.sh").read_text()
    assert "python3 -c" not in multi and ".venv/bin/python -c" in multi
    sections = {
        line.lstrip("#").strip() for line in (REPO / "README.md").read_text().splitlines() if line.startswith("#")
    }
    named = [part.split('"')[1] for part in multi.split("README, ")[1:]]
    assert named and all(name in sections for name in named)
    training = (REPO / "docs" / "training.md").read_text()
    assert "shared filesystem" in training
    for doc in ("README.md", "docs/data.md", "docs/training.md", "scorerl/cli.py"):  # commands, not the warning
        text = (REPO / doc).read_text()
        assert not re.search(r'(^|")\s*accelerate launch --num_processes', text, re.M), (
            f"{doc}: a launch that starts one process on a machine without GPUs"
        )


def test_the_llava_run_file_counts_the_release_parameters():
    import importlib.util

    spec = importlib.util.spec_from_file_location("memory_plan", REPO / "scripts" / "memory_plan.py")
    memory_plan = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(memory_plan)
    cfg = load_config(REPO / "configs" / "llava_onevision_7b" / "stage2_video.yaml")
    model, _ = memory_plan.build_on_meta(cfg)
    assert round(sum(p.numel() for p in model.parameters()) / 1e9, 2) == 8.03  # the release: 8.03 B, no SigLIP head


def test_every_test_the_promises_table_names_exists():
    """docs/training.md, "What scorerl promises about your files": each test it names is in the file it names."""
    import re

    text = (REPO / "docs" / "training.md").read_text().split("## What scorerl promises about your files", 1)[1]
    named = re.findall(r"`(?:(test_\w+\.py)::)?(test_\w+)`", text)
    assert len(named) >= 30
    for file, name in named:
        source = (REPO / "tests" / "core" / (file or "test_faults.py")).read_text()
        assert f"def {name}(" in source, (
            f"docs/training.md names {file or 'test_faults.py'}::{name}, which is not there"
        )
