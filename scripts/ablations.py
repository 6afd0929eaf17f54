"""SCORE's ablation table on a run file: which of the method's pieces the accuracy rests on.

    .venv/bin/python scripts/ablations.py configs/world/score_v4.yaml \
        --manifest ~/.cache/scorerl/world_v4_test2000/test.jsonl --seeds 0,1,2 --md docs/results/ablations_v4.md

Each variant is the run file plus a few overrides, trained with `scorerl train` (run `<prefix>_<variant>_s<seed>`,
the reference `<prefix>_s<seed>`;
a finished run is reused, an interrupted one resumed), then evaluated with the project's harness on the same
manifest, method `score` only, at the run file's eval.ratios; every accuracy carries its 95% bootstrap interval
(pooled over the seeds given). An evaluation already in --out of the same policies and manifest, written after
they were trained, is reused (--fresh: evaluate again). The rows:

    SCORE            the run file as it is (rl.estimator split, state v + dv, the curriculum, its top-k scope)
    grpo / split_action / dr_grpo     the other advantage estimators (rl.estimator)
    no residual      the state without the inter-frame residual dv (policy.residual=false)
    no curriculum    videos only, no static pseudo-video stage (curriculum.stage1_steps=0)
    ranked draws     budget-aware ranked masks (rl.sampling=ranked: k from rl.budgets, Plackett-Luce draws) instead of
                     Bernoulli masks, with global top-k at inference (the draws rank over the whole video)
    other top-k      SCORE's own trained policy, with the other inference top-k scope (global <-> per_unit):
                     no training, the exported policy's topk_scope switched
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

VARIANTS = {  # name -> overrides of the run file
    "SCORE": [],
    "grpo": ["rl.estimator=grpo"],
    "split_action": ["rl.estimator=split_action"],
    "dr_grpo": ["rl.estimator=dr_grpo"],
    "no residual": ["policy.residual=false"],
    "no curriculum": ["curriculum.stage1_steps=0"],
    "ranked draws": ["rl.sampling=ranked", "policy.topk_scope=global"],
}
OTHER_SCOPE = {"global": "per_unit", "per_unit": "global"}


def run_name(prefix: str, variant: str, seed: int) -> str:
    """The reference row is the run file's own runs (<prefix>_s<seed>), so the main results' runs are reused."""
    return f"{prefix}_s{seed}" if variant == "SCORE" else f"{prefix}_{variant.replace(' ', '_')}_s{seed}"


def train_variant(config: str, name: str, seed: int, overrides: list[str]) -> Path:
    """`scorerl train` of one variant (resumed or reused when its run folder exists); -> its run folder."""
    cmd = [
        sys.executable,
        "-m",
        "scorerl",
        "train",
        config,
        f"run.name={name}",
        f"run.seed={seed}",
        *overrides,
        "--resume",
        "auto",
    ]
    print(f"[ablations] {' '.join(cmd[3:])}", flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)
    from scorerl.config import load_config

    return ROOT / load_config(config).run.output_dir / name


def switch_scope(run: Path, out: Path) -> tuple[Path, str]:
    """A copy of run/policy whose inference top-k scope is the other one -> (folder, that scope)."""
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(run / "policy", out)
    config_file = out / "policy_config.json"
    meta = json.loads(config_file.read_text())
    scope = OTHER_SCOPE[meta["policy"]["topk_scope"]]
    meta["policy"]["topk_scope"] = scope
    config_file.write_text(json.dumps(meta, indent=2) + "\n")
    return out, scope


def evaluate(config: str, policies: list[Path], manifest: str, out: Path, fresh: bool = False) -> dict:
    from scorerl.config import load_config
    from scorerl.eval.harness import run_eval

    if not fresh and (earlier := reusable(out, policies, manifest)) is not None:
        print(f"[ablations] reusing {out} (same policies and manifest, written after every policy)", flush=True)
        return earlier
    cfg = load_config(config)
    cfg.eval.methods = ["score"]
    return run_eval(cfg, policy_dir=[str(p) for p in policies], out=str(out), manifest=manifest)


def reusable(out: Path, policies: list[Path], manifest: str) -> dict | None:
    """The evaluation already in `out`, when it scored exactly these policies on this manifest and was written
    after each policy was exported (a retrained policy is newer: then it is evaluated again); else None."""
    try:
        result = json.loads(out.read_text())
        meta = result["meta"]
    except (OSError, ValueError, KeyError):
        return None
    same = [str(Path(p).resolve()) for p in meta.get("policies") or [meta.get("policy")]] == [
        str(Path(p).resolve()) for p in policies
    ] and Path(meta["manifest"]["path"]).resolve() == Path(manifest).expanduser().resolve()
    newer = all(out.stat().st_mtime > f.stat().st_mtime for p in policies for f in (Path(p) / "policy").glob("*"))
    return result if same and newer else None


def cell(row: dict) -> str:
    lo, hi = row["ci95"]
    return f"{100 * row['accuracy']:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config", help="the run file (its SCORE recipe is the reference row)")
    p.add_argument("--manifest", default=None, help="test manifest (default: the run file's data.eval_manifest)")
    p.add_argument("--seeds", default="0", help="comma-separated training seeds per variant")
    p.add_argument("--prefix", default=None, help="run-name prefix (default: the run file's run.name)")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of " + ", ".join(VARIANTS))
    p.add_argument("--out", default=str(ROOT / "runs" / "ablations"), help="folder of the eval results")
    p.add_argument("--md", default=None, help="write the table here too")
    p.add_argument(
        "--fresh",
        action="store_true",
        help="evaluate every row again (default: reuse an evaluation in "
        "--out of the same policies and manifest written after they were trained)",
    )
    args = p.parse_args(argv)
    import scorerl.world  # noqa: F401  (registers the world's config sections, manifests and environments)
    from scorerl.config import load_config

    cfg = load_config(args.config)
    prefix = args.prefix or cfg.run.name
    seeds = [int(s) for s in args.seeds.split(",")]
    manifest = args.manifest or cfg.data.eval_manifest
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = {}
    for variant in [v.strip() for v in args.variants.split(",")]:
        runs = [train_variant(args.config, run_name(prefix, variant, s), s, VARIANTS[variant]) for s in seeds]
        rows[variant] = evaluate(args.config, runs, manifest, out / f"{variant.replace(' ', '_')}.json", args.fresh)
        if variant == "SCORE":
            switched = [switch_scope(r, out / f"{r.name}_other_scope") for r in runs]
            scope = switched[0][1]
            rows[f"top-k {scope}"] = evaluate(
                args.config, [s for s, _ in switched], manifest, out / f"topk_{scope}.json", fresh=True
            )  # its copies are new each run
    ratios = cfg.eval.ratios
    n = next(iter(rows.values()))["results"][0]["n"]
    lines = [
        f"Ablations of `{args.config}` on {manifest}: {n} questions; {len(seeds)} training seed(s) per row "
        f"({', '.join(map(str, seeds))}); cells: accuracy % [95% bootstrap interval over questions"
        f"{' and seeds' if len(seeds) > 1 else ''}].",
        "",
        "| variant | " + " | ".join(str(r) for r in ratios) + " |",
        "|---" * (len(ratios) + 1) + "|",
    ]
    for variant, result in rows.items():
        by_ratio = {r["ratio"]: r for r in result["results"] if r["method"] == "score"}
        lines.append(f"| {variant} | " + " | ".join(cell(by_ratio[r]) for r in ratios) + " |")
    table = "\n".join(lines) + "\n"
    print(table)
    if args.md:
        Path(args.md).write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
