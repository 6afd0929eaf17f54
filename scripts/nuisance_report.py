"""Where each compression baseline's kept tokens land on world v4: on the answer's coloured objects, or on nuisances.

    .venv/bin/python scripts/nuisance_report.py                      # world v4's test split, its fitted env
    .venv/bin/python scripts/nuisance_report.py --limit 200 --accuracy --env ~/.cache/scorerl/world_env
    .venv/bin/python scripts/nuisance_report.py world.nuisance_camera=1.0   # any config key=value

World v4 (scorerl/world/nuisances.py) mixes nuisances into each video: a flickering patch, camera motion, a logo
and a ticking timestamp, grey movers. None is ever the answer, yet each is salient to a training-free selector
(frame differences, uniqueness). For each baseline at each keep ratio this counts, per region kind, the share of
the kept tokens on that region, over the videos that HAVE that region; `object` (the coloured objects, the
evidence every answer needs) and `any nuisance` are over all videos. A token is on a region when >= --min-cover
of its pixels are, in a frame of its temporal unit, and each token is on ONE region (scorerl/world/regions.py,
PRIORITY): an object first, then timestamp, logo, flicker, movers, and `camera` last: a token of a video with camera
motion that shows nothing but the moving background. The `area` row is each region's share of ALL tokens, i.e.
what uniformly random tokens land on; a method above it is drawn to the region, below it avoids it.

Masks are the evaluation harness's own (scorerl.eval.methods.method_masks on the harness's cached features:
the same tokens `scorerl eval` keeps). The features come from a fitted world environment: world v4's
($SCORERL_HOME/world_env_v4) when fitted, else version 3's ($SCORERL_HOME/world_env), which never saw a nuisance:
the report says which. Nothing is fitted here. With --accuracy the environment also answers each question with
the kept tokens (an environment fitted on version 3 reads v4's question wording and nuisances out of
distribution, so its accuracy there is only indicative).

With --policy --accuracy --evidence-first it also scores a reference no selector can be: every token on a coloured
object first (read off the scene record), then the policy's order. It shows what SCORE would reach if it never
ranked another token above an object's, i.e. how much of SCORE's gap to `full` is its ranking and how much is the
environment's reading of a sparse input:

    .venv/bin/python scripts/nuisance_report.py --policy runs/score_v4_s0 --accuracy --evidence-first \
        --methods fastv_input --ratios 0.05,0.1,0.25 data.eval_manifest=$HOME/.cache/scorerl/world_v4_test10k/test.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RATIOS = (0.05, 0.1, 0.25)
METHODS = ("uniform", "random", "pool", "framediff", "dycoke", "dycoke_ttm+topk", "vidcom2")
NUISANCES = ("flicker", "camera", "logo", "timestamp", "movers")
COLUMNS = ("object", *NUISANCES, "any nuisance")


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    args = parse_args(argv)
    cfg = load_cfg(args)
    env_dir, env_note = pick_env(cfg, args.env)
    cfg.env.path = str(env_dir)
    env, samples, items = encode(cfg, env_dir, args.limit)
    regions = [sample_regions(s, it, args.min_cover) for s, it in zip(samples, items)]  # per sample: name -> [T, N]
    policy = None
    if args.policy:  # `score`: where a trained policy's kept tokens land, beside the baselines
        from scorerl.export import load_policy

        policy = load_policy(args.policy)
        args.methods = [*args.methods, "score"]
    from scorerl.eval.methods import MethodContext

    # One context for the landing shares and the accuracy: it caches the per-sample rankings (policy logits,
    # FastV attention), so each is computed once.
    ctx = MethodContext(env=env, seed=cfg.run.seed, answer_format=cfg.data.answer_format, policy=policy)
    if args.evidence_first:  # a reference, not a method: it reads the scene record no selector sees
        ctx.custom[EVIDENCE_FIRST] = evidence_first_rule(items, regions)
        args.methods = [*args.methods, EVIDENCE_FIRST]
    table = landing_table(items, regions, args.methods, args.ratios, ctx)
    accuracy = measure_accuracy(env, samples, items, args, ctx) if args.accuracy else None
    result = {
        "config": args.config,
        "env": str(env_dir),
        "env_note": env_note,
        "manifest": cfg.data.eval_manifest,
        "n": len(samples),
        "min_cover": args.min_cover,
        "videos_with": videos_with(regions),
        "rows": table,
        "accuracy": accuracy,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    md = report_markdown(result)
    for path, text in ((args.json, json.dumps(result, indent=2) + "\n"), (args.md, md)):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)
    print(md)
    return 0


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("overrides", nargs="*", help="config overrides, section.key=value")
    p.add_argument("--config", default=str(ROOT / "configs" / "world" / "env_v4.yaml"))
    p.add_argument("--env", default=None, help="fitted environment folder (default: v4's if fitted, else v3's)")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated baselines")
    p.add_argument("--ratios", default=",".join(map(str, RATIOS)), help="comma-separated keep ratios")
    p.add_argument(
        "--policy", default=None, help="a trained SCORE policy (exported, run or checkpoint folder): adds `score` rows"
    )
    p.add_argument("--limit", type=int, default=0, help="only the first N test samples (0 = all)")
    p.add_argument(
        "--min-cover",
        type=float,
        default=None,
        help="share of a token's pixels that puts it on a region (default: scorerl.world.regions.MIN_COVER)",
    )
    p.add_argument("--accuracy", action="store_true", help="also answer each question with the kept tokens")
    p.add_argument(
        "--evidence-first",
        action="store_true",
        help="add `evidence-first` rows (needs --policy): "
        "every token on a coloured object first (from the scene record), then the policy's order; what SCORE "
        "would reach if it never ranked another token above an object's",
    )
    p.add_argument("--json", default=str(ROOT / "runs" / "nuisance_report" / "nuisance_report.json"))
    p.add_argument("--md", default=str(ROOT / "runs" / "nuisance_report" / "nuisance_report.md"))
    args = p.parse_args(argv)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if args.evidence_first and not args.policy:
        p.error("--evidence-first needs --policy (it fills the budget in the policy's order)")
    args.ratios = sorted({float(r) for r in args.ratios.split(",") if r.strip()})
    if args.min_cover is None:
        from scorerl.world.regions import MIN_COVER

        args.min_cover = MIN_COVER
    return args


# --------------------------------------------------------------------------------------------- inputs


def load_cfg(args):
    """The config, with the world it names rendered (cached: a no-op once built)."""
    import scorerl.world  # noqa: F401  (world_v4: manifests, the world section)
    from scorerl.config import load_config
    from scorerl.eval.methods import check_methods
    from scorerl.world.synthetic import build_from_section

    cfg = load_config(args.config, list(args.overrides))
    args.methods = check_methods(args.methods)
    if cfg.world.version >= 4:
        build_from_section(cfg.world)
    return cfg


def pick_env(cfg, given: str | None) -> tuple[Path, str]:
    """(fitted environment folder, what it was fitted on, in words)."""
    from scorerl.world.paths import world_env_dir

    if given:
        folder = Path(given).expanduser()
    else:
        own = world_env_dir(cfg.world.version)
        folder = own if (own / "config.json").is_file() else world_env_dir(3)
    record = folder / "fit.json"
    fitted_on = "unknown data (no fit.json)"
    if record.is_file():
        spec = json.loads(record.read_text())["identity"]["data"]["train"]["spec"]
        fitted_on = spec
    version_of_data = 4 if fitted_on.startswith("world_v4:") else 3 if fitted_on.startswith("world:") else None
    note = f"environment {folder}, fitted on {fitted_on}"
    if version_of_data == 3 and cfg.world.version >= 4:
        note += " (world VERSION 3: it never saw a nuisance; its features are used here only to encode v4 videos)"
    return folder, note


def encode(cfg, env_dir: Path, limit: int):
    """(env, samples, harness items with cached visual tokens) of the eval manifest."""
    from scorerl.data.manifest import read_manifest, resolve_manifest
    from scorerl.envs import load_env
    from scorerl.envs.features import env_identity
    from scorerl.eval.harness import encode_samples

    samples, _ = read_manifest(resolve_manifest(cfg.data.eval_manifest))
    samples = samples[:limit] if limit else samples
    env = load_env(cfg.env)
    samples, items, _ = encode_samples(env, env_identity(env, env_dir), samples, cfg, env_dir)
    return env, samples, items


def sample_regions(sample, item, min_cover: float) -> dict:
    """Region name -> bool [T, N] (the visual tokens' layout) of one sample, from its scene in the manifest."""
    from scorerl.world.regions import token_regions

    T, N = item.visual.features.shape[:2]
    masks = token_regions(sample.meta["scene"], T, tuple(item.visual.grid), min_cover, exclusive=True)
    return {name: m.reshape(T, N) for name, m in masks.items()}


EVIDENCE_FIRST = "evidence-first"


def evidence_first_rule(items, regions):
    """The masking rule of the `evidence-first` reference: at ratio rho, the k = ceil(rho T N) tokens ranked by (on
    a coloured object, then the policy's logit): the objects' tokens in the policy's order, then the rest in it."""
    import torch

    from scorerl.compress.select import topk_mask
    from scorerl.eval.methods import policy_scores

    on_object = {it.id: torch.as_tensor(r["object"]) for it, r in zip(items, regions)}  # bool [T, N]

    def rule(batch, rho, ctx):
        masks = []
        for it in batch:
            logits = policy_scores(ctx, it)  # [T, N]
            rank = logits.flatten().argsort().argsort().view_as(logits).float()  # 0 = lowest logit
            masks.append(topk_mask(rank + logits.numel() * on_object[it.id].float(), rho, "global"))
        return masks

    return rule


def videos_with(regions: list[dict]) -> dict[str, int]:
    return {name: sum(name in r for r in regions) for name in COLUMNS[:-1]}


# --------------------------------------------------------------------------------------------- counting


def landing_table(items, regions, methods, ratios, ctx) -> list[dict]:
    """One row per (method, ratio), plus the `area` row: per column the share of kept tokens on that region."""
    import numpy as np

    from scorerl.eval.methods import method_masks

    rows = [landing_row("area", None, [np.ones_like(r["object"]) for r in regions], regions)]
    for method in methods:
        for rho in ratios:
            rows.append(landing_row(method, rho, [m.numpy() for m in method_masks(method, items, rho, ctx)], regions))
    return rows


def landing_row(method: str, rho, masks, regions) -> dict:
    """masks: bool [T, N] kept tokens per sample. Shares per column over the samples that have the region."""
    import numpy as np

    on = dict.fromkeys(COLUMNS, 0)
    kept = dict.fromkeys(COLUMNS, 0)
    for keep, reg in zip(masks, regions):
        keep = np.asarray(keep, bool)
        reg = {**reg, "any nuisance": np.any([reg[k] for k in NUISANCES if k in reg] or [np.zeros_like(keep)], axis=0)}
        for name in COLUMNS:
            if name in reg:
                on[name] += int((keep & reg[name]).sum())
                kept[name] += int(keep.sum())
    total = sum(int(np.asarray(m).size) for m in masks)
    return {
        "method": method,
        "ratio": rho,
        "kept_fraction": sum(int(np.asarray(m).sum()) for m in masks) / total,
        "share": {name: (on[name] / kept[name] if kept[name] else None) for name in COLUMNS},
    }


def measure_accuracy(env, samples, items, args, ctx) -> list[dict]:
    """Accuracy of every (method, ratio) and of all tokens, by the harness's own scoring (`score`: the policy's)."""
    from scorerl.eval.harness import evaluate_runs

    runs = [("full", 1.0)] + [(m, r) for m in args.methods for r in args.ratios]
    rows, _ = evaluate_runs(env, samples, items, runs, ctx, batch_size=64)
    return [{k: row[k] for k in ("method", "ratio", "accuracy", "relative", "families")} for row in rows]


# --------------------------------------------------------------------------------------------- markdown


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def report_markdown(result: dict) -> str:
    acc = {(r["method"], r["ratio"]): r for r in result["accuracy"] or []}
    head = [
        "| method | ratio | kept | " + " | ".join(COLUMNS) + (" | accuracy |" if acc else " |"),
        "|---|---:|---:|" + "---:|" * len(COLUMNS) + ("---:|" if acc else ""),
    ]
    lines = []
    for row in result["rows"]:
        cells = " | ".join(_pct(row["share"][c]) for c in COLUMNS)
        ratio = "all" if row["ratio"] is None else f"{row['ratio']:g}"
        extra = ""
        if acc:
            a = acc.get(("full", 1.0) if row["method"] == "area" else (row["method"], row["ratio"]))
            extra = f" {_pct(a['accuracy']) if a else '-'} |"
        lines.append(f"| {row['method']} | {ratio} | {_pct(row['kept_fraction'])} | {cells} |{extra}")
    counts = ", ".join(f"{k} {v}" for k, v in result["videos_with"].items())
    return "\n".join(
        [
            "# World v4: where the baselines' kept tokens land",
            "",
            f"- {result['n']} questions of `{result['manifest']}`; videos with each region: {counts}",
            f"- {result['env_note']}",
            f"- a token is on a region when >= {result['min_cover']:g} of its pixels are, in a frame of its unit, "
            "and on "
            "one region only (object > timestamp > logo > flicker > movers > camera = only moving background); each "
            "nuisance column is the share of kept tokens on it over the videos that have it (`object` and `any "
            "nuisance`: over all videos); `area` = all tokens, what random tokens land on",
            *(["- accuracy: the environment answering with the kept tokens (`area` row: all tokens)"] if acc else []),
            f"- {result['wall_s']:.0f} s for this report (world build when needed, features, masks, accuracy)",
            "",
            *head,
            *lines,
            "",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
