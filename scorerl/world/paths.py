"""Where the built-in world keeps what it builds once and reuses, under scorerl's home folder."""

from pathlib import Path

from scorerl.paths import scorerl_home


def world_dir() -> Path:
    """The built-in world's rendered data (videos, images, *.jsonl manifests)."""
    return scorerl_home() / "world"


def world_env_dir() -> Path:
    """The built-in world's fitted reward environment (a save_pretrained folder)."""
    return scorerl_home() / "world_env"
