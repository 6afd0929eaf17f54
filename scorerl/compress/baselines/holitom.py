"""HoliTom: merge what stays still over a window of frames, cluster it, keep each frame's salient moving tokens.

Kele Shao, Keda Tao, Can Qin, Haoxuan You, Yang Sui, Huan Wang, "HoliTom: Holistic Token Merging for Fast Video
Large Language Models", arXiv 2505.21334. Official code github.com/cokeshao/HoliTom; this is its outer-LLM stage
(`holitom/llava_arch.py`: `select_static_windows`, `get_static_dynamic_features`, `holitom`,
`merge_tokens_by_attention_density`, `merge_tokens_by_density`, `cluster_dpc_knn`, `merge_tokens_by_clustering`, as
`prepare_inputs_labels_for_multimodal` calls them on LLaVA-OneVision's pooled video features), re-implemented from
reading it; no code was copied. `holitom` below matches the official outputs (which tokens, which are merges, their
values) on every case of tests/fixtures/parity/holitom.json (tests/core/test_parity_merging.py). Its inner-LLM
stage (merging tokens inside the LLM at layer HOLITOM_k) is not part of it.

Inputs: projected tokens V [T, n, D] and a salience map A [T, n] (officially the SigLIP tower's attention, pooled
like the features). Published settings (scripts/eval_ov-7b_holitom.sh, README): retention 0.10 with tau 0.65, or
0.15 with tau 0.80; D = 0 (no contextual share), beta 0.6, K 7, windows up to 1024 frames.

  1. Token similarity s[t, i] = cos(V[t, i], V[t+1, i]) per position. A window [a, b] removes (b - a) tokens for
     every position whose similarity stays above tau from frame a to b (the position is static: one mean token
     stands for its b - a + 1). Dynamic programming over the frames picks the windows that remove the most
     (single frames on ties).
  2. The ratio is raised for what the windows removed: r = min(retention / ((T n - removed) / (T n)), 1).
  3. Per window: each frame keeps its ceil(n_d * r) most salient dynamic tokens (n_d = the window's dynamic
     positions; D = 0: none is merged). The static positions' temporal means are clustered (DPC-kNN, dpc.py, with
     min(K, c) neighbours) into c = round(n_s * r) centres; every other static mean joins its nearest centre
     (Euclidean) and a centre becomes beta * itself + (1 - beta) * mean(joined) (itself alone if none joined).

Output tokens: dynamic tokens unchanged at their positions, and each static centre, a merge of its cluster's
temporal means, placed at the window's FIRST frame at the centre's spatial position (where LLaVA-OneVision's grid
layout puts a window's static tokens). The count is HoliTom's own, about retention * T * n (rounded per window),
not ceil(rho T N); the harness reports what was kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from scorerl.compress.baselines.base import check_rho
from scorerl.compress.baselines.dpc import density_peaks, distances
from scorerl.compress.baselines.merging import Merged, MergingCompressor
from scorerl.compress.baselines.salience import mean_query_salience


@dataclass(frozen=True)
class HoliTomSettings:
    """HoliTom's outer-LLM knobs; defaults are the published 0.15 / 0.80 setting (README, eval scripts)."""

    retention: float = 0.15  # RETAIN_RATIO: fraction of the clip's tokens kept
    tau: float = 0.80  # T: a position is static in a window while adjacent-frame similarity stays above tau
    beta: float = 0.6  # BETA: a cluster centre's weight in its merge
    k: int = 7  # K: neighbours of the kNN density (at most the number of centres)
    max_window: int = 1024  # MAX_WINDOW_SIZE: longest static window, in frames


def token_similarity(features: torch.Tensor) -> torch.Tensor:
    """features [T, n, D] -> [T - 1, n]: cosine of each position's token with the next frame's."""
    unit = F.normalize(features, p=2, dim=-1)
    sim: torch.Tensor = F.cosine_similarity(unit[:-1], unit[1:], dim=-1)
    return sim


def removed_counts(sim: torch.Tensor, tau: float) -> list[list[int]]:
    """sim [T - 1, n] -> removed[a][b]: tokens a window of frames a..b removes (static positions * (b - a))."""
    T = sim.shape[0] + 1
    removed = [[0] * T for _ in range(T)]
    for a in range(T - 1):
        still = torch.cumprod((sim[a:] > tau).int(), dim=0).sum(dim=1)  # [T - 1 - a]: static through a..a+1+i
        for i, count in enumerate(still.tolist()):
            removed[a][a + 1 + i] = int(count) * (i + 1)
    return removed


