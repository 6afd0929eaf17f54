"""Accuracy against prefill cost: every method's settings on an accuracy-vs-FLOPs plane, per fitted environment
and pooled over them, with paired comparisons to a reference method at matched FLOPs.

    .venv/bin/python scripts/frontier.py \\
        --env w1=runs/w1_eval.json,runs/w1_eval_k1.json,runs/w1_nbr.json \\
        --env w2=runs/w2_eval.json,runs/w2_eval_k1.json,runs/w2_nbr.json \\
        --rename '*_nbr.json:score=score_nbr' --reference score --out docs/results/frontier_v4

Inputs are `scorerl eval` reports (FILE.json): their rows' `flops_fraction` (mean prefill FLOPs per question over
`full`'s, eval/harness.py PrefillCost) and per-question correctness (`correct`, in `meta.sample_ids` order), from
which every interval here is recomputed with eval/stats.py's bootstrap (the same functions as the reports').

  --env NAME=R1.json,R2.json   one fitted environment: one or more reports over THE SAME questions (e.g. the main
                               eval of all methods, and one with eval.fastv_layer=1). Repeat once per environment.
  Labels (a method family)     `fastv` and `fastv_input` depend on the report's K (meta.fastv_layer): their rows
                               become `fastv (K=2)`, `fastv_input (K=1)`, so reports at two K never collide.
                               The harness has one learned method per report (`score`, pooled over the policies
                               given as training seeds), so another policy set (e.g. `score_nbr`) comes from its own
                               report, relabelled with --rename [GLOB:]OLD=NEW (GLOB: which reports, matched
                               against the path as given or its file name; none = every report). The same label and
                               ratio in two reports of one environment must have the same answers (`full`, or a
                               baseline evaluated twice: kept once); different answers are an error.
  --reference NAME             the method the others are compared with (default score); repeat for more (e.g.
                               --reference score --reference score_nbr). The first is highlighted in the plot.

Per environment and pooled over environments:
  settings    method, setting (ratio; K in the label), kept %, FLOPs % of full, accuracy [95% interval]; pooled:
              the mean over environments, its interval (each environment's questions, and seeds, resampled, the
              resampled accuracies averaged) and the spread (min - max over environments)
  frontier    each method family's points sorted by FLOPs; `*` marks the family's frontier (no point of the family
              is as cheap or cheaper and as accurate or more, one of them strictly)
  comparison  each non-reference setting at <= --max-flops (0.5) of full's FLOPs against the reference (a) at the
              reference setting whose FLOPs are nearest and (b) at the reference's accuracy linearly interpolated in
              FLOPs between its two neighbouring settings (per bootstrap resample, on the same resampled questions;
              none outside the reference's FLOPs range). reference - method [95% interval], * = excludes 0; verdict
              "reference ahead" / "level" / "behind" on (b) where it exists, else (a). Pooled: the per-environment
              differences averaged, resample by resample, and whether each environment's own verdict is the same.
Environments over the same questions are resampled together (the same question draws), others independently.

Writes OUT.json, OUT.md, OUT.png (accuracy vs FLOPs %, log x: one panel per environment and one of the pooled mean
with its spread as a band) and prints the pooled tables.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scorerl.eval import stats  # noqa: E402

K_DEPENDENT = ("fastv", "fastv_input")  # methods whose ranking reads LLM layer K: labelled with their K
MAX_FLOPS = 0.5
VERDICTS = ("reference ahead", "level", "behind")


# --------------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Rename:
    """OLD -> NEW for the rows of the reports whose path (as given) or file name matches `pattern` (None: all)."""

    old: str
    new: str
    pattern: str | None = None

    def applies_to(self, path: str) -> bool:
        return self.pattern is None or any(fnmatch.fnmatch(p, self.pattern) for p in (path, Path(path).name))


def parse_rename(text: str) -> Rename:
    """'[GLOB:]OLD=NEW' -> Rename."""
    lhs, sep, new = text.partition("=")
    if not sep or not lhs or not new:
        raise ValueError(f"--rename {text!r}: expected [GLOB:]OLD=NEW")
    pattern, _, old = lhs.rpartition(":")
    return Rename(old=old, new=new, pattern=pattern or None)


def parse_env(text: str) -> tuple[str, list[str]]:
    """'NAME=R1.json,R2.json' -> (NAME, [R1.json, R2.json])."""
    name, sep, paths = text.partition("=")
    files = [p for p in paths.split(",") if p]
    if not sep or not name or not files:
        raise ValueError(f"--env {text!r}: expected NAME=REPORT.json[,REPORT.json...]")
    return name, files


def method_label(method: str, fastv_layer: int | None, renames: Sequence[Rename]) -> str:
    """The row's family name: `fastv (K=2)` for a K-dependent method, then any rename of it (by its original or
    its K-labelled name)."""
    label = f"{method} (K={fastv_layer})" if method in K_DEPENDENT and fastv_layer is not None else method
    for r in renames:
        if r.old in (method, label):
            label = r.new
    return label


@dataclass
class Setting:
    """One (method family, ratio) of one environment: its cost and per-question correctness (bool [n, S])."""

    method: str
    ratio: float
    fastv_layer: int | None
    kept_fraction: float
    flops_fraction: float
    correct: np.ndarray
    source: str

    @property
    def key(self) -> tuple[str, float]:
        return (self.method, self.ratio)

    @property
    def seeds(self) -> int:
        return int(self.correct.shape[1])


@dataclass
class EnvData:
    name: str
    sample_ids: list[str]
    settings: dict[tuple[str, float], Setting] = field(default_factory=dict)
    reports: list[dict] = field(default_factory=list)


def env_from_reports(name: str, reports: list[tuple[str, dict]], renames: Sequence[Rename] = ()) -> EnvData:
    """One environment from its reports [(path, FILE.json dict)]: every row relabelled (method_label), its
    correctness put in the first report's question order. ValueError when the reports are not over the same
    questions or environment, a row has no FLOPs, or one label and ratio has two different sets of answers."""
    if not reports:
        raise ValueError(f"environment {name}: no report")
    env: EnvData | None = None
    fingerprint = None
    for path, report in reports:
        meta = report.get("meta") or {}
        ids = meta.get("sample_ids")
        if not ids or "correct" not in report:
            raise ValueError(f"{path}: no per-question correctness (meta.sample_ids, correct); re-run scorerl eval")
        this_fp = (meta.get("env") or {}).get("fingerprint")
        if env is None:
            env, fingerprint = EnvData(name=name, sample_ids=list(ids)), this_fp
        elif sorted(ids) != sorted(env.sample_ids):
            raise ValueError(f"{path}: not the questions of {reports[0][0]} (environment {name})")
        elif fingerprint and this_fp and this_fp != fingerprint:
            raise ValueError(f"{path}: environment {this_fp}, but {reports[0][0]} is of {fingerprint} ({name})")
        order = _order(ids, env.sample_ids)
        mine = [r for r in renames if r.applies_to(path)]
        labels = []
        for row in report["results"]:
            if row.get("flops_fraction") is None:
                raise ValueError(
                    f"{path}: row {row['method']}@{row['ratio']:g} has no flops_fraction (a report written before "
                    f"eval rows carried their prefill FLOPs, or of an environment without LLM sizes): re-run "
                    f"scorerl eval"
                )
            k = row.get("kept_from_layer", meta.get("fastv_layer")) if row["method"] in K_DEPENDENT else None
            label = method_label(row["method"], k, mine)
            correct = stats.decode_bits(report["correct"][f"{row['method']}@{row['ratio']:g}"])[order]
            setting = Setting(label, float(row["ratio"]), k, row["kept_fraction"], row["flops_fraction"], correct, path)
            labels.append(label)
            seen = env.settings.get(setting.key)
            if seen is None:
                env.settings[setting.key] = setting
            elif seen.correct.shape != correct.shape or not np.array_equal(seen.correct, correct):
                raise ValueError(
                    f"environment {name}: {label}@{setting.ratio:g} is in {seen.source} and {path} with different "
                    f"answers; tell them apart with --rename '{Path(path).name}:{row['method']}=NEW'"
                )
        env.reports.append({"path": path, "fastv_layer": meta.get("fastv_layer"), "labels": sorted(set(labels))})
    assert env is not None
    return env


def _order(ids: list[str], target: list[str]) -> np.ndarray:
    """Indices that put a report's questions (ids) in target's order."""
    where = {sid: i for i, sid in enumerate(ids)}
    return np.array([where[sid] for sid in target], dtype=np.int64)


def align_envs(envs: list[EnvData], seed: int) -> list[int]:
    """Each environment's bootstrap seed: environments over the first one's questions are put in its order and
    share its seed (the same question draws: resampled together); the others get their own (seed + index)."""
    seeds = []
    for i, env in enumerate(envs):
        if sorted(env.sample_ids) == sorted(envs[0].sample_ids):
            order = _order(env.sample_ids, envs[0].sample_ids)
            for s in env.settings.values():
                s.correct = s.correct[order]
            env.sample_ids = list(envs[0].sample_ids)
            seeds.append(seed)
        else:
            seeds.append(seed + i)
    return seeds


# --------------------------------------------------------------------------------------------- statistics


def resample(env: EnvData, resamples: int, seed: int) -> dict[tuple[str, float], np.ndarray]:
    """Each setting's accuracy on `resamples` bootstrap resamples; the same questions in resample b for every
    setting (stats.resampled_accuracies), seeds resampled too where a row pools several."""
    if resamples <= 0:
        return {}
    return {k: stats.resampled_accuracies(s.correct, resamples, seed) for k, s in env.settings.items()}


def _interval(values: np.ndarray | None) -> list[float] | None:
    return None if values is None else list(stats.percentile_interval(values))


def _excludes_zero(ci: list[float] | None) -> bool:
    return ci is not None and (ci[0] > 0 or ci[1] < 0)


def verdict(ci: list[float] | None) -> str | None:
    """reference - method's interval -> "reference ahead" (above 0), "behind" (below 0), "level"; None without."""
    if ci is None:
        return None
    return "reference ahead" if ci[0] > 0 else "behind" if ci[1] < 0 else "level"


