"""`scorerl eval`: multiple-choice accuracy of compression methods at keep ratios, on cached features.

Recipe, top to bottom (run_eval):
  1. read the manifest (bad lines stop the run with FILE:LINE, or are skipped and counted with data.skip_bad)
  2. load the frozen environment; encode every sample once through the feature cache
  3. `full` once (all tokens; always run, listed or not, because it is the reference for `relative`), then every
     other method at every ratio: masks -> one batched prefill per batch -> the answer is the option letter with
     the highest log-probability among the sample's options. `fastv` prunes inside the LLM, so no mask describes
     it: its batches are scored by the environment's layer-pruned pass instead (methods.layer_pruned_env)
  4. metrics per (method, ratio): accuracy, relative = accuracy / accuracy(full), n, kept_fraction (`fastv`: the
     fraction kept from LLM layer K on, with `kept_from_layer` = K in its rows), per family; `score` runs once per
     trained policy given (one per training seed) and its row is the mean over them, each seed's figures in `seeds`.
     Prefill cost (PrefillCost, counted from token counts, nothing run): `flops`, the mean prefill FLOPs per
     question (eval/flops.py; `score` adds its policy's, `policy_flops`), and `flops_fraction`, that mean over
     `full`'s on the same questions; left out when the environment's LLM sizes cannot be read
  5. intervals (eval/stats.py): a 95% percentile bootstrap interval over the questions on every accuracy
     (`ci95`, per family too), and paired intervals of the difference to `full` (method - full: `diff_vs_full`,
     `diff_vs_full_ci95`) and, at the ratios where `score` ran, of score - method (`score_minus_method`,
     `score_minus_method_ci95`: positive = score ahead); eval.bootstrap resamples (0 = none), seeded with run.seed
     so a report is reproducible
  6. FILE.json (meta + results + per-sample predictions + per-question correctness), FILE.md (tables), FILE.png

`correct` in FILE.json holds, per run key `method@ratio`, one '0'/'1' string per training seed (baselines: one),
a character per question in meta.sample_ids order: enough to recompute every interval or pool seeds later
(`add_intervals`). With several policies, `predictions` keys are `score@ratio#k` for policy k of meta.policies.

Every method sees the same cached features and the same prompts, so the comparison is on equal footing. Batching
only changes how requests are grouped into forwards (left padding, original positions), never an answer: batch B
gives the same results as batch 1.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import torch

from scorerl.compress.baselines import is_merging
from scorerl.config import Config
from scorerl.data.frames import describe_sampling, token_count_summary
from scorerl.data.manifest import LETTERS, Sample, format_prompt, manifest_hash, read_manifest, resolve_manifest
from scorerl.envs.base import VideoEnv
from scorerl.envs.features import env_identity
from scorerl.errors import CheckpointError, ConfigError, DataError, EnvError, ScoreRLError
from scorerl.eval import stats
from scorerl.eval.answer import open_answers, predict
from scorerl.eval.flops import LMDims, fastv_prefill_flops, lm_dims, prefill_flops
from scorerl.eval.methods import (
    LAYER_PRUNED,
    EvalItem,
    MethodContext,
    check_methods,
    layer_pruned_env,
    layer_pruned_kept,
    method_masks,
    method_merges,
)
from scorerl.eval.report import write_eval_report
from scorerl.export import load_policy
from scorerl.io.atomic import ensure_writable_dir
from scorerl.types import ScoreRequest, VisualTokens

log = logging.getLogger(__name__)

# Evaluation sees images as exact pseudo-videos: jitter is a stage-1 training augmentation, not part of the task.
EVAL_JITTER = 0.0


def run_eval(
    cfg: Config,
    policy_dir: str | Path | list | tuple | None = None,
    out: str | Path = "results.json",
    manifest: str | Path | None = None,
    *,
    env: VideoEnv | None = None,
) -> dict:
    """Evaluate cfg.eval.methods at cfg.eval.ratios; write FILE.json / .md / .png; return the JSON dict.

    `policy_dir`: one policy (exported, run or checkpoint folder) or a list of them, one per training seed; `score`
    is then reported as the mean over them. `env` (optional) is an already loaded environment to use instead of
    load_env(cfg.env); its feature-cache identity is still taken from cfg.env.path when that is a folder, else
    from its weights.
    """
    methods = check_methods(cfg.eval.methods)
    ensure_writable_dir(Path(out).expanduser().parent, "--out")  # before the evaluation, not after it
    if cfg.data.cache_dir:
        ensure_writable_dir(cfg.data.cache_dir, "data.cache_dir")
    ratios = sorted({float(r) for r in cfg.eval.ratios})
    manifest_path = resolve_manifest(manifest if manifest is not None else cfg.data.eval_manifest)
    samples, skipped = read_manifest(manifest_path, skip_bad=cfg.data.skip_bad)
    if cfg.eval.limit:
        samples = samples[: cfg.eval.limit]

    policy_dirs = policy_list(policy_dir)
    policies = []
    if "score" in methods:
        if not policy_dirs:
            raise ConfigError(
                "method score needs a trained policy: pass --policy (exported policy folder or run "
                "folder), or drop score from eval.methods"
            )
        policies = [load_policy(p) for p in policy_dirs]

    torch.manual_seed(cfg.run.seed)
    if env is None:
        from scorerl.envs import check_answer_format, load_env

        env = load_env(cfg.env)
        check_answer_format(env, cfg.data.answer_format)
    if {"fastv", "fastv_input"} & set(methods):
        _check_fastv_layer(env, cfg.eval.fastv_layer)
    if "fastv" in methods:  # an environment that cannot prune inside its LLM fails now, not after `full`
        layer_pruned_env("fastv", 1.0, MethodContext(env=env, fastv_layer=cfg.eval.fastv_layer))
    env_dir = _env_dir(cfg)
    env_id = env_identity(env, env_dir)
    samples, items, skipped_media = encode_samples(env, env_id, samples, cfg, env_dir)
    for path, policy in zip(policy_dirs, policies):
        if policy.feature_dim != items[0].visual.features.shape[-1]:
            raise CheckpointError(
                f"{path}: the policy takes D={policy.feature_dim} features, but this "
                f"environment gives D={items[0].visual.features.shape[-1]}; it was trained for "
                f"another model"
            )
    ctx = MethodContext(
        env=env,
        policy=policies[0] if policies else None,
        seed=cfg.run.seed,
        fastv_layer=cfg.eval.fastv_layer,
        answer_format=cfg.data.answer_format,
    )
    # One context per trained policy: each has its own cache of policy logits (keyed by method and sample only).
    contexts = [ctx] + [replace(ctx, policy=p, scores={}) for p in policies[1:]]

    runs = [("full", 1.0)] + [(m, r) for m in methods if m != "full" for r in ratios]
    cost = prefill_cost(env, items, cfg.eval.fastv_layer)
    rows, predictions, correct = evaluate_seeded(env, samples, items, runs, contexts, cfg.eval.batch_size, cost)
    add_intervals(rows, correct, [s.family for s in samples], cfg.eval.bootstrap, cfg.run.seed)

    result = {
        "meta": {
            **_meta(cfg, manifest_path, skipped, env_dir, env_id, methods, ratios, policy_dirs, samples, env),
            "skipped_media": skipped_media,
            "visual_tokens": _token_counts(items),
            "flops": None if cost is None else cost.meta(),
        },
        "results": rows,
        "predictions": predictions,
        "correct": correct,
    }
    paths = write_eval_report(result, out)
    log.info("wrote %s, %s, %s", paths["json"], paths["md"], paths["png"])
    return result


# --------------------------------------------------------------------------------------------- steps


def encode_samples(
    env: VideoEnv, env_id: str, samples: list[Sample], cfg: Config, env_dir: Path | None = None
) -> tuple[list[Sample], list[EvalItem], list[dict]]:
    """(samples, their visual tokens (data.features: cache, store or online) with prompts, skipped media): a
    sample whose video cannot be read is skipped and counted with data.skip_bad, else named in an error."""
    from tqdm.auto import tqdm

    from scorerl.data.manifest import usable_media
    from scorerl.envs.features import feature_source

    features = feature_source(cfg.data, env, env_dir, jitter=EVAL_JITTER, cache_id=env_id)
    tokens: dict[str, VisualTokens] = {}

    def load(sample):
        tokens[sample.id] = features.get(sample)

    samples, skipped = usable_media(tqdm(samples, desc="features", unit="sample", leave=False), load, cfg.data.skip_bad)
    if not samples:
        raise DataError("no sample left to evaluate: every video was unreadable (see the warnings above)")
    items = [EvalItem(id=s.id, visual=tokens[s.id], prompt=format_prompt(s, cfg.data.answer_format)) for s in samples]
    return samples, items, skipped


def policy_list(policy_dir) -> list[Path]:
    """--policy as a list of folders, one per training seed: None -> [], one path -> [it], a list -> as given.
    The same folder twice would count one seed twice and shrink the seed interval, so it is refused."""
    if policy_dir is None:
        return []
    paths = [Path(policy_dir)] if isinstance(policy_dir, (str, Path)) else [Path(p) for p in policy_dir]
    seen: dict[Path, Path] = {}
    for p in paths:
        key = p.expanduser().resolve()
        if key in seen:
            raise ConfigError(f"--policy: {p} is given twice (as {seen[key]}); each policy counts as one training seed")
        seen[key] = p
    return paths


def evaluate_runs(
    env: VideoEnv,
    samples: list[Sample],
    items: list[EvalItem],
    runs: list[tuple[str, float]],
    ctx: MethodContext,
    batch_size: int,
) -> tuple[list[dict], dict]:
    """Metrics rows (relative to the first run, `full`) and per-sample predictions for each (method, ratio), with
    one policy (ctx.policy); see evaluate_seeded for several."""
    rows, predictions, _ = evaluate_seeded(env, samples, items, runs, [ctx], batch_size)
    return rows, predictions


def evaluate_seeded(
    env: VideoEnv,
    samples: list[Sample],
    items: list[EvalItem],
    runs: list[tuple[str, float]],
    contexts: list[MethodContext],
    batch_size: int,
    cost: PrefillCost | None = None,
) -> tuple[list[dict], dict, dict]:
    """(rows, predictions, correct) for each (method, ratio). `score` runs once per context (one per trained
    policy, i.e. training seed) and its row pools them (pool_seeds); every other method runs once, with
    contexts[0]. predictions: a string of letters when every question is multiple choice, else a list (letters,
    and open-ended answers); key `method@ratio`, `score@ratio#k` for policy k when there are several.
    correct: `method@ratio` -> one '0'/'1' string per seed, a character per question. cost (prefill_cost): rows
    get `flops` and `flops_fraction` (of runs[0], `full`); None: they do not."""
    from tqdm.auto import tqdm

    batches = [list(range(i, min(i + batch_size, len(items)))) for i in range(0, len(items), batch_size)]
    per_run = [contexts if method == "score" else contexts[:1] for method, _ in runs]
    rows, predictions, correct = [], {}, {}
    with tqdm(total=sum(map(len, per_run)) * len(batches), desc="eval", unit="batch") as bar:
        for (method, rho), ctxs in zip(runs, per_run):
            key = f"{method}@{rho:g}"
            seeds = [_run_one(env, samples, items, batches, method, rho, c, bar, cost) for c in ctxs]
            rows.append(pool_seeds([row for row, _, _ in seeds]) if method == "score" else seeds[0][0])
            for k, (_, shown, _) in enumerate(seeds):
                predictions[key if len(seeds) == 1 else f"{key}#{k}"] = shown
            correct[key] = [stats.encode_bits(ok) for _, _, ok in seeds]
    full_acc = rows[0]["accuracy"]
    for row in rows:
        row["relative"] = row["accuracy"] / full_acc if full_acc > 0 else None
        if "flops" in row:
            row["flops_fraction"] = row["flops"] / rows[0]["flops"]
    return rows, predictions, correct


def _run_one(
    env: VideoEnv,
    samples: list[Sample],
    items: list[EvalItem],
    batches: list[list[int]],
    method: str,
    rho: float,
    ctx: MethodContext,
    bar,
    cost: PrefillCost | None = None,
) -> tuple[dict, object, list[bool]]:
    """(metrics row, predictions as stored, per-question correctness) of one method at one ratio, one policy."""
    pred: list = []
    kept: list[float] = []
    ce: list = []
    for idx in batches:
        bar.set_postfix_str(f"{method}@{rho:g}")
        p, k, c = answer_batch(env, [samples[i] for i in idx], [items[i] for i in idx], method, rho, ctx)
        pred, kept, ce = pred + p, kept + k, ce + c
        bar.update(1)
    correct = [is_correct(p, s) for p, s in zip(pred, samples)]
    row = summarise(method, rho, samples, pred, kept, ce, correct)
    if cost is not None:
        learned = ctx.policy if method == "score" else None  # its policy's cost is part of its prefill cost
        row = _insert_after(row, "kept_fraction", cost.row_fields(method, kept, learned))
    if method in LAYER_PRUNED:
        row["kept_from_layer"] = ctx.fastv_layer  # kept_fraction counts from this LLM layer on
    shown = [LETTERS[p] if isinstance(p, int) else p for p in pred]
    stored: str | list = "".join(shown) if all(isinstance(p, int) for p in pred) else shown
    return row, stored, correct


def pool_seeds(rows: list[dict]) -> dict:
    """One `score` row from its S per-seed rows (same ratio, same questions): accuracy, kept fraction, per-family
    accuracy and the open-ended metrics are means over the seeds (relative and intervals are added later);
    `seeds` lists each seed's accuracy and kept fraction, in meta.policies order. S = 1 gives the row itself."""

    def mean(values):
        return sum(values) / len(values)

    first = rows[0]
    pooled = {
        **first,
        "accuracy": mean([r["accuracy"] for r in rows]),
        "kept_fraction": mean([r["kept_fraction"] for r in rows]),
        "families": {
            f: {**v, "accuracy": mean([r["families"][f]["accuracy"] for r in rows])}
            for f, v in first["families"].items()
        },
    }
    for key in ("flops", "policy_flops"):  # the seeds' policies may differ in size
        if key in first:
            pooled[key] = mean([r[key] for r in rows])
    if "open_ended" in first:
        pooled["open_ended"] = {
            k: v if k == "n" else mean([r["open_ended"][k] for r in rows]) for k, v in first["open_ended"].items()
        }
    pooled["seeds"] = [{"accuracy": r["accuracy"], "kept_fraction": r["kept_fraction"]} for r in rows]
    return pooled


