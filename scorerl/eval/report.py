"""Human-readable views of evaluation and benchmark results: a markdown table and an accuracy-vs-ratio plot.

Everything here reads the JSON-able dicts that harness.py and bench.py build, so a report can be redrawn from a
results FILE.json alone (`write_eval_report(json.load(...), path)`).
"""

from __future__ import annotations

import json
from pathlib import Path

from scorerl.data.frames import sampling_text
from scorerl.io import atomic


def output_paths(out: str | Path) -> dict[str, Path]:
    """FILE.json -> {"json": FILE.json, "md": FILE.md, "png": FILE.png}; a name without .json gets it added."""
    out = Path(out)
    stem = out.with_suffix("") if out.suffix == ".json" else out
    return {ext: stem.with_name(stem.name + "." + ext) for ext in ("json", "md", "png")}


def write_json(data: dict, path: str | Path) -> Path:
    return atomic.write_text(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


# --------------------------------------------------------------------------------------------- evaluation


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


def _ratio_label(r: float) -> str:
    return f"{r:g}"


def _ci(ci) -> str:
    """' [lo, hi]' in %, or '' when the row has no interval (eval.bootstrap 0, or a file from before intervals)."""
    return "" if not ci else f" [{_pct(ci[0])}, {_pct(ci[1])}]"


def _acc_cell(row: dict) -> str:
    """accuracy % [95% interval] (relative to full %)."""
    return f"{_pct(row['accuracy'])}{_ci(row.get('ci95'))} ({_pct(row['relative'])})"


def _diff_cell(row: dict, key: str) -> str:
    """The difference in row[key], in points [paired 95% interval, row[key_ci95]]; '*' when it excludes 0."""
    diff, ci = row.get(key), row.get(f"{key}_ci95")
    if diff is None:
        return "-"
    sign = "+" if diff > 0 else ""  # an explicit + makes a gain readable at a glance
    star = "*" if ci and (ci[0] > 0 or ci[1] < 0) else ""
    return f"{sign}{100 * diff:.1f}{_ci(ci)}{star}"


def _method_label(method: str, rows: list[dict]) -> str:
    """`score (3 seeds)` when the row pools several trained policies."""
    seeds = max((len(r.get("seeds") or []) for r in rows if r["method"] == method), default=0)
    return f"{method} ({seeds} seeds)" if seeds > 1 else method


def _interval_line(meta: dict, rows: list[dict]) -> str:
    """How the intervals were computed, in one sentence (empty when there are none)."""
    boot = meta.get("bootstrap") or {}
    if not boot.get("resamples") or not any(r.get("ci95") for r in rows):
        return ""
    seeds = max((len(r.get("seeds") or []) for r in rows), default=0)
    pooled = {
        0: "",
        1: " Learned rows come from one trained policy (one training seed): their interval covers "
        "question sampling only, not seed-to-seed variation.",
    }.get(
        seeds,
        f" Learned rows pool {seeds} training seeds: the mean of the seeds' accuracies, with an interval "
        f"that resamples the seeds too.",
    )
    return (
        f"[lo, hi]: 95% percentile bootstrap interval over the {rows[0]['n']} questions ({boot['resamples']} "
        f"resamples, seed {boot.get('seed')}).{pooled}"
    )


def _grid(methods: list[str], ratios: list[float], cell: dict, rows: list[dict], fmt) -> list[str]:
    """A methods x ratios table whose cells are fmt(row), '-' where the method did not run at that ratio."""
    lines = ["| method | " + " | ".join(_ratio_label(r) for r in ratios) + " |", "|---|" + "---|" * len(ratios)]
    for m in methods:
        cells = ["-" if cell.get((m, r)) is None else fmt(cell[(m, r)]) for r in ratios]
        lines.append(f"| {_method_label(m, rows)} | " + " | ".join(cells) + " |")
    return lines


# The paired differences a report tables: (row field, heading). To `full`: method - full (how much a method loses);
# to `score`: score - method, so a positive number reads as SCORE ahead.
DIFF_TABLES = (
    ("diff_vs_full", "Difference to `full` (method - full, accuracy points; paired 95% interval; * = excludes 0)"),
    (
        "score_minus_method",
        "Difference: `score` - method (accuracy points; paired 95% interval; * = excludes 0; positive = SCORE ahead)",
    ),
)


def _diff_tables(methods: list[str], ratios: list[float], cell: dict, rows: list[dict]) -> list[str]:
    """Paired differences to `full` and of `score` to the others: what "A beats B" needs, not two overlapping
    intervals."""
    out = []
    for key, heading in DIFF_TABLES:
        shown = [m for m in methods if any(key in r for r in rows if r["method"] == m)]
        if not shown:
            continue
        cols = [r for r in ratios if any(key in cell.get((m, r), {}) for m in shown)]
        out += ["", f"## {heading}", ""]
        out += _grid(shown, cols, cell, rows, lambda row, key=key: _diff_cell(row, key))
    return out


def _legacy_rows(rows: list[dict]) -> list[dict]:
    """Rows of a FILE.json written before the differences to score were score - method: their `diff_vs_score`
    (+ `_ci95`, method - score) become `score_minus_method` (+ `_ci95`), so a redrawn old report reads like a new
    one. Other rows are returned as they are."""
    out = []
    for r in rows:
        if "diff_vs_score" in r and "score_minus_method" not in r:
            diff, ci = r["diff_vs_score"], r.get("diff_vs_score_ci95")
            r = {k: v for k, v in r.items() if k not in ("diff_vs_score", "diff_vs_score_ci95")}
            r["score_minus_method"] = None if diff is None else 0.0 - diff  # no -0.0
            r["score_minus_method_ci95"] = None if ci is None else [-ci[1], -ci[0]]
        out.append(r)
    return out


def _flops_table(meta: dict, methods: list[str], ratios: list[float], cell: dict, rows: list[dict]) -> list[str]:
    """Each (method, ratio)'s mean prefill FLOPs as a % of `full`'s on the same questions, with its kept %."""
    if not any("flops_fraction" in r for r in rows):
        if "flops" in meta and meta["flops"] is None:  # a report that tried: the environment gave no LLM sizes
            return ["", "Prefill FLOPs: n/a (the environment's LLM sizes could not be read)."]
        return []
    learned = [r for r in rows if r.get("policy_flops") is not None]
    policy = (
        f" `score` includes its policy over all T*N tokens ({100 * learned[0]['policy_flops'] / rows[0]['flops']:.2g}% "
        f"of `full`'s prefill)."
        if learned and rows[0].get("flops")
        else ""
    )
    lines = [
        "",
        "## Prefill FLOPs, % of full (kept visual tokens %)",
        "",
        "Mean over the questions of one prefill's FLOPs (`scorerl/eval/flops.py`): each question's text tokens plus "
        "the visual tokens the method passes to the LLM (`fastv`: its first K layers over every token), over the "
        f"same for `full`.{policy} The training-free methods' selection cost is not counted (nor `fastv_input`'s "
        "ranking pass, its first K layers over every token).",
        "",
    ]

    def fmt(row: dict) -> str:
        return f"{_pct(row.get('flops_fraction'))} ({_pct(row['kept_fraction'])})"

    return lines + _grid(methods, ratios, cell, rows, fmt)


def _seed_table(meta: dict, rows: list[dict]) -> list[str]:
    """Each training seed's accuracy at each ratio, for rows that pool several policies."""
    pooled = [r for r in rows if len(r.get("seeds") or []) > 1]
    if not pooled:
        return []
    ratios = sorted({r["ratio"] for r in pooled})
    by_ratio = {r["ratio"]: r for r in pooled}
    policies = meta.get("policies") or []
    lines = [
        "",
        f"## `{pooled[0]['method']}` per training seed (accuracy %)",
        "",
        "| seed | policy | " + " | ".join(_ratio_label(r) for r in ratios) + " |",
        "|---|---|" + "---|" * len(ratios),
    ]
    for k in range(len(pooled[0]["seeds"])):
        name = f"`{Path(policies[k]).name}`" if k < len(policies) else "?"
        cells = [_pct(by_ratio[r]["seeds"][k]["accuracy"]) for r in ratios]
        lines.append(f"| {k} | {name} | " + " | ".join(cells) + " |")
    return lines


def _frames_text(meta: dict) -> str:
    """How the frames were sampled and sized, and the visual tokens per sample that gave (older results files
    without `sampling`: their frame count and size)."""
    if meta.get("sampling"):
        return sampling_text(meta["sampling"], meta.get("visual_tokens"))
    return f"{meta.get('num_frames')} frames at {meta.get('frame_size')} px"


def eval_markdown(result: dict) -> str:
    """Rows = methods, columns = keep ratios; cell = accuracy % [95% interval] (relative to full %). Then the
    prefill FLOPs as % of full, paired differences to full (method - full) and of score (score - method), each
    seed's accuracy when several policies were pooled, per-family accuracy."""
    meta, rows = result["meta"], _legacy_rows(result["results"])
    ratios = sorted({r["ratio"] for r in rows})
    methods = list(dict.fromkeys(r["method"] for r in rows))  # first-seen order: full first
    cell = {(r["method"], r["ratio"]): r for r in rows}
    n = rows[0]["n"] if rows else 0

    env = meta.get("env", {})
    lines = [f"# Accuracy at keep ratios: {meta.get('manifest', {}).get('path', '?')}", ""]
    media = len(meta.get("skipped_media") or [])
    has_ci = any(r.get("ci95") for r in rows)
    lines.append(
        f"{n} samples; env `{env.get('arch', '?')}` at `{env.get('path', '?')}`; {_frames_text(meta)}; "
        f"skipped lines: {meta.get('skipped', 0)}"
        + (f", unreadable media: {media}" if media else "")
        + ". Cells: accuracy %"
        + (" [95% interval]" if has_ci else "")
        + " (relative to `full` %)."
    )
    interval = _interval_line(meta, rows)
    if interval:
        lines += ["", interval]
    lines.append("")
    lines += _grid(methods, ratios, cell, rows, _acc_cell)
    pruned = {r["method"]: r["kept_from_layer"] for r in rows if "kept_from_layer" in r}
    for m, k in pruned.items():  # a ratio that does not mean the same thing as in the other rows
        first = "its first layer sees" if k == 1 else f"its first {k} layers see"
        lines += [
            "",
            f"`{m}` prunes inside the LLM: {first} every visual token; its ratio is the fraction kept in "
            f"the layers after.",
        ]
    lines += _flops_table(meta, methods, ratios, cell, rows)
    lines += _diff_tables(methods, ratios, cell, rows)
    lines += _seed_table(meta, rows)

    families = sorted({f for r in rows for f in r.get("families", {})})
    if families:
        lines += ["", "## Accuracy % per question family" + (" [95% interval]" if has_ci else ""), ""]
        lines.append("| method | ratio | " + " | ".join(families) + " |")
        lines.append("|---|---|" + "---|" * len(families))
        for r in rows:
            fam = r.get("families", {})
            cells = [f"{_pct(fam[f]['accuracy'])}{_ci(fam[f].get('ci95'))}" if f in fam else "-" for f in families]
            lines.append(
                f"| {_method_label(r['method'], rows)} | {_ratio_label(r['ratio'])} | " + " | ".join(cells) + " |"
            )
    return "\n".join(lines) + "\n"


def eval_plot(result: dict, path: str | Path) -> Path:
    """Accuracy vs keep ratio, one line per method with its 95% interval as a band; `full` as a horizontal dashed
    line (and band)."""
    # The object-oriented API with the Agg canvas draws off-screen without touching pyplot's global backend.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = result["results"]
    fig = Figure(figsize=(6.4, 4.2), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = sorted((r for r in rows if r["method"] == method), key=lambda r: r["ratio"])
        label = _method_label(method, rows)
        if method == "full":
            ax.axhline(
                100 * mine[0]["accuracy"], color="black", linestyle="--", linewidth=1.2, label="full (all tokens)"
            )
            if mine[0].get("ci95"):
                ax.axhspan(*(100 * c for c in mine[0]["ci95"]), color="black", alpha=0.06)
            continue
        xs = [r["ratio"] for r in mine]
        (line,) = ax.plot(xs, [100 * r["accuracy"] for r in mine], marker="o", label=label)
        if all(r.get("ci95") for r in mine):
            ax.fill_between(
                xs,
                [100 * r["ci95"][0] for r in mine],
                [100 * r["ci95"][1] for r in mine],
                color=line.get_color(),
                alpha=0.12,
                linewidth=0,
            )
    ratios = sorted({r["ratio"] for r in rows if r["method"] != "full"})
    if ratios:
        ax.set_xticks(ratios)
        ax.set_xticklabels([_ratio_label(r) for r in ratios])
    ax.set_xlabel("keep ratio rho (fraction of visual tokens kept)")
    ax.set_ylabel("accuracy (%)" + (" with 95% interval" if any(r.get("ci95") for r in rows) else ""))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, format="png")
    return path


def write_eval_report(result: dict, out: str | Path) -> dict[str, Path]:
    """Write FILE.json, FILE.md and FILE.png for an evaluation result; returns their paths."""
    paths = output_paths(out)
    write_json(result, paths["json"])
    atomic.write_text(paths["md"], eval_markdown(result))
    atomic.write_with(paths["png"], lambda tmp: eval_plot(result, tmp))
    return paths


# --------------------------------------------------------------------------------------------- benchmark


def _ms(x: float) -> str:
    return f"{1000 * x:.1f}"


def _flops_cell(flops: dict | None) -> str:
    return "n/a" if flops is None else f"{flops['total'] / 1e9:.4g}"


def _x(speedup: float | None) -> str:
    return "n/a" if speedup is None else f"{speedup:.2f}"


def _limit_pct(r: dict) -> str:
    pct = r.get("limit_pct")  # results written before this column existed lack it
    return "n/a" if pct is None else f"{pct:.0f}%"


def _static_line(result: dict) -> str | None:
    """How the prefills ran (static shapes, compile), or None for the plain eager mode."""
    static = result.get("static") or {}
    if not static.get("static_shapes"):
        return static.get("reason")
    bucket = "the next power of two" if static["bucket"] == 0 else f"a multiple of {static['bucket']}"
    return (
        f"Static shapes: each prefill padded on the left to {bucket} (forwards over {static['max_tokens']} "
        f"tokens stay exact and eager); compile: {static['compile']}."
    )


def bench_markdown(result: dict) -> str:
    """One row per keep ratio: kept tokens, policy / prefill / total latency, speed-ups, FLOPs ratio (the limit) and
    the share of it reached; then time to first token when measured."""
    meta, full = result["meta"], result["full"]
    lines = [f"# Prefill latency: {meta['model']['source']}", ""]
    lines.append(
        f"{meta['machine']['device_name']}, {meta['dtype']}, torch {meta['versions']['torch']}; "
        f"{meta['num_frames']} frames at {meta['frame_size']} px = {full['visual_tokens']} visual + "
        f"{full['text_tokens']} text tokens; median of {meta['repeats']} after {meta['warmup']} warm-up. "
        f"Vision tower (shared by all methods, not in the prefill times): {_ms(result['vision_s'])} ms."
    )
    static = _static_line(result)
    if static:
        lines += ["", static]
    lines += [
        "",
        "| ratio | visual tokens | policy ms | prefill ms | total ms | speed-up | prefill speed-up "
        "| GFLOPs | FLOPs speed-up | % of FLOPs limit |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines.append(
        f"| full | {full['visual_tokens']} | - | {_ms(full['prefill_s'])} | {_ms(full['prefill_s'])} | 1.00 "
        f"| 1.00 | {_flops_cell(full['flops'])} | 1.00 | - |"
    )
    for r in result["results"]:
        lines.append(
            f"| {_ratio_label(r['ratio'])} | {r['visual_tokens']} | {_ms(r['policy_s'])} | "
            f"{_ms(r['prefill_s'])} | {_ms(r['total_s'])} | {r['speedup']:.2f} | "
            f"{r['prefill_speedup']:.2f} | {_flops_cell(r['flops'])} | {_x(r['flops_speedup'])} | "
            f"{_limit_pct(r)} |"
        )
    lines += fastv_markdown(result, full)
    if result.get("ttft"):
        lines += ["", *ttft_markdown(result["ttft"])]
    return "\n".join(lines) + "\n"


def fastv_markdown(result: dict, full: dict) -> list[str]:
    """FastV's analytic prefill FLOPs at each ratio (rows written before it existed, or without model sizes, have
    no `fastv`: no table)."""
    rows = [r for r in result["results"] if r.get("fastv")]
    if not rows:
        return []
    k = rows[0]["fastv"]["layer"]
    lines = [
        "",
        "## FastV at the same ratios (FLOPs only, not timed)",
        "",
        f"FastV prunes inside the LLM: its first {k} layers run over all {full['visual_tokens']} visual tokens, "
        "the others over the kept ones (`scorerl/eval/flops.py`, `fastv_prefill_flops`).",
        "",
        "| ratio | visual tokens after pruning | GFLOPs | FLOPs speed-up |",
        "|---|---|---|---|",
    ]
    for r in rows:
        f = r["fastv"]
        visual = f["tokens_from_layer"] - full["text_tokens"]
        lines.append(
            f"| {_ratio_label(r['ratio'])} | {visual} | {_flops_cell(f['flops'])} | {_x(f['flops_speedup'])} |"
        )
    return lines


def _ms_or_na(x: float | None) -> str:
    return "n/a" if x is None else _ms(x)


def ttft_markdown(ttft: dict) -> list[str]:
    """Time to first token per arm: decode + vision tower + policy + prefill, and the one end-to-end run."""
    decoder = ttft["decoder"] or f"n/a ({ttft['decode_na_reason']})"
    lines = [
        "## Time to first token",
        "",
        f"Frame decoding: {decoder}. {ttft['note']}.",
        "",
        "| arm | decode ms | vision ms | policy ms | prefill ms | TTFT ms | speed-up | end-to-end ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for a in ttft["arms"]:
        arm = a["arm"] if a["arm"] == "full" else _ratio_label(a["arm"])
        lines.append(
            f"| {arm} | {_ms_or_na(a['decode_s'])} | {_ms(a['vision_s'])} | "
            f"{'-' if a['arm'] == 'full' else _ms(a['policy_s'])} | {_ms(a['prefill_s'])} | "
            f"{_ms(a['ttft_s'])} | {a['speedup']:.2f} | {_ms_or_na(a.get('e2e_s'))} |"
        )
    return lines


def write_bench_report(result: dict, out: str | Path) -> dict[str, Path]:
    """Write FILE.json and FILE.md for a benchmark result; returns their paths."""
    paths = output_paths(out)
    write_json(result, paths["json"])
    atomic.write_text(paths["md"], bench_markdown(result))
    return {"json": paths["json"], "md": paths["md"]}
