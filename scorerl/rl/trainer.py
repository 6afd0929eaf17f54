"""The SCORE training recipe, top to bottom: `train(cfg, resume, force) -> run folder`.

    accelerator -> where to start (fresh | checkpoint) -> seeds -> frozen env -> manifests -> feature cache
    -> policy, AdamW, warm-up schedule -> curriculum over sharded samplers -> restore state
    -> loop: collect grad_accum micro-batches (rollout.py) -> rewards, advantages -> rl.ppo_epochs x (update.py
       loss -> backward), clip, finite check, step -> log, checkpoint -> export run/policy

Launch: `scorerl train CONFIG [key=value ...]` on one process, or
`accelerate launch [--cpu] --num_processes P -m scorerl train CONFIG ...` on P processes (data-parallel over groups:
each process takes train.batch_size whole groups of the global batch; gradients are averaged by accelerate).

Run folder (<run.output_dir>/<run.name>):
    config.yaml            the resolved config of the latest start
    data_report.json       per stage: samples, skipped lines and unreadable media with reasons
    metrics.jsonl          one line per logged optimizer step (see rl/metrics.py)
    checkpoints/step-N/    atomic checkpoints (see io/checkpoint.py)
    policy/                the final policy, exported (see export.py)
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
import warnings
from pathlib import Path

import torch

from scorerl.config import Config
from scorerl.errors import CheckpointError, ConfigError, DataError, DivergedError
from scorerl.io import atomic
from scorerl.io import checkpoint as ckpt
from scorerl.io import state_codec as codec
from scorerl.io.progress import ProgressBar
from scorerl.rl import run_folder
from scorerl.rl.advantages import compute_advantages
from scorerl.rl.curriculum import Curriculum
from scorerl.rl.metrics import MetricsLogger, SaturationWatch, rollout_metrics, tracker_kwargs
from scorerl.rl.resume import find_start
from scorerl.rl.rewards import combine, kept_fraction
from scorerl.rl.rollout import RolloutItem, collect
from scorerl.rl.run_folder import DATA_REPORT
from scorerl.rl.sampler import ResumableSampler
from scorerl.rl.update import reference_logits, update_loss

log = logging.getLogger(__name__)

# The names TRL users already read, then ours; every logged line has all of them.
METRIC_NAMES = (
    "reward",
    "reward_std",
    "frac_reward_zero_std",
    "fidelity",
    "sparsity",
    "kept_fraction",
    "ce_base",
    "dce",
    "loss",
    "entropy",
    "grad_norm",
    "lr",
    "stage",
    "samples_per_s",
    "env_ms",
    "policy_ms",
)


def train(cfg: Config, resume: str | None = None, force: bool = False) -> Path:
    """Train a SCORE policy as `cfg` says; returns the run folder (which holds policy/ when the run finished).

    resume: None = a fresh run (refused if the run folder holds an earlier run, unless force, which deletes what
    scorerl wrote there and nothing else; a folder holding files scorerl did not write is always refused); `auto` =
    continue from the run's latest complete checkpoint, or start fresh if it has none; a PATH =
    continue from that checkpoint folder. A config that differs from the checkpoint's in a key that changes the
    run is refused (the error names the keys) unless force.
    """
    run_dir = Path(cfg.run.output_dir).expanduser() / cfg.run.name
    atomic.ensure_writable_dir(run_dir.parent, "run.output_dir")  # before any work is spent
    if cfg.data.cache_dir:
        atomic.ensure_writable_dir(cfg.data.cache_dir, "data.cache_dir")

    # ---- 1. accelerate: processes, gradient accumulation, mixed precision, trackers; the run folder's lock,
    #         held by the main process until the run ends, however it ends (rl/run_folder.py)
    accelerator = _make_accelerator(cfg, run_dir)
    lock = run_folder.claim(run_dir, accelerator)
    try:
        return _train(cfg, run_dir, accelerator, resume, force)
    finally:
        run_folder.release(lock)


def _train(cfg: Config, run_dir: Path, accelerator, resume: str | None, force: bool) -> Path:
    """train() with the accelerator made and the run folder locked."""
    from accelerate.utils import set_seed

    T = cfg.train
    rank, world_size, is_main = accelerator.process_index, accelerator.num_processes, accelerator.is_main_process

    # ---- 2. where to start: a checkpoint (validated against this config) or nothing
    start = find_start(run_dir, resume, force, cfg, accelerator, say=lambda text: _log_main(accelerator, text))
    start_step = start.step if start is not None else 0
    if start is not None and start_step >= T.max_steps:
        # Already done (e.g. `scorerl demo` run twice): make sure the policy is exported, then stop.
        if is_main and not (run_dir / "policy").is_dir():
            from scorerl.export import export_checkpoint

            export_checkpoint(start, run_dir / "policy")
        accelerator.wait_for_everyone()
        _log_main(
            accelerator,
            f"{run_dir}: already trained to step {start_step} >= train.max_steps={T.max_steps}; "
            f"nothing to do (policy in {run_dir / 'policy'})",
        )
        accelerator.end_training()
        return run_dir
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic.write_text(run_dir / "config.yaml", cfg.to_yaml())
    accelerator.wait_for_everyone()

    # ---- 3. seeds: each process its own stream for anything incidental; masks are seeded per sample (rollout.py)
    set_seed(cfg.run.seed + rank)

    # ---- 4. the frozen environment, on this process's device (or partitioned: env.placement, envs/partition.py);
    #         never prepared/wrapped (it has no gradients)
    from scorerl.envs import check_answer_format, load_env

    env_section = cfg.env
    if env_section.device == "auto":
        env_section = dataclasses.replace(env_section, device=str(accelerator.device))
    env = load_env(env_section)
    check_answer_format(env, cfg.data.answer_format)
    env_info = _env_info(cfg)

    # ---- 5. data: stage 1 (static pseudo-videos) and stage 2 (videos)
    from scorerl.data.manifest import read_manifest, resolve_manifest

    uses_stage1 = cfg.curriculum.switch == "plateau" or cfg.curriculum.stage1_steps > 0
    stage_samples, report = {}, {}
    for stage, spec, used in ((1, cfg.data.stage1_manifest, uses_stage1), (2, cfg.data.stage2_manifest, True)):
        if used:
            path = resolve_manifest(spec)
            # allow_empty: a stage left with no sample stops the run after the data report (_stop_if_empty)
            stage_samples[stage], skipped = read_manifest(path, skip_bad=cfg.data.skip_bad, allow_empty=True)
            report[stage] = {"manifest": str(path), "skipped_lines": [{"line": n, "reason": r} for n, r in skipped]}
    if cfg.data.skip_bad and cfg.data.features != "store":  # every process screens alike: same samples everywhere
        stage_samples = _readable(cfg, stage_samples, report)

    # ---- 6. features: the vision tower runs once per sample (cache, store) or inside each step (online)
    from scorerl.envs import resolve_env_path
    from scorerl.envs.features import feature_source

    cache = feature_source(cfg.data, env, resolve_env_path(cfg.env.path), cache_id=env_info["fingerprint"])
    stage_samples = _usable(cache, stage_samples, cfg.data.skip_bad)
    _stop_if_empty(run_dir, stage_samples, report, cfg.data, cache, is_main)
    if T.precompute_features and cfg.data.features == "cache":
        _precompute(cache, [s for samples in stage_samples.values() for s in samples], accelerator)
    feature_dim = cache.get(stage_samples[2][0]).features.shape[-1]
    if is_main:  # after the store's screening: the samples that really train, and their token counts
        _write_data_report(run_dir, stage_samples, report, cfg.data, cache)

    # ---- 7. policy, optimizer, learning-rate schedule
    from scorerl.compress.policy import TokenPolicy

    torch.manual_seed(cfg.run.seed)  # the same initial policy on every process, whatever its rank
    policy = TokenPolicy(feature_dim, cfg.policy).to(accelerator.device)
    ref_policy = None
    if cfg.rl.kl_coef > 0:  # frozen copy of the initial policy for the KL term (saved in checkpoints)
        ref_policy = TokenPolicy(feature_dim, cfg.policy).to(accelerator.device)
        ref_policy.load_state_dict(policy.state_dict())
        ref_policy.requires_grad_(False).eval()
    optimizer = torch.optim.AdamW(policy.parameters(), lr=T.lr, weight_decay=T.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup(T.warmup_steps))
    policy, optimizer, scheduler = accelerator.prepare(policy, optimizer, scheduler)

    # ---- 8. curriculum over samplers sharded by rank (a sample and its K masks stay on one process)
    samplers = {
        s: ResumableSampler(len(samples), seed=cfg.run.seed + 1000 * s, rank=rank, world_size=world_size)
        for s, samples in stage_samples.items()
    }
    curriculum = Curriculum(cfg.curriculum, samplers.get(1), samplers[2], seed=cfg.run.seed)

    # ---- 9. restore everything a checkpoint holds
    ce_base_cache: dict[str, float] = {}  # CE_base per sample (all visual tokens), scored once over the run
    if start is not None:
        _restore(start, accelerator, policy, optimizer, scheduler, curriculum, ref_policy, feature_dim)
        ce_base_cache.update(start.state.get("ce_base", {}))
        _log_main(accelerator, f"resumed from {start.path} at step {start_step} (stage {curriculum.stage})")

    # ---- 10. the loop
    logger = MetricsLogger(
        run_dir,
        accelerator,
        T.trackers,
        resume_step=start_step if start is not None else None,
        project=T.tracker_project,
        config=cfg.to_dict(),
        run_name=cfg.run.name,
    )
    bar = ProgressBar(T.max_steps, initial=start_step, keys=("reward", "kept_fraction", "stage"), disable=not is_main)
    global_batch = T.batch_size * world_size  # samples per micro-step over all processes
    max_norm = T.max_grad_norm if T.max_grad_norm > 0 else math.inf  # inf: no clipping, but the norm is logged
    last_saved = start_step
    step = start_step  # optimizer steps finished
    watch = SaturationWatch()  # a run whose policy saturated (no gradient left) is reported, not silent
    try:
        while step < T.max_steps:
            t_step = time.perf_counter()
            # Collect every micro-batch of this optimizer step (no gradient), then judge it: rewards and
            # advantages are constants of all the update epochs that follow.
            batches, new_ce_base = [], {}
            for micro in range(T.grad_accum):
                stage, picks = curriculum.next_batch(T.batch_size)
                first = micro * global_batch + rank * T.batch_size  # this process's slice of the global batch
                ro = collect(
                    policy, env, _items(picks, stage_samples, cache, first), cfg, step=step, ce_base_cache=ce_base_cache
                )
                new_ce_base.update(ro.new_ce_base)
                rewards = combine(
                    ro.ce - ro.ce_base[:, None],
                    kept_fraction(ro.masks.cpu(), None if ro.valid is None else ro.valid.cpu()),
                    cfg.reward,
                )  # [B, K]
                adv = compute_advantages(
                    cfg.rl.estimator,
                    rewards["fidelity"],
                    rewards["sparsity"],
                    rewards["reward"],
                    cfg.rl,
                    lam=cfg.reward.lam,
                ).to(accelerator.device)
                batches.append((ro, rewards, adv, reference_logits(ref_policy, ro)))

            # Update: rl.ppo_epochs passes over the collected batches, each through the one loss path.
            local = []
            for epoch in range(cfg.rl.ppo_epochs):
                for ro, rewards, adv, ref_logits in batches:
                    with accelerator.accumulate(policy):
                        t0 = time.perf_counter()
                        loss, stats = update_loss(policy, ro, adv, cfg.rl, ref_logits)
                        accelerator.backward(loss)
                        if epoch == 0:
                            metrics = rollout_metrics(ro, rewards, adv, stats)
                            metrics["policy_ms"] += 1000 * (time.perf_counter() - t0)
                            local.append(metrics)
                grad_norm = accelerator.clip_grad_norm_(policy.parameters(), max_norm)
                stop_if_diverged(step + 1, grad_norm, run_dir)  # before the step: the weights stay good
                lr = optimizer.param_groups[0]["lr"]  # the rate this update used
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                stop_if_diverged(step + 1, _weights_finite(policy), run_dir, what="a policy weight")
            scheduler.step()  # once per optimizer step, whatever the process count (see _make_accelerator)
            _share_ce_base(ce_base_cache, new_ce_base, accelerator)

            # Metrics: mean over micro-steps here, then over processes (all processes have equal batches).
            keys = sorted(local[0])
            values = torch.tensor([[m[k] for k in keys] for m in local], dtype=torch.float64).mean(0)
            values = accelerator.reduce(values.to(accelerator.device), reduction="mean").cpu()
            metrics = dict(zip(keys, values.tolist()))
            seconds = time.perf_counter() - t_step
            metrics.update(
                grad_norm=_scalar(grad_norm),
                lr=lr,
                stage=stage,
                samples_per_s=global_batch * T.grad_accum / seconds,
                step_s=seconds,
                **curriculum.metrics(),
            )
            curriculum.observe(step, metrics["reward"])  # the global mean: every process switches together
            step += 1
            if is_main:
                watch.observe(step, metrics)

            if step % T.log_every == 0 or step == T.max_steps:
                logger.log(step, metrics)
            bar.update(step, metrics)
            if step % T.checkpoint_every == 0 or step == T.max_steps:
                _save(
                    run_dir,
                    step,
                    cfg,
                    accelerator,
                    policy,
                    optimizer,
                    scheduler,
                    curriculum,
                    ref_policy,
                    feature_dim,
                    env_info,
                    ce_base_cache,
                )
                last_saved = step
    finally:
        bar.close()
        logger.close()

    # ---- 11. the final policy, as a self-describing folder the eval harness loads
    if is_main:
        from scorerl.export import write_export

        write_export(
            accelerator.unwrap_model(policy),
            run_dir / "policy",
            config=cfg.to_dict(),
            step=step,
            env=env_info,
            source=str(ckpt.checkpoints_dir(run_dir) / ckpt.step_dir_name(last_saved)),
        )
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return run_dir


# ================================================================================================ pieces


def _make_accelerator(cfg: Config, run_dir: Path):
    """Accelerator with gradient accumulation, mixed precision and trackers; the policy is plain DDP."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedType

    T = cfg.train
    accelerator = Accelerator(
        gradient_accumulation_steps=T.grad_accum,
        mixed_precision=T.mixed_precision,
        # Without CUDA, cpu=True lets a torchrun-style launch (`accelerate launch --multi_gpu`, `torchrun`) form a
        # gloo process group: accelerate only detects MULTI_CPU when told it runs on CPU.
        cpu=not torch.cuda.is_available(),
        # The schedule is counted in optimizer steps: accelerate would otherwise step it once per process per
        # optimizer step, and a 2-process run would warm up twice as fast as a 1-process one.
        step_scheduler_with_optimizer=False,
        **tracker_kwargs(run_dir, T.trackers),
    )
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        raise ConfigError(
            "this launch asks accelerate for DeepSpeed, but the policy trains with plain DDP (exact "
            "optimizer state in checkpoints); launch with configs/accelerate/multi_gpu.yaml, and set "
            "env.placement=zero3 to partition the frozen environment with DeepSpeed"
        )
    return accelerator