def add_intervals(rows: list[dict], correct: dict, families: list, resamples: int, seed: int) -> list[dict]:
    """Fill every row's `ci95` (and each family's) and add `diff_vs_full` (+ `_ci95`: method - full) to every row
    but full's, and `score_minus_method` (+ `_ci95`: score - method, positive when score is ahead) to the other
    methods' rows at a ratio where `score` ran. Differences are in accuracy (fraction), paired: both sides
    resampled on the same questions (eval/stats.py).
    rows[0] is `full`; correct: run key -> '0'/'1' strings (one per seed); families: each question's family (or
    None), in the same order. resamples = 0: intervals are None, point differences still given. Works on a
    loaded FILE.json too: add_intervals(r["results"], r["correct"], r["meta"]["sample_families"], B, seed)."""
    keys = [f"{r['method']}@{r['ratio']:g}" for r in rows]
    matrices = {k: stats.decode_bits(correct[k]) for k in keys}  # bool [n, S]
    draws = {k: stats.resampled_accuracies(m, resamples, seed) for k, m in matrices.items()} if resamples else {}

    def interval(values):
        return None if values is None else list(stats.percentile_interval(values))

    score_at = {r["ratio"]: k for r, k in zip(rows, keys) if r["method"] == "score"}
    questions_of: dict = {}  # family -> its questions' indices, the same for every row
    for i, f in enumerate(families):
        questions_of.setdefault(f, []).append(i)
    for row, key in zip(rows, keys):
        row["ci95"] = interval(draws.get(key))
        for fam, cell in row["families"].items():
            where = questions_of.get(fam, [])
            cell["ci95"] = list(stats.bootstrap_ci(matrices[key][where], resamples, seed)) if resamples else None
        # (field, minuend's key, subtrahend's key): method - full, and score - method (positive = score ahead)
        diffs = [("diff_vs_full", key, keys[0])] if row is not rows[0] else []
        if row["method"] not in ("score", "full") and row["ratio"] in score_at:
            diffs.append(("score_minus_method", score_at[row["ratio"]], key))
        for name, a, b in diffs:
            row[name] = round(rows[keys.index(a)]["accuracy"] - rows[keys.index(b)]["accuracy"], 9)
            row[f"{name}_ci95"] = interval(draws[a] - draws[b]) if resamples else None
    return rows


