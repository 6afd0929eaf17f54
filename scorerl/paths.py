"""Where scorerl keeps what it builds once and reuses (feature caches; clients such as the world add their own)."""

import os
from pathlib import Path


def scorerl_home() -> Path:
    """$SCORERL_HOME, else ~/.cache/scorerl."""
    return Path(os.environ.get("SCORERL_HOME", Path.home() / ".cache" / "scorerl")).expanduser()


def feature_cache_dir() -> Path:
    """Cached projected visual tokens, keyed by environment, sample and frame settings."""
    return scorerl_home() / "features"
