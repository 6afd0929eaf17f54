"""Where a training run starts: fresh, or from a checkpoint that is readable and belongs to this very run.

    --resume (none)  a fresh run; refused if the run folder holds an earlier run, unless --force (deletes what
                     scorerl wrote there, nothing else); refused always when it holds files scorerl did not write
    --resume auto    the newest checkpoint that reads back intact; a corrupt newer one is reported and skipped
    --resume PATH    that checkpoint folder (or a run folder: its newest readable checkpoint)

A config may differ from the checkpoint's only where it does not change what the run computes: sections the
trainer never reads (eval, bench, the world's) and fields declared `inert` (how long it runs, where it logs or
saves). Anything else is refused with the keys named, unless forced.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from scorerl.config import TRAINING_SECTIONS, Config, computation_diffs, dotted_value
from scorerl.errors import CheckpointError
from scorerl.io import checkpoint as ckpt
from scorerl.rl import run_folder


def check_resume_config(saved: dict, new: dict, force: bool = False) -> list[str]:
    """Dotted keys of the training sections whose change alters the run; CheckpointError naming them unless force."""
    diffs = computation_diffs(saved, new, TRAINING_SECTIONS)
    if diffs and not force:
        detail = "; ".join(f"{k}: {dotted_value(saved, k)!r} -> {dotted_value(new, k)!r}" for k in diffs)
        raise CheckpointError(
            f"the config differs from the checkpoint's at {', '.join(diffs)} ({detail}); "
            "resuming would not continue the same run. Restore those values, or pass --force to resume anyway."
        )
    return diffs


def newest_readable(run_dir: Path, rank: int = 0, clean_stale: bool = False) -> ckpt.Checkpoint | None:
    """The newest complete checkpoint of a run that reads back intact (sizes and hashes verified), or None when
    the run has none. A corrupt newer checkpoint is reported (a warning naming it and why) and skipped; if every
    checkpoint is corrupt, CheckpointError lists them."""
    if clean_stale:
        ckpt.latest_checkpoint(run_dir, clean_stale=True)
    candidates = ckpt.list_checkpoints(run_dir)
    problems = []
    for path in reversed(candidates):
        try:
            found = ckpt.load_checkpoint(path, rank=rank)
        except CheckpointError as e:
            problems.append(str(e))
            continue
        if problems:
            warnings.warn(
                f"skipped {len(problems)} unreadable newer checkpoint(s) ({'; '.join(problems)}); "
                f"resuming from {path.name}, the newest intact one",
                stacklevel=2,
            )
        return found
    if problems:
        raise CheckpointError(
            f"{run_dir}: no checkpoint reads back intact ({'; '.join(problems)}); start over "
            "with --force (deletes them) or choose another run.name"
        )
    return None


def find_start(
    run_dir: Path, resume: str | None, force: bool, cfg: Config, accelerator, say=print
) -> ckpt.Checkpoint | None:
    """The checkpoint to continue from (None = fresh), checked against cfg; see the module docstring."""
    is_main = accelerator.is_main_process
    if resume is None:  # the folder is checked (and, with --force, cleared of scorerl's files) by the main process
        run_folder.on_main(accelerator, lambda: run_folder.check_fresh(run_dir, force, say))
        return None
    rank = accelerator.process_index
    if resume == "auto":
        accelerator.wait_for_everyone()  # nobody may still be writing when the main process cleans temp folders
        start = newest_readable(run_dir, rank=rank, clean_stale=is_main)
        accelerator.wait_for_everyone()
        if start is None:
            say(f"--resume auto: no checkpoint in {run_dir}; starting fresh")
            # What an attempt that never reached a checkpoint left (its config.yaml, metrics.jsonl) is this run's
            # own and is redone; anything scorerl did not write still stops the start.
            run_folder.on_main(accelerator, lambda: run_folder.check_fresh(run_dir, True, say))
            return None
    else:
        path = Path(resume).expanduser()
        if (path / ckpt.MARKER).is_file():
            try:
                start = ckpt.load_checkpoint(path, rank=rank)
            except CheckpointError as e:
                raise CheckpointError(
                    f"{e}. Pass --resume auto to continue from the run's newest intact checkpoint instead"
                ) from None
        else:
            start = newest_readable(path, rank=rank)  # a run folder was given: its newest intact checkpoint
            if start is None:
                raise CheckpointError(
                    f"--resume {resume}: neither a checkpoint folder (no {ckpt.MARKER}) nor a run "
                    "folder with a complete checkpoint"
                )
    diffs = check_resume_config(start.state.get("config", {}), cfg.to_dict(), force=force)
    if diffs:
        warnings.warn(f"resuming {start.path} with a changed config (forced): {', '.join(diffs)}", stacklevel=2)
    run_folder.on_main(accelerator, lambda: run_folder.check_resumed(run_dir))
    return start
