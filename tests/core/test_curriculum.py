import json

import pytest

from scorerl.config import CurriculumSection
from scorerl.rl.curriculum import Curriculum
from scorerl.rl.sampler import ResumableSampler


def make(seed=0, **cfg):
    return Curriculum(CurriculumSection(**cfg), ResumableSampler(13, seed=1), ResumableSampler(29, seed=2), seed=seed)


def run(cur, steps, bs=4, reward=lambda step: 0.0):
    """Drive a curriculum like the trainer does; returns the batches it handed out."""
    out = []
    for _ in range(steps):
        step = cur.step
        out.append(cur.next_batch(bs))
        cur.observe(step, reward(step))
    return out


def test_switch_by_steps():
    cur = make(stage1_steps=5)
    batches = run(cur, 8)
    assert [stage for stage, _ in batches] == [1] * 5 + [2] * 3
    assert all(s == stage for stage, items in batches for s, _ in items)
    assert cur.stage == 2 and cur.step_in_stage == 3


def test_zero_stage1_steps_starts_in_stage2():
    cur = Curriculum(CurriculumSection(stage1_steps=0, mix_steps=5), None, ResumableSampler(5), seed=0)
    assert cur.stage == 2
    assert all(s == 2 for s, _ in cur.next_batch(8)[1])  # nothing to fade out


def test_plateau_switches_when_flat_not_while_improving():
    improving = make(switch="plateau", plateau_window=3, plateau_delta=0.01)
    run(improving, 30, reward=lambda s: 0.1 * s)
    assert improving.stage == 1

    flat = make(switch="plateau", plateau_window=3, plateau_delta=0.01)
    # improves for 10 steps, then flat: the switch comes once both windows lie in the flat part
    run(flat, 30, reward=lambda s: min(s, 10) * 0.1)
    assert flat.stage == 2 and flat.step - flat.step_in_stage == 16

    capped = make(switch="plateau", plateau_window=3, plateau_max_steps=7)
    run(capped, 10, reward=lambda s: 0.1 * s)
    assert capped.stage == 2 and capped.step_in_stage == 3


def test_mixing_fraction_decays_linearly_and_draws_follow_it():
    cur = make(stage1_steps=2, mix_steps=4)
    run(cur, 2)
    fractions = []
    counts = []
    for _ in range(6):
        fractions.append(cur.stage1_fraction())
        stage, items = cur.next_batch(400)
        assert stage == 2
        counts.append(sum(s == 1 for s, _ in items) / 400)
        cur.observe(cur.step, 0.0)
    assert fractions == pytest.approx([0.8, 0.6, 0.4, 0.2, 0.0, 0.0])
    assert counts == pytest.approx(fractions, abs=0.08)


@pytest.mark.parametrize("cut", [3, 5, 7, 12])  # mid stage 1, at the boundary, during mixing, after mixing
def test_state_round_trip_continues_identically(cut):
    cfg = dict(stage1_steps=5, mix_steps=4)
    reference = make(seed=9, **cfg)
    run(reference, cut)
    saved = json.loads(json.dumps(reference.state_dict()))
    expected = run(reference, 20)

    resumed = make(seed=9, **cfg)
    resumed.load_state_dict(saved)
    assert run(resumed, 20) == expected


def test_plateau_state_round_trip():
    cfg = dict(switch="plateau", plateau_window=3, plateau_delta=0.01, mix_steps=3)
    reward = lambda s: min(s, 10) * 0.1  # noqa: E731
    reference = make(**cfg)
    run(reference, 14, reward=reward)
    saved = json.loads(json.dumps(reference.state_dict()))
    expected = run(reference, 20, reward=reward)
    resumed = make(**cfg)
    resumed.load_state_dict(saved)
    assert run(resumed, 20, reward=reward) == expected


def test_observe_rejects_a_skipped_step():
    cur = make()
    cur.observe(0, 0.0)
    with pytest.raises(ValueError, match="next expected step is 1"):
        cur.observe(2, 0.0)
