"""Training-free baselines: small hand-worked cases, exact budgets, clear errors."""

import math

import pytest
import torch

from scorerl.compress.baselines import (
    CompressorError,
    allocate,
    available,
    evenly_spaced,
    get_compressor,
    keep_count,
    per_frame_topk,
    pool_features,
)
from scorerl.compress.baselines.dycoke import dycoke_ttm, ttm_layout
from scorerl.compress.baselines.pool import pool_regions
from scorerl.compress.baselines.vidcom2 import frame_budgets, vidcom2_steps
from scorerl.errors import ScoreRLError

# The faithful re-implementations keep what the published method keeps at rho (their own count, tested below and
# in test_parity.py); dycoke_ttm+topk keeps exactly k (on clips of T <= 4 too, where the TTM is undefined).
OWN_COUNT = ("dycoke", "vidcom2")
MERGING = ("fastvid_meanq", "holitom_meanq")  # kept + merged tokens (compress, not select): test_merging.py
SELECTORS = [n for n in available() if n not in ("full", "dycoke_ttm+topk", *OWN_COUNT, *MERGING)]  # ceil(rho*T*N)


def unit(deg: float) -> list[float]:
    """A 2-D unit vector at `deg` degrees (cosine similarities are then easy to read)."""
    return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]


def kept(keep: torch.Tensor) -> set[tuple[int, int]]:
    return {tuple(ix) for ix in keep.nonzero().tolist()}


# ------------------------------------------------------------------------------------------- registry, errors


def test_registry_names_and_unknown():
    assert available() == [
        "dycoke",
        "dycoke_ttm+topk",
        "fastvid_meanq",
        "framediff",
        "full",
        "holitom_meanq",
        "pool",
        "random",
        "uniform",
        "vidcom2",
    ]
    assert get_compressor("DyCoke").name == "dycoke" and get_compressor("vidcom2", temperature=0.05).temperature == 0.05
    with pytest.raises(ScoreRLError, match="dycoke"):
        get_compressor("dycoke", window=2)  # the official TTM's groups of 4 are fixed
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


@pytest.mark.parametrize(
    "features, grid, match",
    [
        (torch.randn(4, 3), (2, 2), r"\[T, N, D\]"),
        (torch.randn(2, 4, 3), (3, 2), "grid"),
        (torch.randn(2, 0, 3), (0, 0), "non-empty"),
        (torch.full((2, 4, 3), float("nan")), (2, 2), "NaN"),
    ],
)
def test_bad_inputs_are_clear_errors(features, grid, match):
    with pytest.raises(ScoreRLError, match=match):
        get_compressor("uniform").select(features, 0.5, grid)


# ------------------------------------------------------------------------------------------- exact budgets


def content_features(content: str, T: int, N: int) -> torch.Tensor:
    """[T, N, 5] features of one kind: random, static (zero residual after t=0) or zeros; seeded by (T, N)."""
    g = torch.Generator().manual_seed(T * 100 + N)
    return {
        "random": torch.randn(T, N, 5, generator=g),
        "static": torch.randn(1, N, 5, generator=g).expand(T, N, 5).clone(),
        "zeros": torch.zeros(T, N, 5),
    }[content]


@pytest.mark.parametrize("name", SELECTORS)
@pytest.mark.parametrize("rho", [0.05, 0.1, 0.25, 0.5, 1.0])
@pytest.mark.parametrize("T, grid", [(1, (1, 1)), (3, (2, 2)), (5, (2, 3)), (8, (4, 4)), (4, (3, 4)), (2, (1, 7))])
@pytest.mark.parametrize("content", ["random", "static", "zeros"])
def test_every_method_keeps_exactly_k(name, rho, T, grid, content):
    N = grid[0] * grid[1]
    features = content_features(content, T, N)
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
    features = torch.randn(6, 6, 8).to(torch.bfloat16)
    assert int(get_compressor("dycoke_ttm+topk").select(features, 0.3, (2, 3)).sum()) == 11
    assert int(get_compressor("dycoke").select(features, 0.3, (2, 3)).sum()) == 12  # 2 whole + 4 x 0 -> min 12
    keep = get_compressor("vidcom2").select(features, 0.3, (2, 3))  # computed in float32, like the official runs
    assert torch.equal(keep, vidcom2_steps(features.float(), 0.3).keep) and int(keep.sum()) >= 6


