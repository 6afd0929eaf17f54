"""`scorerl env fit`: train the built-in world's small MLLM, which is then frozen and serves as the reward environment.

Why a fit at all: there is no hub here, so the world's environment is a small model of a REAL architecture
(Qwen2.5-VL by default, LLaVA-OneVision via env.arch) built from config and trained from scratch on the world's
train split (+ its image split as static pseudo-videos). The LLM always trains; the vision encoder and the merger /
projector into the LLM train at their own learning-rate scales (fit.vision_lr_scale, fit.projector_lr_scale; 0
keeps one as it is), and the projector may first be warmed up alone (fit.projector_warmup_steps,
scorerl/world/projector_warmup.py). The world's environment keeps the encoder at its random initialisation and
warms the merger up, then trains it at a tenth of lr (docs/world.md, "Learning direction").

Why random token dropout (docs/method.md, built-in world): a small model fitted only on complete videos fails on any
sparse input, whichever tokens are kept, and then no policy can look good. Each fit question therefore keeps a
random subset of the visual tokens (keep ratio ~ U[keep_min, 1], or all of them with probability full_prob), and
the kept tokens keep their ORIGINAL position ids, exactly as the environment scores a subset (env.build_sequence).
At inference a wrong answer then means the needed tokens were dropped, not that the input looked unfamiliar.

The loss is the answer's cross-entropy in data.answer_format, exactly what env.score computes (env.token_logprobs
with gradients on). The world's environment answers with the option's text (`option`): with letters, a model
trained from scratch must also learn the hop from an option's text to its letter, which alone took ~3000 steps of
64 in our measurements, far past the CPU budget (docs/world.md).

Recipe (fit_env):
  1. no-op if out/fit.json records the same identity (fit-relevant config + manifest hashes)
  2. read the manifests; decode every sample's frames ONCE into uint8 memory (decord via data.cache.load_frames)
  3. tokenizer trained in code on the world's prompts and answers; model built from envs/build.py's config builders +
     fit.model
  4. projector warm-up when asked (not when resuming: the checkpoint holds the warmed projector)
  5. loop: videos -> (left-right mirror) -> vision tower on the batch -> questions per video (the manifest's
     + ones derived from its scene) -> random keep masks -> one left-padded LLM forward in the env's own sequence
     layout -> answer CE -> AdamW (warm-up + cosine) -> checkpoint every N steps
  6. save_pretrained(out), score the eval manifest with all tokens, write fit.json LAST (the done marker)

Exact resume: batch order, augmentation, derived questions and keep masks are pure functions of (seed, step) and
the learning rate a function of step, so a checkpoint holds only model + optimizer + step (atomic safetensors/JSON
via io/checkpoint.py) and a resumed fit ends at the same weights as an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from scorerl.config import Config
from scorerl.data.manifest import answer_target, format_prompt, manifest_hash, resolve_manifest
from scorerl.errors import CheckpointError, ConfigError
from scorerl.io import atomic
from scorerl.rng import fit_step_rng
from scorerl.types import ScoreRequest
from scorerl.world.fit_data import (
    MIRROR_WORDS,
    FitData,
    augmented_sample,
    batch_indices,
    concat_data,
    evidence_first,
    load_split,
    mirror_frames,
    prompt_corpus,
    questions_for,
    random_keep_masks,
    sample_weights,
)
from scorerl.world.fit_params import param_groups, set_trainable
from scorerl.world.projector_warmup import warm_up_projector

log = logging.getLogger(__name__)

FIT_FILE = "fit.json"
FIT_FORMAT = "scorerl-env-fit/1"
# Fit keys that do not change the fitted weights (how often to save, threads, eval batching).
_NOT_IDENTITY = ("checkpoint_every", "keep_last", "threads", "eval_batch_size")
# Fit keys added after environments were fitted, with the value that fits exactly as before they existed: at that
# value they are left out of the identity, so those fits stay valid.
_ADDED_AT = {"evidence_prob": 0.0}


# --------------------------------------------------------------------------------------------- schedule


def lr_at(step: int, total: int, base: float, warmup: int, min_ratio: float) -> float:
    """Linear warm-up over `warmup` steps, then cosine from base down to base * min_ratio at step `total`."""
    if warmup and step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


# --------------------------------------------------------------------------------------------- model


def build_fit_env(cfg: Config, corpus: list[str]):
    """Tokenizer (trained on `corpus`) + randomly initialised model of env.arch sized by fit.model, wrapped as a
    VideoEnv whose model is trainable."""
    from scorerl.envs import env_class
    from scorerl.envs.build import tiny_config
    from scorerl.envs.tokenizer import build_tokenizer

    arch = cfg.env.arch
    tokenizer = build_tokenizer(corpus, vocab_size=cfg.fit.vocab_size, arch=arch)
    config = tiny_config(arch, tokenizer, **cfg.fit.model)
    cls = env_class(arch)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.run.seed)
        model = cls.model_class()(config)
    model.set_attn_implementation(cfg.env.attn_implementation)
    env = cls(model, tokenizer, token_budget=10**9)  # one forward per batch: the fit sets the batch size
    set_trainable(env, True)
    return env


# --------------------------------------------------------------------------------------------- loss


@dataclass
class StepResult:
    loss: torch.Tensor  # scalar with grad: mean over questions of the answer's summed token CE
    questions: int


def fit_step_loss(env, data: FitData, idx: np.ndarray, cfg: Config, step: int) -> StepResult:
    """Loss of batch `step`: augment -> encode -> questions -> random keep masks -> one LLM forward -> answer CE
    in data.answer_format (what env.score computes)."""
    fit, fmt = cfg.fit, cfg.data.answer_format
    tgen, nrng = fit_step_rng(cfg.run.seed, step, 0)
    mirror = torch.rand(len(idx), generator=tgen) < 0.5  # [B]
    frames, questions = [], []  # questions: (video index in the batch, question as it reads for that video)
    for b, i in enumerate(idx):
        flip = fit.augment and bool(mirror[b])
        pairs = MIRROR_WORDS if flip else {}
        frames.append(mirror_frames(data.frames[i]) if flip else data.frames[i])
        questions += [
            (b, augmented_sample(q, pairs))
            for q in questions_for(data.samples[i], fit.extra_questions, nrng, fit.family_weights)
        ]
    visuals = env.encode_batch(frames)

    T, N = visuals[0].features.shape[:2]
    masks = random_keep_masks(len(questions), T, N, fit.keep_min, fit.full_prob, fit_step_rng(cfg.run.seed, step, 1)[0])
    if fit.evidence_prob > 0:
        per_video = [
            _evidence(data.samples[i], T, visuals[b].grid, fit.augment and bool(mirror[b])) for b, i in enumerate(idx)
        ]  # once per video; its questions share it
        masks = evidence_first(
            masks, [per_video[b] for b, _ in questions], fit.evidence_prob, fit_step_rng(cfg.run.seed, step, 3)[0]
        )
    requests = [
        ScoreRequest(visuals[b], format_prompt(q, fmt), target=answer_target(q, fmt), keep=m)
        for (b, q), m in zip(questions, masks)
    ]
    logps = env.token_logprobs(requests)  # one [t_r] per request, with gradients
    loss = -torch.stack([lp.sum() for lp in logps]).mean()
    return StepResult(loss, len(requests))


def _evidence(sample, T: int, grid, mirrored: bool) -> np.ndarray | None:
    """bool [T, N] tokens showing the sample's coloured objects (from its scene), None without a scene."""
    from scorerl.world.regions import evidence_tokens

    scene = sample.meta.get("scene")
    return None if scene is None else evidence_tokens(scene, T, tuple(grid), mirrored)


