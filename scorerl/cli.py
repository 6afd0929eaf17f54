"""`scorerl <command>`: parses arguments, calls one public entry point per capability, prints what it produced.

Heavy modules are imported inside each command so `scorerl --help` and `scorerl config show` stay fast. The
built-in world plugs in here (and only here): its `world:` manifests, `env.path: world` and its config sections.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scorerl.errors import ScoreRLError

EXAMPLES = """examples:
  scorerl config show configs/quickstart.yaml > shown.yaml      every field resolved, docs as comments
  scorerl train configs/quickstart.yaml train.max_steps=100      section.key=value overrides follow the config
  accelerate launch --multi_gpu --num_processes 2 -m scorerl train CONFIG   the same run on 2 processes
  scorerl eval configs/quickstart.yaml --policy runs/quickstart --out results/quickstart.json
  scorerl demo                                                   the whole path on the built-in world
"""


def _add_config_args(p: argparse.ArgumentParser, required: bool = True):
    p.add_argument("config", nargs=None if required else "?", help="YAML run config")
    p.add_argument("overrides", nargs="*", help="section.key=value overrides (may also follow the options)")


def _load(args):
    from scorerl.config import load_config
    from scorerl.paths import resolve_config

    return load_config(resolve_config(args.config), args.overrides)


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _done(text: str) -> None:
    print(f"scorerl: {text}", flush=True)


def cmd_config_show(args):
    from scorerl.config import describe

    print(describe(_load(args)), end="")


def cmd_config_list(args):
    from scorerl.paths import list_packaged_configs, packaged_configs

    print(f"# packaged with scorerl, in {packaged_configs()} (give a name to any command)")
    for name in list_packaged_configs():
        print(name)


def cmd_config_path(args):
    from scorerl.errors import ConfigError
    from scorerl.paths import resolve_config

    path = resolve_config(args.name)
    if not path.is_file():
        raise ConfigError(f"{args.name}: no such config file, and none packaged by that name (scorerl config list)")
    print(path.resolve())


def cmd_data_synthetic(args):
    from scorerl.world.synthetic import build_world

    out = build_world(
        args.out,
        train=args.train,
        test=args.test,
        static_train=args.static,
        frames=args.frames,
        size=args.size,
        seed=args.seed,
        static_test=args.static_test,
        version=args.version,
    )
    _done(f"world in {out} (manifests: {', '.join(sorted(p.name for p in Path(out).glob('*.jsonl')))})")


def cmd_data_features(args):
    from scorerl.data.store import human_bytes
    from scorerl.envs.features import build_features

    report = build_features(_load(args), manifests=args.manifest, out=args.out, shard_size=args.shard_size)
    if report.main_process:
        _done(
            f"feature store {report.store}: {report.samples} samples, {human_bytes(report.bytes)} "
            f"({report.built_shards} shards built here now, {report.reused_shards} kept from before; "
            f"{len(report.skipped)} skipped)" + ("; nothing to do" if report.built_shards == 0 else "")
        )


def cmd_env_fit(args):
    from scorerl.world.fit import fit_env

    out = fit_env(_load(args), out=args.out, resume=args.resume)
    _done(f"fitted environment in {out} (fit record: {Path(out) / 'fit.json'})")


def cmd_env_show(args):
    from scorerl.envs import load_env
    from scorerl.envs.show import describe, load_for_show

    env_section, data = load_for_show(args.target, args.overrides)
    print(describe(load_env(env_section), data, video=args.video))


def cmd_env_tiny(args):
    from scorerl.envs.release_folder import describe_tiny_release, write_tiny_release

    out = write_tiny_release(args.arch, args.out, seed=args.seed, force=args.force)
    info = describe_tiny_release(out)
    for name in info["files"]:
        print(f"  {name:<36} {(out / name).stat().st_size:>9,} bytes")
    _done(
        f"tiny random {args.arch} in {out} ({info['parameters']:,} parameters, laid out like the release; "
        f"random weights, for trying commands only)"
    )
    _done(f"use it with env.arch={args.arch} env.path={out}")


def cmd_train(args):
    from scorerl.rl.trainer import train

    run_dir = train(_load(args), resume=args.resume, force=args.force)
    _done(f"run folder {run_dir}: policy/ (exported policy), checkpoints/, metrics.jsonl, config.yaml")


def cmd_eval(args):
    from scorerl.config.loader import set_from_flag
    from scorerl.eval.harness import run_eval
    from scorerl.eval.report import eval_markdown, output_paths

    cfg = _load(args)
    # Checked like the config's own values, before any work; an empty `--methods ''` is refused, not ignored.
    if args.methods is not None:
        cfg.eval = set_from_flag(cfg.eval, "methods", args.methods, "--methods")
    if args.ratios is not None:
        cfg.eval = set_from_flag(cfg.eval, "ratios", args.ratios, "--ratios")
    if args.skip_bad:
        cfg.data.skip_bad = True
    result = run_eval(cfg, policy_dir=_policies(args.policy), out=args.out, manifest=args.manifest)
    print(eval_markdown(result), end="")
    paths = output_paths(args.out)
    _done(f"results in {paths['json']}, {paths['md']}, {paths['png']}")


def _policies(values: list[str] | None) -> list[str] | None:
    """--policy A --policy B, or --policy A,B: one folder per training seed. A value that names an existing path
    is taken whole, so a folder whose name holds a comma still works."""
    if not values:
        return None
    return [p for v in values for p in ([v] if Path(v).expanduser().exists() else _names(v))]


def cmd_bench(args):
    from scorerl.config.loader import set_from_flag
    from scorerl.eval.bench import run_bench
    from scorerl.eval.report import bench_markdown, output_paths

    cfg = _load(args)
    if args.ratios is not None:
        cfg.bench = set_from_flag(cfg.bench, "ratios", args.ratios, "--ratios")
    result = run_bench(cfg, out=args.out, policy_dir=args.policy)
    print(bench_markdown(result), end="")
    paths = output_paths(args.out)
    _done(f"results in {paths['json']}, {paths['md']}")


def cmd_compress(args):
    from scorerl.data.store import human_bytes
    from scorerl.integrations.library_build import compress_command

    report = compress_command(
        args.config,
        args.overrides,
        args.manifest,
        args.ratio,
        args.out,
        compressor=args.compressor,
        shard_size=args.shard_size,
    )
    if report.main_process:
        _done(
            f"video library {report.path}: {report.videos} videos at ratio {args.ratio}, "
            f"{human_bytes(report.bytes)} ({human_bytes(report.full_bytes)} with all their tokens; "
            f"{report.built_shards} shards built here now, {report.reused_shards} kept from before; "
            f"{len(report.skipped)} skipped)"
        )


def cmd_export(args):
    from scorerl.export import export_policy

    out = export_policy(args.run, args.out)
    _done(f"policy exported to {out}")


def cmd_demo(args):
    from scorerl.world.demo import run_demo

    run_demo(args.config, overrides=args.overrides)


def _method_list() -> str:
    from scorerl.eval.methods import available_methods

    return ", ".join(available_methods())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scorerl",
        description=__doc__.splitlines()[0],
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    raw = argparse.RawDescriptionHelpFormatter

    p = sub.add_parser("config", help="inspect run configs")
    csub = p.add_subparsers(dest="config_command", required=True)
    q = csub.add_parser(
        "show",
        help="print the resolved config as YAML, each field's doc as a comment",
        description="Print the resolved config (file + overrides + defaults) as YAML that "
        "`scorerl train` accepts back unchanged.",
        epilog="example:\n  scorerl config show configs/quickstart.yaml rl.group_size=4 > mine.yaml"
        "\n  scorerl train mine.yaml",
        formatter_class=raw,
    )
    _add_config_args(q, required=False)
    q.set_defaults(func=cmd_config_show)
    q = csub.add_parser(
        "list",
        help="the run files and accelerate configs packaged with scorerl",
        description="List the config files that ship inside the package; any command takes such a "
        "name in place of a path (e.g. qwen2_5_vl_7b/stage2_video.yaml).",
    )
    q.set_defaults(func=cmd_config_list)
    q = csub.add_parser(
        "path",
        help="the absolute path of a packaged config file",
        description="Print where a packaged config file is, e.g. for accelerate's --config_file.",
        epilog='example:\n  accelerate launch --config_file "$(scorerl config path '
        'accelerate/multi_gpu.yaml)" -m scorerl train qwen2_5_vl_7b/stage2_video.yaml',
        formatter_class=raw,
    )
    q.add_argument("name", help="a file name relative to the packaged configs (see `scorerl config list`)")
    q.set_defaults(func=cmd_config_path)

    p = sub.add_parser("data", help="build data sets")
    dsub = p.add_subparsers(dest="data_command", required=True)
    q = dsub.add_parser(
        "synthetic",
        help="render the built-in synthetic video-QA world",
        epilog="examples:\n  scorerl data synthetic --out ~/.cache/scorerl/world --train 300\n"
        "  scorerl data synthetic --out ~/.cache/scorerl/world_v4_test10k --version 4 --train 0 "
        "--test 10000 --static 0 --static-test 0 --seed 2   a large v4 test split (its own seed)",
        formatter_class=raw,
    )
    q.add_argument("--out", required=True, help="output folder (videos, images, *.jsonl manifests)")
    q.add_argument("--train", type=int, default=3000, help="video QA samples in train.jsonl")
    q.add_argument("--test", type=int, default=500, help="video QA samples in test.jsonl")
    q.add_argument("--static", type=int, default=1000, help="static pseudo-video samples in static_train.jsonl")
    q.add_argument(
        "--static-test",
        type=int,
        default=None,
        help="image QA samples in static_test.jsonl (default: min(200, static / 5))",
    )
    q.add_argument(
        "--version",
        type=int,
        choices=(3, 4),
        default=3,
        help="world version: 3 (the default world) or 4 (with nuisances, 0.5 each; docs/world.md)",
    )
    q.add_argument("--frames", type=int, default=16, help="frames per video")
    q.add_argument("--size", type=int, default=64, help="frame side in pixels")
    q.add_argument(
        "--seed",
        type=int,
        default=0,
        help="the world's seed (default 0, the built-in world's); a separate split (--train 0 --static 0) needs "
        "a seed of its own",
    )
    q.set_defaults(func=cmd_data_synthetic)

    from scorerl.data import convert_cli

    q = dsub.add_parser(
        "convert",
        help="turn NExT-QA / MVBench / Video-MME / LLaVA-Video / any table into a manifest",
        description=convert_cli.__doc__.split("\n\n", 1)[1],
        epilog=convert_cli.EXAMPLES,
        formatter_class=raw,
    )
    convert_cli.add_arguments(q)
    q.set_defaults(func=lambda args: convert_cli.run(args, prog="scorerl"))

    q = dsub.add_parser(
        "features",
        help="build the feature store of a config's environment ahead of training",
        description="Encode every sample once into a sharded feature store (data/store.py): the "
        "environment's dtype, images as one unit, read lazily. Under `accelerate "
        "launch` each process builds its share of the shards; a rerun builds only "
        "the shards still missing. Train from it with data.features=store.",
        epilog="examples:\n  scorerl data features configs/quickstart.yaml\n"
        "  accelerate launch --multi_gpu --num_processes 8 -m scorerl data features CONFIG "
        "--manifest train.jsonl --out /data/store",
        formatter_class=raw,
    )
    _add_config_args(q)
    q.add_argument(
        "--manifest",
        action="append",
        default=None,
        help="manifest to encode (repeatable; default: the config's stage 1, stage 2 and eval manifests)",
    )
    q.add_argument(
        "--out",
        default=None,
        help="store folder (default: data.store_dir, else one per environment "
        "and frame setting under $SCORERL_HOME/stores)",
    )
    q.add_argument("--shard-size", type=int, default=256, help="samples per shard file (default 256)")
    q.set_defaults(func=cmd_data_features)

    p = sub.add_parser("env", help="the frozen reward environment")
    esub = p.add_subparsers(dest="env_command", required=True)
    q = esub.add_parser(
        "fit",
        help="train the built-in world's small MLLM (then frozen as the environment)",
        epilog="example:\n  scorerl env fit configs/world/env.yaml --resume auto",
        formatter_class=raw,
    )
    _add_config_args(q)
    q.add_argument("--out", default=None, help="output folder (default: the world cache)")
    q.add_argument("--resume", default=None, help="auto | PATH of a fit checkpoint")
    q.set_defaults(func=cmd_env_fit)
    q = esub.add_parser(
        "tiny",
        help="write a tiny random model folder laid out like a real release",
        description="Write a tiny RANDOM model folder file for file like the real release "
        "(Qwen/Qwen2.5-VL-7B-Instruct or llava-hf/llava-onevision-qwen2-7b-ov-hf: config, "
        "sharded safetensors under the release's weight names, tokenizer, chat template, "
        "processor and generation configs), so every command can be tried without a GPU "
        "or a download. OUT must be new or empty.",
        epilog="example:\n  scorerl env tiny qwen2_5_vl /tmp/tiny-qwen\n"
        "  scorerl train configs/quickstart.yaml env.arch=qwen2_5_vl env.path=/tmp/tiny-qwen",
        formatter_class=raw,
    )
    q.add_argument(
        "arch",
        metavar="ARCH",
        choices=("qwen2_5_vl", "llava_onevision"),
        help="qwen2_5_vl | llava_onevision: the release to lay the folder out like",
    )
    q.add_argument("out", metavar="OUT", help="folder to write (new or empty)")
    q.add_argument("--seed", type=int, default=0, help="seed of the random weights (the same seed, the same files)")
    q.add_argument(
        "--force",
        action="store_true",
        help="replace OUT if `scorerl env tiny` wrote it (a folder it did not write is never touched)",
    )
    q.set_defaults(func=cmd_env_tiny)
    q = esub.add_parser(
        "show",
        help="the prompt, frame rule and visual-token count a model folder produces",
        description="Print the chat text the model folder's own template renders around a video, the "
        "frame rule (a run config's data section; a bare folder: native size), the "
        "processor settings, and with --video the frames and visual tokens of that clip.",
        epilog="examples:\n  scorerl env show /models/Qwen2.5-VL-7B-Instruct --video clip.mp4\n"
        "  scorerl env show configs/qwen2_5_vl_7b/stage2_video.yaml --video clip.mp4",
        formatter_class=raw,
    )
    q.add_argument("target", metavar="CONFIG_OR_FOLDER", help="a run config file or a model folder")
    q.add_argument("overrides", nargs="*", metavar="section.key=value", help="config overrides (a config only)")
    q.add_argument("--video", default=None, metavar="CLIP", help="a video file: its frames and visual-token count")
    q.set_defaults(func=cmd_env_show)

    p = sub.add_parser(
        "train",
        help="train a SCORE compression policy",
        description="Train a SCORE policy; the run folder is run.output_dir/run.name.",
        epilog="examples:\n  scorerl train configs/quickstart.yaml\n"
        "  scorerl train configs/quickstart.yaml --resume auto     continue after a stop\n"
        "  accelerate launch --multi_gpu --num_processes 2 -m scorerl train configs/quickstart.yaml",
        formatter_class=raw,
    )
    _add_config_args(p)
    p.add_argument(
        "--resume",
        default=None,
        help="auto (the run's newest intact checkpoint; fresh if none) | PATH of a checkpoint or run folder",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="without --resume: DELETE what scorerl wrote in the run folder (checkpoints/, policy/, "
        "metrics.jsonl, ...; never other files) and start over; with --resume: continue even though "
        "the config changes the run",
    )
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "eval",
        help="accuracy of compression methods at keep ratios",
        description=f"Accuracy of compression methods at keep ratios, all on the same cached "
        f"features, each with a 95% bootstrap interval over the questions and paired "
        f"intervals of its difference to full and score (eval.bootstrap resamples). "
        f"Methods: {_method_list()}.",
        epilog="examples:\n  scorerl eval configs/quickstart.yaml --policy runs/quickstart "
        "--methods full,uniform,vidcom2,score --ratios 0.05,0.1 --out results/q.json\n"
        "  scorerl eval configs/quickstart.yaml --policy runs/seed0 --policy runs/seed1 "
        "--policy runs/seed2 --out results/seeds.json   score over 3 training seeds",
        formatter_class=raw,
    )
    _add_config_args(p)
    p.add_argument(
        "--policy",
        action="append",
        default=None,
        help="exported policy folder, run folder or checkpoint folder (needed by method `score`); "
        "repeat it or give a comma list for several training seeds: `score` is then their mean, "
        "with an interval over questions and seeds, and each seed's accuracy",
    )
    p.add_argument(
        "--methods", type=_names, default=None, help=f"comma-separated, from: {_method_list()} (default: eval.methods)"
    )
    p.add_argument("--ratios", type=_floats, default=None, help="comma-separated keep ratios in (0, 1]")
    p.add_argument("--manifest", default=None, help="manifest to evaluate (default: data.eval_manifest)")
    p.add_argument("--out", required=True, help="results FILE.json (FILE.md and FILE.png are written beside it)")
    p.add_argument("--skip-bad", action="store_true", help="skip invalid manifest lines and count them")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser(
        "bench",
        help="LLM prefill latency, full vs kept tokens",
        epilog="example:\n  scorerl bench configs/bench/cpu_small.yaml --out results/bench.json",
        formatter_class=raw,
    )
    _add_config_args(p)
    p.add_argument("--ratios", type=_floats, default=None, help="comma-separated keep ratios (default: bench.ratios)")
    p.add_argument("--policy", default=None, help="policy folder to time (default: a fresh policy of the config)")
    p.add_argument("--out", required=True, help="results FILE.json (FILE.md is written beside it)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser(
        "compress",
        help="compress videos once into a library that answers any later question",
        description="Encode each video of the manifests once, keep RATIO of its tokens by the "
        "policy and store only those with their original positions (a sharded video "
        'library, docs/data.md "Compress once, answer many"). Under `accelerate '
        "launch` each process builds its share of the shards; a rerun builds only "
        "the shards still missing.",
        epilog="examples:\n  scorerl compress runs/quickstart/policy --manifest videos.jsonl "
        "--ratio 0.1 --out lib/\n  scorerl compress configs/quickstart.yaml --compressor "
        "vidcom2 --manifest videos.jsonl --ratio 0.1 --out lib/\n  accelerate launch --multi_gpu "
        "--num_processes 8 -m scorerl compress POLICY env.path=/models/Qwen2.5-VL-7B-Instruct "
        "--manifest videos.jsonl --ratio 0.1 --out /data/lib",
        formatter_class=raw,
    )
    p.add_argument(
        "config",
        metavar="CONFIG_OR_POLICY",
        help="a run config (YAML), or a policy folder (exported, run or checkpoint) whose recorded run "
        "config gives the model and frame rule",
    )
    p.add_argument("overrides", nargs="*", help="section.key=value overrides (may also follow the options)")
    p.add_argument("--manifest", action="append", required=True, help="manifest of videos (repeatable)")
    p.add_argument("--ratio", type=float, required=True, help="share of each video's tokens to keep, in (0, 1]")
    p.add_argument("--out", required=True, help="library folder: new, empty, or an earlier build of these settings")
    p.add_argument(
        "--compressor",
        default=None,
        help="with a run config: a policy folder or a baseline name (default: the config's run folder)",
    )
    p.add_argument("--shard-size", type=int, default=64, help="videos per shard file (default 64)")
    p.set_defaults(func=cmd_compress)

    p = sub.add_parser(
        "export",
        help="export a trained policy as a self-describing folder",
        epilog="example:\n  scorerl export runs/quickstart --out policies/quickstart",
        formatter_class=raw,
    )
    p.add_argument("run", help="run folder (its newest checkpoint, else its policy/) or checkpoint folder")
    p.add_argument(
        "--out",
        required=True,
        help="folder to write: new, empty, or an earlier export (replaced "
        "atomically); a folder holding anything else is refused",
    )
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "demo",
        help="the whole path on the built-in world: data, env fit, train, eval at 0.1",
        epilog="examples:\n  scorerl demo configs/world/score_v4.yaml   world v4 (the README's main "
        "job)\n  scorerl demo configs/quickstart.yaml       the default world\nEach reuses what "
        "earlier runs built.",
        formatter_class=raw,
    )
    _add_config_args(p, required=False)
    p.set_defaults(func=cmd_demo)
    return parser


def _show_status_lines() -> None:
    """scorerl's own INFO lines (resumed from ..., already fitted: nothing to do, wrote ...) on stderr, once."""
    import logging

    logger = logging.getLogger("scorerl")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("scorerl: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    import scorerl.world  # noqa: F401  (plugs the built-in world in: world: manifests, env.path world, sections)

    _show_status_lines()
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse stops filling `overrides` at the first option: `CONFIG --out DIR fit.steps=5` leaves the override
    # over. Overrides may go anywhere after CONFIG, so the leftover key=value words join the list, in order.
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = [*(args.overrides or []), *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if getattr(args, "overrides", None):
            from scorerl.config.loader import refuse_repeated

            refuse_repeated(args.overrides)
        args.func(args)
    except ScoreRLError as e:
        print(f"scorerl: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        from scorerl.io.atomic import DISK_ERRNOS

        if e.errno not in DISK_ERRNOS:  # a full disk, a read-only or forbidden place: one line, not a traceback
            raise
        print(f"scorerl: error: {e.filename or 'a file'}: {e.strerror}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("scorerl: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
