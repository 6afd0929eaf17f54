"""Where scorerl keeps what it builds once and reuses (world data, fitted environment, feature caches)."""

import os
from pathlib import Path


def scorerl_home() -> Path:
    """$SCORERL_HOME, else ~/.cache/scorerl."""
    return Path(os.environ.get("SCORERL_HOME", Path.home() / ".cache" / "scorerl")).expanduser()


def world_dir() -> Path:
    """The built-in world's rendered data (videos, images, *.jsonl manifests)."""
    return scorerl_home() / "world"


def world_env_dir() -> Path:
    """The built-in world's fitted reward environment (a save_pretrained folder)."""
    return scorerl_home() / "world_env"


def feature_cache_dir() -> Path:
    """Cached projected visual tokens, keyed by environment, sample and frame settings."""
    return scorerl_home() / "features"