# --------------------------------------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate(env, data: FitData, answer_format: str, batch_size: int = 64, keep_fn=None, desc: str = "eval") -> dict:
    """Multiple-choice accuracy (the most likely option in `answer_format`, scorerl.eval.answer) overall and per
    family. keep_fn(sample_index, visual) -> keep bool [T, N] or None (all tokens, the default)."""
    from tqdm.auto import tqdm

    from scorerl.eval.answer import predict

    was = env.grad
    set_trainable(env, False)
    correct: list[bool] = []
    try:
        for start in tqdm(range(0, len(data), batch_size), desc=desc, unit="batch", leave=False):
            idx = list(range(start, min(start + batch_size, len(data))))
            samples = [data.samples[i] for i in idx]
            visuals = env.encode_batch([data.frames[i] for i in idx])
            requests = [
                ScoreRequest(v, format_prompt(s, answer_format), keep=None if keep_fn is None else keep_fn(i, v))
                for i, s, v in zip(idx, samples, visuals)
            ]
            for s, choice in zip(samples, predict(env, requests, samples, answer_format)):
                correct.append(choice == s.answer_index)
    finally:
        set_trainable(env, was)
    return accuracy_table(correct, [s.family for s in data.samples])


def accuracy_table(correct: list[bool], families: list[str]) -> dict:
    per: dict[str, list[bool]] = {}
    for ok, f in zip(correct, families):
        per.setdefault(f or "-", []).append(ok)
    return {
        "accuracy": sum(correct) / max(1, len(correct)),
        "n": len(correct),
        "families": {f: {"accuracy": sum(v) / len(v), "n": len(v)} for f, v in sorted(per.items())},
    }


