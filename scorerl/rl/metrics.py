"""Metrics: always one JSON line per logged step in <run>/metrics.jsonl, plus accelerate trackers when asked.

`step` in every line is the number of optimizer steps finished, the same number a checkpoint carries, so a resume
from checkpoint S keeps the lines with step <= S and drops the ones written after it (they are redone).
Only the main process writes; on other ranks every method is a no-op.

Trackers (wandb, tensorboard) go through accelerate, which needs them at construction:

    accelerator = Accelerator(**tracker_kwargs(run_dir, cfg.train.trackers), ...)
    logger = MetricsLogger(run_dir, accelerator, cfg.train.trackers, resume_step=S, config=cfg.to_dict())

wandb runs online or offline as WANDB_MODE says; its run id is kept in <run>/trackers/wandb_id.json so a resume
continues the same wandb run (wandb ignores re-logged steps below its last one, so the redone tail after a crash
keeps its first values there; metrics.jsonl and tensorboard (purge_step) hold the redone ones).
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from scorerl.io import atomic
from scorerl.rl.rewards import kept_fraction

log = logging.getLogger(__name__)
METRICS_FILE = "metrics.jsonl"
TRACKERS_DIR = "trackers"


def tracker_kwargs(run_dir: str | Path, trackers: Iterable[str]) -> dict:
    """Accelerator(...) keyword arguments that route the given trackers' files into <run>/trackers."""
    from accelerate.utils import ProjectConfiguration

    trackers = list(trackers)
    return {
        "log_with": trackers or None,
        "project_config": ProjectConfiguration(project_dir=str(run_dir), logging_dir=str(Path(run_dir) / TRACKERS_DIR)),
    }


class MetricsLogger:
    def __init__(
        self,
        run_dir: str | Path,
        accelerator=None,
        trackers: Iterable[str] = (),
        resume_step: int | None = None,
        project: str = "scorerl",
        config: dict | None = None,
        run_name: str | None = None,
    ):
        """resume_step=None starts metrics.jsonl afresh; an int keeps only the lines with step <= resume_step."""
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / METRICS_FILE
        self.accelerator = accelerator
        self.trackers = list(trackers)
        self.is_main = accelerator is None or accelerator.is_main_process
        self._file = None
        if not self.is_main:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            self.path.write_text("")  # a fresh run starts its history over, like its checkpoints
        else:
            truncate_metrics(self.path, resume_step)
        self._file = open(self.path, "a", encoding="utf-8")
        if self.trackers:
            self._start_trackers(project, config, run_name or self.run_dir.name, resume_step)

    def _start_trackers(self, project: str, config: dict | None, run_name: str, resume_step: int | None) -> None:
        if self.accelerator is None or not self.accelerator.log_with:
            raise ValueError(
                f"trackers {self.trackers} need an Accelerator created with log_with; "
                "build it with Accelerator(**tracker_kwargs(run_dir, trackers), ...)"
            )
        init_kwargs: dict[str, dict] = {}
        if "tensorboard" in self.trackers and resume_step is not None:
            # Drop events that a crashed attempt wrote after the checkpoint we resume from.
            init_kwargs["tensorboard"] = {"purge_step": resume_step + 1}
        if "wandb" in self.trackers:
            init_kwargs["wandb"] = {
                "name": run_name,
                "dir": str(self.run_dir / TRACKERS_DIR),
                "id": self._wandb_id(),
                "resume": "allow",
            }
            if not os.environ.get("WANDB_MODE") and not wandb_has_api_key():
                # wandb.init would stop the run with "No API key configured"; a run is worth more than a dashboard
                log.warning(
                    "wandb: no API key configured (WANDB_API_KEY or `wandb login`): logging offline to "
                    "%s; upload later with `wandb sync`, or set WANDB_MODE to choose",
                    self.run_dir / TRACKERS_DIR,
                )
                init_kwargs["wandb"]["mode"] = "offline"
        flat = _flatten(config) if config else None  # tensorboard hparams take scalars and strings only
        self.accelerator.init_trackers(project, config=flat, init_kwargs=init_kwargs)

    def _wandb_id(self) -> str:
        """One wandb run id per run folder, created on the first start and reused on every resume."""
        path = self.run_dir / TRACKERS_DIR / "wandb_id.json"
        if path.is_file():
            return json.loads(path.read_text())["id"]
        path.parent.mkdir(parents=True, exist_ok=True)
        run_id = uuid.uuid4().hex[:12]
        path.write_text(json.dumps({"id": run_id}))
        return run_id

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        """Append {"step": step, **metrics} to metrics.jsonl and forward to the trackers."""
        if not self.is_main or self._file is None:
            return
        values = {k: _plain(v) for k, v in metrics.items()}
        self._file.write(json.dumps({"step": step, **values}) + "\n")
        self._file.flush()  # a crash loses at most the line being written; truncate_metrics drops a torn one
        if self.trackers:
            self.accelerator.log(values, step=step)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            for tracker in getattr(self.accelerator, "trackers", []) if self.trackers else []:
                tracker.finish()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def wandb_has_api_key() -> bool:
    """Whether wandb can log in without asking: WANDB_API_KEY, or a `wandb login` entry in the netrc file for the
    wandb host (WANDB_BASE_URL, default api.wandb.ai)."""
    import netrc
    from urllib.parse import urlparse

    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def truncate_metrics(path: str | Path, last_step: int) -> int:
    """Keep only lines with step <= last_step (and drop a torn last line); returns the number of lines kept."""
    path = Path(path)
    if not path.is_file():
        return 0
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # torn line from a crash mid-write
        if isinstance(record, dict) and record.get("step", last_step) <= last_step:
            kept.append(line)
    atomic.write_text(path, "".join(k + "\n" for k in kept))  # never leave a half-rewritten history behind
    return len(kept)