def _warmup(warmup_steps: int):
    """LR factor: linear warm-up over warmup_steps optimizer steps (the first step already > 0), then 1."""

    def factor(step: int) -> float:
        return 1.0 if warmup_steps <= 0 else min(1.0, (step + 1) / warmup_steps)

    return factor


def stop_if_diverged(step: int, value, run_dir: Path, what: str = "the gradient norm") -> None:
    """DivergedError at optimizer step `step` when `value` (the gradient norm, global over processes, checked
    BEFORE optimizer.step so no NaN reaches the weights; or a weights check after it) is not finite. Nothing is
    checkpointed or exported after it: the last good checkpoint stays the newest one."""
    value = _scalar(value)
    if math.isfinite(value):
        return
    found = ckpt.latest_checkpoint(run_dir)
    last = f"the last good checkpoint is {found}" if found else "no checkpoint was written yet"
    raise DivergedError(
        f"step {step}: {what} is {value} (not finite); training stopped and nothing was exported;"
        f" {last}. Lower train.lr or set train.max_grad_norm, then start over with --force"
    )


def _weights_finite(policy) -> float:
    """0.0 when every policy weight is finite, else nan (in stop_if_diverged's terms)."""
    finite = all(bool(torch.isfinite(p).all()) for p in policy.parameters())
    return 0.0 if finite else math.nan


