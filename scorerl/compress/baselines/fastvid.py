"""FastVID: cut the video into dynamic segments, keep each segment's salient tokens, merge the rest into density
peaks.

Leqi Shen, Guoqiang Gong, Tao He, Yifeng Zhang, Pengzhang Liu, Sicheng Zhao, Guiguang Ding, "FastVID: Dynamic
Density Pruning for Fast Video Large Language Models", arXiv 2503.11187. Official code github.com/LunarShen/FastVID;
this is its Qwen2.5-VL path (`fastvid_qwen25vl/.../modeling_qwen2_5_vl.py`, the block of
`Qwen2_5_VLForConditionalGeneration.forward` that compresses the video embeddings before the LLM), re-implemented
from reading it; no code was copied. `fastvid` below matches the official block's output (which tokens, which
are merges, their values) on every case of tests/fixtures/parity/fastvid.json (tests/core/test_parity_merging.py).

Inputs: projected tokens V [T, n, D] (after Qwen's 2 x 2 merger, one frame per temporal unit) and a salience map
A [T, n]. In the official code A is the vision tower's LAST block's attention: the frame's mean query against each
merged token's mean key (the 2 x 2 patches a merged token covers), softmax over the frame, heads averaged. The
published settings (its scripts/eval.sh): retention 0.27, c = 8, tau = 0.84, ignore = 0.95, d = 0.4, p = 4,
beta = 0.6.

  1. DySeg. g_t = mean_n V[t, n], normalised; s_t = cos(g_t, g_t+1). Cut after frame t for the c - 1 lowest s_t and
     for every s_t < tau (needs T >= c). Segments are the runs between cuts.
  2. Budgets per segment of L frames: R = int(n * retention) * L tokens, of which C = max(int(R * d), 1) are
     context (merged) and R - C salient. L = 1: the frame takes both. L > 1: the segment is split again where
     s_t < ignore into sub-segments; only the LAST frame of each sub-segment keeps tokens (the others only feed
     merges). Salient tokens are shared equally over the sub-segments (remainder to the first ones); context goes
     to every p-th sub-segment counted back from the last, shared equally over them (remainder to the last ones),
     at most n // 2 per frame; a frame's salient count is capped at n minus its context count.
  3. Salient tokens of a frame: its top-k of A. Context anchors of a frame: among its other tokens, density-peak
     clustering (DPC-kNN): distances d_ij = |x_i - x_j| / sqrt(D), density rho_i = exp(-mean of its 4 smallest
     d_ij^2) (itself included) plus uniform noise * 1e-6 (the official tie-break; drawn from `generator`),
     delta_i = distance to the nearest denser token (the largest distance in the frame for the densest), and the
     anchors are the top-k of rho * delta.
  4. Merging (DTM). For each frame with anchors: every token of its segment that is neither salient (in any
     frame) nor one of THIS frame's anchors (other frames' anchors included) joins the anchor of highest cosine
     similarity; anchor := w * anchor + (1 - w) * mean(joined), w = max(1 / (joined + 1), beta). A token of a long
     segment thus feeds one anchor in every anchor frame of its segment.

Output tokens are the salient tokens (unchanged) and the anchors (merged), each at its own original position.
The count is FastVID's own: about int(n * retention) per frame, less where sub-segments or caps cut it (on the
fixture clips 19-27% of the tokens at retention 0.27), never ceil(rho T N); the harness reports what was kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from scorerl.compress.baselines.base import CompressorError, check_rho
from scorerl.compress.baselines.dpc import density_peaks
from scorerl.compress.baselines.merging import Merged, MergingCompressor
from scorerl.compress.baselines.salience import mean_query_salience

DENSITY_NEIGHBOURS = 4  # the official k of the kNN density (the token itself is one of them)
TINY = 1e-12  # norm floor: the official code divides by the norm alone and gives NaN for a zero vector


@dataclass(frozen=True)
class FastVIDSettings:
    """FastVID's knobs; defaults are the published Qwen2.5-VL settings (scripts/eval.sh of the official repo)."""

    retention: float = 0.27  # fraction of each frame's tokens a segment's budget counts
    c: int = 8  # DySeg: cut at the c - 1 least similar adjacent frame pairs ...
    tau: float = 0.84  # ... and wherever adjacent frames' similarity is below tau
    ignore: float = 0.95  # sub-segments inside a segment where similarity is below this
    d: float = 0.4  # STPrune: share of a segment's budget that goes to merged context tokens
    p: int = 4  # DTM: one anchor frame every p sub-segments
    beta: float = 0.6  # DTM: lowest weight an anchor keeps in its merge


