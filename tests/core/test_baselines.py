"""Training-free baselines: small hand-worked cases, exact budgets, clear errors."""

import math

import pytest
import torch

from scorerl.compress.baselines import (CompressorError, allocate, available, dycoke_threshold_keep, evenly_spaced,
                                        get_compressor, keep_count, per_frame_topk, pool_features)
from scorerl.compress.baselines.pool import pool_regions
from scorerl.errors import ScoreRLError

SELECTORS = [n for n in available() if n != "full"]  # every method bound to keep exactly ceil(rho * T * N)


def unit(deg: float) -> list[float]:
    """A 2-D unit vector at `deg` degrees (cosine similarities are then easy to read)."""
    return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]


def kept(keep: torch.Tensor) -> set[tuple[int, int]]:
    return {tuple(ix) for ix in keep.nonzero().tolist()}


# ------------------------------------------------------------------------------------------- registry, errors


def test_registry_names_and_unknown():
    assert available() == ["dycoke", "framediff", "full", "pool", "random", "uniform", "vidcom2"]
    assert get_compressor("DyCoke", window=2).window == 2
    with pytest.raises(ScoreRLError, match="did you mean 'pool'"):
        get_compressor("pol")
    with pytest.raises(ScoreRLError, match="evaluation harness"):
        get_compressor("fastv")
    with pytest.raises(ScoreRLError, match="framediff"):
        get_compressor("framediff", first_unt="zero")  # misspelt option named, not a bare TypeError
    with pytest.raises(ScoreRLError, match="first_unit"):
        get_compressor("framediff", first_unit="prev")


@pytest.mark.parametrize("name", available())
@pytest.mark.parametrize("rho", [0.0, -0.1, 1.5, float("nan"), float("inf"), "0.5", None, True])
def test_invalid_rho_is_a_clear_error(name, rho):
    with pytest.raises(ValueError, match="rho"):  # CompressorError is both a ValueError and a ScoreRLError
        get_compressor(name).select(torch.randn(2, 4, 3), rho, (2, 2))


@pytest.mark.parametrize("features, grid, match", [
    (torch.randn(4, 3), (2, 2), r"\[T, N, D\]"),
    (torch.randn(2, 4, 3), (3, 2), "grid"),
    (torch.randn(2, 0, 3), (0, 0), "non-empty"),
    (torch.full((2, 4, 3), float("nan")), (2, 2), "NaN"),
])
def test_bad_inputs_are_clear_errors(features, grid, match):
    with pytest.raises(ScoreRLError, match=match):
        get_compressor("uniform").select(features, 0.5, grid)


# ------------------------------------------------------------------------------------------- exact budgets


@pytest.mark.parametrize("name", SELECTORS)
@pytest.mark.parametrize("rho", [0.05, 0.1, 0.25, 0.5, 1.0])
@pytest.mark.parametrize("T, grid", [(1, (1, 1)), (3, (2, 2)), (5, (2, 3)), (8, (4, 4)), (4, (3, 4)), (2, (1, 7))])
@pytest.mark.parametrize("content", ["random", "static", "zeros"])
def test_every_method_keeps_exactly_k(name, rho, T, grid, content):
    N = grid[0] * grid[1]
    g = torch.Generator().manual_seed(T * 100 + N)
    features = {"random": torch.randn(T, N, 5, generator=g),
                "static": torch.randn(1, N, 5, generator=g).expand(T, N, 5).clone(),  # zero residual after t=0
                "zeros": torch.zeros(T, N, 5)}[content]
    keep = get_compressor(name).select(features, rho, grid, generator=torch.Generator().manual_seed(0))
    assert keep.dtype == torch.bool and keep.shape == (T, N)
    assert int(keep.sum()) == math.ceil(round(rho * T * N, 9)) == keep_count(rho, T * N)


def test_full_keeps_everything_whatever_rho():
    assert bool(get_compressor("full").select(torch.randn(3, 4, 2), 0.1, (2, 2)).all())


def test_keep_count_is_not_fooled_by_float_round_off():
    assert 0.07 * 100 > 7 and keep_count(0.07, 100) == 7
    assert keep_count(0.05, 10) == 1 and keep_count(0.01, 10) == 1 and keep_count(1.0, 10) == 10


def test_bfloat16_features_work():
    features = torch.randn(4, 6, 8).to(torch.bfloat16)
    for name in SELECTORS:
        assert int(get_compressor(name).select(features, 0.3, (2, 3)).sum()) == 8


# ------------------------------------------------------------------------------------------- allocate


def test_allocate_is_proportional_exact_and_deterministic():
    assert allocate(10, [1, 1, 2], 10).tolist() == [3, 2, 5]  # quotas 2.5, 2.5, 5: tie -> lower index
    assert allocate(7, [0, 0, 0], 5).tolist() == [3, 2, 2]  # all-zero weights share equally
    assert allocate(0, [1, 2], 3).tolist() == [0, 0]


