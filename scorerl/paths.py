"""Where scorerl keeps what it builds once and reuses (world data, fitted environment, feature caches)."""

import os
from pathlib import Path


def scorerl_home() -> Path:
    """$SCORERL_HOME, else ~/.cache/scorerl."""
    return Path(os.environ.get("SCORERL_HOME", Path.home() / ".cache" / "scorerl")).expanduser()
