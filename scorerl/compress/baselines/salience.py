"""A feature-space stand-in for the vision tower's attention, for methods whose published salience map the cached
projector outputs do not hold (FastVID's last-block attention, HoliTom's SigLIP attention) [ours]."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def mean_query_salience(features: torch.Tensor) -> torch.Tensor:
    """features [T, n, D] -> [T, n]: softmax over a frame of <mean token, token> / sqrt(D), i.e. the attention the
    frame's mean projected token (as the query) pays each projected token (as a key), like FastVID's mean query."""
    q = features.mean(dim=1, keepdim=True)  # [T, 1, D]
    return F.softmax((q * features).sum(-1) / math.sqrt(features.shape[-1]), dim=-1)