@dataclass(frozen=True)
class PrefillCost:
    """Each question's prefill FLOPs under each method, from token counts alone (scorerl/eval/flops.py; nothing
    runs): a method's prefill covers the question's `fixed` tokens (chat template, prompt, the visual suffix: every
    method passes them) plus the visual tokens it passes to the LLM: all for `full`; kept (+ merged) for the
    masking and merging methods; for `fastv` the layer-K rule (layers < K over every token). `score` adds its
    policy over all T*N tokens (TokenPolicy.flops). The training-free methods' selection is not counted
    (`fastv_input`'s ranking pass, layers < K over every token, included). One prefill per question: the prompt
    up to the answer position, without answer tokens (the option format's multi-token options add one forward per
    option, for every method alike)."""

    dims: LMDims
    fastv_layer: int
    visual: tuple[int, ...]  # T*N per question
    fixed: tuple[int, ...]  # text + suffix tokens per question

    def question_flops(self, method: str, kept: list[float]) -> list[float]:
        """Prefill FLOPs of each question (LLM only); kept: each question's kept fraction of its T*N tokens as the
        harness reports it (`fastv`: from layer K on)."""
        out = []
        for frac, visual, fixed in zip(kept, self.visual, self.fixed):
            tokens = round(frac * visual) + fixed  # kept fractions are counts / (T*N): exact again
            if method in LAYER_PRUNED:
                out.append(fastv_prefill_flops(self.dims, visual + fixed, tokens, self.fastv_layer)["total"])
            else:
                out.append(prefill_flops(self.dims, tokens)["total"])
        return out

    def row_fields(self, method: str, kept: list[float], policy=None) -> dict:
        """{"flops": mean per question, "flops_fraction": None (of full's, filled by evaluate_seeded)} and, with
        a policy (the learned method), "policy_flops": its mean per question (included in flops)."""
        flops = self.question_flops(method, kept)
        fields: dict = {}
        if policy is not None:
            fields["policy_flops"] = sum(policy.flops(v) for v in self.visual) / len(self.visual)
            flops = [f + policy.flops(v) for f, v in zip(flops, self.visual)]
        return {"flops": sum(flops) / len(flops), "flops_fraction": None, **fields}

    def meta(self) -> dict:
        """The report's meta.flops: the LLM sizes, fastv's K, the full prefill's mean FLOPs and what is counted."""
        full = self.question_flops("full", [1.0] * len(self.visual))
        return {
            "lm": self.dims.to_dict(),
            "fastv_layer": self.fastv_layer,
            "full_mean": sum(full) / len(full),
            "fixed_tokens": token_count_summary(self.fixed),  # text + visual suffix, per question
            "counted": "one prefill per question: its text tokens + the visual tokens the method passes to the LLM "
            "(fastv: layers < K over every token); score adds its policy over all T*N tokens; the training-free "
            "methods' selection cost is not counted",
        }