@pytest.mark.parametrize("rho", [0.05, 0.1, 0.25, 0.5, 1.0])
@pytest.mark.parametrize("T, grid", [(5, (2, 3)), (6, (2, 2)), (8, (4, 4)), (9, (1, 7)), (16, (2, 3))])
@pytest.mark.parametrize("content", ["random", "static", "zeros"])
def test_dycoke_counts_follow_the_rho_to_K_rule(rho, T, grid, content):
    N = grid[0] * grid[1]
    features = content_features(content, T, N)
    k = keep_count(rho, T * N)
    layout = ttm_layout(T)
    W, P, top = layout.whole, layout.pruned, layout.count(N, N)
    keep = get_compressor("dycoke").select(features, rho, grid)
    m = min(N, max(0, math.ceil((k - W * N) / P)))  # the fewest tokens per pruned frame keeping >= k
    assert int(keep.sum()) == W * N + P * m and keep.sum(dim=1).tolist() == [
        {"whole": N, "pruned": m, "dropped": 0}[r] for r in layout.roles
    ]
    assert int(keep.sum()) >= min(k, top) and (int(keep.sum()) < k + P or m == 0)  # k or a bit more, or its floor
    if k <= top:  # the variant: exactly k, inside the TTM's output
        exact = get_compressor("dycoke_ttm+topk").select(features, rho, grid)
        assert int(exact.sum()) == k and bool((exact <= keep).all())
    else:  # odd T at high rho: the dropped last frame makes k unreachable
        with pytest.raises(CompressorError, match="at most"):
            get_compressor("dycoke_ttm+topk").select(features, rho, grid)


@pytest.mark.parametrize("rho", [0.05, 0.1, 0.25, 0.5, 1.0])
@pytest.mark.parametrize("T, grid", [(1, (1, 1)), (3, (2, 2)), (5, (2, 3)), (8, (4, 4)), (2, (1, 7))])
@pytest.mark.parametrize("content", ["random", "static", "zeros"])
def test_vidcom2_keeps_its_per_frame_budgets(rho, T, grid, content):
    N = grid[0] * grid[1]
    features = content_features(content, T, N)
    keep = get_compressor("vidcom2").select(features, rho, grid)
    budgets = vidcom2_steps(features, rho).budgets
    assert keep.dtype == torch.bool and keep.shape == (T, N)
    assert keep.sum(dim=1).tolist() == budgets.tolist() and bool((budgets >= 1).all()) and bool((budgets <= N).all())
    # sum_t scale_t = rho * T; rounding moves each frame by <= 0.5 and the floor of 1 by < 1, so the total is
    # within T of rho * T * N (below it only where the cap at 1 binds, which needs rho > 0.5)
    assert int(keep.sum()) <= rho * T * N + T and (rho > 0.5 or int(keep.sum()) >= rho * T * N - T)


@pytest.mark.parametrize("T", [1, 2, 4])
def test_the_published_dycoke_needs_five_frames(T):
    with pytest.raises(CompressorError, match="T >= 5"):
        get_compressor("dycoke").select(torch.randn(T, 4, 3), 0.5, (2, 2))