def settings_table(env: EnvData, draws: dict) -> list[dict]:
    """One record per setting, sorted by method then FLOPs: its cost, accuracy and 95% interval."""
    out = []
    order = {m: i for i, m in enumerate(dict.fromkeys(m for m, _ in env.settings))}  # the reports' method order
    for s in sorted(env.settings.values(), key=lambda s: (order[s.method], s.flops_fraction)):
        out.append(
            {
                "method": s.method,
                "ratio": s.ratio,
                "fastv_layer": s.fastv_layer,
                "seeds": s.seeds,
                "kept_fraction": s.kept_fraction,
                "flops_fraction": s.flops_fraction,
                "accuracy": round(stats.accuracy(s.correct), 9),
                "ci95": _interval(draws.get(s.key)),
                "source": s.source,
            }
        )
    return out


def frontiers(points: list[dict]) -> dict[str, list[dict]]:
    """method family -> its points sorted by FLOPs, each {ratio, flops_fraction, accuracy, on_frontier}: on the
    family's frontier when no other point of it costs no more and is no less accurate, one of them strictly."""
    out: dict[str, list[dict]] = {}
    for method in dict.fromkeys(p["method"] for p in points):
        mine = sorted((p for p in points if p["method"] == method), key=lambda p: (p["flops_fraction"], p["ratio"]))
        out[method] = [
            {
                "ratio": p["ratio"],
                "flops_fraction": p["flops_fraction"],
                "accuracy": p["accuracy"],
                "on_frontier": not any(_dominates(q, p) for q in mine if q is not p),
            }
            for p in mine
        ]
    return out