def prefill_cost(env: VideoEnv, items: list[EvalItem], fastv_layer: int) -> PrefillCost | None:
    """The PrefillCost of these questions, or None when the environment's LLM sizes or its text around the video
    cannot be read (an environment that is not a transformers model)."""
    config = getattr(getattr(env, "model", None), "config", None)
    if config is None:
        return None
    try:
        dims = lm_dims(config)
    except (AttributeError, TypeError, ValueError):
        return None
    visual, fixed = [], []
    for it in items:
        text = text_tokens(env, it)
        if text is None:
            return None
        T, N = it.visual.features.shape[:2]
        visual.append(int(T * N))
        fixed.append(text + (0 if it.visual.suffix is None else int(it.visual.suffix.shape[0])))
    return PrefillCost(dims=dims, fastv_layer=min(fastv_layer, dims.layers), visual=tuple(visual), fixed=tuple(fixed))


def text_tokens(env: VideoEnv, item: EvalItem) -> int | None:
    """The question's text tokens in the LLM's sequence (chat template + prompt, up to the answer position): the
    sequence the environment lays out (HFVideoEnv._layout, without a target) less its visual block; tokenizing
    only. None for an environment without a chat layout."""
    around = getattr(env, "text_around_video", None)
    tokenizer = getattr(env, "tokenizer", None)
    if around is None or tokenizer is None:
        return None
    before, after = around(item.prompt)
    return sum(len(tokenizer(t, add_special_tokens=False).input_ids) for t in (before, after))