# --------------------------------------------------------------------------------------------- identity


def fit_identity(cfg: Config) -> dict:
    """Everything the fitted weights depend on: the fit-relevant config and the exact data (manifest hashes)."""
    fit = {
        k: v
        for k, v in cfg.to_dict()["fit"].items()
        if k not in _NOT_IDENTITY and not (k in _ADDED_AT and v == _ADDED_AT[k])
    }
    manifests = {"train": cfg.data.stage2_manifest, "eval": cfg.data.eval_manifest}
    if cfg.fit.image_data:
        manifests["images"] = cfg.data.stage1_manifest
    return {
        "format": FIT_FORMAT,
        "arch": cfg.env.arch,
        "attn_implementation": cfg.env.attn_implementation,
        "seed": cfg.run.seed,
        "num_frames": cfg.data.num_frames,
        "frame_size": cfg.data.frame_size,
        "answer_format": cfg.data.answer_format,  # the loss's target text: letter or option
        "fit": fit,
        "data": {k: {"spec": v, "sha256": manifest_hash(resolve_manifest(v))} for k, v in manifests.items()},
    }


def read_fit_json(out: Path) -> dict | None:
    try:
        return json.loads((out / FIT_FILE).read_text())
    except (OSError, ValueError):
        return None


def is_fitted(cfg: Config, out: str | Path) -> bool:
    """True when `out` holds a finished fit of exactly this config and data."""
    out = Path(out).expanduser()
    done = read_fit_json(out)
    return done is not None and done.get("identity") == fit_identity(cfg) and (out / "config.json").is_file()


def _write_json(path: Path, obj: dict) -> None:
    atomic.write_text(path, json.dumps(obj, indent=2) + "\n")


# --------------------------------------------------------------------------------------------- checkpoints


def save_fit_checkpoint(out: Path, step: int, env, optimizer, identity: dict, stats: dict, keep_last: int) -> Path:
    from scorerl.io.checkpoint import save_checkpoint
    from scorerl.io.state_codec import flatten_optimizer_state

    opt_tensors, opt_layout = flatten_optimizer_state(optimizer.state_dict())
    state = {"kind": "env-fit", "identity": identity, "step": step, "optimizer": opt_layout, "stats": stats}
    tensors = {"model": env.model.state_dict(), "optimizer": opt_tensors}
    return save_checkpoint(out, step, tensors=tensors, state=state, keep_last=keep_last)


def find_resume(out: Path, resume: str | None, identity: dict):
    """The checkpoint to continue from (loaded and verified), or None to start afresh."""
    from scorerl.config import diff_configs
    from scorerl.io.checkpoint import latest_checkpoint, load_checkpoint

    if resume is None:
        return None
    if resume == "auto":
        path = latest_checkpoint(out, clean_stale=True)
        if path is None:
            return None
        ckpt = load_checkpoint(path)
        if ckpt.state.get("kind") != "env-fit" or ckpt.state.get("identity") != identity:
            log.warning("%s was written by a different fit (config or data changed); starting afresh", path)
            return None
        return ckpt
    ckpt = load_checkpoint(resume)
    if ckpt.state.get("kind") != "env-fit":
        raise CheckpointError(f"{resume}: not an environment-fit checkpoint")
    if ckpt.state.get("identity") != identity:
        diffs = diff_configs(ckpt.state.get("identity", {}), identity)
        raise CheckpointError(
            f"{resume}: written by a different fit (differs at {', '.join(diffs)}); "
            f"restore those settings or start afresh without --resume"
        )
    return ckpt