def _restore(
    start: ckpt.Checkpoint, accelerator, policy, optimizer, scheduler, curriculum, ref_policy, feature_dim: int
) -> None:
    """Put every piece of state a checkpoint holds back in place."""
    state = start.state
    if state.get("feature_dim") != feature_dim:
        raise CheckpointError(
            f"{start.path}: its policy reads features of width {state.get('feature_dim')}, this "
            f"environment produces {feature_dim}: env changed since the checkpoint"
        )
    accelerator.unwrap_model(policy).load_state_dict(start.tensors["policy"])
    if ref_policy is not None:
        if "ref_policy" not in start.tensors:
            raise CheckpointError(
                f"{start.path}: rl.kl_coef > 0 needs the initial policy, which this checkpoint "
                "lacks (it was written with kl_coef = 0)"
            )
        ref_policy.load_state_dict(start.tensors["ref_policy"])
    if "optimizer" not in start.tensors:  # written by a DeepSpeed-ZeRO policy run of an earlier version
        raise CheckpointError(
            f"{start.path}: holds no optimizer state, so the run cannot continue exactly; start "
            "over, or --force to start fresh in this run folder"
        )
    optimizer.load_state_dict(codec.unflatten_optimizer_state(start.tensors["optimizer"], state["optimizer"]))
    scheduler.load_state_dict(state["scheduler"])
    curriculum.load_state_dict(state["curriculum"])
    if start.rng is not None:
        codec.restore_rng_state(start.rng)
    else:
        warnings.warn(
            f"{start.path}: written by {start.world_size} process(es), none with rank "
            f"{accelerator.process_index}; this process's RNG is not restored (masks do not depend on it)",
            stacklevel=2,
        )


