"""Human-readable views of evaluation and benchmark results: a markdown table and an accuracy-vs-ratio plot.

Everything here reads the JSON-able dicts that harness.py and bench.py build, so a report can be redrawn from a
results FILE.json alone (`write_eval_report(json.load(...), path)`).
"""

from __future__ import annotations

import json
from pathlib import Path

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


def eval_markdown(result: dict) -> str:
    """Rows = methods, columns = keep ratios; cell = accuracy % (relative to full %). Then per-family accuracy."""
    meta, rows = result["meta"], result["results"]
    ratios = sorted({r["ratio"] for r in rows})
    methods = list(dict.fromkeys(r["method"] for r in rows))  # first-seen order: full first
    cell = {(r["method"], r["ratio"]): r for r in rows}
    n = rows[0]["n"] if rows else 0

    env = meta.get("env", {})
    lines = [f"# Accuracy at keep ratios: {meta.get('manifest', {}).get('path', '?')}", ""]
    media = len(meta.get("skipped_media") or [])
    lines.append(f"{n} samples; env `{env.get('arch', '?')}` at `{env.get('path', '?')}`; {meta.get('num_frames')} "
                 f"frames at {meta.get('frame_size')} px; skipped lines: {meta.get('skipped', 0)}"
                 + (f", unreadable media: {media}" if media else "") + ". Cells: accuracy % (relative to `full` %).")
    lines.append("")
    lines.append("| method | " + " | ".join(_ratio_label(r) for r in ratios) + " |")
    lines.append("|---|" + "---|" * len(ratios))
    for m in methods:
        cells = []
        for r in ratios:
            row = cell.get((m, r))
            cells.append("-" if row is None else f"{_pct(row['accuracy'])} ({_pct(row['relative'])})")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    pruned = {r["method"]: r["kept_from_layer"] for r in rows if "kept_from_layer" in r}
    for m, k in pruned.items():  # a ratio that does not mean the same thing as in the other rows
        first = "its first layer sees" if k == 1 else f"its first {k} layers see"
        lines += ["", f"`{m}` prunes inside the LLM: {first} every visual token; its ratio is the fraction kept in "
                      f"the layers after."]

    families = sorted({f for r in rows for f in r.get("families", {})})
    if families:
        lines += ["", "## Accuracy % per question family", ""]
        lines.append("| method | ratio | " + " | ".join(families) + " |")
        lines.append("|---|---|" + "---|" * len(families))
        for r in rows:
            fam = r.get("families", {})
            cells = [_pct(fam[f]["accuracy"]) if f in fam else "-" for f in families]
            lines.append(f"| {r['method']} | {_ratio_label(r['ratio'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def eval_plot(result: dict, path: str | Path) -> Path:
    """Accuracy vs keep ratio, one line per method; `full` as a horizontal dashed line."""
    # The object-oriented API with the Agg canvas draws off-screen without touching pyplot's global backend.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = result["results"]
    fig = Figure(figsize=(6.4, 4.2), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for method in dict.fromkeys(r["method"] for r in rows):
        pts = sorted((r["ratio"], r["accuracy"]) for r in rows if r["method"] == method)
        if method == "full":
            ax.axhline(100 * pts[0][1], color="black", linestyle="--", linewidth=1.2, label="full (all tokens)")
            continue
        ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], marker="o", label=method)
    ratios = sorted({r["ratio"] for r in rows if r["method"] != "full"})
    if ratios:
        ax.set_xticks(ratios)
        ax.set_xticklabels([_ratio_label(r) for r in ratios])
    ax.set_xlabel("keep ratio rho (fraction of visual tokens kept)")
    ax.set_ylabel("accuracy (%)")
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
    return (f"Static shapes: each prefill padded on the left to {bucket} (forwards over {static['max_tokens']} "
            f"tokens stay exact and eager); compile: {static['compile']}.")