def test_the_variant_ranks_a_short_clips_frames_by_change_from_the_frame_before():
    """T <= 4 (no TTM): frame 0 first (its tokens by similarity to frame 1), then later tokens by similarity to
    the same position one frame earlier; exactly k."""
    x = torch.tensor(
        [
            [[1.0, 0.0], [0.0, 1.0]],  # frame 0
            [[1.0, 0.0], [1.0, 0.0]],  # token 1 turned: sim 0 with frame 0; token 0 the same: sim 1
            [[1.0, 0.0], [1.0, 0.1]],
        ]
    )  # both almost as in frame 1
    topk = get_compressor("dycoke_ttm+topk")
    assert topk.select(x, 1 / 6, (1, 2)).nonzero().tolist() == [[0, 1]]  # frame 0, the token that changes after
    assert topk.select(x, 3 / 6, (1, 2)).nonzero().tolist() == [[0, 0], [0, 1], [1, 1]]
    for T in (1, 2, 4):
        assert int(topk.select(torch.randn(T, 4, 3), 0.3, (2, 2)).sum()) == -(-3 * T * 4 // 10)


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
    f1 = base.clone()
    f1[2] = torch.tensor([1.0, 3.0])  # token 2 changes by 3
    f2 = f1.clone()
    f2[0] = torch.tensor([1.0, -2.0])  # token 0 changes by 2; token 2 stays
    features = torch.stack([base, f1, f2])  # [T=3, N=4, D=2]
    fd = get_compressor("framediff")
    assert kept(fd.select(features, 2 / 12, (2, 2))) == {(1, 2), (2, 0)}
    # k = 6: the two changes, then frame 0 (first_unit=self scores it |v[0]| = 1, above the zero residuals)
    assert kept(fd.select(features, 0.5, (2, 2))) == {(1, 2), (2, 0), (0, 0), (0, 1), (0, 2), (0, 3)}
    # first_unit=zero: frame 0 scores 0 like the unchanged tokens, and ties go to the earliest token
    assert kept(get_compressor("framediff", first_unit="zero").select(features, 3 / 12, (2, 2))) == {
        (1, 2),
        (2, 0),
        (0, 0),
    }


def _turned(frame: torch.Tensor, turns: dict[int, float]) -> torch.Tensor:
    """A copy of frame [N, 2] (unit vectors) with token i turned by turns[i] degrees."""
    out = frame.clone()
    for i, deg in turns.items():
        angle = math.degrees(math.atan2(float(frame[i, 1]), float(frame[i, 0]))) + deg
        out[i] = torch.tensor(unit(angle))
    return out


def _dycoke_video() -> torch.Tensor:
    """[T=6, N=4, D=2]. Cosine with the reference is cos(turn): frame 1 vs 0, 2 vs 0, 3 vs 2 (unpruned), 5 vs 4."""
    f0 = torch.tensor([unit(0), unit(30), unit(60), unit(120)])
    f1 = _turned(f0, {1: 90, 2: 45})  # vs frame 0: token 1 (cos 0), then token 2 (0.71)
    f2 = _turned(f0, {3: 180, 0: 60})  # vs frame 0: token 3 (-1), token 0 (0.5); vs frame 1 token 1 would win
    f3 = _turned(f2, {2: 120, 1: 30})  # vs frame 2 as it was: token 2 (-0.5), token 1 (0.87)
    f4 = _turned(f0, {2: 170, 0: 100})  # whole; vs frame 0 (the variant's rule): token 2 (-0.98), token 0 (-0.17)
    f5 = _turned(f4, {0: 90, 3: 10})  # vs frame 4: token 0 (0), token 3 (0.98)
    return torch.stack([f0, f1, f2, f3, f4, f5])


def test_dycoke_ttm_by_hand():
    video = _dycoke_video()
    ttm = dycoke_ttm(video, 0.5)  # m = int(0.5 * 4) = 2 per pruned frame
    assert ttm.layout.roles == ("whole", "pruned", "pruned", "pruned", "whole", "pruned")
    assert ttm.layout.reference == (None, 0, 0, 2, None, 4)
    # frames ascending; whole frames in raster order; pruned ones most-changed first
    assert [(i // 4, i % 4) for i in ttm.order.tolist()] == [
        (0, 0),
        (0, 1),
        (0, 2),
        (0, 3),
        (1, 1),
        (1, 2),
        (2, 3),
        (2, 0),
        (3, 2),
        (3, 1),
        (4, 0),
        (4, 1),
        (4, 2),
        (4, 3),
        (5, 0),
        (5, 3),
    ]
    assert torch.equal(get_compressor("dycoke").select(video, 16 / 24, (2, 2)), ttm.keep)  # rho -> m = 2
    assert dycoke_ttm(video, 0.7).keep_per_pruned == 1  # int(0.3 * 4): truncated, as the official code
    # rho below its minimum (2 whole frames of 6): K = 1, only the whole frames, 8 tokens for k = 2
    assert get_compressor("dycoke").select(video, 2 / 24, (2, 2)).sum(dim=1).tolist() == [4, 0, 0, 0, 4, 0]
    # k = 17 -> m = ceil((17 - 8) / 4) = 3 -> 20 tokens: the smallest count >= k that DyCoke can keep
    assert get_compressor("dycoke").select(video, 17 / 24, (2, 2)).sum(dim=1).tolist() == [4, 3, 3, 3, 4, 3]


def test_dycoke_edge_frames_follow_the_official_loops():
    assert ttm_layout(8).roles == ("whole", "pruned", "pruned", "pruned", "whole", "pruned", "whole", "pruned")
    assert ttm_layout(16).roles[14] == "whole" and ttm_layout(16).whole == 5  # frame T - 2 never pruned
    odd = ttm_layout(7)  # the last frame of an odd T is dropped
    assert odd.roles == ("whole", "pruned", "pruned", "pruned", "whole", "pruned", "dropped")
    assert ttm_layout(5).roles == ("whole", "pruned", "pruned", "pruned", "dropped")
    video = torch.cat([_dycoke_video(), torch.randn(1, 4, 2)])  # T = 7
    assert dycoke_ttm(video, 0.0).keep.sum(dim=1).tolist() == [4, 4, 4, 4, 4, 4, 0]
    assert int(get_compressor("dycoke").select(video, 1.0, (2, 2)).sum()) == 24  # its maximum, 6 of 7 frames


def test_dycoke_variant_ranks_inside_the_ttm():
    video = _dycoke_video()
    topk = get_compressor("dycoke_ttm+topk")
    # Below the minimum: frame 0 first, by similarity to frame 1 (token 1, then 2) ...
    assert kept(topk.select(video, 2 / 24, (2, 2))) == {(0, 1), (0, 2)}
    # ... then the other whole frame by similarity to the previous whole frame (frame 4 vs 0: tokens 2, 0)
    assert kept(topk.select(video, 6 / 24, (2, 2))) == {(0, 0), (0, 1), (0, 2), (0, 3), (4, 2), (4, 0)}
    # Above it: the TTM at m = 1 keeps 12; the variant trims to the 2 least similar pruned tokens of the 4.
    keep = topk.select(video, 10 / 24, (2, 2))
    assert kept(keep) - kept(dycoke_ttm(video, keep_per_pruned=0).keep) == {(2, 3), (3, 2)}
    assert bool((keep <= get_compressor("dycoke").select(video, 10 / 24, (2, 2))).all())


def _vidcom2_video(seed: int) -> torch.Tensor:
    """[T=4, N=4, D=4]: frame 2 points elsewhere on channels 0-1; channels 2-3 are loud noise (variance ~100)."""
    common = torch.tensor([unit(0), unit(10), unit(20), unit(30)])
    unique = torch.tensor([unit(90), unit(100), unit(170), unit(180)])
    noise = 10 * torch.randn(4, 4, 2, generator=torch.Generator().manual_seed(seed))
    return torch.cat([torch.stack([common, common, unique, common]), noise], dim=-1)


def test_vidcom2_gives_the_unique_frame_more_budget():
    video = _vidcom2_video(0)
    steps = vidcom2_steps(video, 0.25)
    assert steps.selected_channels.tolist() == [0, 1]  # the lowest-variance half: the noise never scores
    assert int(steps.frame_uniqueness.argmax()) == 2
    # p ~ [0, 0, 1, 0]: scale = 0.25 * (1 + p - 1/4) -> [0.1875, 0.1875, 0.4375, 0.1875] -> x 4 tokens, rounded
    assert steps.budgets.tolist() == [1, 1, 2, 1]
    keep = get_compressor("vidcom2").select(video, 0.25, (2, 2))
    assert int(keep.sum()) == 5 != keep_count(0.25, 16)  # sum of the budgets, not ceil(rho * T * N) = 4
    # Frame 2 keeps 180 and 170 deg: farthest from the video centre (pulled to ~15 deg by 3 common frames);
    # common frames keep 0 deg, as far from their frame centre (15 deg) as 30 deg but farther from the video's.
    assert kept(keep) == {(0, 0), (1, 0), (2, 3), (2, 2), (3, 0)}
    assert torch.equal(keep, get_compressor("vidcom2").select(_vidcom2_video(1), 0.25, (2, 2)))  # other noise
    # the floor of 1: at R = 0.05 every frame still keeps a token (4, where ceil(0.05 * 16) = 1)
    assert get_compressor("vidcom2").select(video, 0.05, (2, 2)).sum(dim=1).tolist() == [1, 1, 1, 1]


def test_vidcom2_budgets_round_half_to_even_per_frame():
    u = torch.zeros(2)  # equal uniqueness: p = [0.5, 0.5], scale = R
    assert frame_budgets(u, 0.625, 4)[2].tolist() == [2, 2]  # 2.5 -> 2
    assert frame_budgets(u, 0.875, 4)[2].tolist() == [4, 4]  # 3.5 -> 4
    assert frame_budgets(u, 0.1, 4)[2].tolist() == [1, 1]  # 0.4 -> 0 -> the floor of 1
    p, scales, budgets = frame_budgets(torch.tensor([0.0, 1.0]), 0.9, 10)  # p ~ [0, 1]: the cap at 1
    assert scales.tolist() == pytest.approx([0.45, 1.0]) and budgets.tolist() == [4, 10]  # round(4.5) -> 4


def test_pool_keeps_one_representative_per_window():
    # T=1, grid 2x4, k = 2: two 2x2 windows (columns 0-1 and 2-3).
    features = torch.tensor(
        [[[1.0, 0.0], [0.0, 0.0], [5.0, 5.0], [6.0, 6.0], [0.0, 0.0], [3.0, 0.0], [7.0, 7.0], [10.0, 10.0]]]
    )  # [1, 8, 2]
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