def _dominates(q: dict, p: dict) -> bool:
    cheaper, better = q["flops_fraction"] <= p["flops_fraction"], q["accuracy"] >= p["accuracy"]
    return cheaper and better and (q["flops_fraction"] < p["flops_fraction"] or q["accuracy"] > p["accuracy"])


def nearest(reference: list[Setting], flops: float) -> Setting:
    """The reference setting whose FLOPs are nearest `flops` (a tie: the cheaper one)."""
    return min(reference, key=lambda s: (abs(s.flops_fraction - flops), s.flops_fraction))


def interpolation(reference: list[Setting], flops: float) -> tuple[Setting, Setting, float] | None:
    """(lower neighbour, upper neighbour, weight of the upper) of the reference settings around `flops`, for
    accuracy = (1 - w) acc(lower) + w acc(upper); None outside the reference's FLOPs range (no extrapolation)."""
    ordered = sorted(reference, key=lambda s: s.flops_fraction)
    if not ordered or not ordered[0].flops_fraction <= flops <= ordered[-1].flops_fraction:
        return None
    for lo, hi in zip(ordered, ordered[1:]):
        if lo.flops_fraction <= flops <= hi.flops_fraction:
            span = hi.flops_fraction - lo.flops_fraction
            return lo, hi, 0.0 if span == 0 else (flops - lo.flops_fraction) / span
    return ordered[0], ordered[0], 0.0  # one reference setting, at exactly these FLOPs


