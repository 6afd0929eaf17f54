"""The run folder belongs to one training at a time, and holds only what scorerl wrote there.

    claim(run_dir, accelerator)      the main process takes the folder's lock (io/owned.py) for the run's life;
                                     every process learns whether it got it, so all stop together when not
    check_fresh(run_dir, force)      a run without --resume: refused when the folder holds an earlier run (unless
                                     --force, which removes exactly scorerl's entries and says which) or anything
                                     scorerl did not write (always, naming it)
    check_resumed(run_dir)           a resumed run: its policy/ (replaced at the end) must hold only an export

scorerl's entries are the names in the folder's record (`.scorerl-files.json`, written before the files), and
inside checkpoints/ the checkpoint folders whose every file their COMPLETE manifest lists (plus the temp folders
of interrupted saves). Multi-process runs: only the main process takes the lock and touches the folder; the
others wait for its verdict, so a refused start stops every rank with the same one-line error.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from scorerl.errors import CheckpointError, ScoreRLError, WriteError
from scorerl.io import checkpoint as ckpt
from scorerl.io import owned
from scorerl.rl.metrics import METRICS_FILE, TRACKERS_DIR

WRITER = "scorerl train"
CONFIG_FILE = "config.yaml"
DATA_REPORT = "data_report.json"
POLICY_DIR = "policy"
# Every entry a training run may write in its folder; recorded as the run's own before any is written.
RUN_ENTRIES = (CONFIG_FILE, DATA_REPORT, METRICS_FILE, "checkpoints", POLICY_DIR, TRACKERS_DIR)
_STEP_DIR = re.compile(r"^step-\d+$")


class RunFolderError(WriteError):
    """The run folder cannot be written as asked (another run in it, or files scorerl did not write)."""


def claim(run_dir: Path, accelerator) -> owned.FolderLock | None:
    """The main process locks `run_dir` (returned; None on the other processes); when the folder is taken every
    process raises the same FolderInUseError."""
    return on_main(accelerator, lambda: owned.FolderLock(run_dir, WRITER).acquire())


def on_main(accelerator, work):
    """work() on the main process only (its result there, None elsewhere); a ScoreRLError it raises is raised on
    every process, so no rank is left waiting at a barrier for a main process that stopped."""
    result, problem = None, None
    if accelerator.is_main_process:
        try:
            result = work()
        except ScoreRLError as e:
            problem = (type(e), str(e))
    if accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        problem = broadcast_object_list([problem])[0]
    if problem is not None:
        raise problem[0](problem[1])
    return result


def check_fresh(run_dir: Path, force: bool, say=print) -> None:
    """Main process, lock held, a run without --resume: see the module docstring."""
    _refuse_foreign(run_dir)
    earlier = sorted(name for name in owned.recorded(run_dir) if (run_dir / name).exists())
    if earlier and not force:
        existing = ckpt.list_checkpoints(run_dir)
        if existing:
            raise CheckpointError(
                f"{run_dir} already holds checkpoints (latest {existing[-1].name}): pass "
                "--resume auto to continue that run, use another run.name, or --force to "
                "start over (deletes what scorerl wrote there, nothing else)"
            )
        raise CheckpointError(
            f"{run_dir} holds an earlier run ({', '.join(earlier)}): pass --resume auto to "
            "continue it, use another run.name, or --force to start over (deletes those, "
            "nothing else)"
        )
    for name in earlier:
        owned.remove_entry(run_dir / name)
    if earlier:
        say(f"--force: removed {', '.join(earlier)} from {run_dir} (what scorerl wrote there; nothing else)")
    owned.record(run_dir, RUN_ENTRIES, WRITER)


def check_resumed(run_dir: Path) -> None:
    """Main process, lock held, a resumed run: policy/ is replaced when the run ends, so it must hold only an
    export; the folder's other entries are left as they are."""
    from scorerl.export import check_export_target

    if (run_dir / POLICY_DIR).exists():
        check_export_target(run_dir / POLICY_DIR)
    owned.record(run_dir, RUN_ENTRIES, WRITER)


def release(lock: owned.FolderLock | None) -> None:
    if lock is not None:
        lock.release()


# ------------------------------------------------------------------------------------------------ what is whose


def _refuse_foreign(run_dir: Path) -> None:
    """RunFolderError naming every entry of the run folder (and of its checkpoints/ and policy/) that scorerl did
    not write; nothing is touched before this check passes."""
    from scorerl.export import check_export_target

    if run_dir.exists() and not run_dir.is_dir():
        raise RunFolderError(f"{run_dir}: is a file, not a run folder; choose another run.name")
    foreign = owned.foreign_entries(run_dir, owned.recorded(run_dir))
    if "checkpoints" in owned.recorded(run_dir):
        foreign += [f"checkpoints/{name}" for name in _foreign_in_checkpoints(ckpt.checkpoints_dir(run_dir))]
    if foreign:
        raise RunFolderError(
            f"{run_dir}: holds {', '.join(sorted(foreign))}, which scorerl did not write; refusing to "
            "start a run there (nothing was changed). Move them out, or choose another run.name "
            "or run.output_dir"
        )
    if (run_dir / POLICY_DIR).exists():
        check_export_target(run_dir / POLICY_DIR)


def _foreign_in_checkpoints(root: Path) -> list[str]:
    """Entries of checkpoints/ that are not checkpoints scorerl wrote: anything but a step-N folder holding only
    the files its manifest lists, or a temp / trash folder of an interrupted save."""
    if not root.is_dir():
        return []
    foreign = []
    for d in sorted(root.iterdir()):
        if d.is_dir() and d.name.startswith((".tmp-step-", ".trash-step-")):
            continue
        if not (d.is_dir() and _STEP_DIR.match(d.name)):
            foreign.append(d.name + ("/" if d.is_dir() else ""))
            continue
        foreign += [f"{d.name}/{name}" for name in _unlisted(d)]
    return foreign


def _unlisted(step_dir: Path) -> list[str]:
    """Files of a checkpoint folder that its COMPLETE manifest does not list (all of them when it has none)."""
    try:
        listed = set(json.loads((step_dir / ckpt.MARKER).read_text())["files"]) | {ckpt.MARKER}
    except (OSError, ValueError, KeyError, TypeError):
        listed = set()
    return sorted(p.name for p in step_dir.iterdir() if p.name not in listed)
