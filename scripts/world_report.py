"""Report on the built-in world's fitted reward environment: is it competent, and does it need the right tokens?

    .venv/bin/python scripts/world_report.py                         # env in $SCORERL_HOME/world_env
    .venv/bin/python scripts/world_report.py --env PATH --config configs/world/env.yaml --md report.md

Runs the project's evaluation harness (the same code as `scorerl eval`, on cached features) on the eval manifest
(world:test) with: all tokens; `uniform` and `random` at every ratio of --ratios (random at several ratios is the
random-dropout curve). Writes the harness's JSON (+ its .md/.png) next to --json and a markdown report to --md
that also quotes the fit's own record (fit.json: settings, wall time).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CURVE = [0.05, 0.1, 0.25, 0.5]
TARGET_RATIO = 0.1


def main(argv: list[str] | None = None) -> int:
    from scorerl.config import load_config
    from scorerl.eval.harness import run_eval
    from scorerl.world.paths import world_env_dir

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(ROOT / "configs" / "world" / "env.yaml"))
    p.add_argument("--env", default=None, help="fitted environment folder (default: the world's)")
    p.add_argument("--ratios", default=",".join(map(str, CURVE)), help="comma-separated keep ratios")
    p.add_argument("--json", default=str(ROOT / "runs" / "world_report" / "world_eval.json"))
    p.add_argument(
        "--md",
        default=str(ROOT / "runs" / "world_report" / "world_report.md"),
        help="markdown report (docs/world.md quotes its figures; it is not overwritten by default)",
    )
    p.add_argument("--limit", type=int, default=0, help="evaluate only the first N samples (0 = all)")
    args = p.parse_args(argv)

    env_dir = Path(args.env).expanduser() if args.env else world_env_dir()
    cfg = load_config(args.config)
    cfg.env.path = str(env_dir)
    cfg.eval.methods = ["full", "uniform", "random"]
    cfg.eval.ratios = sorted({float(r) for r in args.ratios.split(",") if r.strip()})
    cfg.eval.limit = args.limit
    cfg.eval.batch_size = 64
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    result = run_eval(cfg, out=args.json)
    fit_record = json.loads((env_dir / "fit.json").read_text()) if (env_dir / "fit.json").is_file() else None
    md = report_markdown(result, fit_record)
    Path(args.md).parent.mkdir(parents=True, exist_ok=True)
    Path(args.md).write_text(md)
    print(md)
    return 0


# --------------------------------------------------------------------------------------------- markdown


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _pct_ci(x, ci) -> str:
    """accuracy % [95% bootstrap interval] (the harness's `ci95`; none when eval.bootstrap is 0)."""
    return _pct(x) if x is None or not ci else f"{_pct(x)} [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def interval_note(meta: dict, results: list[dict]) -> str:
    """How the intervals were computed and how many training seeds each row stands for."""
    boot = meta.get("bootstrap") or {}
    seeds = {r["method"]: len(r.get("seeds") or []) for r in results}
    learned = ", ".join(f"{m}: {k} training seed{'s' if k > 1 else ''}" for m, k in seeds.items() if k)
    seed_text = (
        f"learned rows pool {learned}" if learned else "every row is training-free (one run each, no training seed)"
    )
    if not boot.get("resamples"):
        return f"No intervals (eval.bootstrap 0); {seed_text}."
    return (
        f"[lo, hi]: 95% percentile bootstrap interval over the questions ({boot['resamples']} resamples, seed "
        f"{boot.get('seed')}; eval/stats.py); {seed_text}."
    )


def _row(results: list[dict], method: str, ratio: float) -> dict | None:
    for r in results:
        if r["method"] == method and (method == "full" or abs(r["ratio"] - ratio) < 1e-9):
            return r
    return None


def accuracy_table(results: list[dict], ratio: float) -> list[str]:
    """Per family: full accuracy, uniform and random at `ratio` (absolute and relative to full)."""
    full = _row(results, "full", 1.0)
    uni, rnd = _row(results, "uniform", ratio), _row(results, "random", ratio)
    lines = [
        f"| family | n | full | uniform@{ratio:g} | relative | random@{ratio:g} | relative |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]

    def cells(fam: str | None) -> str:
        def acc(row):  # (accuracy, its interval) overall or in one family
            if row is None:
                return None, None
            cell = row if fam is None else row["families"].get(fam, {})
            return cell.get("accuracy"), cell.get("ci95")

        (f, f_ci), (u, u_ci), (r, r_ci) = acc(full), acc(uni), acc(rnd)
        rel = lambda x: None if x is None or not f else x / f  # noqa: E731
        return f"{_pct_ci(f, f_ci)} | {_pct_ci(u, u_ci)} | {_pct(rel(u))} | {_pct_ci(r, r_ci)} | {_pct(rel(r))}"

    for fam, v in sorted(full["families"].items()):
        lines.append(f"| {fam} | {v['n']} | {cells(fam)} |")
    lines.append(f"| **all** | {full['n']} | {cells(None)} |")
    return lines


def curve_table(results: list[dict]) -> list[str]:
    """Accuracy vs keep ratio for random dropout (1.0 = all tokens), overall and per family."""
    full = _row(results, "full", 1.0)
    rows = sorted((r for r in results if r["method"] == "random"), key=lambda r: -r["ratio"])
    fams = sorted(full["families"])
    lines = ["| keep ratio | all | " + " | ".join(fams) + " |", "|---:|---:|" + "---:|" * len(fams)]
    for r in [full] + rows:
        ratio = 1.0 if r["method"] == "full" else r["ratio"]
        cells = " | ".join(_pct_ci(r["families"][f]["accuracy"], r["families"][f].get("ci95")) for f in fams)
        lines.append(f"| {ratio:g} | {_pct_ci(r['accuracy'], r.get('ci95'))} | {cells} |")
    return lines


def fit_summary(fit: dict | None) -> list[str]:
    if fit is None:
        return ["(no fit.json: this environment was not produced by `scorerl env fit`)"]
    f = fit["config"]["fit"]
    wall = fit["wall_time_s"]
    model = ", ".join(f"{k}={v}" for k, v in f["model"].items())
    return [
        f"- model: {fit['config']['env']['arch']}, {fit['parameters'] / 1e6:.2f} M parameters, "
        f"visual tokens [T, N] = {fit['visual_tokens']}; {model}",
        f"- fit: {fit['steps']} steps x {f['batch_size']} videos x {1 + f['extra_questions']} questions, lr {f['lr']}, "
        f"lr warm-up {f['warmup_steps']}, keep ratio ~ U[{f['keep_min']}, 1] (all tokens with p={f['full_prob']}), "
        f"augment={f['augment']}, image data={f['image_data']}, answer format "
        f"{fit['config']['data']['answer_format']}",
        vision_summary(f, fit.get("projector_warmup")),
        f"- wall time ({fit['threads']} threads, {fit['device']}): decode {wall['decode']:.0f} s, train "
        f"{wall['train']:.0f} s, test eval {wall['eval']:.0f} s, whole command {wall['this_run']:.0f} s"
        + ("" if fit.get("resumed_from_step") is None else f" (resumed from step {fit['resumed_from_step']})"),
        f"- test accuracy with all tokens recorded at fit time: {_pct(fit['test']['accuracy'])}",
    ]


def vision_summary(f: dict, warmup: dict | None) -> str:
    """How the vision side was fitted: the encoder's and the projector's lr scales, and the projector warm-up."""
    line = (
        f"- vision: encoder lr x {f.get('vision_lr_scale', 1.0):g}, merger / projector lr x "
        f"{f.get('projector_lr_scale', 1.0):g}"
    )
    if warmup:
        probe = ", ".join(f"{k} {_pct(v)}" for k, v in warmup["probe_accuracy_last_quarter"].items() if v is not None)
        line += (
            f", after a projector warm-up of {warmup['steps']} steps on {', '.join(warmup['classes'])} "
            f"({warmup['wall_time_s']:.0f} s; probe accuracy on train videos over its last quarter: {probe})"
        )
    return line


def report_markdown(result: dict, fit: dict | None) -> str:
    results = result["results"]
    meta = result["meta"]
    full = _row(results, "full", 1.0)
    uni, rnd = _row(results, "uniform", TARGET_RATIO), _row(results, "random", TARGET_RATIO)
    checks = [
        f"- full accuracy >= 85%: {_pct(full['accuracy'])} -> {'yes' if full['accuracy'] >= 0.85 else 'NO'}",
    ]
    for name, row in (("uniform", uni), ("random", rnd)):
        if row is not None and row["relative"] is not None:
            ok = row["relative"] <= 0.75
            checks.append(
                f"- {name}@{TARGET_RATIO:g} relative <= 75%: {_pct(row['relative'])} -> {'yes' if ok else 'NO'}"
            )
    lines = [
        "## Measured figures (generated by scripts/world_report.py)",
        "",
        f"Eval manifest `{meta['manifest']['path']}` (sha256 {meta['manifest']['sha256'][:12]}), "
        f"{full['n']} questions, {meta['num_frames']} frames of {meta['frame_size']} px, answer = the most likely "
        f"option ({meta.get('answer_format', 'letter')} format); random masks seeded per sample ({meta['date']}).",
        "",
        interval_note(meta, results),
        "",
        "### The fit",
        *fit_summary(fit),
        "",
        "### Targets",
        *checks,
        "",
        "### Accuracy per family: all tokens vs 10% of them",
        *accuracy_table(results, TARGET_RATIO),
        "",
        "### Random token dropout: accuracy vs keep ratio",
        *curve_table(results),
        "",
    ]
    return DOC_HEAD + "\n".join(lines)


DOC_HEAD = """# The built-in world's reward environment: measured

What the world and the fit are, and why: docs/world.md.

"""


if __name__ == "__main__":
    sys.exit(main())
