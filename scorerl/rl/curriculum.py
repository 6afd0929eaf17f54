"""Two-stage curriculum: static pseudo-videos (stage 1), then real videos (stage 2). See docs/method.md, curriculum.

The trainer asks for a batch before each (micro-)step and reports each finished optimizer step:

    stage, items = curriculum.next_batch(batch_size)    # items: [(stage_of_item, index into that stage's data)]
    ...
    curriculum.observe(step, mean_reward)                # step: 0-based index of the optimizer step just finished

Switch rules (cfg.switch): `steps` moves to stage 2 after cfg.stage1_steps steps (0 = start in stage 2);
`plateau` moves when the mean stage-1 reward of the last plateau_window steps improved by less than
plateau_delta over the window before it (or after plateau_max_steps, if set).
Annealed mixing (cfg.mix_steps > 0): for mix_steps steps after a switch each item is a stage-1 sample with
probability (mix_steps - s) / (mix_steps + 1) at stage-2 step s, i.e. a linear fade to 0.

Every rank must see the same curriculum: pass the *global* mean reward to observe, and note that the mixing RNG is
seeded identically on all ranks, so all ranks draw the same number of stage-1 items and their sharded samplers
stay in lockstep. The whole state (stage, steps, plateau window, samplers, mixing RNG) is JSON, so a checkpoint
resumes mid-curriculum exactly.
"""

from __future__ import annotations

import math

import numpy as np

from scorerl.config import CurriculumSection
from scorerl.errors import CheckpointError
from scorerl.rl.sampler import ResumableSampler

_MIX_STREAM = 0x6D6978  # second seed word: keeps the mixing draws independent of other streams seeded by `seed`


class Curriculum:
    def __init__(
        self,
        cfg: CurriculumSection,
        stage1_sampler: ResumableSampler | None,
        stage2_sampler: ResumableSampler,
        seed: int = 0,
    ):
        self.cfg = cfg
        self.samplers = {1: stage1_sampler, 2: stage2_sampler}
        self.step = 0  # optimizer steps finished
        self.stage = 1
        self.step_in_stage = 0
        self.mixing = False  # True after a switch out of stage 1 (only then is there something to fade out)
        self.window: list[float] = []  # last 2 * plateau_window stage-1 mean rewards
        self._mix_rng = np.random.default_rng([seed, _MIX_STREAM])
        if cfg.switch == "steps" and cfg.stage1_steps == 0:
            self.stage = 2  # no stage 1 at all, hence no mixing either
        if self.stage == 1 and stage1_sampler is None:
            raise ValueError("curriculum starts in stage 1 but no stage-1 sampler was given")

    # ------------------------------------------------------------------------------------------- drawing

    def stage1_fraction(self) -> float:
        """Probability that an item of the next batch is a stage-1 sample."""
        if self.stage == 1:
            return 1.0
        m = self.cfg.mix_steps
        if not self.mixing or self.step_in_stage >= m:
            return 0.0
        return (m - self.step_in_stage) / (m + 1)

    def next_batch(self, batch_size: int) -> tuple[int, list[tuple[int, int]]]:
        """(current stage, [(stage_of_item, index)] * batch_size) for this rank."""
        p1 = self.stage1_fraction()
        if p1 in (0.0, 1.0):
            stage = 1 if p1 == 1.0 else 2
            return self.stage, [(stage, i) for i in self._sampler(stage).next_batch(batch_size)]
        from_stage1 = (self._mix_rng.random(batch_size) < p1).tolist()
        n1 = sum(from_stage1)
        # Each sampler is asked once per batch (and not at all for zero items) so its position is a plain count.
        picks = {
            1: iter(self._sampler(1).next_batch(n1) if n1 else []),
            2: iter(self._sampler(2).next_batch(batch_size - n1) if n1 < batch_size else []),
        }
        items = [(s, next(picks[s])) for s in (1 if f else 2 for f in from_stage1)]
        return self.stage, items

    def _sampler(self, stage: int) -> ResumableSampler:
        sampler = self.samplers[stage]
        if sampler is None:  # stage 1 without data: the trainer only omits it when no step can draw from it
            raise ValueError(f"curriculum stage {stage} has no data")
        return sampler

    # ------------------------------------------------------------------------------------------- progress

    def observe(self, step: int, mean_reward: float | None = None) -> None:
        """Record finished optimizer step `step` (0-based) and its global mean reward; may switch the stage."""
        if step != self.step:
            # A skipped or repeated step means the trainer and the curriculum disagree, e.g. after a bad resume.
            raise ValueError(
                f"curriculum.observe(step={step}) but the next expected step is {self.step}: "
                "call observe once per optimizer step with the 0-based index of the step just finished"
            )
        self.step += 1
        self.step_in_stage += 1
        if self.stage != 1:
            return
        if mean_reward is not None:
            self.window = (self.window + [float(mean_reward)])[-2 * self.cfg.plateau_window :]
        if self._should_switch():
            self.stage, self.step_in_stage, self.mixing = 2, 0, self.cfg.mix_steps > 0

    def _should_switch(self) -> bool:
        cfg = self.cfg
        if cfg.switch == "steps":
            return self.step_in_stage >= cfg.stage1_steps
        if cfg.plateau_max_steps and self.step_in_stage >= cfg.plateau_max_steps:
            return True
        w = cfg.plateau_window
        if len(self.window) < 2 * w:
            return False
        improvement = math.fsum(self.window[w:]) / w - math.fsum(self.window[:w]) / w
        return improvement < cfg.plateau_delta

    def metrics(self) -> dict:
        """Values worth logging each step."""
        return {"curriculum/stage": self.stage, "curriculum/stage1_fraction": self.stage1_fraction()}

    # ------------------------------------------------------------------------------------------- state

    def state_dict(self) -> dict:
        return {
            "stage": self.stage,
            "step": self.step,
            "step_in_stage": self.step_in_stage,
            "mixing": self.mixing,
            "window": list(self.window),
            "mix_rng": self._mix_rng.bit_generator.state,  # PCG64: plain ints, JSON-able
            "samplers": {str(k): s.state_dict() if s is not None else None for k, s in self.samplers.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        if state["stage"] not in (1, 2):
            raise CheckpointError(f"curriculum state has stage {state['stage']!r}; expected 1 or 2")
        for key, sampler in self.samplers.items():
            saved = state["samplers"].get(str(key))
            if (saved is None) != (sampler is None):
                raise CheckpointError(f"curriculum state and this run disagree on whether stage {key} has data")
            if sampler is not None:
                sampler.load_state_dict(saved)
        self.stage = int(state["stage"])
        self.step = int(state["step"])
        self.step_in_stage = int(state["step_in_stage"])
        self.mixing = bool(state["mixing"])
        self.window = [float(r) for r in state["window"]]
        self._mix_rng.bit_generator.state = state["mix_rng"]
