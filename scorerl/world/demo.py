"""The whole path on the built-in world, as one command: data -> environment fit -> SCORE training -> evaluation.

Each step reuses what an earlier run already built (world data, fitted environment, feature cache, a finished
training run), so a second `scorerl demo` only re-evaluates.
"""

from __future__ import annotations

import time
from pathlib import Path

from scorerl.config import load_config
from scorerl.errors import ConfigError
from scorerl.world.paths import world_dir, world_env_dir

DEMO_METHODS = ["full", "uniform", "random", "framediff", "score"]
ENV_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "world" / "env.yaml"
ENV_SECTIONS = ("fit", "world", "env", "run", "data")


def run_demo(config_path: str | None = None, overrides: list[str] = ()) -> dict:
    from scorerl.world.synthetic import build_world
    from scorerl.world.fit import fit_env
    from scorerl.eval.harness import run_eval
    from scorerl.rl.trainer import train

    cfg = load_config(config_path or "configs/quickstart.yaml", list(overrides))
    started = time.perf_counter()

    _banner("1/4 world: rendering the synthetic video-QA world (cached)")
    w = cfg.world
    if w.version != 3:
        # the demo's run files (quickstart, configs/world/env.yaml) read world:<split> and env.path world
        raise ConfigError(f"world.version: `scorerl demo` runs on world version 3, got {w.version}; for version 4 "
                          "fit its environment with `scorerl env fit configs/world/env_v4.yaml`")
    build_world(world_dir(), train=w.train, test=w.test, static_train=w.static_train, frames=w.frames,
                size=w.size, seed=w.seed)

    _banner("2/4 environment: fitting the small reward MLLM (cached)")
    if cfg.env.path == "world":
        # The environment's own run file; command-line overrides of its sections (fit.*, world.*, env.*, run.*,
        # data.*) apply to it too, so one command line can shrink the whole path (e.g. for a smoke test).
        env_overrides = [o for o in overrides if o.split("=", 1)[0].split(".")[0] in ENV_SECTIONS]
        if not ENV_CONFIG.is_file():
            raise ConfigError(f"{ENV_CONFIG}: the environment's run file is missing; `scorerl demo` runs from a "
                              "checkout of the repository (pip install -e .)")
        fit_env(load_config(ENV_CONFIG, env_overrides), out=world_env_dir(), resume="auto")

    _banner("3/4 training: SCORE policy with group RL over both curriculum stages")
    run_dir = train(cfg, resume="auto")

    _banner("4/4 evaluation at keep ratio 0.1")
    cfg.eval.methods = DEMO_METHODS
    cfg.eval.ratios = [0.1]
    out = Path(run_dir) / "eval_demo.json"
    report = run_eval(cfg, policy_dir=str(run_dir), out=str(out))
    print(Path(out).with_suffix(".md").read_text())
    print(f"demo finished in {(time.perf_counter() - started) / 60:.1f} min; results in {out}")
    return report


def _banner(text: str) -> None:
    print(f"\n=== {text}", flush=True)
