"""Training-free token-compression baselines behind one interface, by name.

    from scorerl.compress.baselines import get_compressor
    keep = get_compressor("vidcom2").select(visual.features, rho, visual.grid)  # bool [T, N]

Every method keeps exactly ceil(rho * T * N) tokens except `full` (all) and the two official re-implementations,
`dycoke` and `vidcom2`, which keep the count their published method keeps at that ratio (their docstrings say
how; the harness reports the real kept fraction). All but the merging ones only *select* tokens, so the
environment scores them at their original positions (see base.py); `fastvid_meanq` and `holitom_meanq` also merge,
each merge in the row of an anchor token they keep (`compress` -> Merged; merging.py), and keep their own count.
Names:
  full       all tokens (the uncompressed reference)
  uniform    evenly spaced whole frames
  random     uniformly random tokens (pass a seeded torch.Generator)
  pool       spatial average pooling, one representative token per region (pool.pool_features: the means)
  framediff  top-k of |v[t] - v[t-1]|
  dycoke     DyCoke's official TTM stage, rho -> its pruning ratio K; keeps >= its minimum W/T of the tokens,
             needs T >= 5 (Tao et al., CVPR 2025)
  dycoke_ttm+topk  [ours] the official TTM (K = 1 below its minimum), then exactly ceil(rho*T*N) of its tokens
  vidcom2    the official VidCom2 at R = rho: frame-uniqueness budgets, each frame's most distinctive tokens;
             keeps sum of its per-frame budgets (Liu et al., arXiv 2505.14454)
  fastvid_meanq  [ours] FastVID's official algorithm (dynamic segments, salient tokens, density-peak anchors that
             MERGE the rest; Shen et al., arXiv 2503.11187) at retention rho, its salience map (tower attention,
             not in the features) replaced by the frame's mean token's attention; keeps FastVID's own count.
             A MergingCompressor: `compress` returns a Merged record (keep mask + merged features), `select` is
             refused (merging.py says how the environment scores it)
  holitom_meanq  [ours] HoliTom's official outer-LLM stage (static windows merged over time, then clustered; each
             frame's salient moving tokens; Shao et al., arXiv 2505.21334) at retention rho, with the same
             salience stand-in and without its inner-LLM merging; keeps HoliTom's own count. A MergingCompressor

`fastv` (attention at LLM layer K) is not here: it needs the frozen LLM's attention, so the evaluation harness
provides it on top of the environment.
"""

from __future__ import annotations

import difflib
from typing import Any

from scorerl.compress.baselines.base import (
    Compressor,
    CompressorError,
    allocate,
    evenly_spaced,
    keep_count,
    keep_top,
    per_frame_topk,
)
from scorerl.compress.baselines.dycoke import DyCoke, DyCokeTopK, dycoke_ttm
from scorerl.compress.baselines.fastvid import FastVIDMeanQuery, fastvid
from scorerl.compress.baselines.framediff import FrameDiff
from scorerl.compress.baselines.holitom import HoliTomMeanQuery, holitom
from scorerl.compress.baselines.merging import Merged, MergingCompressor
from scorerl.compress.baselines.pool import Pool, pool_features
from scorerl.compress.baselines.simple import Full, RandomTokens, Uniform
from scorerl.compress.baselines.vidcom2 import VidCom2, vidcom2_steps

_REGISTRY: dict[str, type[Compressor]] = {
    cls.name: cls
    for cls in (
        Full,
        Uniform,
        RandomTokens,
        Pool,
        FrameDiff,
        DyCoke,
        DyCokeTopK,
        VidCom2,
        FastVIDMeanQuery,
        HoliTomMeanQuery,
    )
}

# Names that are baselines but live elsewhere, with where to find them.
_ELSEWHERE = {
    "fastv": "fastv needs the LLM's attention at layer K, so the evaluation harness provides it "
    "(scorerl.eval), not scorerl.compress.baselines"
}


def available() -> list[str]:
    """Names `get_compressor` accepts, sorted."""
    return sorted(_REGISTRY)


def get_compressor(name: str, **kwargs: Any) -> Compressor:
    """A baseline by name, built with its options (e.g. get_compressor("vidcom2", temperature=0.05))."""
    key = str(name).strip().lower()
    if key in _ELSEWHERE:
        raise CompressorError(_ELSEWHERE[key])
    if key not in _REGISTRY:
        near = difflib.get_close_matches(key, available(), n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise CompressorError(f"unknown compressor {name!r}{hint}; available: {', '.join(available())}")
    try:
        return _REGISTRY[key](**kwargs)
    except TypeError as e:  # a misspelt option: name it instead of a bare Python traceback
        raise CompressorError(f"compressor {key!r}: {e}") from None


__all__ = [
    "Compressor",
    "CompressorError",
    "available",
    "get_compressor",
    "allocate",
    "keep_count",
    "keep_top",
    "per_frame_topk",
    "evenly_spaced",
    "pool_features",
    "dycoke_ttm",
    "vidcom2_steps",
    "Full",
    "Uniform",
    "RandomTokens",
    "Pool",
    "FrameDiff",
    "DyCoke",
    "DyCokeTopK",
    "VidCom2",
    "FastVIDMeanQuery",
    "fastvid",
    "HoliTomMeanQuery",
    "holitom",
    "Merged",
    "MergingCompressor",
    "is_merging",
]


def is_merging(name: str) -> bool:
    """Whether baseline `name` merges tokens (its output is a Merged record, not a keep mask)."""
    cls = _REGISTRY.get(str(name).strip().lower())
    return cls is not None and issubclass(cls, MergingCompressor)