def test_allocate_respects_capacity_and_spills_by_weight():
    # Frame 0 wants 8 of 10 but holds 4; the other 6 go to frames 1 and 2 in proportion 1 : 2.
    assert allocate(10, [8, 1, 2], 4).tolist() == [4, 2, 4]  # 2 : 4 would be the split; frame 2 caps at 4
    assert allocate(12, [8, 1, 2], 4).tolist() == [4, 4, 4]  # budget == total capacity
    assert allocate(5, [1, 1, 1], [0, 5, 1]).tolist() == [0, 4, 1]  # per-frame capacities, 0 honoured


@pytest.mark.parametrize("seed", range(20))
def test_allocate_random_cases_sum_exactly(seed):
    g = torch.Generator().manual_seed(seed)
    T = int(torch.randint(1, 9, (1,), generator=g))
    cap = torch.randint(0, 6, (T,), generator=g)
    weights = torch.rand(T, generator=g) ** 4  # skewed, so capacities bind
    budget = int(torch.randint(0, int(cap.sum()) + 1, (1,), generator=g))
    out = allocate(budget, weights, cap)
    assert int(out.sum()) == budget and bool((out <= cap).all()) and bool((out >= 0).all())


def test_allocate_rejects_impossible_requests():
    with pytest.raises(ScoreRLError, match="budget"):
        allocate(9, [1, 1], 4)
    with pytest.raises(ScoreRLError, match="weights"):
        allocate(2, [1, -1], 4)
    with pytest.raises(ScoreRLError, match="capacity"):
        allocate(2, [1, 1, 1], [4, 4])


def test_per_frame_topk_and_evenly_spaced():
    scores = torch.tensor([[0.1, 0.9, 0.5], [0.3, 0.3, 0.2]])
    assert kept(per_frame_topk(scores, torch.tensor([2, 1]))) == {(0, 1), (0, 2), (1, 0)}  # tie -> raster
    assert evenly_spaced(2, 4).tolist() == [1, 3] and evenly_spaced(4, 4).tolist() == [0, 1, 2, 3]


# ------------------------------------------------------------------------------------------- per method


def test_uniform_keeps_evenly_spaced_whole_frames():
    features = torch.randn(4, 4, 2)
    keep = get_compressor("uniform").select(features, 0.5, (2, 2))  # k = 8: frames at slice centres 1 and 3
    assert keep.sum(dim=1).tolist() == [0, 4, 0, 4]
    keep = get_compressor("uniform").select(features, 0.375, (2, 2))  # k = 6: frame 1 whole, frame 3 two tokens
    assert kept(keep) == {(1, 0), (1, 1), (1, 2), (1, 3), (3, 1), (3, 3)}


def test_random_is_seeded_and_reproducible():
    features = torch.randn(6, 16, 3)
    rand = get_compressor("random")
    a = rand.select(features, 0.25, (4, 4), generator=torch.Generator().manual_seed(7))
    b = rand.select(features, 0.25, (4, 4), generator=torch.Generator().manual_seed(7))
    c = rand.select(features, 0.25, (4, 4), generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c) and int(a.sum()) == 24
    assert int(rand.select(features, 0.25, (4, 4)).sum()) == 24  # no generator: global RNG, still exact


def test_framediff_keeps_the_tokens_that_changed():
    base = torch.tensor([[1.0, 0.0]]).repeat(4, 1)  # [N=4, D=2], every token |v| = 1
    f1 = base.clone(); f1[2] = torch.tensor([1.0, 3.0])  # token 2 changes by 3
    f2 = f1.clone(); f2[0] = torch.tensor([1.0, -2.0])  # token 0 changes by 2; token 2 stays
    features = torch.stack([base, f1, f2])  # [T=3, N=4, D=2]
    fd = get_compressor("framediff")
    assert kept(fd.select(features, 2 / 12, (2, 2))) == {(1, 2), (2, 0)}
    # k = 6: the two changes, then frame 0 (first_unit=self scores it |v[0]| = 1, above the zero residuals)
    assert kept(fd.select(features, 0.5, (2, 2))) == {(1, 2), (2, 0), (0, 0), (0, 1), (0, 2), (0, 3)}
    # first_unit=zero: frame 0 scores 0 like the unchanged tokens, and ties go to the earliest token
    assert kept(get_compressor("framediff", first_unit="zero").select(features, 3 / 12, (2, 2))) == \
        {(1, 2), (2, 0), (0, 0)}


def _repeating_video() -> torch.Tensor:
    """[T=4, N=4, D=2]: frame 0 repeated, except token 3 turns by 90 degrees at t=2 and stays turned at t=3."""
    frame = torch.tensor([unit(0), unit(30), unit(60), unit(120)])
    video = frame.repeat(4, 1, 1)
    video[2:, 3] = torch.tensor(unit(210))
    return video