@dataclass
class Comparison:
    """reference - method at matched FLOPs in one environment; *_draws: the difference per bootstrap resample."""

    record: dict
    nearest_draws: np.ndarray | None
    interp_draws: np.ndarray | None


def compare(env: EnvData, draws: dict, reference: str, max_flops: float = MAX_FLOPS) -> list[Comparison]:
    """Every setting of another method at <= max_flops of full's FLOPs against `reference`: at its nearest-FLOPs
    setting and at its accuracy interpolated at the setting's FLOPs (module doc)."""
    ref = [s for s in env.settings.values() if s.method == reference]
    if not ref:
        raise ValueError(f"environment {env.name}: no rows of the reference method {reference!r}")
    acc = {k: stats.accuracy(s.correct) for k, s in env.settings.items()}
    out = []
    others = [s for s in env.settings.values() if s.method != reference and s.flops_fraction <= max_flops]
    order = {m: i for i, m in enumerate(dict.fromkeys(m for m, _ in env.settings))}
    for s in sorted(others, key=lambda s: (order[s.method], s.flops_fraction)):
        near = nearest(ref, s.flops_fraction)
        near_draws = draws[near.key] - draws[s.key] if draws else None
        near_ci = _interval(near_draws)
        record: dict = {
            "method": s.method,
            "ratio": s.ratio,
            "fastv_layer": s.fastv_layer,
            "flops_fraction": s.flops_fraction,
            "accuracy": round(acc[s.key], 9),
            "nearest": {
                "ratio": near.ratio,
                "flops_fraction": near.flops_fraction,
                "accuracy": round(acc[near.key], 9),
                "reference_minus_method": round(acc[near.key] - acc[s.key], 9),
                "ci95": near_ci,
                "excludes_zero": _excludes_zero(near_ci),
            },
            "interpolated": None,
        }
        interp_draws = None
        between = interpolation(ref, s.flops_fraction)
        if between is not None:
            lo, hi, w = between
            ref_acc = (1 - w) * acc[lo.key] + w * acc[hi.key]
            if draws:
                interp_draws = (1 - w) * draws[lo.key] + w * draws[hi.key] - draws[s.key]
            ci = _interval(interp_draws)
            record["interpolated"] = {
                "between": [{"ratio": x.ratio, "flops_fraction": x.flops_fraction} for x in (lo, hi)],
                "weight": round(w, 9),
                "accuracy": round(ref_acc, 9),
                "reference_minus_method": round(ref_acc - acc[s.key], 9),
                "ci95": ci,
                "excludes_zero": _excludes_zero(ci),
            }
        basis = "interpolated" if record["interpolated"] else "nearest"
        record["basis"] = basis
        record["verdict"] = verdict(record[basis]["ci95"])
        out.append(Comparison(record, near_draws, interp_draws))
    return out


# --------------------------------------------------------------------------------------------- pooling


def pool_settings(envs: list[EnvData], draws: list[dict]) -> tuple[list[dict], list[str]]:
    """Settings present in every environment: mean accuracy over environments, its interval (the environments'
    resampled accuracies averaged resample by resample), spread (min, max) and each one's accuracy; and the
    labels of settings left out (missing in some environment)."""
    keys = [k for k in envs[0].settings if all(k in e.settings for e in envs)]
    left_out = sorted({f"{m}@{r:g}" for e in envs for (m, r) in e.settings if (m, r) not in keys})
    out = []
    order = {m: i for i, m in enumerate(dict.fromkeys(m for m, _ in keys))}
    for key in sorted(keys, key=lambda k: (order[k[0]], _mean([e.settings[k].flops_fraction for e in envs]))):
        per_env = {e.name: stats.accuracy(e.settings[key].correct) for e in envs}
        first = envs[0].settings[key]
        out.append(
            {
                "method": key[0],
                "ratio": key[1],
                "fastv_layer": first.fastv_layer,
                "seeds": max(e.settings[key].seeds for e in envs),
                "kept_fraction": _mean([e.settings[key].kept_fraction for e in envs]),
                "flops_fraction": _mean([e.settings[key].flops_fraction for e in envs]),
                "accuracy": round(_mean(list(per_env.values())), 9),
                "ci95": _interval(np.mean([d[key] for d in draws], axis=0)) if all(draws) else None,
                "min": round(min(per_env.values()), 9),
                "max": round(max(per_env.values()), 9),
                "per_env": {k: round(v, 9) for k, v in per_env.items()},
            }
        )
    return out, left_out