def restore(ckpt, env, optimizer) -> int:
    from scorerl.io.state_codec import unflatten_optimizer_state

    if "model" not in ckpt.tensors:
        raise CheckpointError(f"{ckpt.path}: no model.safetensors")
    missing, unexpected = env.model.load_state_dict(ckpt.tensors["model"], strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{ckpt.path}: model weights do not match this model (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    optimizer.load_state_dict(unflatten_optimizer_state(ckpt.tensors["optimizer"], ckpt.state["optimizer"]))
    return int(ckpt.state["step"])


# --------------------------------------------------------------------------------------------- entry point


def fit_env(cfg: Config, out: str | Path | None = None, resume: str | None = None) -> Path:
    """Fit the world's environment into `out` (default: scorerl.paths.world_env_dir()) and return `out`.

    A fast no-op when out/fit.json records the same identity. resume: None (start afresh), `auto` (the latest
    matching checkpoint under out/checkpoints, else afresh), or the PATH of a fit checkpoint folder.
    """
    from scorerl.world.paths import world_env_dir

    out = Path(out).expanduser() if out is not None else world_env_dir(cfg.world.version)
    _check_cfg(cfg)
    _ensure_world_v4(cfg)
    if is_fitted(cfg, out):
        log.info("environment in %s is already fitted with this config and data; nothing to do", out)
        return out
    identity = fit_identity(cfg)
    out.mkdir(parents=True, exist_ok=True)
    (out / FIT_FILE).unlink(missing_ok=True)  # a different fit's marker must not survive next to new weights

    if cfg.fit.threads:
        torch.set_num_threads(cfg.fit.threads)
    started = time.perf_counter()
    train = _load_train(cfg)
    test = load_split(cfg.data.eval_manifest, cfg.data.num_frames, cfg.data.frame_size, "eval")
    env = build_fit_env(cfg, prompt_corpus(train.samples, cfg.data.answer_format))
    env.model.to(_device(cfg))
    decode_s = time.perf_counter() - started

    ckpt = find_resume(out, resume, identity)
    stats = dict(ckpt.state.get("stats", {})) if ckpt is not None else {}
    if cfg.fit.projector_warmup_steps and ckpt is None:  # a resumed fit restores the warmed projector instead
        stats["projector_warmup"] = warm_up_projector(env, cfg, train)

    groups = param_groups(env, cfg.fit.vision_lr_scale, cfg.fit.projector_lr_scale)
    params = [p for g in groups for p in g["params"]]
    optimizer = torch.optim.AdamW(groups, lr=cfg.fit.lr, weight_decay=cfg.fit.weight_decay, betas=(0.9, 0.98))
    step = restore(ckpt, env, optimizer) if ckpt is not None else 0
    if ckpt is not None:
        log.info("resuming the fit from %s (step %d)", ckpt.path, step)

    train_s = _train_loop(cfg, env, optimizer, params, train, out, identity, step, stats)

    set_trainable(env, False)
    env.model.to("cpu")
    env.settings["answer_format"] = cfg.data.answer_format  # declared in scorerl_env.json: checked by train/eval
    env.save_pretrained(out)
    eval_started = time.perf_counter()
    result = evaluate(env, test, cfg.data.answer_format, batch_size=cfg.fit.eval_batch_size, desc="test (all tokens)")
    record = {
        "identity": identity,
        "config": cfg.to_dict(),
        "steps": cfg.fit.steps,
        "train_items": len(train),
        "parameters": sum(p.numel() for p in env.model.parameters()),
        "visual_tokens": list(env.encode_batch([test.frames[0]])[0].features.shape[:2]),
        "projector_warmup": stats.get("projector_warmup"),
        "wall_time_s": {
            "decode": round(decode_s, 1),
            "train": round(train_s, 1),
            "eval": round(time.perf_counter() - eval_started, 1),
            "this_run": round(time.perf_counter() - started, 1),
        },
        "resumed_from_step": None if ckpt is None else int(ckpt.state["step"]),
        "threads": torch.get_num_threads(),
        "device": str(_device(cfg)),
        "numerics": numerics(),
        "test": result,
    }
    _write_json(out / FIT_FILE, record)  # last: its presence marks a finished fit
    families = ", ".join(f"{f} {v['accuracy']:.2f}" for f, v in result["families"].items())
    print(
        f"env fit: {cfg.fit.steps} steps, {train_s / 60:.1f} min of training; test accuracy with all tokens "
        f"{result['accuracy']:.3f} ({families}); saved to {out}",
        flush=True,
    )
    return out


def numerics() -> dict:
    """What decides a CPU fit's bits besides its config and seed (README, "How much the figures move between
    machines"): the SIMD level of torch's own kernels and MKL's code path (both chosen per CPU unless pinned by
    ATEN_CPU_CAPABILITY / MKL_CBWR), and the library versions. The thread count does not change them."""
    import platform

    import transformers

    from scorerl.eval.bench import machine

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "ATEN_CPU_CAPABILITY": os.environ.get("ATEN_CPU_CAPABILITY"),
        "MKL_CBWR": os.environ.get("MKL_CBWR"),
        "machine": platform.machine(),
        "processor": machine()["cpu"],
    }


def _train_loop(
    cfg: Config, env, optimizer, params, train: FitData, out: Path, identity: dict, step: int, stats: dict
) -> float:
    """Run steps `step`..fit.steps with a progress bar and checkpoints; returns the training wall time (s),
    including the time of the run this one resumed."""
    from scorerl.io.progress import ProgressBar

    fit = cfg.fit
    weights = sample_weights(train.samples, fit.family_weights)
    prior_s = float(stats.get("train_s", 0.0))
    ema = dict(stats.get("ema", {}))
    bar = ProgressBar(total=fit.steps, initial=step, keys=("loss",), desc="env fit")
    started = time.perf_counter()
    try:
        while step < fit.steps:
            lr = lr_at(step, fit.steps, fit.lr, fit.warmup_steps, fit.min_lr_ratio)
            for group in optimizer.param_groups:
                group["lr"] = lr * group["lr_scale"]
            idx = batch_indices(len(train), fit.batch_size, step, cfg.run.seed, weights)
            result = fit_step_loss(env, train, idx, cfg, step)
            optimizer.zero_grad(set_to_none=True)
            result.loss.backward()
            if fit.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, fit.max_grad_norm)
            optimizer.step()
            step += 1
            now = {"loss": result.loss.item()}
            ema = {k: v if k not in ema else 0.95 * ema[k] + 0.05 * v for k, v in now.items()}
            bar.update(step, ema)
            if step % fit.checkpoint_every == 0 or step == fit.steps:
                stats = {**stats, "ema": ema, "train_s": prior_s + time.perf_counter() - started}
                save_fit_checkpoint(out, step, env, optimizer, identity, stats, fit.keep_last)
    finally:
        bar.close()
    return prior_s + time.perf_counter() - started


def _load_train(cfg: Config) -> FitData:
    parts = [load_split(cfg.data.stage2_manifest, cfg.data.num_frames, cfg.data.frame_size, "train")]
    if cfg.fit.image_data:
        parts.append(load_split(cfg.data.stage1_manifest, cfg.data.num_frames, cfg.data.frame_size, "images"))
    return concat_data(parts)


def _ensure_world_v4(cfg: Config) -> None:
    """A version-4 fit renders its world first (a no-op when it is built): world.* in the fit's config is the
    only description of it. Not for version 3, whose world `scorerl data synthetic` may have built with other
    parameters than the config's world section: rebuilding would replace it."""
    if cfg.world.version == 4:
        from scorerl.world.synthetic import build_from_section

        build_from_section(cfg.world)


def _device(cfg: Config) -> torch.device:
    from scorerl.envs.hf import resolve_device

    return resolve_device(cfg.env.device)


def _check_cfg(cfg: Config) -> None:
    if cfg.env.dtype != "float32":
        raise ConfigError("env.dtype: the environment fit trains in float32; set env.dtype=float32 for `env fit`")
