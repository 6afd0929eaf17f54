"""Where the built-in world keeps what it builds once and reuses, under scorerl's home folder. Each world version
has its own folders, so building or fitting version 4 never replaces version 3's."""

from pathlib import Path

from scorerl.paths import scorerl_home


def _suffix(version: int) -> str:
    return "" if version == 3 else f"_v{version}"  # version 3 keeps the folder names it always had


def world_dir(version: int = 3) -> Path:
    """The built-in world's rendered data (videos, images, *.jsonl manifests)."""
    return scorerl_home() / f"world{_suffix(version)}"


def world_env_dir(version: int = 3) -> Path:
    """The built-in world's fitted reward environment (a save_pretrained folder)."""
    return scorerl_home() / f"world_env{_suffix(version)}"