def pool_comparisons(names: list[str], per_env: list[list[Comparison]]) -> list[dict]:
    """Comparisons of the settings compared in every environment: differences averaged over environments (and
    their resamples, resample by resample); each environment's verdict and whether all of them agree with the
    pooled one."""
    index = [{(c.record["method"], c.record["ratio"]): c for c in comps} for comps in per_env]
    out = []
    for key in [k for k in index[0] if all(k in ix for ix in index)]:
        cs = [ix[key] for ix in index]
        recs = [c.record for c in cs]
        near_draws = _mean_draws([c.nearest_draws for c in cs])
        near_ci = _interval(near_draws)
        ratios = {r["nearest"]["ratio"] for r in recs}
        record: dict = {
            "method": key[0],
            "ratio": key[1],
            "fastv_layer": recs[0]["fastv_layer"],
            "flops_fraction": _mean([r["flops_fraction"] for r in recs]),
            "accuracy": round(_mean([r["accuracy"] for r in recs]), 9),
            "nearest": {
                "ratio": ratios.pop() if len(ratios) == 1 else None,  # None: not the same setting everywhere
                "ratio_per_env": {n: r["nearest"]["ratio"] for n, r in zip(names, recs)},
                "flops_fraction": _mean([r["nearest"]["flops_fraction"] for r in recs]),
                "accuracy": round(_mean([r["nearest"]["accuracy"] for r in recs]), 9),
                "reference_minus_method": round(_mean([r["nearest"]["reference_minus_method"] for r in recs]), 9),
                "ci95": near_ci,
                "excludes_zero": _excludes_zero(near_ci),
            },
            "interpolated": None,
        }
        if all(r["interpolated"] for r in recs):
            interp_draws = _mean_draws([c.interp_draws for c in cs])
            ci = _interval(interp_draws)
            record["interpolated"] = {
                "accuracy": round(_mean([r["interpolated"]["accuracy"] for r in recs]), 9),
                "reference_minus_method": round(_mean([r["interpolated"]["reference_minus_method"] for r in recs]), 9),
                "ci95": ci,
                "excludes_zero": _excludes_zero(ci),
            }
        basis = "interpolated" if record["interpolated"] else "nearest"
        record["basis"] = basis
        record["verdict"] = verdict(record[basis]["ci95"])
        # Each environment's own verdict on the same basis (interpolated where every environment has it).
        record["per_env"] = {n: verdict((r[basis] or {}).get("ci95")) for n, r in zip(names, recs)}
        record["holds_on_every_env"] = record["verdict"] is not None and all(
            v == record["verdict"] for v in record["per_env"].values()
        )
        out.append(record)
    return out


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _mean_draws(draws: list[np.ndarray | None]) -> np.ndarray | None:
    present = [d for d in draws if d is not None]
    return np.mean(present, axis=0) if present and len(present) == len(draws) else None


# --------------------------------------------------------------------------------------------- the whole analysis


