"""Interval arithmetic (scorerl/eval/stats.py): the bootstrap on known arrays, paired differences, seeds pooled."""

from __future__ import annotations

import numpy as np
import pytest

from scorerl.eval import stats


def _hits(k: int, n: int) -> np.ndarray:
    x = np.zeros(n, dtype=bool)
    x[:k] = True
    return x


def test_bootstrap_ci_of_a_known_array():
    """900 of 1000: the normal approximation gives 0.9 +- 1.96 sqrt(0.9 * 0.1 / 1000) = [0.881, 0.919]."""
    lo, hi = stats.bootstrap_ci(_hits(900, 1000), resamples=2000, seed=0)
    assert lo < 0.9 < hi
    assert lo == pytest.approx(0.881, abs=0.004) and hi == pytest.approx(0.918, abs=0.004)
    w_lo, w_hi = stats.wilson_ci(900, 1000)  # the closed form agrees at this n
    assert w_lo == pytest.approx(0.8798, abs=1e-4) and w_hi == pytest.approx(0.9171, abs=1e-4)
    assert abs(lo - w_lo) < 0.005 and abs(hi - w_hi) < 0.005


def test_bootstrap_ci_is_seeded_and_shrinks_with_n():
    x = _hits(90, 100)
    assert stats.bootstrap_ci(x, 2000, seed=3) == stats.bootstrap_ci(x, 2000, seed=3)
    assert stats.bootstrap_ci(x, 2000, seed=3) != stats.bootstrap_ci(x, 2000, seed=4)
    widths = [np.subtract(*stats.bootstrap_ci(_hits(9 * n // 10, n), 2000, 0)[::-1]) for n in (100, 1000, 10000)]
    assert widths[0] > widths[1] > widths[2] > 0
    assert widths[0] / widths[2] == pytest.approx(10, rel=0.2)  # width ~ 1 / sqrt(n)
    assert stats.bootstrap_ci(np.ones(50, bool), 500, 0) == (1.0, 1.0)  # no variation, no width


def test_resamples_hold_the_same_questions_for_every_method():
    """Resample b draws the same questions whatever is resampled: a method and its complement sum to 1 exactly."""
    rng = np.random.default_rng(1)
    a = rng.random(300) < 0.7
    assert np.allclose(stats.resampled_accuracies(a, 500, 7) + stats.resampled_accuracies(~a, 500, 7), 1.0)


def test_paired_difference_is_narrower_than_unpaired_when_methods_agree():
    """B differs from A on 5% of the questions: the paired interval sees only those; drawing A's and B's
    resamples independently (different seeds) adds both accuracies' whole question noise."""
    rng = np.random.default_rng(0)
    a = rng.random(500) < 0.8
    b = a.copy()
    flip = rng.choice(500, 25, replace=False)
    b[flip] = ~b[flip]
    paired = stats.paired_diff_ci(a, b, 2000, seed=0)
    unpaired = stats.percentile_interval(
        stats.resampled_accuracies(a, 2000, 0) - stats.resampled_accuracies(b, 2000, 1)
    )
    d = stats.accuracy(a) - stats.accuracy(b)
    assert paired[0] <= d <= paired[1] and unpaired[0] <= d <= unpaired[1]
    assert (paired[1] - paired[0]) < 0.5 * (unpaired[1] - unpaired[0])
    # A method against itself: no difference on any resample.
    assert stats.paired_diff_ci(a, a, 500, 0) == (0.0, 0.0)
    with pytest.raises(ValueError, match="same questions"):
        stats.paired_diff_ci(a, b[:10])


def test_several_seeds_pool_to_the_mean_and_widen_with_seed_variation():
    """Seed 0 gets 2 of 4 right, seed 1 gets 3 of 4: the pooled accuracy is (0.5 + 0.75) / 2 = 0.625."""
    correct = np.array([[1, 1], [1, 1], [0, 1], [0, 0]], dtype=bool)  # [n=4 questions, S=2 seeds]
    summary = stats.seed_summary(correct)
    assert summary["mean"] == 0.625 and summary["per_seed"] == [0.5, 0.75]
    assert summary["std"] == pytest.approx(np.std([0.5, 0.75], ddof=1))
    assert stats.accuracy(correct) == 0.625
    # Every question alike, the seeds opposite: resampling questions alone would give [0.5, 0.5]; resampling
    # seeds draws both of one seed with probability 1/4 each, so the 95% interval spans [0, 1].
    split = np.array([[1, 0]] * 20, dtype=bool)
    assert stats.bootstrap_ci(split, 2000, 0) == (0.0, 1.0)
    draws = stats.resampled_accuracies(split, 4000, 0)
    assert np.mean(draws == 0.5) == pytest.approx(0.5, abs=0.03) and set(np.unique(draws)) == {0.0, 0.5, 1.0}
    # One seed: the pooled bootstrap is the question bootstrap, to the digit.
    one = _hits(40, 60)
    assert stats.bootstrap_ci(one[:, None], 1000, 5) == stats.bootstrap_ci(one, 1000, 5)


def test_correctness_strings_round_trip():
    a, b = _hits(3, 5), ~_hits(3, 5)
    strings = [stats.encode_bits(a), stats.encode_bits(b)]
    assert strings == ["11100", "00011"]
    assert np.array_equal(stats.decode_bits(strings), np.stack([a, b], axis=1))
    with pytest.raises(ValueError):
        stats.decode_bits(["101", "10"])