def _save(
    run_dir: Path,
    step: int,
    cfg: Config,
    accelerator,
    policy,
    optimizer,
    scheduler,
    curriculum,
    ref_policy,
    feature_dim: int,
    env_info: dict,
    ce_base_cache: dict,
) -> Path:
    """Checkpoint `step` on every process: policy, optimizer, scheduler, curriculum + samplers, CE_base cache,
    RNG, config."""
    tensors = {"policy": accelerator.get_state_dict(policy)}
    state = {
        "step": step,
        "config": cfg.to_dict(),
        "feature_dim": feature_dim,
        "env": env_info,
        "scheduler": scheduler.state_dict(),
        "curriculum": curriculum.state_dict(),
        "ce_base": ce_base_cache,
        "world_size": accelerator.num_processes,
    }
    tensors["optimizer"], state["optimizer"] = codec.flatten_optimizer_state(optimizer.state_dict())
    if ref_policy is not None:
        tensors["ref_policy"] = ref_policy.state_dict()
    return ckpt.save_checkpoint(
        run_dir,
        step,
        tensors=tensors,
        state=state,
        rng=codec.capture_rng_state(),
        keep_last=cfg.train.keep_last,
        rank=accelerator.process_index,
        world_size=accelerator.num_processes,
        barrier=accelerator.wait_for_everyone,
    )