def analyse(
    envs: list[EnvData],
    references: list[str],
    resamples: int = stats.DEFAULT_RESAMPLES,
    seed: int = 0,
    max_flops: float = MAX_FLOPS,
    exclude: Sequence[str] = (),
) -> dict:
    """The frontier result (JSON-able): per environment and pooled, settings, frontiers and comparisons."""
    if not envs:
        raise ValueError("no environment")
    names = [e.name for e in envs]
    if len(set(names)) != len(names):
        raise ValueError(f"environment names must differ: {names}")
    for e in envs:
        e.settings = {k: s for k, s in e.settings.items() if s.method not in exclude}
    boot_seeds = align_envs(envs, seed)
    draws = [resample(e, resamples, s) for e, s in zip(envs, boot_seeds)]
    result: dict = {
        "meta": {
            "references": references,
            "max_flops": max_flops,
            "bootstrap": {
                "resamples": resamples,
                "seed": seed,
                "level": stats.LEVEL,
                "interval": "percentile",
                "over": "questions (and training seeds, for pooled rows), within each environment",
                "differences": "paired: reference and method on the same resampled questions",
                "environments": {
                    e.name: "resampled with the first's question draws" if s == seed else f"own draws (seed {s})"
                    for e, s in zip(envs, boot_seeds)
                },
            },
            "flops": "each report's flops_fraction: mean prefill FLOPs per question over full's on the same "
            "questions (scorerl eval; learned rows include their policy; the training-free methods' selection "
            "cost is not counted)",
        },
        "envs": {},
    }
    per_env_comparisons: dict[str, list[list[Comparison]]] = {r: [] for r in references}
    for env, d in zip(envs, draws):
        settings = settings_table(env, d)
        comps = {r: compare(env, d, r, max_flops) for r in references}
        for r in references:
            per_env_comparisons[r].append(comps[r])
        result["envs"][env.name] = {
            "n": len(env.sample_ids),
            "reports": env.reports,
            "settings": settings,
            "frontier": frontiers(settings),
            "comparisons": {r: [c.record for c in cs] for r, cs in comps.items()},
        }
    pooled, left_out = pool_settings(envs, draws)
    result["pooled"] = {
        "envs": names,
        "settings": pooled,
        "left_out": left_out,
        "frontier": frontiers(pooled),
        "comparisons": {r: pool_comparisons(names, per_env_comparisons[r]) for r in references},
    }
    return result


def load_envs(specs: list[str], renames: Sequence[Rename]) -> list[EnvData]:
    """--env specs -> EnvData, reading each report file."""
    out = []
    for spec in specs:
        name, paths = parse_env(spec)
        reports = [(p, json.loads(Path(p).expanduser().read_text())) for p in paths]
        out.append(env_from_reports(name, reports, renames))
    return out


# --------------------------------------------------------------------------------------------- views


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


def _ci(ci: list[float] | None) -> str:
    return "" if not ci else f" [{_pct(ci[0])}, {_pct(ci[1])}]"


def _signed(x: float, ci: list[float] | None) -> str:
    star = "*" if _excludes_zero(ci) else ""
    return f"{'+' if x > 0 else ''}{100 * x:.1f}{_ci(ci)}{star}"


def _setting(rec: dict) -> str:
    """'ratio 0.1', and the K of a K-dependent method: 'ratio 0.1, K=1'."""
    return f"ratio {rec['ratio']:g}" + ("" if rec.get("fastv_layer") is None else f", K={rec['fastv_layer']}")


def _label(rec: dict) -> str:
    return f"{rec['method']} ({rec['seeds']} seeds)" if rec.get("seeds", 1) > 1 else rec["method"]


def settings_markdown(rows: list[dict], pooled: bool = False) -> list[str]:
    head = "| method | setting | kept % | FLOPs % of full | accuracy % [95% interval] |"
    if pooled:
        head += " spread (min - max) | per environment |"
    lines = [head, "|---" * head.count(" | ") + "|---|"]
    for r in rows:
        line = (
            f"| {_label(r)} | {_setting(r)} | {_pct(r['kept_fraction'])} | {_pct(r['flops_fraction'])} | "
            f"{_pct(r['accuracy'])}{_ci(r['ci95'])} |"
        )
        if pooled:
            each = ", ".join(_pct(v) for v in r["per_env"].values())
            line += f" {_pct(r['min'])} - {_pct(r['max'])} | {each} |"
        lines.append(line)
    return lines


def frontier_markdown(frontier: dict[str, list[dict]]) -> list[str]:
    lines = ["| method | points: FLOPs % -> accuracy % (ratio), sorted by FLOPs; * = on the family's frontier |"]
    lines.append("|---|---|")
    for method, points in frontier.items():
        cells = [
            f"{_pct(p['flops_fraction'])} -> {_pct(p['accuracy'])} ({p['ratio']:g}){'*' if p['on_frontier'] else ''}"
            for p in points
        ]
        lines.append(f"| {method} | " + "; ".join(cells) + " |")
    return lines