def _insert_after(row: dict, key: str, fields: dict) -> dict:
    """row with `fields` placed right after `key` (the JSON reads in that order)."""
    out: dict = {}
    for k, v in row.items():
        out[k] = v
        if k == key:
            out.update(fields)
    return out


def is_correct(pred, sample: Sample) -> bool:
    """A multiple-choice answer is right when its index is the answer's; an open-ended one when it matches the
    reference after normalisation."""
    from scorerl.eval.answer import normalise_answer

    if sample.open_ended:
        return normalise_answer(pred) == normalise_answer(sample.answer)
    return pred == sample.answer_index


def answer_batch(
    env: VideoEnv, samples: list[Sample], items: list[EvalItem], method: str, rho: float, ctx: MethodContext
) -> tuple[list, list[float], list]:
    """(answer, kept fraction, answer CE) of each sample in one batch: multiple choice -> the predicted option's
    index from one batched prefill (CE None); open-ended -> the greedy answer text and the reference answer's CE.
    A method that prunes inside the LLM (fastv) is scored by its layer-pruned view of the environment, on every
    visual token at the input; its kept fraction is the one from layer K on. A merging method's requests carry
    its merged features in its anchors' rows; its kept fraction counts output tokens (kept + merged)."""
    scorer = env
    masks: Sequence[torch.Tensor | None]
    if method == "full":
        masks = [None] * len(items)  # None = every token, the environment's uncompressed path
    elif method in LAYER_PRUNED:
        masks = [None] * len(items)  # every token enters the LLM; the view drops them from layer K on
        scorer = layer_pruned_env(method, rho, ctx)
    elif is_merging(method):  # kept + merged tokens: the merges ride in their anchors' rows (merging.py)
        merges = method_merges(method, items, rho, ctx)
        masks = [m.keep for m in merges]
        items = [replace(it, visual=m.visual(it.visual)) for it, m in zip(items, merges)]
    else:
        masks = method_masks(method, items, rho, ctx)
    requests = [ScoreRequest(visual=it.visual, prompt=it.prompt, keep=m) for it, m in zip(items, masks)]
    closed = [i for i, s in enumerate(samples) if not s.open_ended]
    opened = [i for i, s in enumerate(samples) if s.open_ended]
    answers: list = [None] * len(samples)
    ce: list = [None] * len(samples)
    with torch.inference_mode():
        if closed:
            for i, p in zip(
                closed, predict(scorer, [requests[i] for i in closed], [samples[i] for i in closed], ctx.answer_format)
            ):
                answers[i] = p
        if opened:
            texts, losses = open_answers(scorer, [requests[i] for i in opened], [samples[i] for i in opened])
            for i, text, loss in zip(opened, texts, losses):
                answers[i], ce[i] = text, loss
    if method in LAYER_PRUNED:
        kept = [layer_pruned_kept(it, rho) for it in items]
    else:
        kept = [1.0 if m is None else float(m.sum()) / m.numel() for m in masks]
    return answers, kept, ce