def _items(picks, stage_samples: dict, features, first_position: int) -> list[RolloutItem]:
    """Rollout items of the curriculum's picks [(stage, index)]: sample, its features (one batched call for the
    online mode), global batch position. An unreadable video (not screened: data.skip_bad=false) stops the run
    naming its manifest line."""
    from scorerl.data.manifest import where

    samples = [stage_samples[stage][index] for stage, index in picks]
    try:
        visuals = features.get_many(samples)
    except DataError:
        for sample in samples:  # which one
            try:
                features.get(sample)
            except DataError as e:
                raise DataError(f"{where(sample)}: {e} (set data.skip_bad=true to skip unreadable media)") from None
        raise
    return [
        RolloutItem(sample, visual, position=first_position + j, key=f"{stage}:{sample.id}")
        for j, ((stage, _), sample, visual) in enumerate(zip(picks, samples, visuals))
    ]


def _readable(cfg: Config, stage_samples: dict, report: dict) -> dict:
    """data.skip_bad: decode every sample's media once up front and leave out (and report) what cannot be read,
    so no process meets an unreadable video mid-run."""
    from scorerl.data.frames import FrameSampling, load_clip
    from scorerl.data.manifest import usable_media

    sampling = FrameSampling.of(cfg.data)
    out = {}
    for stage, samples in stage_samples.items():
        out[stage], report[stage]["skipped_media"] = usable_media(
            samples, lambda s: load_clip(s, sampling), skip_bad=True
        )
    return out


