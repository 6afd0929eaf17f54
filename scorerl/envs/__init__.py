"""The frozen MLLM environments: pick one by architecture name and load it from a folder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

from scorerl.envs.base import VideoEnv
from scorerl.errors import ConfigError, EnvError
from scorerl.types import ScoreRequest, VisualTokens

if TYPE_CHECKING:  # the transformers-backed base class; imported where an architecture is picked
    from scorerl.envs.hf import HFVideoEnv

__all__ = [
    "ScoreRequest",
    "VideoEnv",
    "VisualTokens",
    "check_answer_format",
    "env_class",
    "load_env",
    "register_env_alias",
    "resolve_env_path",
]

ARCHS = ("qwen2_5_vl", "llava_onevision")

# Named environment folders (`env.path: NAME`), e.g. the built-in world's fitted model: a client registers the
# name with a function that returns the folder (or raises EnvError saying how to make it). The core knows none.
_ALIASES: dict[str, Callable[[], Path]] = {}


def register_env_alias(name: str, folder: Callable[[], Path]) -> None:
    """Let `env.path: NAME` stand for the folder that folder() returns."""
    _ALIASES[name] = folder


def env_class(arch: str) -> type[HFVideoEnv]:
    """The VideoEnv subclass of an architecture name (qwen2_5_vl | llava_onevision)."""
    if arch == "qwen2_5_vl":
        from scorerl.envs.qwen2_5_vl import Qwen25VLEnv

        return Qwen25VLEnv
    if arch == "llava_onevision":
        from scorerl.envs.llava_onevision import LlavaOneVisionEnv

        return LlavaOneVisionEnv
    raise EnvError(f"unknown architecture {arch!r}; choose {' or '.join(ARCHS)}")


def resolve_env_path(path: str) -> Path:
    """A registered name (e.g. `world`) -> its folder; anything else is a path."""
    if path in _ALIASES:
        return _ALIASES[path]()
    return Path(path).expanduser()


def check_answer_format(env: VideoEnv, answer_format: str) -> None:
    """Refuse to score an environment in another answer format than the one its folder declares (the
    `answer_format` setting of scorerl_env.json, written by a fit): its rewards and accuracies would be
    meaningless. Folders that declare none (real checkpoints) pass."""
    declared = getattr(env, "settings", {}).get("answer_format")
    if declared is not None and declared != answer_format:
        raise ConfigError(
            f"data.answer_format: {answer_format!r}, but the environment was fitted to answer with "
            f"{declared!r} (its scorerl_env.json); set data.answer_format={declared}"
        )


def load_env(env_section) -> VideoEnv:
    """Load the frozen environment an EnvSection describes (arch, path, dtype, device, attention, budget, system
    prompt, placement: see envs/partition.py)."""
    from scorerl.envs.partition import check_launch, partition_zero3

    check_launch(env_section.placement)
    cls = env_class(env_section.arch)
    env = cls.from_pretrained(
        resolve_env_path(env_section.path),
        dtype=env_section.dtype,
        device=env_section.device,
        attn_implementation=env_section.attn_implementation,
        token_budget=env_section.token_budget,
        device_map="auto" if env_section.placement == "device_map" else None,
    )
    if env_section.system_prompt:
        env.settings["system_prompt"] = env_section.system_prompt
    if env_section.placement == "zero3":
        partition_zero3(env, env_section.zero3_config)
    return env
