"""The frozen MLLM as a reward environment: it encodes videos and scores answers; it never learns.

Shapes used throughout:
  frames    uint8 [F, H, W, 3]   decoded RGB frames (an image is a static pseudo-video: F copies)
  features  [T, N, D]            projected visual tokens: T temporal units, N tokens per unit, D = LLM width
  keep      bool [T, N]          which visual tokens a request keeps (None = all)

Kept tokens keep their order and their *original* position ids (computed on the full sequence), so a kept
subset is exactly a full forward with the dropped tokens masked out.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np
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


class VideoEnv(ABC):
    """One small interface over a frozen HF video MLLM (see qwen2_5_vl.py, llava_onevision.py)."""

    arch: str

    @classmethod
    @abstractmethod
    def from_pretrained(cls, path, dtype: str = "float32", device: str = "auto", attn_implementation: str = "sdpa",
                        token_budget: int = 32768) -> "VideoEnv":
        """Load a frozen model + tokenizer from a local folder (safetensors only)."""

    @abstractmethod
    def save_pretrained(self, path) -> None:
        """Write model (safetensors) and tokenizer so `from_pretrained` reloads an identical environment."""

    @abstractmethod
    def encode(self, frames: np.ndarray | torch.Tensor) -> VisualTokens:
        """Frames uint8 [F, H, W, 3] -> projected visual tokens [T, N, D]. Runs the vision tower once."""

    @abstractmethod
    def score(self, requests: list[ScoreRequest]) -> torch.Tensor:
        """Mean cross-entropy of each request's target tokens -> [R]. One batched forward per token-budget chunk."""

    @abstractmethod
    def choice_logprobs(self, requests: list[ScoreRequest], choices: list[str]) -> torch.Tensor:
        """Log-probabilities [R, C] of each choice (e.g. option letters) as the answer to each request."""

    @abstractmethod
    def generate(self, request: ScoreRequest, max_new_tokens: int = 16) -> str:
        """Greedy free-text answer to one request."""

    def last_token_attention(self, request: ScoreRequest, layer: int) -> torch.Tensor:
        """Attention [T, N] (mean over heads) of the last prompt token to each visual token at LLM layer `layer`
        (0-based); dropped tokens get 0. Used by attention-based baselines (FastV). Optional for an env."""
        raise NotImplementedError(f"{type(self).__name__} does not expose LLM attention")