def _stop_if_empty(run_dir: Path, stage_samples: dict, report: dict, data, features, is_main: bool) -> None:
    """DataError when a stage has no sample left to train on (every line bad or unreadable), after the data
    report that says why each one was left out is written: the case that most needs it."""
    empty = [stage for stage, samples in stage_samples.items() if not samples]
    if not empty:
        return
    if is_main:
        _write_data_report(run_dir, stage_samples, report, data, features)
    raise DataError(
        f"{report[empty[0]]['manifest']}: no usable sample left for stage {empty[0]} (every line "
        f"skipped as bad or unreadable; reasons in {run_dir / DATA_REPORT})"
    )


def _write_data_report(run_dir: Path, stage_samples: dict, report: dict, data, features) -> None:
    """<run>/data_report.json: the frame rule (data.*: rate, frame floor and cap, native or capped size, temporal
    positions) and per stage: the manifest, how many samples train, their visual tokens per sample (min / median /
    max, where the feature source knows them without encoding: the store's index, the precomputed cache) and every
    skipped line or unreadable media with its reason; a summary goes to the log."""
    import json

    from scorerl.data.frames import describe_sampling, sampling_text, token_count_summary

    out = {"sampling": describe_sampling(data)}
    for stage, entry in report.items():
        entry["samples"] = len(stage_samples[stage])
        entry.setdefault("skipped_media", [])
        counts = _token_counts(features, stage_samples[stage])
        entry["visual_tokens"] = token_count_summary(counts) if counts is not None else None
        log.info(
            "stage %d: %d samples, %s", stage, entry["samples"], sampling_text(out["sampling"], entry["visual_tokens"])
        )
        if entry["skipped_lines"] or entry["skipped_media"]:
            log.info(
                "stage %d: skipped %d bad line(s) and %d unreadable media (%s)",
                stage,
                len(entry["skipped_lines"]),
                len(entry["skipped_media"]),
                DATA_REPORT,
            )
        out[str(stage)] = entry
    atomic.write_text(run_dir / DATA_REPORT, json.dumps(out, indent=1) + "\n")


