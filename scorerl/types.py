"""The ground floor: the records every layer passes around, importing nothing of scorerl.

Shapes used throughout:
  features  [T, N, D]   projected visual tokens: T temporal units, N tokens per unit, D = LLM width
  keep      bool [T, N] which visual tokens a request keeps (None = all)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch


@dataclass
class VisualTokens:
    """Projected visual tokens of one video, plus what the model needs to place them."""

    features: torch.Tensor  # [T, N, D]
    grid: tuple[int, int]  # (rows, cols) of one temporal unit; rows * cols == N
    suffix: torch.Tensor | None = None  # [S, D] tokens the model appends after the video and always keeps
    meta: dict = field(default_factory=dict)  # model-specific placement info (plain ints/lists, JSON-able)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.features.shape)

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """For safetensors caches (meta and grid go in the file's string metadata)."""
        out = {"features": self.features.contiguous()}
        if self.suffix is not None:
            out["suffix"] = self.suffix.contiguous()
        return out


@dataclass
class ScoreRequest:
    """One forward of the frozen MLLM: video tokens (a subset of them), then prompt text, then the target."""

    visual: VisualTokens
    prompt: str  # text after the video: question, options, answer cue
    target: str = ""  # answer text whose cross-entropy is scored (teacher forcing)
    keep: torch.Tensor | None = None  # bool [T, N]; None keeps every token


@dataclass
class Sample:
    id: str
    media: Path  # absolute path of the video or image
    kind: str  # "video" | "image"
    question: str
    options: list[str]
    answer: str  # the answer's letter, "A".."D"
    answer_index: int  # its 0-based option index
    family: str = ""
    line: int = 0  # 1-based line in the manifest, for error messages
    meta: dict = field(default_factory=dict)  # the manifest line's other fields, passed through untouched
