"""DyCoke's temporal stage: prune tokens that repeat the same position of a reference frame.

After Keda Tao, Can Qin, Haoxuan You, Yang Sui, Huan Wang, "DyCoke: Dynamic Compression of Tokens for Fast Video
Large Language Models", CVPR 2025 (arXiv 2411.15024). A re-implementation of the described idea (its temporal
token merging, "TTM"), not a port of the authors' code. DyCoke's second stage (dynamic KV-cache pruning during
decoding) acts inside the LLM and is not reproduced here.

The idea: frames are grouped in windows of `window` consecutive units. The first frame of a window is its anchor
and is never pruned; in every later frame, a token whose cosine similarity with the token at the same spatial
position in its reference frame exceeds a threshold is redundant and is dropped. The reference is the previous
frame (`reference="previous"`) or the window's anchor (`reference="anchor"`).

The paper's threshold gives a content-dependent count; `dycoke_threshold_keep` does exactly that. To compare at a
fixed ratio, `DyCoke.select` turns the same rule into a ranking and keeps its top k:
  1. the first frame (no reference at all),
  2. then the other anchors (never pruned by DyCoke),
  3. then every other token, least similar to its reference first (the threshold rule keeps exactly a prefix
     of this order, so for the k it would pick, both agree).
Within 2 and 3 the score is the cosine distance to the reference. Within 1 there is nothing to compare with
[ours]: first-frame tokens are ordered by cosine distance to their frame's mean token (spatially distinctive
first), which only matters when k is below N. Other anchors are compared to the previous frame whatever
`reference` says, since the frame before the window is the only natural reference for them.
"""

from __future__ import annotations

import torch

from scorerl.compress.baselines.base import Compressor, CompressorError, check_inputs, cosine_distance, keep_top


def _check_options(window: int, reference: str) -> None:
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise CompressorError(f"dycoke: window must be an integer >= 1, got {window!r}")
    if reference not in ("previous", "anchor"):
        raise CompressorError(f"dycoke: reference must be previous or anchor, not {reference!r}")


def reference_distance(features: torch.Tensor, window: int = 4, reference: str = "previous"):
    """features [T, N, D] -> (distance [T, N], is_anchor bool [T]).

    distance[t, i] = 1 - cos(v[t, i], v[ref(t), i]) in [0, 2]; ref(t) = t - 1 for anchors and for `previous`,
    the window's anchor for later frames under `anchor`. Row 0 has no reference and holds 0 (callers rank it apart).
    """
    _check_options(window, reference)
    T = features.shape[0]
    t = torch.arange(T)
    is_anchor = t % window == 0  # [T]
    ref = torch.where(is_anchor | (reference == "previous"), t - 1, t - t % window).clamp(min=0)  # [T]
    distance = cosine_distance(features, features[ref])  # [T, N]; row 0 compares frame 0 with itself -> 0
    return distance, is_anchor.to(features.device)


def dycoke_threshold_keep(features: torch.Tensor, threshold: float = 0.9, window: int = 4,
                          reference: str = "previous") -> torch.Tensor:
    """The paper's own rule, with a content-dependent count (NOT exactly k): features [T, N, D] -> keep bool [T, N].

    Keeps every anchor token and every later token whose cosine similarity with its reference is <= threshold.
    """
    distance, is_anchor = reference_distance(features, window, reference)
    return is_anchor.view(-1, 1) | (1.0 - distance <= threshold)


class DyCoke(Compressor):
    """DyCoke's temporal pruning as a ranking, cut at exactly k tokens (see the module docstring for the order)."""

    name = "dycoke"

    def __init__(self, window: int = 4, reference: str = "previous"):
        _check_options(window, reference)
        self.window = window
        self.reference = reference

    def _keep(self, features, k, grid, generator):
        return keep_top(self.scores(features), k)

    def scores(self, features: torch.Tensor) -> torch.Tensor:
        """features [T, N, D] -> ranking key [T, N]; higher is kept first.

        key = 10 * tier + distance with tier 2 (first frame), 1 (other anchors), 0 (the rest); distances lie in
        [0, 2], so the tiers never interleave.
        """
        check_inputs(features, 1.0, (1, features.shape[1]))
        distance, is_anchor = reference_distance(features, self.window, self.reference)  # [T, N], [T]
        frame0 = features[0].float()  # [N, D]
        distance[0] = cosine_distance(frame0, frame0.mean(dim=0, keepdim=True))
        tier = is_anchor.float()
        tier[0] = 2.0
        return 10.0 * tier.view(-1, 1) + distance