def static_windows(sim: torch.Tensor, tau: float, max_window: int) -> tuple[list[tuple[int, int]], int]:
    """sim [T - 1, n] -> (windows [(a, b)] covering the frames in order, tokens removed), by dynamic programming:
    best[i] = the most removed over frames 0..i; a window is kept only when it removes strictly more than
    leaving frame i alone, the shortest such window first (the official loop's tie rule)."""
    T = sim.shape[0] + 1
    removed = removed_counts(sim, tau)
    best, first = [0] * T, list(range(T))
    for i in range(T):
        value, start = (best[i - 1] if i > 0 else 0), i
        for size in range(2, min(i + 1, max_window) + 1):
            j = i - size
            candidate = (best[j] if j >= 0 else 0) + removed[j + 1][i]
            if candidate > value:
                value, start = candidate, j + 1
        best[i], first[i] = value, start
    windows, i = [], T - 1
    while i >= 0:
        windows.append((first[i], i))
        i = first[i] - 1
    return windows[::-1], best[-1]


def merge_clusters(x: torch.Tensor, centres: torch.Tensor, beta: float) -> torch.Tensor:
    """x [m, D], centres [c] (ascending indices) -> [c, D]: every other token joins its nearest centre; a centre
    becomes beta * itself + (1 - beta) * mean(joined), or stays itself when none joined."""
    others = torch.ones(x.shape[0], dtype=torch.bool)
    others[centres] = False
    join = distances(x)[others][:, centres].argmin(dim=-1)  # [m - c]
    members = x[others]
    out = x[centres].clone()
    for i in range(centres.numel()):
        joined = members[join == i]
        if joined.shape[0] > 0:
            out[i] = beta * x[centres[i]] + (1 - beta) * joined.mean(dim=0)
    return out


def holitom(
    features: torch.Tensor,
    salience: torch.Tensor,
    settings: HoliTomSettings = HoliTomSettings(),
    generator: torch.Generator | None = None,
) -> Merged:
    """The official HoliTom outer-LLM stage (D = 0) on one clip: features [T, n, D], salience [T, n] -> Merged.

    `generator` draws the density tie-break noise, one [1, n_s] draw per window with static tokens, in window
    order, as the official code draws from torch's global generator."""
    T, n, _ = features.shape
    sim = token_similarity(features)  # [T - 1, n]
    windows, removed = static_windows(sim, settings.tau, settings.max_window)
    total = T * n
    r = min(settings.retention / ((total - float(removed)) / total), 1)
    keep = torch.zeros(T, n, dtype=torch.bool)
    anchors = torch.zeros(T, n, dtype=torch.bool)
    out = features.clone()
    for a, b in windows:
        static = (sim[a:b] > settings.tau).all(dim=0) if b > a else torch.zeros(n, dtype=torch.bool)  # [n]
        moving = torch.nonzero(~static).flatten()  # [n_d] dynamic positions, ascending
        dominant = math.ceil(moving.numel() * r)
        if dominant > 0:
            for t in range(a, b + 1):
                keep[t, moving[torch.topk(salience[t, moving], dominant).indices]] = True
        still = torch.nonzero(static).flatten()  # [n_s]
        c = round(still.numel() * r)
        if b > a and c > 0:
            means = features[a : b + 1, still].mean(dim=0)  # [n_s, D]: one token per static position
            noise = torch.rand(1, still.numel(), generator=generator, dtype=torch.float32)[0]
            centres = density_peaks(means, c, noise, neighbours=min(settings.k, c))
            out[a, still[centres]] = merge_clusters(means, centres, settings.beta).to(out.dtype)
            keep[a, still[centres]] = True
            anchors[a, still[centres]] = True
    return Merged(keep=keep, features=out, anchors=anchors)


class HoliTomMeanQuery(MergingCompressor):
    """[ours] `holitom_meanq`: the official HoliTom outer-LLM stage (`holitom`, parity-tested given its salience
    map) at retention = rho and otherwise the published 0.15 / 0.80 settings, with TWO differences from the
    published method: the salience map is `mean_query_salience` (the SigLIP attention HoliTom reads is not in the
    cached projector outputs), and the inner-LLM merging stage (layer HOLITOM_k) is not applied: the LLM sees the
    outer stage's tokens at every layer."""

    name = "holitom_meanq"

    def __init__(self, **settings: float) -> None:
        self.settings = HoliTomSettings(**settings)  # type: ignore[arg-type]  # k, max_window are ints

    def _merge(
        self, features: torch.Tensor, rho: float, grid: tuple[int, int], generator: torch.Generator | None
    ) -> Merged:
        settings = HoliTomSettings(**{**self.settings.__dict__, "retention": check_rho(rho)})
        x = features.float()
        out = holitom(x, mean_query_salience(x), settings, generator)
        out.features = out.features.to(features.dtype)
        return out