def frame_similarity(features: torch.Tensor) -> torch.Tensor:
    """features [T, n, D] -> [T - 1] cosine of each adjacent pair of frame means (the official global features)."""
    g = features.mean(dim=1)  # [T, D]
    g = g / g.norm(dim=1, keepdim=True).clamp_min(TINY)  # the floor only acts on an all-zero frame (no NaN)
    sim: torch.Tensor = (g[:-1] * g[1:]).sum(dim=1)  # [T - 1]
    return sim


def runs(cuts: torch.Tensor, length: int) -> list[int]:
    """Cut positions (a cut after index i) -> lengths of the runs they split range(length) into."""
    edges = [-1] + sorted(int(i) for i in cuts) + [length - 1]
    return [b - a for a, b in zip(edges[:-1], edges[1:])]


def dynamic_segments(sim: torch.Tensor, c: int, tau: float) -> list[int]:
    """DySeg: adjacent-frame similarity [T - 1] -> segment lengths (cuts at the c - 1 lowest and below tau)."""
    if c - 1 > sim.numel():
        raise CompressorError(
            f"fastvid: DySeg makes c - 1 = {c - 1} cuts, but {sim.numel() + 1} frames have only "
            f"{sim.numel()} gaps (FastVID needs T >= c)"
        )
    lowest = torch.topk(sim, c - 1, largest=False).indices
    below = torch.nonzero(sim < tau).flatten()
    return runs(torch.unique(torch.cat([lowest, below])), sim.numel() + 1)