def _token_counts(features, samples) -> list[int] | None:
    """T x N (+ suffix) of every sample from a feature source that knows them without encoding (token_count), else
    None (online features are encoded inside the steps)."""
    count = getattr(features, "token_count", None)
    if count is None:
        return None
    counts = [count(s) for s in samples]
    return None if any(c is None for c in counts) else counts


def _usable(features, stage_samples: dict, skip_bad: bool) -> dict:
    """With a feature store: the samples it holds. Those its build skipped (bad media) are left out with a warning
    when data.skip_bad, else named in an error, as is any sample the store lacks altogether."""
    from scorerl.data.store import FeatureStore

    if not isinstance(features, FeatureStore):
        return stage_samples
    skipped = {(item["id"], Path(item["media"]).name) for item in features.skipped}
    out = {}
    for stage, samples in stage_samples.items():
        bad = [s for s in samples if (s.id, Path(s.media).name) in skipped]
        missing = [s for s in features.missing(samples) if s not in bad]
        if missing:
            raise DataError(
                f"{len(missing)} stage-{stage} sample(s) are not in the feature store {features.path} "
                f"(first: {missing[0].id!r}, {missing[0].media}); build it with `scorerl data features "
                "CONFIG` (only missing shards are built)"
            )
        if bad and not skip_bad:
            raise DataError(
                f"{len(bad)} stage-{stage} sample(s) were skipped by the store's build as unreadable "
                f"(first: {bad[0].id!r}); set data.skip_bad=true to train without them"
            )
        for s in bad:
            log.warning("stage %d: leaving out %s (%s): unreadable when the store was built", stage, s.id, s.media)
        out[stage] = [s for s in samples if s not in bad] if bad else samples
    return out


def _share_ce_base(cache: dict, new: dict, accelerator) -> None:
    """Give every process the CE_base entries any process computed this step, so all hold the same cache (the
    one a checkpoint stores) and no sample is scored twice when it later lands on another process."""
    if accelerator.num_processes > 1:
        from accelerate.utils import gather_object

        for part in gather_object([new]):
            cache.update(part)


def _precompute(cache, samples, accelerator) -> None:
    """Encode every sample once: each process encodes its share into the disk cache, then all read it all."""
    from tqdm.auto import tqdm

    from scorerl.data.manifest import usable_media

    rank, world = accelerator.process_index, accelerator.num_processes
    mine = samples[rank::world]
    # skip_bad=False: media were screened before when data.skip_bad; an unreadable one here is named by its line
    usable_media(
        tqdm(mine, desc="encoding features", unit="sample", disable=not accelerator.is_main_process, leave=False),
        cache.get,
        skip_bad=False,
    )
    accelerator.wait_for_everyone()
    for sample in samples:  # the others' share: from disk into memory
        cache.get(sample)


def _env_info(cfg: Config) -> dict:
    """What the policy was trained against, for checkpoints and export.json."""
    from scorerl.data.cache import env_fingerprint
    from scorerl.envs import resolve_env_path

    env_dir = resolve_env_path(cfg.env.path)
    return {
        "arch": cfg.env.arch,
        "path": cfg.env.path,
        "resolved_path": str(env_dir.resolve()),
        "fingerprint": env_fingerprint(env_dir),
        "num_frames": cfg.data.num_frames,
        "frame_size": cfg.data.frame_size,
    }


def _scalar(x) -> float:
    if x is None:
        return float("nan")
    return float(x.item()) if torch.is_tensor(x) else float(x)


def _log_main(accelerator, text: str) -> None:
    """A status line from the main process only (the CLI shows scorerl's log lines; see cli.main)."""
    if accelerator.is_main_process:
        log.info(text)