def comparison_markdown(reference: str, records: list[dict], max_flops: float, pooled: bool = False) -> list[str]:
    if not records:
        return [f"No setting of another method at <= {_pct(max_flops)}% of full's FLOPs."]
    head = (
        f"| method | setting | FLOPs % | nearest `{reference}` (FLOPs %) | {reference} - method [95%] | "
        f"{reference} interpolated at these FLOPs - method [95%] | verdict |"
    )
    if pooled:
        head += " per environment | holds on every environment |"
    lines = [head, "|---" * head.count(" | ") + "|---|"]
    for r in records:
        near = r["nearest"]
        which = f"ratio {near['ratio']:g}" if near["ratio"] is not None else "differs"
        interp = r["interpolated"]
        interp_cell = "n/a (outside its FLOPs range)"
        if interp:
            interp_cell = _signed(interp["reference_minus_method"], interp["ci95"])
        verdict_cell = f"{r['verdict'] or 'n/a'}" + (" (nearest)" if r["basis"] == "nearest" else "")
        line = (
            f"| {r['method']} | {_setting(r)} | {_pct(r['flops_fraction'])} | {which} "
            f"({_pct(near['flops_fraction'])}) | {_signed(near['reference_minus_method'], near['ci95'])} | "
            f"{interp_cell} | {verdict_cell} |"
        )
        if pooled:
            each = ", ".join(f"{n}: {v or 'n/a'}" for n, v in r["per_env"].items())
            line += f" {each} | {'yes' if r['holds_on_every_env'] else 'no'} |"
        lines.append(line)
    return lines


def pooled_markdown(result: dict) -> list[str]:
    """The pooled section (also what the script prints)."""
    meta, pooled = result["meta"], result["pooled"]
    lines = [
        f"## Pooled over {len(pooled['envs'])} environment{'s' if len(pooled['envs']) > 1 else ''} "
        f"({', '.join(pooled['envs'])}): mean across environments",
        "",
    ]
    lines += settings_markdown(pooled["settings"], pooled=True)
    if pooled["left_out"]:
        lines += ["", f"Not in every environment (left out of the pooled tables): {', '.join(pooled['left_out'])}."]
    lines += ["", "### Frontier per method family", ""] + frontier_markdown(pooled["frontier"])
    for ref in meta["references"]:
        lines += ["", f"### `{ref}` - method at matched FLOPs (positive = `{ref}` ahead; * = excludes 0)", ""]
        lines += comparison_markdown(ref, pooled["comparisons"][ref], meta["max_flops"], pooled=True)
    return lines


def frontier_md(result: dict) -> str:
    meta = result["meta"]
    boot = meta["bootstrap"]
    lines = ["# Accuracy against prefill FLOPs", ""]
    envs = [
        f"`{name}` ({e['n']} questions; " + ", ".join(f"`{Path(r['path']).name}`" for r in e["reports"]) + ")"
        for name, e in result["envs"].items()
    ]
    lines.append("Environments: " + "; ".join(envs) + ".")
    lines += [
        "",
        f"FLOPs %: each report's mean prefill FLOPs per question over `full`'s on the same questions (learned rows "
        f"include their policy; the training-free methods' selection cost is not counted). Accuracy [lo, hi]: 95% "
        f"percentile bootstrap over the questions (and training seeds where a row pools several), "
        f"{boot['resamples']} resamples, seed {boot['seed']}; pooled rows average the environments' resampled "
        f"accuracies. Differences are paired (the same resampled questions). Matched FLOPs: each other setting at "
        f"<= {_pct(meta['max_flops'])}% of full's FLOPs against the reference's setting with the nearest FLOPs, and "
        f"against the reference's accuracy interpolated linearly in FLOPs between its two neighbouring settings "
        f"(per resample); the verdict reads the interpolated difference, or the nearest one (marked) outside the "
        f"reference's FLOPs range.",
        "",
    ]
    lines += pooled_markdown(result)
    for name, e in result["envs"].items():
        lines += ["", f"## Environment `{name}`", ""] + settings_markdown(e["settings"])
        lines += ["", "### Frontier per method family", ""] + frontier_markdown(e["frontier"])
        for ref in meta["references"]:
            lines += ["", f"### `{ref}` - method at matched FLOPs (positive = `{ref}` ahead; * = excludes 0)", ""]
            lines += comparison_markdown(ref, e["comparisons"][ref], meta["max_flops"])
    return "\n".join(lines) + "\n"


