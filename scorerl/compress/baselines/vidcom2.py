"""VidCom2: give unique frames more tokens, then keep each frame's most distinctive tokens.

Xuyang Liu, Yiyu Wang, Junpeng Ma, Linfeng Zhang, "Video Compression Commander: Plug-and-Play Inference
Acceleration for Video Large Language Models", arXiv 2505.14454, 2025. This is the official algorithm
(xuyang-liu16/VidCom2, `vidcom2_compression`, as the LLaVA-OneVision and Qwen-VL integrations call it on one
clip's features flattened frame-major), re-implemented from its description and checked token for token against
data-only fixtures of the official outputs (tests/core/test_parity.py, tests/fixtures/parity/README.md). No code was
copied. With R the retention ratio (the harness's keep ratio: R = rho):

  1. channels: the half of the D channels (int(D / 2), at least 1) with the lowest variance over all T * N tokens
     (population variance). Low, not high: channels with massive activations never enter a score.
  2. every token is L2-normalised over those channels (a zero token stays zero).
  3. video centre c = mean of all normalised tokens; frame centre c_t = mean of frame t's. Not renormalised, and
     both include the token itself.
  4. similarity to a centre: sum over bandwidths a in {1/8, 1/4, 1/2, 1, 2} of exp(-|x - c|^2 / (2a)).
  5. frame uniqueness u_t = -mean over frame t's tokens of their similarity to c (a frame far from the rest of
     the video is unique).
  6. budgets: p = softmax(u / 0.01); scale_t = min(1, R * (1 + p_t - mean(p))); k_t = max(1, round(scale_t * N))
     with round half to even, each frame rounded on its own.
  7. token score = similarity to c + similarity to c_t; frame t keeps its k_t lowest-scoring (most distinctive)
     tokens. Exact score ties (e.g. all-zero features) go to the lower token index.

The count is NOT ceil(rho * T * N): VidCom2 keeps sum_t k_t, a few tokens more or fewer than R * T * N (154
instead of 156.8 on one fixture clip), and at least one token per frame. That is the published method, so the
harness gets exactly the official kept set and `kept_fraction` in the results says what was really kept. At
R = 1 it keeps about N * (1 - 1/T) in most frames, not everything (use `full` for that).

`vidcom2_steps` exposes every intermediate (channels, uniqueness, softmax, scales, budgets, scores) so tests can
pin each step.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from scorerl.compress.baselines.base import Compressor, CompressorError, check_inputs, check_rho, per_frame_topk

BANDWIDTHS = (0.125, 0.25, 0.5, 1.0, 2.0)  # the official Gaussian kernel bandwidths a
TEMPERATURE = 0.01  # the official softmax temperature over frame uniqueness
CHANNEL_RATIO = 0.5  # the official share of (lowest-variance) channels scored


@dataclass(frozen=True)
class VidCom2Steps:
    """Every intermediate of one VidCom2 call on features [T, N, D]."""

    selected_channels: torch.Tensor  # int64 [C], ascending
    frame_uniqueness: torch.Tensor  # [T], higher = more unique = larger budget
    softmax_probs: torch.Tensor  # [T]
    scales: torch.Tensor  # [T], per-frame retention before rounding, <= 1
    budgets: torch.Tensor  # int64 [T], k_t
    scores: torch.Tensor  # [T, N], lower = more distinctive = kept first
    keep: torch.Tensor  # bool [T, N], budgets[t] True in row t


def low_variance_channels(tokens: torch.Tensor, ratio: float = CHANNEL_RATIO) -> torch.Tensor:
    """tokens [M, D] -> int64 [C] channels of lowest population variance, lowest first; C = max(1, int(D * ratio))."""
    count = max(1, int(tokens.shape[-1] * ratio))
    variance = tokens.var(dim=0, unbiased=False)  # [D]
    return torch.topk(variance, count, largest=False).indices


def gaussian_similarity(
    x: torch.Tensor, centre: torch.Tensor, bandwidths: Iterable[float] = BANDWIDTHS
) -> torch.Tensor:
    """x [..., C], centre broadcastable to it -> [...]: sum_a exp(-|x - centre|^2 / (2a))."""
    dist2 = (x - centre).pow(2).sum(dim=-1)
    sim = torch.zeros_like(dist2)
    for a in bandwidths:
        sim = sim + torch.exp(-dist2 / (2.0 * a))
    return sim


def frame_budgets(
    uniqueness: torch.Tensor, R: float, N: int, temperature: float = TEMPERATURE
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """uniqueness [T] -> (softmax p [T], scales [T], budgets int64 [T]) per step 6 of the module docstring.

    Rounding is torch.round (half to even) frame by frame, so the budgets need not sum to R * T * N.
    """
    p = torch.softmax((uniqueness - uniqueness.max()) / temperature, dim=0)  # [T]; shift first: the fixtures' bits
    scales = (R * (1.0 + p - p.mean())).clamp(max=1.0)  # [T]
    budgets = torch.round(scales * N).clamp(min=1).long()  # [T]
    return p, scales, budgets


def vidcom2_steps(
    features: torch.Tensor, R: float, *, temperature: float = TEMPERATURE, channel_ratio: float = CHANNEL_RATIO
) -> VidCom2Steps:
    """features [T, N, D], retention ratio R in (0, 1] -> VidCom2Steps (official algorithm; float32 or wider)."""
    T, N, D = features.shape
    x = features.to(torch.promote_types(features.dtype, torch.float32))
    channels = low_variance_channels(x.reshape(T * N, D), channel_ratio)  # [C], lowest variance first
    z = F.normalize(x[..., channels], dim=-1)  # [T, N, C]
    video_centre = z.reshape(T * N, -1).mean(dim=0)  # [C]
    frame_centre = z.mean(dim=1, keepdim=True)  # [T, 1, C]
    to_video = gaussian_similarity(z, video_centre)  # [T, N]
    uniqueness = -to_video.mean(dim=1)  # [T]
    p, scales, budgets = frame_budgets(uniqueness, R, N, temperature)
    scores = to_video + gaussian_similarity(z, frame_centre)  # [T, N]
    keep = per_frame_topk(-scores, budgets)  # lowest scores; ties -> lower token index
    return VidCom2Steps(torch.sort(channels).values, uniqueness, p, scales, budgets, scores, keep)


class VidCom2(Compressor):
    """The official VidCom2 at R = rho; keeps sum_t k_t tokens (its own per-frame budgets), not ceil(rho*T*N)."""

    name = "vidcom2"

    def __init__(self, temperature: float = TEMPERATURE) -> None:
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
            raise CompressorError(f"vidcom2: temperature must be > 0, got {temperature!r}")
        self.temperature = float(temperature)

    def select(
        self, features: torch.Tensor, rho: float, grid: tuple[int, int], *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """features [T, N, D] -> keep bool [T, N]: the official kept set at R = rho (sum of its budgets)."""
        check_inputs(features, rho, grid)
        return self.steps(features, rho).keep

    def steps(self, features: torch.Tensor, rho: float) -> VidCom2Steps:
        """All intermediates at R = rho (see VidCom2Steps)."""
        return vidcom2_steps(features, check_rho(rho), temperature=self.temperature)

    def expected_count(self, rho: float, T: int, N: int) -> int:
        raise CompressorError(
            "vidcom2 keeps the sum of its per-frame budgets, which depends on the features: "
            "use VidCom2().steps(features, rho).budgets"
        )

    def _keep(
        self, features: torch.Tensor, k: int, grid: tuple[int, int], generator: torch.Generator | None
    ) -> torch.Tensor:
        raise CompressorError("vidcom2 has no exact-k mode: select() keeps its own per-frame budgets")