def test_dycoke_prunes_repeated_tokens():
    video = _repeating_video()
    # k = 5: the anchor frame, then the one token that differs from its previous frame; (3, 3) repeats (2, 3).
    keep = get_compressor("dycoke").select(video, 5 / 16, (2, 2))
    assert kept(keep) == {(0, 0), (0, 1), (0, 2), (0, 3), (2, 3)}
    # The paper's threshold rule keeps the same tokens, at a count it chooses itself.
    assert torch.equal(dycoke_threshold_keep(video, threshold=0.9), keep)
    # reference=anchor: frame 3 is compared with frame 0, so its turned token is new again.
    keep = get_compressor("dycoke", reference="anchor").select(video, 6 / 16, (2, 2))
    assert kept(keep) == {(0, 0), (0, 1), (0, 2), (0, 3), (2, 3), (3, 3)}


def test_dycoke_ranks_anchors_before_other_frames():
    video = _repeating_video()
    # window=2: frame 2 is an anchor, so all of it outranks frame 1 and 3 (which repeat their references anyway);
    # within frame 2 the turned token (distance 1 to frame 1) goes first.
    keep = get_compressor("dycoke", window=2).select(video, 5 / 16, (2, 2))
    assert kept(keep) == {(0, 0), (0, 1), (0, 2), (0, 3), (2, 3)}
    assert get_compressor("dycoke", window=2).select(video, 8 / 16, (2, 2)).sum(dim=1).tolist() == [4, 0, 4, 0]
    # k < N: first-frame tokens by distance to their frame's mean (direction ~50 deg): 120 deg is farthest.
    assert kept(get_compressor("dycoke").select(video, 1 / 16, (2, 2))) == {(0, 3)}


def test_vidcom2_gives_the_unique_frame_more_budget():
    common = torch.tensor([unit(0), unit(10), unit(20), unit(30)])
    unique = torch.tensor([unit(90), unit(100), unit(170), unit(180)])
    video = torch.stack([common, common, unique, common])  # [T=4, N=4, D=2]
    for spread in ("offset", "softmax"):
        per_frame = get_compressor("vidcom2", spread=spread).select(video, 0.5, (2, 2)).sum(dim=1).tolist()
        assert sum(per_frame) == 8 and per_frame[2] == max(per_frame) and per_frame[2] > per_frame[3]
    # softmax at low temperature puts (nearly) all weight on frame 2: it is kept whole, the rest spill over.
    assert get_compressor("vidcom2", spread="softmax").select(video, 0.5, (2, 2)).sum(dim=1).tolist() == \
        [2, 1, 4, 1]
    # k = 1 goes to frame 2 under softmax. Its tokens at 90 and 180 deg are equally far (45 deg) from the frame
    # mean (135 deg), but 180 deg is much farther from the video mean (~35 deg, pulled by the 3 common frames).
    keep = get_compressor("vidcom2", spread="softmax").select(video, 1 / 16, (2, 2))
    assert kept(keep) == {(2, 3)}


def test_pool_keeps_one_representative_per_window():
    # T=1, grid 2x4, k = 2: two 2x2 windows (columns 0-1 and 2-3).
    features = torch.tensor([[[1.0, 0.0], [0.0, 0.0], [5.0, 5.0], [6.0, 6.0],
                              [0.0, 0.0], [3.0, 0.0], [7.0, 7.0], [10.0, 10.0]]])  # [1, 8, 2]
    keep = get_compressor("pool").select(features, 0.25, (2, 4))
    assert kept(keep) == {(0, 0), (0, 6)}  # tokens equal to their window means [1, 0] and [7, 7]
    keep2, pooled = pool_features(features, 0.25, (2, 4))
    assert torch.equal(keep, keep2)
    assert torch.allclose(pooled, torch.tensor([[1.0, 0.0], [7.0, 7.0]]))  # lines up with features[keep]


def test_pool_regions_tile_the_grid():
    assert pool_regions(4, 4, 4).view(4, 4).tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]
    assert pool_regions(2, 3, 6).tolist() == list(range(6))  # a budget of N is no pooling
    for rows, cols in [(3, 4), (1, 7), (5, 2)]:
        for b in range(1, rows * cols + 1):
            ids = pool_regions(rows, cols, b)
            assert sorted(set(ids.tolist())) == list(range(b))  # exactly b non-empty regions


def test_pool_features_means_match_regions():
    features = torch.randn(3, 12, 4)
    keep, pooled = pool_features(features, 0.25, (3, 4))  # k = 9, 3 per frame
    assert pooled.shape == (9, 4) and int(keep.sum()) == 9
    ids = pool_regions(3, 4, 3)
    reps = keep[0].nonzero().flatten()
    for j, rep in enumerate(reps.tolist()):
        region = ids == ids[rep]
        assert torch.allclose(pooled[j], features[0][region].mean(dim=0), atol=1e-6)
