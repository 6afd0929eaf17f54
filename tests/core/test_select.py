import math

import pytest
import torch

from scorerl.compress.select import mask_to_indices, num_keep, sample_masks, topk_mask


def test_sample_masks_shapes():
    g = torch.Generator().manual_seed(0)
    assert sample_masks(torch.zeros(3, 4), K=5, generator=g).shape == (5, 3, 4)
    m = sample_masks(torch.zeros(2, 3, 4), K=5, generator=g)  # batched [B, T, N]
    assert m.shape == (2, 5, 3, 4) and m.dtype == torch.bool


def test_sample_masks_reproducible_with_seeded_generator():
    logits = torch.randn(4, 6, generator=torch.Generator().manual_seed(1))
    a = sample_masks(logits, 8, torch.Generator().manual_seed(7))
    b = sample_masks(logits, 8, torch.Generator().manual_seed(7))
    c = sample_masks(logits, 8, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_empty_mask_guard_adds_most_probable_tokens():
    logits = torch.full((3, 4), -30.0)  # p ~ 1e-13: every sampled mask would be empty
    logits[1, 2] = -20.0  # the most probable token
    masks, guarded = sample_masks(logits, 6, torch.Generator().manual_seed(0), return_num_guarded=True)
    assert guarded == 6
    expected = torch.zeros(3, 4, dtype=torch.bool)
    expected[1, 2] = True
    assert all(torch.equal(m, expected) for m in masks)
    # min_keep = 3: the top token, then the tie at -30 broken by lower flat index: (0, 0), (0, 1)
    masks = sample_masks(logits, 2, torch.Generator().manual_seed(0), min_keep=3)
    expected[0, 0] = expected[0, 1] = True
    assert all(torch.equal(m, expected) for m in masks)


def test_guard_leaves_full_masks_alone():
    logits = torch.full((2, 3), 30.0)
    masks, guarded = sample_masks(logits, 4, torch.Generator().manual_seed(0), return_num_guarded=True)
    assert guarded == 0 and masks.all()


def test_keep_frequency_matches_sigmoid():
    logits = torch.tensor([[-2.0, 0.0, 1.5]])
    masks = sample_masks(logits, 20000, torch.Generator().manual_seed(0), min_keep=0)
    freq = masks.float().mean(0)[0]
    # sigmoid(-2) = 0.1192, sigmoid(0) = 0.5, sigmoid(1.5) = 0.8176; 4 sigma of a 20000-draw mean is < 0.015
    assert torch.allclose(freq, torch.tensor([0.1192, 0.5, 0.8176]), atol=0.015)


def test_num_keep():
    assert num_keep(0.25, 2, 5) == 3  # ceil(2.5)
    assert num_keep(0.07, 10, 10) == 7  # 0.07 * 100 = 7.000000000000001 in floats: still 7
    assert num_keep(0.001, 2, 5) == 1  # at least one
    assert num_keep(1.0, 2, 5) == 10
    with pytest.raises(ValueError):
        num_keep(0.0, 2, 5)


def test_topk_global_picks_top_scores():
    scores = torch.tensor([[0.9, 0.1, 0.5, 0.3, 0.2], [0.8, 0.7, 0.0, 0.6, 0.4]])
    m = topk_mask(scores, 0.25)  # k = ceil(0.25 * 10) = 3 -> 0.9, 0.8, 0.7
    assert int(m.sum()) == math.ceil(0.25 * 10)
    assert m.tolist() == [[True, False, False, False, False], [True, True, False, False, False]]
    assert topk_mask(scores.unsqueeze(0), 0.25).squeeze(0).tolist() == m.tolist()  # batched


def test_topk_per_unit():
    scores = torch.tensor([[0.9, 0.1, 0.5, 0.3, 0.2], [0.8, 0.7, 0.0, 0.6, 0.4]])
    m = topk_mask(scores, 0.4, scope="per_unit")  # k = 4 of 10: 2 per unit
    assert m.tolist() == [[True, False, True, False, False], [True, True, False, False, False]]
    m = topk_mask(scores, 0.5, scope="per_unit")  # k = 5: 2 per unit, the fifth by score anywhere (0.6)
    assert m.tolist() == [[True, False, True, False, False], [True, True, False, True, False]]
    assert topk_mask(scores, 0.3, scope="per_unit").tolist() == [
        [True, False, False, False, False],
        [True, True, False, False, False],
    ]  # k = 3


def test_both_scopes_keep_what_every_method_keeps():
    """per_unit once rounded up in every unit: at ratio 0.1 over 8 units of 16 tokens it kept 16 (12.5%), not 13."""
    g = torch.Generator().manual_seed(0)
    for T, N in ((8, 16), (16, 64), (3, 7)):
        scores = torch.rand(2, T, N, generator=g)
        for rho in (0.01, 0.05, 0.1, 0.15, 0.25, 1.0):
            for scope in ("global", "per_unit"):
                assert (topk_mask(scores, rho, scope).flatten(-2).sum(-1) == num_keep(rho, T, N)).all()
    scores = torch.rand(8, 16, generator=g)
    assert (topk_mask(scores, 0.25, "per_unit").sum(-1) >= 4).all()  # k = 32: 4 in every unit


def test_topk_ties_lower_index_first():
    m = topk_mask(torch.ones(2, 3), 0.5)  # k = 3 among six equal scores
    assert m.tolist() == [[True, True, True], [False, False, False]]
    scores = torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    assert topk_mask(scores, 0.3).tolist() == [[False, True, True], [False, False, False]]  # k = 2 of three 1.0s


def test_mask_to_indices():
    mask = torch.tensor([[False, True, False], [True, False, True]])
    assert mask_to_indices(mask).tolist() == [1, 3, 5]  # t * N + i, increasing