def summarise(
    method: str,
    rho: float,
    samples: list[Sample],
    pred: list,
    kept: list[float],
    ce: list | None = None,
    correct: list[bool] | None = None,
) -> dict:
    """accuracy, n, kept_fraction and per-family accuracy of one (method, ratio); relative is added later.
    correct: each answer's is_correct, when the caller has it already (else computed here). Open-ended rows add
    exact match and the reference answer's mean CE."""
    if correct is None:
        correct = [is_correct(p, s) for p, s in zip(pred, samples)]
    families: dict[str, list[bool]] = {}
    for ok, s in zip(correct, samples):
        if s.family:
            families.setdefault(s.family, []).append(ok)
    n = len(correct)
    row = {
        "method": method,
        "ratio": rho,
        "accuracy": sum(correct) / n,
        "ci95": None,  # filled by add_intervals: it needs every run's correctness (paired differences)
        "relative": None,
        "n": n,
        "kept_fraction": sum(kept) / n,
        "families": {f: {"accuracy": sum(v) / len(v), "ci95": None, "n": len(v)} for f, v in sorted(families.items())},
    }
    opened = [i for i, s in enumerate(samples) if s.open_ended]
    if opened:
        if ce is None:
            raise ScoreRLError(f"summarise: {method} has open-ended samples, so it needs their answer CE (ce)")
        row["open_ended"] = {
            "n": len(opened),
            "exact_match": sum(pred[i].strip() == samples[i].answer.strip() for i in opened) / len(opened),
            "normalised_match": sum(correct[i] for i in opened) / len(opened),
            "answer_ce": sum(ce[i] for i in opened) / len(opened),
        }
    return row


