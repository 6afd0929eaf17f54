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
        T, N, D = self.features.shape
        return int(T), int(N), int(D)

    @property
    def token_count(self) -> int:
        """Visual tokens the LLM sees with all of them kept: T x N, plus the suffix (LLaVA-OneVision's newline)."""
        return token_count(self.features.shape, None if self.suffix is None else self.suffix.shape)

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """For safetensors caches (meta and grid go in the file's string metadata)."""
        out = {"features": self.features.contiguous()}
        if self.suffix is not None:
            out["suffix"] = self.suffix.contiguous()
        return out


def token_count(features_shape, suffix_shape=None) -> int:
    """T x N (+ S suffix tokens) from the shapes alone ([T, N, D], [S, D]): readable from a file's header."""
    return int(features_shape[0]) * int(features_shape[1]) + (int(suffix_shape[0]) if suffix_shape else 0)


@dataclass
class ScoreRequest:
    """One forward of the frozen MLLM: video tokens (a subset of them), then prompt text, then the target."""

    visual: VisualTokens
    prompt: str  # text after the video: question, options, answer cue
    target: str = ""  # answer text whose cross-entropy is scored (teacher forcing)
    keep: torch.Tensor | None = None  # bool [T, N]; None keeps every token


@dataclass
class Sample:
    """One question about one video (or image: a static pseudo-video). Multiple choice when it has options (the
    answer is then the option's letter and index), open-ended otherwise (the answer is free text, index -1)."""

    id: str
    media: Path  # absolute path of the video or image
    kind: str  # "video" | "image"
    question: str
    options: list[str]  # 2-10 options; [] = open-ended
    answer: str  # multiple choice: the answer's letter "A".."J"; open-ended: the answer text
    answer_index: int  # multiple choice: its 0-based option index; open-ended: -1
    family: str = ""
    line: int = 0  # 1-based line in the manifest, for error messages
    manifest: str = ""  # the manifest file it came from, for error messages
    meta: dict = field(default_factory=dict)  # the line's `meta` and any other fields, passed through untouched
    start: float | None = None  # clip window in seconds (video only); None = from the start
    end: float | None = None  # ... None = to the end
    fps: float | None = None  # this sample's frame sampling rate (frames per second); None = data.* settings

    @property
    def open_ended(self) -> bool:
        return not self.options
