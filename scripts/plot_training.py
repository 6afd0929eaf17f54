"""Training curve of a run: reward, fidelity, kept fraction and dCE against the step, stage switch marked.

python scripts/plot_training.py runs/quickstart --out docs/quickstart_curve.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

from scorerl.rl.metrics import read_metrics

PANELS = [
    ("reward", "reward"),
    ("fidelity", "fidelity (-dCE)"),
    ("kept_fraction", "kept fraction (sampled masks)"),
    ("ce_base", "CE_base"),
    ("dce", "dCE = CE_masked - CE_base"),
]


def smooth(values: list[float], window: int) -> list[float]:
    """Trailing moving average: RL curves are noisy step to step."""
    out, acc = [], []
    for v in values:
        acc.append(v)
        acc = acc[-window:]
        out.append(sum(acc) / len(acc))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="run folder (holds metrics.jsonl)")
    parser.add_argument("--out", required=True, help="PNG to write")
    parser.add_argument("--window", type=int, default=10, help="moving-average window in steps")
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(Path(args.run) / "metrics.jsonl")
    if not rows:
        raise SystemExit(f"{args.run}/metrics.jsonl has no metrics")
    steps = [r["step"] for r in rows]
    switch = next((r["step"] for r in rows if r.get("stage") == 2), None)
    panels = [(key, title) for key, title in PANELS if key in rows[0]]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2))
    for ax, (key, title) in zip(axes, panels):
        values = [r[key] for r in rows]
        ax.plot(steps, values, alpha=0.25, color="C0")
        ax.plot(steps, smooth(values, args.window), color="C0")
        if switch is not None:
            ax.axvline(switch, color="grey", linestyle="--", linewidth=1)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
    fig.suptitle(f"{Path(args.run).name}: stage 1 (pseudo-videos) | stage 2 (videos), dashed = switch", fontsize=10)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
