"""Where scorerl keeps what it builds once and reuses (feature caches; clients such as the world add their own), and
where the config files that ship inside the package are."""

import os
from pathlib import Path


def scorerl_home() -> Path:
    """$SCORERL_HOME, else ~/.cache/scorerl."""
    return Path(os.environ.get("SCORERL_HOME", Path.home() / ".cache" / "scorerl")).expanduser()


def feature_cache_dir() -> Path:
    """Cached projected visual tokens, keyed by environment, sample and frame settings."""
    return scorerl_home() / "features"


def packaged_configs() -> Path:
    """The run files, accelerate configs and world configs that ship inside the package (scorerl/configs; the
    repository's configs/ is a link to it)."""
    return Path(__file__).resolve().parent / "configs"


def resolve_config(name: str | os.PathLike) -> Path:
    """A config file as given when it exists; else the packaged file of that name, so an installed wheel finds
    `qwen2_5_vl_7b/stage2_video.yaml` (also written `configs/...`, or without `.yaml`). A name found nowhere is
    returned as given, for the loader to report."""
    path = Path(name).expanduser()
    if path.exists():
        return path
    relative = Path(*path.parts[1:]) if path.parts[:1] == ("configs",) else path
    for candidate in (relative, relative.with_suffix(".yaml")):
        packaged = packaged_configs() / candidate
        if not candidate.is_absolute() and packaged.is_file():
            return packaged
    return path


def list_packaged_configs() -> list[str]:
    """Names of the packaged config files, relative to scorerl/configs."""
    root = packaged_configs()
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.yaml"))