def read_metrics(path: str | Path) -> list[dict]:
    """All records of a metrics.jsonl (or of <run>/metrics.jsonl when given a run folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _plain(value: Any) -> Any:
    """Tensors and numpy scalars as Python numbers, so they serialise and reach the trackers as scalars."""
    if torch.is_tensor(value):
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        elif isinstance(v, (bool, int, float, str)) or v is None:
            out[prefix + k] = v
        else:
            out[prefix + k] = json.dumps(v)
    return out


def rollout_metrics(ro, rewards: dict, adv, stats: dict) -> dict[str, float]:
    """This process's means for one micro-batch: TRL's names first (reward, reward_std, frac_reward_zero_std,
    entropy), then ours. ro: Rollout; rewards: {reward, fidelity, sparsity} [B, K]; adv: Advantages; stats: the
    first update epoch's loss stats."""
    B, K = ro.ce.shape
    dce = ro.ce - ro.ce_base[:, None]  # [B, K]
    return {
        "reward": rewards["reward"].mean().item(),
        "reward_std": rewards["reward"].std(dim=1, unbiased=True).mean().item(),  # TRL: mean of per-group stds
        "frac_reward_zero_std": adv.frac_zero_std,
        "fidelity": rewards["fidelity"].mean().item(),
        "sparsity": rewards["sparsity"].mean().item(),
        "kept_fraction": kept_fraction(ro.masks, ro.valid).mean().item(),  # of each sample's own tokens
        "ce_base": ro.ce_base.mean().item(),
        "ce": ro.ce.mean().item(),
        "dce": dce.mean().item(),
        "loss": stats["loss"].item(),
        "pg_loss": stats["pg_loss"].item(),
        "entropy": stats["entropy"].item(),
        "kl": stats["kl"].item(),
        "keep_prob": stats["keep_prob"].item(),
        "masks_guarded": ro.masks_guarded / (B * K),
        **ro.timings,
    }


SATURATION_STEPS = 20  # steps in a row before a stalled run is reported


class SaturationWatch:
    """Reports (once, as a log warning) a run that has stopped learning: the gradient norm at zero, or every keep
    probability pinned at 0 or 1, for SATURATION_STEPS optimizer steps in a row. A saturated sigmoid has no
    gradient left, so such a run goes on to its last step without a sign; the usual cause is a learning rate
    that is too high with clipping off (e.g. train.lr=10 train.max_grad_norm=0)."""

    def __init__(self, patience: int | None = None):
        self.patience = patience if patience is not None else SATURATION_STEPS
        self.streak, self.reported = 0, False

    @staticmethod
    def symptom(metrics: dict) -> str | None:
        """What in one step's (global) metrics says the policy is saturated, or None."""
        if metrics.get("grad_norm", 1.0) == 0.0:
            return "the gradient norm is 0"
        keep = metrics.get("keep_prob")
        if keep is not None and (keep <= 1e-3 or keep >= 1 - 1e-3):
            return f"the mean keep probability is {keep:.4g} (saturated)"
        if metrics.get("kept_fraction", 0.5) >= 0.999:
            return "the masks keep every token"
        return None

    def observe(self, step: int, metrics: dict) -> str | None:
        """Feed one optimizer step's metrics; returns (and logs) the warning the first time the streak is long."""
        found = self.symptom(metrics)
        self.streak = self.streak + 1 if found else 0
        if not found or self.reported or self.streak < self.patience:
            return None
        self.reported = True
        text = (
            f"step {step}: {found} for {self.streak} steps in a row; the policy has saturated and learns "
            "nothing more. Lower train.lr or set train.max_grad_norm (> 0), then start over with --force"
        )
        log.warning(text)
        return text
