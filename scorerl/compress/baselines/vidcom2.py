"""VidCom2: give unique frames more tokens, then keep each frame's most distinctive tokens.

After Xuyang Liu, Yiyu Wang, Junpeng Ma, Linfeng Zhang, "Video Compression Commander: Plug-and-Play Inference
Acceleration for Video Large Language Models", arXiv 2505.14454, 2025. A re-implementation of the described
idea, not a port of the authors' code.

Stage 1, frame compression adjustment. g = mean of all T * N tokens (the video representation). A frame's
uniqueness u[t] = mean over its tokens of 1 - cos(v[t, i], g) (the paper averages token-to-video similarity; a
frame far from the video's average content is unique). sigma = softmax(u / temperature). Per-frame budgets are
proportional to
  - `spread="offset"` (default): 1 + sigma[t] - 1/T, i.e. every frame starts at the mean budget k/T and is moved
    by how far its softmax weight is from uniform. This is our reading of the paper's retention ratio
    r_t = r * (1 + sigma_t - 1/T); it was not re-checked against the paper's text for this re-implementation.
  - `spread="softmax"`: sigma[t] alone (sharper: at low temperature the most unique frames take almost all).
`allocate` turns either into integers that sum to exactly k with at most N per frame (budget above N spills to
the other frames by weight).

Stage 2, adaptive token compression. Within frame t a token's uniqueness is its cosine distance to the frame's
mean token plus its distance to g (distinct within the frame and within the video); the top budgets[t] are kept.
"""

from __future__ import annotations

import torch

from scorerl.compress.baselines.base import (Compressor, CompressorError, allocate, cosine_distance,
                                             per_frame_topk)


class VidCom2(Compressor):
    """Frame budgets from frame uniqueness, tokens from within-frame uniqueness; exactly k via `allocate`."""

    name = "vidcom2"

    def __init__(self, temperature: float = 0.01, spread: str = "offset"):
        if not temperature > 0:
            raise CompressorError(f"vidcom2: temperature must be > 0, got {temperature!r}")
        if spread not in ("offset", "softmax"):
            raise CompressorError(f"vidcom2: spread must be offset or softmax, not {spread!r}")
        self.temperature = float(temperature)
        self.spread = spread

    def _keep(self, features, k, grid, generator):
        T, N, _ = features.shape
        v = features.float()
        video_mean = v.mean(dim=(0, 1))  # [D]
        to_video = cosine_distance(v, video_mean)  # [T, N]
        budgets = allocate(k, self.frame_weights(to_video.mean(dim=1)), N)  # [T], sums to k
        to_frame = cosine_distance(v, v.mean(dim=1, keepdim=True))  # [T, N]
        return per_frame_topk(to_frame + to_video, budgets)

    def frame_weights(self, uniqueness: torch.Tensor) -> torch.Tensor:
        """uniqueness [T] -> non-negative budget weights [T] (see `spread`)."""
        sigma = torch.softmax(uniqueness.double() / self.temperature, dim=0)  # float64: tiny temperatures
        if self.spread == "softmax":
            return sigma
        return 1.0 + sigma - 1.0 / uniqueness.numel()
