import io
import json

import numpy as np
import torch

from scorerl.io.progress import ProgressBar
from scorerl.rl.metrics import MetricsLogger, read_metrics, tracker_kwargs, truncate_metrics


def test_lines_written_with_plain_numbers(tmp_path):
    with MetricsLogger(tmp_path) as log:
        log.log(1, {"reward": torch.tensor(0.5), "kept": np.float32(0.25), "stage": 1})
        log.log(2, {"reward": 0.75})
    assert read_metrics(tmp_path) == [{"step": 1, "reward": 0.5, "kept": 0.25, "stage": 1}, {"step": 2, "reward": 0.75}]


def test_resume_truncates_steps_after_the_checkpoint(tmp_path):
    with MetricsLogger(tmp_path) as log:
        for step in range(1, 8):
            log.log(step, {"reward": step})
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 8, "rew')  # torn line of a crash mid-write
    with MetricsLogger(tmp_path, resume_step=5) as log:  # resumed from the checkpoint at step 5
        log.log(6, {"reward": 60})
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3, 4, 5, 6]
    assert read_metrics(tmp_path)[-1]["reward"] == 60
    assert truncate_metrics(tmp_path / "metrics.jsonl", 2) == 2
    MetricsLogger(tmp_path).close()  # a fresh run starts the history over
    assert read_metrics(tmp_path) == []


def test_non_main_process_writes_nothing(tmp_path):
    class Rank1:
        is_main_process = False

    log = MetricsLogger(tmp_path / "run", accelerator=Rank1(), trackers=["tensorboard"])
    log.log(1, {"reward": 1.0})
    log.close()
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_tensorboard_through_accelerate(tmp_path):
    from accelerate import Accelerator

    acc = Accelerator(cpu=True, **tracker_kwargs(tmp_path, ["tensorboard"]))
    with MetricsLogger(tmp_path, acc, ["tensorboard"], project="proj", config={"train": {"lr": 0.1, "t": [1]}}) as log:
        log.log(1, {"reward": 0.5})
    events = list((tmp_path / "trackers" / "proj").glob("events.out.tfevents.*"))
    assert events and len(read_metrics(tmp_path)) == 1


def test_progress_bar_tracks_step(tmp_path):
    out = io.StringIO()
    bar = ProgressBar(total=10, initial=3, file=out, mininterval=0)
    bar.update(5, {"reward": 0.123456, "other": 1})
    bar.close()
    assert bar.bar.n == 5 and "5/10" in out.getvalue() and "reward=0.1235" in out.getvalue()


def test_wandb_resume_reuses_the_run_id(tmp_path):
    from accelerate import Accelerator

    ids = []
    for resume_step in (None, 1):  # WANDB_MODE=disabled (conftest): exercises our init kwargs, no network
        acc = Accelerator(cpu=True, **tracker_kwargs(tmp_path, ["wandb"]))
        with MetricsLogger(tmp_path, acc, ["wandb"], resume_step=resume_step) as log:
            log.log(1 if resume_step is None else 2, {"reward": 0.5})
        ids.append(json.loads((tmp_path / "trackers" / "wandb_id.json").read_text())["id"])
    assert ids[0] == ids[1]


def test_wandb_without_an_api_key_logs_offline_instead_of_stopping(tmp_path, monkeypatch):
    from accelerate import Accelerator

    from scorerl.rl.metrics import wandb_has_api_key

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no_netrc"))
    assert not wandb_has_api_key()
    acc = Accelerator(cpu=True, **tracker_kwargs(tmp_path, ["wandb"]))
    seen = {}
    monkeypatch.setattr(acc, "init_trackers", lambda project, config=None, init_kwargs=None: seen.update(init_kwargs))
    MetricsLogger(tmp_path, acc, ["wandb"]).close()
    assert seen["wandb"]["mode"] == "offline"
    (tmp_path / "netrc").write_text("machine api.wandb.ai\n  login user\n  password abc123\n")
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert wandb_has_api_key()
    seen.clear()
    MetricsLogger(tmp_path / "b", acc, ["wandb"]).close()
    assert "mode" not in seen["wandb"]  # logged in: online, as wandb decides
