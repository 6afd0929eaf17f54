import json

import pytest

from scorerl.errors import CheckpointError
from scorerl.rl.sampler import ResumableSampler


def draw(sampler, batches, bs):
    return [sampler.next_batch(bs) for _ in range(batches)]


def test_two_ranks_disjoint_and_cover_each_epoch():
    n, bs = 12, 3  # global batch 6: two global batches per epoch
    r0, r1 = (ResumableSampler(n, seed=5, rank=r, world_size=2) for r in (0, 1))
    for epoch in range(3):
        a = sum(draw(r0, 2, bs), [])
        b = sum(draw(r1, 2, bs), [])
        assert not set(a) & set(b)
        assert sorted(a + b) == list(range(n)), f"epoch {epoch} not covered exactly once"
        assert r0.state_dict() == r1.state_dict()  # the state is global, identical on every rank


def test_uneven_batches_cross_epochs_without_loss():
    n = 10
    s = ResumableSampler(n, seed=1)
    stream = sum(draw(s, 7, 3), [])  # 21 items: two full epochs and one item of the third
    assert sorted(stream[:10]) == list(range(n)) and sorted(stream[10:20]) == list(range(n))
    assert s.state_dict()["epoch"] == 2 and s.state_dict()["position"] == 1


def test_state_round_trip_continues_identically():
    for world, rank in ((1, 0), (3, 2)):
        ref = ResumableSampler(17, seed=3, rank=rank, world_size=world)
        draw(ref, 5, 2)
        saved = json.loads(json.dumps(ref.state_dict()))  # must survive JSON
        expected = draw(ref, 20, 2)
        resumed = ResumableSampler(17, seed=3, rank=rank, world_size=world)
        resumed.load_state_dict(saved)
        assert draw(resumed, 20, 2) == expected


def test_epochs_reshuffle_deterministically():
    a, b = ResumableSampler(50, seed=7), ResumableSampler(50, seed=7)
    e0, e1 = a.next_batch(50), a.next_batch(50)
    assert e0 != e1 and sorted(e0) == sorted(e1)
    assert b.next_batch(50) == e0 and b.next_batch(50) == e1
    assert ResumableSampler(50, seed=8).next_batch(50) != e0


def test_resume_onto_other_data_is_refused():
    s = ResumableSampler(10, seed=0)
    with pytest.raises(CheckpointError, match="n=10"):
        ResumableSampler(11, seed=0).load_state_dict(s.state_dict())