def split_even(total: int, parts: int) -> list[int]:
    """total into `parts` near-equal integers, the remainder going to the first ones."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def segment_budgets(sim: torch.Tensor, n: int, s: FastVIDSettings) -> tuple[list[int], list[int]]:
    """One segment's adjacent-frame similarity [L - 1] -> (salient [L], context [L]) tokens per frame."""
    L = sim.numel() + 1
    total = int(n * s.retention) * L
    context = max(int(total * s.d), 1)
    salient = total - context
    if L == 1:
        return [salient], [context]
    subs = runs(torch.nonzero(sim < s.ignore).flatten(), L)  # sub-segment lengths
    V = len(subs)
    sub_salient = split_even(salient, V)
    anchor_shares = split_even(context, (V + s.p - 1) // s.p)
    # every p-th sub-segment counted from the FIRST gets the next share, then the list is reversed: anchor frames
    # end up at the last sub-segment and every p-th before it
    sub_context = [min(anchor_shares[i // s.p], n // 2) if i % s.p == 0 else 0 for i in range(V)][::-1]
    frame_salient, frame_context = [], []
    for size, sal, ctx in zip(subs, sub_salient, sub_context):
        frame_salient += [0] * (size - 1)  # only a sub-segment's last frame keeps tokens
        frame_context += [0] * (size - 1)
        frame_context.append(min(ctx, n // 2))
        frame_salient.append(min(sal, n - frame_context[-1]))
    return frame_salient, frame_context


def merge_into(anchors: torch.Tensor, others: torch.Tensor, beta: float) -> torch.Tensor:
    """anchors [k, D], others [M, D] -> merged anchors [k, D]: each other token joins its most cosine-similar
    anchor; an anchor becomes w * itself + (1 - w) * mean(joined), w = max(1 / (joined + 1), beta)."""
    unit = lambda t: t / t.norm(dim=-1, keepdim=True).clamp_min(TINY)  # floor: a zero token, not NaN
    join = (unit(others) @ unit(anchors).T).argmax(dim=1)  # [M]
    counts = torch.bincount(join, minlength=anchors.shape[0]).to(anchors.dtype)[:, None]  # [k, 1]
    sums = torch.zeros_like(anchors).index_add_(0, join, others)  # [k, D]
    w = (1 / (counts + 1)).clamp(min=beta)
    return w * anchors + (1 - w) * sums / counts.clamp(min=1)


def fastvid(
    features: torch.Tensor,
    salience: torch.Tensor,
    settings: FastVIDSettings = FastVIDSettings(),
    generator: torch.Generator | None = None,
) -> Merged:
    """The official FastVID (Qwen2.5-VL path) on one clip: features [T, n, D], salience [T, n] -> Merged.

    `generator` draws the density tie-break noise, one [1, m] draw per anchor frame in frame order, as the
    official code draws from torch's global generator (seeded alike, the draws are the same)."""
    T, n, D = features.shape
    if tuple(salience.shape) != (T, n):
        raise CompressorError(f"fastvid: salience {tuple(salience.shape)} must be [T, n] = {(T, n)}")
    sim = frame_similarity(features)  # [T - 1]
    keep = torch.zeros(T, n, dtype=torch.bool)
    anchors = torch.zeros(T, n, dtype=torch.bool)
    out = features.clone()
    start = 0
    for L in dynamic_segments(sim, settings.c, settings.tau):
        frames = range(start, start + L)
        n_salient, n_context = segment_budgets(sim[start : start + L - 1], n, settings)
        anchor_sets = {}
        for t, ns, nc in zip(frames, n_salient, n_context):
            if ns > 0:
                keep[t, torch.topk(salience[t], ns).indices] = True
            if nc > 0:
                rest = torch.nonzero(~keep[t]).flatten()  # ascending, as the official remaining indices
                noise = torch.rand(1, rest.numel(), generator=generator, dtype=torch.float32)[0]
                anchor_sets[t] = rest[density_peaks(features[t, rest], nc, noise, DENSITY_NEIGHBOURS)]
        seg = features[start : start + L].reshape(L * n, D)  # [L n, D]
        salient = keep[start : start + L].reshape(-1).clone()  # [L n]: the segment's salient tokens (anchors are
        # added to `keep` below, and must not count as salient for the next anchor frame's merge)
        for t, idx in anchor_sets.items():
            flat = (t - start) * n + idx  # this frame's anchors in the segment's flat index
            donors = ~salient
            donors[flat] = False
            out[t, idx] = merge_into(seg[flat], seg[donors], settings.beta)
            keep[t, idx] = True
            anchors[t, idx] = True
        start += L
    return Merged(keep=keep, features=out, anchors=anchors)


class FastVIDMeanQuery(MergingCompressor):
    """[ours] `fastvid_meanq`: the official FastVID algorithm (`fastvid`, parity-tested given its salience map)
    at retention = rho and otherwise the published Qwen2.5-VL settings, with ONE difference: the salience map.
    The official one is the vision tower's last-block attention, which the harness's cached projector outputs do
    not hold; here it is `mean_query_salience` (the frame's mean projected token as the query). So the salient
    tokens differ from the published method's; DySeg, budgets, density peaks and merging are the official ones.
    The official code needs T >= c (it asks for c - 1 cuts among T - 1 gaps); on a clip of T < c frames this
    variant takes c = T, i.e. every frame is its own segment, rather than fail."""

    name = "fastvid_meanq"

    def __init__(self, **settings: float) -> None:
        self.settings = FastVIDSettings(**settings)  # type: ignore[arg-type]  # c, p are ints; a bad key: TypeError

    def _merge(
        self, features: torch.Tensor, rho: float, grid: tuple[int, int], generator: torch.Generator | None
    ) -> Merged:
        c = min(self.settings.c, features.shape[0])  # T < c: one segment per frame (see the class doc)
        settings = FastVIDSettings(**{**self.settings.__dict__, "retention": check_rho(rho), "c": c})
        x = features.float()
        out = fastvid(x, mean_query_salience(x), settings, generator)
        out.features = out.features.to(features.dtype)
        return out
