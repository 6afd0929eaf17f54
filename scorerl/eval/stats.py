"""Interval arithmetic for evaluation accuracies: the one place scorerl computes a confidence interval.

    lo, hi = bootstrap_ci(correct, resamples=2000, seed=0)        # correct: bool [n] (or [n, S], S seeds)
    lo, hi = paired_diff_ci(a, b, resamples=2000, seed=0)         # A - B on the SAME resampled questions
    lo, hi = wilson_ci(k=458, n=500)                              # closed form, one run, no resampling

Percentile bootstrap over test questions. The questions drawn by resample b depend only on (n, resamples, seed),
never on which method is being resampled, so every accuracy of a report is resampled on the same question sets.
That is what makes a difference paired: A - B is taken resample by resample, and a question both methods find
hard (or easy) moves both accuracies together instead of adding its noise twice.

Several training seeds: `correct` is [n, S], one column per trained policy. The estimate is the mean of the S
per-seed accuracies. Each resample draws the questions (as above) AND, independently, S seeds with replacement,
then averages the drawn seeds' accuracies on the drawn questions, so the interval widens with both question
sampling and seed-to-seed variation (a two-way, crossed bootstrap). With S = 1 the seed draw is a no-op and the
interval is the plain question bootstrap, to the digit. With few seeds (S = 2-3) the seed part is coarse and
somewhat narrow (a bootstrap of S values underestimates their spread by a factor (S-1)/S in variance).
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np

DEFAULT_RESAMPLES = 2000
LEVEL = 0.95
# Index cells drawn per chunk of resamples: bounds memory ([chunk, n] indices) for any n. The chunk length is a
# function of n alone, so the draws (and every interval) do not depend on what else is being resampled.
_CHUNK_CELLS = 1 << 20
# Seed draws come from a stream of their own, so adding seeds never changes which questions a resample holds.
_SEED_STREAM = 0x73656564  # "seed"


def as_matrix(correct) -> np.ndarray:
    """bool/0-1 [n] or [n, S] -> float64 [n, S] (one column per training seed)."""
    x = np.asarray(correct, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"expected correctness of shape [n] or [n, S] with n, S >= 1, got {x.shape}")
    return x


def accuracy(correct) -> float:
    """Mean over seeds of the per-seed accuracy (= the plain accuracy for one seed)."""
    return float(as_matrix(correct).mean())


def resampled_accuracies(correct, resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> np.ndarray:
    """float [resamples]: the accuracy on each bootstrap resample of the questions (and of the seeds, for S > 1).

    Resample b of every call with the same (n, resamples, seed) holds the same questions, so two methods'
    outputs can be subtracted elementwise for a paired difference."""
    x = as_matrix(correct)
    n, S = x.shape
    q_rng = np.random.default_rng(seed)
    s_rng = np.random.default_rng([seed, _SEED_STREAM])
    chunk = max(1, _CHUNK_CELLS // n)
    out = np.empty(resamples)
    for start in range(0, resamples, chunk):
        c = min(chunk, resamples - start)
        idx = q_rng.integers(0, n, size=(c, n))  # [c, n] question draws
        per_seed = x[idx].mean(axis=1)  # [c, S] each seed's accuracy on the drawn questions
        if S > 1:
            drawn = s_rng.integers(0, S, size=(c, S))  # [c, S] seed draws, with replacement
            weights = (drawn[:, :, None] == np.arange(S)).sum(axis=1) / S  # [c, S]: times drawn / S
            out[start : start + c] = (per_seed * weights).sum(axis=1)
        else:
            out[start : start + c] = per_seed[:, 0]
    return out


def percentile_interval(values: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The central `level` percentile interval of bootstrap values (numpy's default linear interpolation)."""
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(np.asarray(values, dtype=np.float64), [tail, 1.0 - tail])
    return _tidy(lo), _tidy(hi)


def bootstrap_ci(
    correct, resamples: int = DEFAULT_RESAMPLES, seed: int = 0, level: float = LEVEL
) -> tuple[float, float]:
    """Percentile bootstrap interval of the accuracy; correct: bool [n] (one run) or [n, S] (S training seeds)."""
    return percentile_interval(resampled_accuracies(correct, resamples, seed), level)


def paired_diff_ci(
    a, b, resamples: int = DEFAULT_RESAMPLES, seed: int = 0, level: float = LEVEL
) -> tuple[float, float]:
    """Interval of accuracy(A) - accuracy(B), both resampled on the same questions (paired); a and b: bool [n] or
    [n, S] over the same questions in the same order. An interval that excludes 0 is what "A beats B" needs."""
    if len(a) != len(b):
        raise ValueError(f"paired difference needs the same questions: {len(a)} vs {len(b)}")
    diff = resampled_accuracies(a, resamples, seed) - resampled_accuracies(b, resamples, seed)
    return percentile_interval(diff, level)


def seed_summary(correct) -> dict:
    """{mean, per_seed, std}: the mean of the per-seed accuracies, each seed's accuracy, and their sample std
    (0 for one seed); correct: bool [n, S]."""
    per_seed = as_matrix(correct).mean(axis=0)
    std = float(per_seed.std(ddof=1)) if per_seed.size > 1 else 0.0
    return {"mean": float(per_seed.mean()), "per_seed": [float(a) for a in per_seed], "std": std}


def wilson_ci(k: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials: the closed form the README quoted before the
    bootstrap; kept as a cross-check (they agree closely for n in the hundreds)."""
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n > 0, got k={k}, n={n}")
    z = NormalDist().inv_cdf(1.0 - (1.0 - level) / 2.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return _tidy(centre - half), _tidy(centre + half)


def decode_bits(strings: list[str]) -> np.ndarray:
    """The eval JSON's per-question correctness (one '0'/'1' string per seed) -> bool [n, S]."""
    if not strings or len({len(s) for s in strings}) != 1:
        raise ValueError("correctness strings must be one or more, all of the same length")
    return np.array([[ch == "1" for ch in s] for s in strings], dtype=bool).T


def encode_bits(correct) -> str:
    """bool [n] -> '0'/'1' string: one character per question, compact and diff-friendly in JSON."""
    return "".join("1" if c else "0" for c in correct)


def _tidy(x: float) -> float:
    # Interpolated percentiles carry float noise in the last digits; 1e-9 is far below any reported precision.
    return round(float(x), 9)
