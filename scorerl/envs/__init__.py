"""The frozen MLLM environments: pick one by architecture name and load it from a folder."""

from __future__ import annotations

from pathlib import Path

from scorerl.envs.base import ScoreRequest, VideoEnv, VisualTokens
from scorerl.errors import EnvError

__all__ = ["ScoreRequest", "VideoEnv", "VisualTokens", "env_class", "load_env", "resolve_env_path"]


def env_class(arch: str) -> type:
    """The VideoEnv subclass of an architecture name (qwen2_5_vl | llava_onevision)."""
    if arch == "qwen2_5_vl":
        from scorerl.envs.qwen2_5_vl import Qwen25VLEnv

        return Qwen25VLEnv
    if arch == "llava_onevision":
        from scorerl.envs.llava_onevision import LlavaOneVisionEnv

        return LlavaOneVisionEnv
    raise EnvError(f"unknown architecture {arch!r}; choose qwen2_5_vl or llava_onevision")


def resolve_env_path(path: str) -> Path:
    """`world` -> the built-in world's fitted environment folder (EnvError if it was not fitted yet)."""
    if path == "world":
        from scorerl.paths import world_env_dir

        folder = world_env_dir()
        if not (folder / "config.json").is_file():
            raise EnvError(f"the built-in world's environment is missing at {folder}; "
                           f"run `scorerl env fit configs/world/env.yaml` first")
        return folder
    return Path(path).expanduser()


def check_answer_format(env_path: str, answer_format: str) -> None:
    """Refuse to score an environment fitted by `scorerl env fit` in another answer format than it was fitted for
    (its fit.json says which): its rewards and accuracies would be meaningless. Other checkpoints pass."""
    import json

    from scorerl.errors import ConfigError

    fit_file = resolve_env_path(env_path) / "fit.json"
    try:
        fitted = json.loads(fit_file.read_text())["config"]["data"]["answer_format"]
    except (OSError, ValueError, KeyError, TypeError):
        return
    if fitted != answer_format:
        raise ConfigError(f"data.answer_format: {answer_format!r}, but the environment in {fit_file.parent} was "
                          f"fitted to answer with {fitted!r} ({fit_file.name}); set data.answer_format={fitted}")


def load_env(env_section) -> VideoEnv:
    """Load the frozen environment an EnvSection describes (arch, path, dtype, device, attention, budget)."""
    cls = env_class(env_section.arch)
    return cls.from_pretrained(resolve_env_path(env_section.path), dtype=env_section.dtype,
                               device=env_section.device, attn_implementation=env_section.attn_implementation,
                               token_budget=env_section.token_budget)