# --------------------------------------------------------------------------------------------- identity, meta


def _env_dir(cfg: Config) -> Path:
    """The environment's checkpoint folder: env.path, or the folder a registered name stands for (the bare path
    when that does not resolve, e.g. for an in-memory environment)."""
    from scorerl.envs import resolve_env_path

    try:
        return resolve_env_path(cfg.env.path)
    except EnvError:
        return Path(cfg.env.path).expanduser()


def _check_fastv_layer(env: VideoEnv, k: int) -> None:
    """Fail before any evaluation, not halfway through it, when the LLM has fewer than K layers."""
    config = getattr(getattr(env, "model", None), "config", None)
    layers = getattr(getattr(config, "text_config", config), "num_hidden_layers", None)
    if layers is not None and k > layers:
        raise ConfigError(f"eval.fastv_layer: K={k} but the environment's LLM has only {layers} layers")


def _versions() -> dict:
    import transformers

    from scorerl.version import __version__

    return {"scorerl": __version__, "torch": torch.__version__, "transformers": transformers.__version__}


def _token_counts(items: list[EvalItem]) -> dict:
    """min / median / max visual tokens per sample (T x N, plus a suffix such as LLaVA-OneVision's newline)."""
    return token_count_summary(it.visual.token_count for it in items)


PROCESSOR_KEYS = (
    "processor_file",
    "pixels",
    "min_pixels",
    "max_pixels",
    "size",
    "cap_pixels_per_frame",
    "max_video_tokens",
)


def _processor_meta(settings: dict) -> dict:
    """The environment's resize settings (where they came from and their limits), for the results file."""
    return {k: settings[k] for k in PROCESSOR_KEYS if k in settings}


def _meta(
    cfg: Config,
    manifest_path: Path,
    skipped,
    env_dir: Path,
    env_id: str,
    methods,
    ratios,
    policy_dirs: list[Path],
    samples: list[Sample],
    env: VideoEnv | None = None,
) -> dict:
    """Everything a number depends on, so a results file names exactly what produced it."""
    return {
        "manifest": {"path": str(Path(manifest_path).resolve()), "sha256": manifest_hash(manifest_path)},
        "env": {
            "arch": cfg.env.arch,
            "path": str(env_dir),
            "fingerprint": env_id,
            "dtype": cfg.env.dtype,
            "device": cfg.env.device,
            "attn_implementation": cfg.env.attn_implementation,
        },
        "num_frames": cfg.data.num_frames,
        "frame_size": cfg.data.frame_size,
        "sampling": describe_sampling(cfg.data),  # rate or count, floor and cap, native/capped/square, positions
        "processor": _processor_meta(getattr(env, "settings", None) or {}) if env is not None else {},
        "answer_format": cfg.data.answer_format,
        "seed": cfg.run.seed,
        "methods": methods,
        "ratios": ratios,
        "batch_size": cfg.eval.batch_size,
        "limit": cfg.eval.limit,
        "fastv_layer": cfg.eval.fastv_layer,
        "policy": str(policy_dirs[0].resolve()) if policy_dirs else None,  # the first; all of them below
        "policies": [str(p.resolve()) for p in policy_dirs],  # one per training seed: `seeds` of score rows
        "bootstrap": {
            "resamples": cfg.eval.bootstrap,
            "seed": cfg.run.seed,
            "level": stats.LEVEL,
            "interval": "percentile",
            "over": "questions (and training seeds, for pooled rows)",
            "differences": "paired: both methods on the same resampled questions",
        },
        "versions": _versions(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "skipped": len(skipped),
        "skipped_lines": [{"line": line, "reason": reason} for line, reason in skipped],
        "sample_ids": [s.id for s in samples],
        "sample_families": [s.family for s in samples],  # per-family intervals can be recomputed from `correct`
    }
