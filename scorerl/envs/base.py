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
from typing import Any

import numpy as np
import torch

from scorerl.types import ScoreRequest, VisualTokens


class VideoEnv(ABC):
    """One small interface over a frozen HF video MLLM (see qwen2_5_vl.py, llava_onevision.py)."""

    arch: str
    tokenizer: Any  # the model folder's transformers tokenizer
    model: Any  # the frozen transformers model
    # None, or (when the LLM's weights are partitioned across processes: envs/partition.py) a function n -> the
    # largest n over all processes. Every process must then make every scoring call the others make, with the
    # same number of LLM forwards; `score([])` then still takes part.
    lockstep = None

    @classmethod
    @abstractmethod
    def from_pretrained(
        cls,
        path,
        dtype: str = "float32",
        device: str = "auto",
        attn_implementation: str = "sdpa",
        token_budget: int = 32768,
    ) -> "VideoEnv":
        """Load a frozen model + tokenizer from a local folder (safetensors only)."""

    @abstractmethod
    def save_pretrained(self, path) -> None:
        """Write model (safetensors) and tokenizer so `from_pretrained` reloads an identical environment."""

    def encode(self, frames: np.ndarray | torch.Tensor, seconds_per_frame: float | None = None) -> VisualTokens:
        """Frames uint8 [F, H, W, 3] -> projected visual tokens [T, N, D]. Runs the vision tower once.
        seconds_per_frame: the real time between the frames, for models whose positions carry it (Qwen2.5-VL);
        None = one position step per temporal unit."""
        return self.encode_batch([frames], seconds_per_frame=[seconds_per_frame])[0]

    @abstractmethod
    def encode_batch(self, frames: list, seconds_per_frame: list | None = None) -> list[VisualTokens]:
        """encode() of several videos, batched where the architecture allows."""

    @abstractmethod
    def score(self, requests: list[ScoreRequest]) -> torch.Tensor:
        """Mean cross-entropy of each request's target tokens -> [R]. One batched forward per token-budget chunk."""

    @abstractmethod
    def choice_logprobs(self, requests: list[ScoreRequest], choices: list[str], normalize: bool = True) -> torch.Tensor:
        """Log-probabilities [R, C] of each choice (e.g. option letters) as the answer to each request; normalize
        False: each choice's full-vocabulary log-probability, not renormalised over the choices."""

    def choice_ids(self, choices: list[str]) -> list[int]:
        """The single token id of each choice (EnvError when one is several tokens)."""
        raise NotImplementedError(f"{type(self).__name__} does not expose choice token ids")

    def token_logprobs(self, requests: list[ScoreRequest], with_greedy: bool = False) -> list:
        """Per-token log-probabilities of each request's target (and, with_greedy, whether each is the argmax)."""
        raise NotImplementedError(f"{type(self).__name__} does not expose token log-probabilities")

    @abstractmethod
    def generate(self, request: ScoreRequest, max_new_tokens: int = 16) -> str:
        """Greedy free-text answer to one request."""

    def last_token_attention(self, request: ScoreRequest, layer: int) -> torch.Tensor:
        """Attention [T, N] (mean over heads) of the last prompt token to each visual token at LLM layer `layer`
        (0-based); dropped tokens get 0. Used by attention-based baselines (FastV). Optional for an env."""
        raise NotImplementedError(f"{type(self).__name__} does not expose LLM attention")