def bench_markdown(result: dict) -> str:
    """One row per keep ratio: kept tokens, policy / prefill / total latency, speed-ups, FLOPs ratio (the limit) and
    the share of it reached; then time to first token when measured."""
    meta, full = result["meta"], result["full"]
    lines = [f"# Prefill latency: {meta['model']['source']}", ""]
    lines.append(f"{meta['machine']['device_name']}, {meta['dtype']}, torch {meta['versions']['torch']}; "
                 f"{meta['num_frames']} frames at {meta['frame_size']} px = {full['visual_tokens']} visual + "
                 f"{full['text_tokens']} text tokens; median of {meta['repeats']} after {meta['warmup']} warm-up. "
                 f"Vision tower (shared by all methods, not in the prefill times): {_ms(result['vision_s'])} ms.")
    static = _static_line(result)
    if static:
        lines += ["", static]
    lines += ["", "| ratio | visual tokens | policy ms | prefill ms | total ms | speed-up | prefill speed-up "
              "| GFLOPs | FLOPs speed-up | % of FLOPs limit |", "|---|---|---|---|---|---|---|---|---|---|"]
    lines.append(f"| full | {full['visual_tokens']} | - | {_ms(full['prefill_s'])} | {_ms(full['prefill_s'])} | 1.00 "
                 f"| 1.00 | {_flops_cell(full['flops'])} | 1.00 | - |")
    for r in result["results"]:
        lines.append(f"| {_ratio_label(r['ratio'])} | {r['visual_tokens']} | {_ms(r['policy_s'])} | "
                     f"{_ms(r['prefill_s'])} | {_ms(r['total_s'])} | {r['speedup']:.2f} | "
                     f"{r['prefill_speedup']:.2f} | {_flops_cell(r['flops'])} | {_x(r['flops_speedup'])} | "
                     f"{_limit_pct(r)} |")
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
    lines = ["", "## FastV at the same ratios (FLOPs only, not timed)", "",
             f"FastV prunes inside the LLM: its first {k} layers run over all {full['visual_tokens']} visual tokens, "
             "the others over the kept ones (`scorerl/eval/flops.py`, `fastv_prefill_flops`).", "",
             "| ratio | visual tokens after pruning | GFLOPs | FLOPs speed-up |", "|---|---|---|---|"]
    for r in rows:
        f = r["fastv"]
        visual = f["tokens_from_layer"] - full["text_tokens"]
        lines.append(f"| {_ratio_label(r['ratio'])} | {visual} | {_flops_cell(f['flops'])} | "
                     f"{_x(f['flops_speedup'])} |")
    return lines


def _ms_or_na(x: float | None) -> str:
    return "n/a" if x is None else _ms(x)


def ttft_markdown(ttft: dict) -> list[str]:
    """Time to first token per arm: decode + vision tower + policy + prefill, and the one end-to-end run."""
    decoder = ttft["decoder"] or f"n/a ({ttft['decode_na_reason']})"
    lines = ["## Time to first token", "",
             f"Frame decoding: {decoder}. {ttft['note']}.", "",
             "| arm | decode ms | vision ms | policy ms | prefill ms | TTFT ms | speed-up | end-to-end ms |",
             "|---|---|---|---|---|---|---|---|"]
    for a in ttft["arms"]:
        arm = a["arm"] if a["arm"] == "full" else _ratio_label(a["arm"])
        lines.append(f"| {arm} | {_ms_or_na(a['decode_s'])} | {_ms(a['vision_s'])} | "
                     f"{'-' if a['arm'] == 'full' else _ms(a['policy_s'])} | {_ms(a['prefill_s'])} | "
                     f"{_ms(a['ttft_s'])} | {a['speedup']:.2f} | {_ms_or_na(a.get('e2e_s'))} |")
    return lines


def write_bench_report(result: dict, out: str | Path) -> dict[str, Path]:
    """Write FILE.json and FILE.md for a benchmark result; returns their paths."""
    paths = output_paths(out)
    write_json(result, paths["json"])
    atomic.write_text(paths["md"], bench_markdown(result))
    return {"json": paths["json"], "md": paths["md"]}
