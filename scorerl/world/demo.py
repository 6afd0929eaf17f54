"""The whole path on the built-in world, as one command: data -> environment fit -> SCORE training -> evaluation.

Each step reuses what an earlier run already built (world data, fitted environment, feature cache, a finished
training run), so a second `scorerl demo` only re-evaluates.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from scorerl.config import load_config
from scorerl.errors import ConfigError
from scorerl.paths import packaged_configs, resolve_config
from scorerl.world.paths import world_env_dir

DEMO_METHODS = ["full", "uniform", "random", "framediff", "score"]  # version 3; version 4 prints the run file's
# eval.methods (every baseline): its 10% column is the README's main result
ENV_CONFIGS = {3: "env.yaml", 4: "env_v4.yaml"}  # each version's environment run file, in the packaged world/
ENV_PATHS = {3: "world", 4: "world_v4"}  # the env.path that names each version's fitted environment
ENV_SECTIONS = ("fit", "world", "env", "run", "data")


def run_demo(config_path: str | None = None, overrides: Sequence[str] = ()) -> dict:
    from scorerl.eval.harness import run_eval
    from scorerl.rl.trainer import train
    from scorerl.world.fit import fit_env
    from scorerl.world.synthetic import build_from_section

    cfg = load_config(resolve_config(config_path or "world/score_v4.yaml"), list(overrides))
    started = time.perf_counter()
    version = cfg.world.version
    # The environment's own run file; command-line overrides of its sections (fit.*, world.*, env.*, run.*, data.*)
    # apply to it too, so one command line can shrink the whole path (e.g. for a smoke test).
    env_overrides = [o for o in overrides if o.split("=", 1)[0].split(".")[0] in ENV_SECTIONS]
    env_config = packaged_configs() / "world" / ENV_CONFIGS[version]
    if cfg.env.path == ENV_PATHS[version] and not env_config.is_file():
        raise ConfigError(
            f"{env_config}: the environment's run file is missing; `scorerl demo` runs from a "
            "checkout of the repository (pip install -e .)"
        )

    _banner(f"1/4 world: rendering the synthetic video-QA world, version {version} (cached)")
    build_from_section(cfg.world)

    _banner("2/4 environment: fitting the small reward MLLM (cached)")
    if cfg.env.path == ENV_PATHS[version]:
        fit_env(load_config(env_config, env_overrides), out=world_env_dir(version), resume="auto")

    _banner("3/4 training: SCORE policy with group RL over both curriculum stages")
    run_dir = train(cfg, resume="auto")

    _banner("4/4 evaluation at keep ratio 0.1")
    if version == 3:
        cfg.eval.methods = DEMO_METHODS
    cfg.eval.ratios = [0.1]
    out = Path(run_dir) / "eval_demo.json"
    report = run_eval(cfg, policy_dir=str(run_dir), out=str(out))
    print(Path(out).with_suffix(".md").read_text())
    print(f"demo finished in {(time.perf_counter() - started) / 60:.1f} min; results in {out}")
    return report


def _banner(text: str) -> None:
    print(f"\n=== {text}", flush=True)
