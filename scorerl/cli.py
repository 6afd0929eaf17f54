"""`scorerl <command>`: parses arguments and calls one public entry point per capability.

Heavy modules are imported inside each command so `scorerl --help` and `scorerl config show` stay fast.
"""

from __future__ import annotations

import argparse
import sys

from scorerl.errors import ScoreRLError


def _add_config_args(p: argparse.ArgumentParser, required: bool = True):
    p.add_argument("config", nargs=None if required else "?", help="YAML run config")
    p.add_argument("overrides", nargs="*", help="section.key=value overrides")


def _load(args):
    from scorerl.config import load_config

    return load_config(args.config, args.overrides)


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def cmd_config_show(args):
    from scorerl.config import describe

    print(describe(_load(args)), end="")


def cmd_data_synthetic(args):
    from scorerl.data.synthetic import build_world

    build_world(args.out, train=args.train, test=args.test, static_train=args.static, frames=args.frames,
                size=args.size, seed=args.seed)


def cmd_env_fit(args):
    from scorerl.envs.fit import fit_env

    fit_env(_load(args), out=args.out, resume=args.resume)


def cmd_train(args):
    from scorerl.rl.trainer import train

    train(_load(args), resume=args.resume, force=args.force)


def cmd_eval(args):
    from scorerl.eval.harness import run_eval

    cfg = _load(args)
    if args.methods:
        cfg.eval.methods = args.methods
    if args.ratios:
        cfg.eval.ratios = args.ratios
    if args.skip_bad:
        cfg.data.skip_bad = True
    run_eval(cfg, policy_dir=args.policy, out=args.out, manifest=args.manifest)


def cmd_bench(args):
    from scorerl.eval.bench import run_bench

    cfg = _load(args)
    if args.ratios:
        cfg.bench.ratios = args.ratios
    run_bench(cfg, out=args.out, policy_dir=args.policy)


def cmd_export(args):
    from scorerl.export import export_policy

    export_policy(args.run, args.out)


def cmd_demo(args):
    from scorerl.demo import run_demo

    run_demo(args.config, overrides=args.overrides)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scorerl", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("config", help="inspect run configs")
    csub = p.add_subparsers(dest="config_command", required=True)
    q = csub.add_parser("show", help="print the resolved config with each field's doc")
    _add_config_args(q, required=False)
    q.set_defaults(func=cmd_config_show)

    p = sub.add_parser("data", help="build data sets")
    dsub = p.add_subparsers(dest="data_command", required=True)
    q = dsub.add_parser("synthetic", help="render the built-in synthetic video-QA world")
    q.add_argument("--out", required=True, help="output folder (videos, images, *.jsonl manifests)")
    q.add_argument("--train", type=int, default=3000, help="video QA samples in train.jsonl")
    q.add_argument("--test", type=int, default=500, help="video QA samples in test.jsonl")
    q.add_argument("--static", type=int, default=1000, help="static pseudo-video samples in static_train.jsonl")
    q.add_argument("--frames", type=int, default=16, help="frames per video")
    q.add_argument("--size", type=int, default=64, help="frame side in pixels")
    q.add_argument("--seed", type=int, default=0)
    q.set_defaults(func=cmd_data_synthetic)

    p = sub.add_parser("env", help="the frozen reward environment")
    esub = p.add_subparsers(dest="env_command", required=True)
    q = esub.add_parser("fit", help="train the built-in world's small MLLM (then frozen as the environment)")
    _add_config_args(q)
    q.add_argument("--out", default=None, help="output folder (default: the world cache)")
    q.add_argument("--resume", default=None, help="auto | PATH of a fit checkpoint")
    q.set_defaults(func=cmd_env_fit)

    p = sub.add_parser("train", help="train a SCORE compression policy")
    _add_config_args(p)
    p.add_argument("--resume", default=None, help="auto (latest checkpoint of this run) | PATH")
    p.add_argument("--force", action="store_true", help="resume even if the config changed the run")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="accuracy of compression methods at keep ratios")
    _add_config_args(p)
    p.add_argument("--policy", default=None, help="exported policy folder or run folder (for method `score`)")
    p.add_argument("--methods", type=_names, default=None, help="comma-separated methods (default: eval.methods)")
    p.add_argument("--ratios", type=_floats, default=None, help="comma-separated keep ratios")
    p.add_argument("--manifest", default=None, help="manifest to evaluate (default: data.eval_manifest)")
    p.add_argument("--out", required=True, help="results FILE.json (FILE.md and FILE.png are written beside it)")
    p.add_argument("--skip-bad", action="store_true", help="skip invalid manifest lines and count them")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("bench", help="LLM prefill latency, full vs kept tokens")
    _add_config_args(p)
    p.add_argument("--ratios", type=_floats, default=None)
    p.add_argument("--policy", default=None, help="policy folder to time (default: a fresh policy of the config)")
    p.add_argument("--out", required=True, help="results FILE.json")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("export", help="export a trained policy as a self-describing folder")
    p.add_argument("run", help="run folder or checkpoint folder")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("demo", help="the whole path on the built-in world: data, env fit, train, eval at 0.1")
    _add_config_args(p, required=False)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse stops filling `overrides` at the first option: `CONFIG --out DIR fit.steps=5` leaves the override
    # over. Overrides may go anywhere after CONFIG, so the leftover key=value words join the list, in order.
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = [*(args.overrides or []), *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        args.func(args)
    except ScoreRLError as e:
        print(f"scorerl: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("scorerl: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