def frontier_plot(result: dict, path: str | Path) -> Path:
    """Accuracy vs FLOPs % (log x): a panel per environment (95% intervals as error bars) and, with several, one
    of the pooled mean (spread min - max as a band, pooled interval as error bars); references drawn thick."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    refs = result["meta"]["references"]
    panels = [(f"environment {n}", e["settings"], False) for n, e in result["envs"].items()]
    if len(panels) > 1:
        panels.append((f"pooled over {len(panels)} environments (band: min - max)", result["pooled"]["settings"], True))
    methods = list(dict.fromkeys(r["method"] for _, rows, _ in panels for r in rows))
    palette = [f"C{i}" for i in range(10) if i != 3] + ["olive", "teal", "navy", "maroon", "gold", "indigo"]  # C3: red
    others = [m for m in methods if m not in refs and m != "full"]
    colour = {m: palette[i % len(palette)] for i, m in enumerate(others)}
    colour.update({m: c for m, c in zip(refs, ["crimson", "black", "darkgreen", "darkorange"])}, full="dimgray")
    cols = min(len(panels), 3)
    rows_n = (len(panels) + cols - 1) // cols
    fig = Figure(figsize=(6.0 * cols, 4.6 * rows_n), dpi=110)
    FigureCanvasAgg(fig)
    for i, (title, rows, band) in enumerate(panels):
        ax = fig.add_subplot(rows_n, cols, i + 1)
        for m in methods:
            mine = sorted((r for r in rows if r["method"] == m), key=lambda r: r["flops_fraction"])
            if not mine:
                continue
            x = [100 * r["flops_fraction"] for r in mine]
            y = [100 * r["accuracy"] for r in mine]
            lead = m == refs[0]
            if all(r["ci95"] for r in mine):
                err = [
                    [yy - 100 * r["ci95"][0] for yy, r in zip(y, mine)],
                    [100 * r["ci95"][1] - yy for yy, r in zip(y, mine)],
                ]
            else:
                err = None
            ax.errorbar(
                x,
                y,
                yerr=err,
                marker="*" if m == "full" else "o",
                markersize=9 if lead or m == "full" else 4,
                capsize=2,
                elinewidth=0.9,
                color=colour[m],
                label=m,
                alpha=1.0 if m in refs else 0.85,
                linewidth=2.6 if m in refs else 1.1,
                zorder=5 if m in refs else 2,
            )
            if band:
                ax.fill_between(
                    x,
                    [100 * r["min"] for r in mine],
                    [100 * r["max"] for r in mine],
                    color=colour[m],
                    alpha=0.12,
                    linewidth=0,
                )
        ax.set_xscale("log")
        xs = [100 * r["flops_fraction"] for r in rows]
        ticks = [
            t
            for t in (0.5, 1, 2, 3, 5, 7, 10, 15, 20, 30, 40, 50, 60, 70, 80, 100)
            if min(xs) / 1.2 <= t <= max(xs) * 1.2
        ]
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}%"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("prefill FLOPs, % of full (log)")
        ax.set_ylabel("accuracy (%), 95% interval")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.25)
        if i == 0:
            ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, format="png")
    return path


def write_outputs(result: dict, out: str | Path) -> dict[str, Path]:
    from scorerl.eval.report import output_paths, write_json
    from scorerl.io import atomic

    paths = output_paths(out)
    paths["json"].parent.mkdir(parents=True, exist_ok=True)
    write_json(result, paths["json"])
    atomic.write_text(paths["md"], frontier_md(result))
    atomic.write_with(paths["png"], lambda tmp: frontier_plot(result, tmp))
    return paths


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    p.add_argument("--env", action="append", required=True, metavar="NAME=R1.json[,R2.json...]")
    p.add_argument("--reference", action="append", metavar="METHOD", help="default: score; repeat or comma-list")
    p.add_argument("--rename", action="append", default=[], metavar="[GLOB:]OLD=NEW")
    p.add_argument("--exclude", action="append", default=[], metavar="METHOD", help="a label to leave out")
    p.add_argument("--max-flops", type=float, default=MAX_FLOPS, help="compare settings at <= this FLOPs fraction")
    p.add_argument("--resamples", type=int, default=stats.DEFAULT_RESAMPLES)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="OUT -> OUT.json, OUT.md, OUT.png")
    args = p.parse_args(argv)
    references = [r for spec in (args.reference or ["score"]) for r in spec.split(",") if r]
    try:
        envs = load_envs(args.env, [parse_rename(r) for r in args.rename])
        result = analyse(envs, references, args.resamples, args.seed, args.max_flops, args.exclude)
    except ValueError as e:
        p.error(str(e))
    paths = write_outputs(result, args.out)
    print("\n".join(pooled_markdown(result)))
    print(f"\nwrote {paths['json']}, {paths['md']}, {paths['png']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
