"""The built-in synthetic world: a video-QA benchmark and the small MLLM fitted to it as its reward environment.

A CLIENT of the core: it may import anything in scorerl, and nothing in the core imports it (only the CLI). Importing
this package plugs it in:
  - `world:<split>` manifest specs (data.*_manifest) resolve to the rendered world's <split>.jsonl, and
    `world_v4:<split>` to world version 4's (nuisances.py);
  - `env.path: world` resolves to the fitted environment's folder, `env.path: world_v4` to version 4's;
  - the config sections `world` (what to render) and `fit` (how to fit the environment) become valid.
"""

from __future__ import annotations

from scorerl.config import register_section
from scorerl.data.manifest import register_manifest_scheme
from scorerl.envs import register_env_alias
from scorerl.errors import DataError, EnvError
from scorerl.world.config import FitSection, WorldSection
from scorerl.world.paths import world_dir, world_env_dir


def _world_manifest(split: str):
    path = world_dir() / f"{split}.jsonl"
    if not path.is_file():
        raise DataError(
            f"world:{split}: built-in world split not found at {path}; build the world with "
            f"`scorerl data synthetic --out {world_dir()}`"
        )
    return path


def _world_env():
    folder = world_env_dir()
    if not (folder / "config.json").is_file():
        raise EnvError(
            f"the built-in world's environment is missing at {folder}; "
            f"run `scorerl env fit configs/world/env.yaml` first"
        )
    return folder


def _world_v4_manifest(split: str):
    path = world_dir(4) / f"{split}.jsonl"
    if not path.is_file():
        raise DataError(
            f"world_v4:{split}: world v4 split not found at {path}; `scorerl env fit "
            f"configs/world/env_v4.yaml` builds it (or scripts/nuisance_report.py)"
        )
    return path


def _world_v4_env():
    folder = world_env_dir(4)
    if not (folder / "config.json").is_file():
        raise EnvError(
            f"world v4's environment is missing at {folder}; run `scorerl env fit configs/world/env_v4.yaml` first"
        )
    return folder


register_manifest_scheme("world", _world_manifest)
register_env_alias("world", _world_env)
register_manifest_scheme("world_v4", _world_v4_manifest)
register_env_alias("world_v4", _world_v4_env)
register_section("world", WorldSection)
register_section("fit", FitSection)
