"""Projector warm-up: before `scorerl env fit`, teach the merger / projector alone to expose what the questions ask.

Why (docs/world.md, "Learning direction"): with the vision encoder frozen at its random initialisation, its
features DO carry the moving object's direction (a pooled 2-layer probe reads it at 88%), yet a fit that trains the
merger together with the LLM never learns `direction`: the answer CE through a 4-layer LLM is too weak a signal
for it, and the merger settles on features the easier families need. A short supervised stage on the merger first,
with a throwaway pooled classifier per question family, makes those facts linearly present in the visual tokens;
the fit then keeps the merger frozen or slow (fit.projector_lr_scale 0 or 0.1 in the world: at 1 the fit erases
`direction` again, at 0 it learns less `count`) so that the LLM has to learn to read them.

What is learned, per family in fit.projector_warmup_families: the ANSWER TEXT of the sample's own question
(options[answer]) as a class among that family's answer texts in the train split. That is a property of the video
for families whose question is always the same (`direction`, `count`, `moving_color`, `event` in the world); for a
family whose question varies (e.g. `static_attr`) it is only the answer prior, so leave such families out.

Each head: attention pooling over all the video's visual tokens ([T*N, D] -> [D]), then Linear-GELU-Linear. Each
step draws fit.batch_size videos of EVERY family, so a head learns as fast whatever the number of families (with
16 videos of four families per step instead, the `direction` head was still at chance after 800 steps).
Attention pooling normalises away how MANY tokens match, so the `count` head learns less (44% on its train
videos in the world's warm-up); adding a gated mean beside it let that head reach 54% but kept the `direction` head
at chance in 800 steps, so the pooling stays attention only (docs/world.md). Only the projector's parameters (and
the throwaway heads) get gradients; every draw comes from (seed, step), so the
warm-up is deterministic. It is not checkpointed: a resumed fit restores the warmed projector from its checkpoint.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from scorerl.config import Config
from scorerl.errors import ConfigError
from scorerl.rng import fit_step_rng
from scorerl.world.fit_params import projector_parameters, set_trainable

HEAD_WIDTH = 128


@dataclass
class WarmupTargets:
    """The train samples the warm-up learns from and each one's class."""

    index: np.ndarray  # [n] positions in the fit's train data
    family: np.ndarray  # [n] position of the sample's family in `families`
    label: np.ndarray  # [n] the answer text's class within its family
    families: list[str]
    classes: list[list[str]]  # per family: its answer texts, sorted


def warmup_targets(samples, families: list[str], manifest: str) -> WarmupTargets:
    """Class of each sample of a warm-up family: its answer text among its family's answer texts."""
    present = {s.family for s in samples}
    missing = [f for f in families if f not in present]
    if missing:
        raise ConfigError(
            f"fit.projector_warmup_families: no sample of {missing} in the fit's train data "
            f"({manifest}); its families are {sorted(present)}"
        )
    classes = [sorted({s.options[s.answer_index] for s in samples if s.family == f}) for f in families]
    index, family, label = [], [], []
    for i, s in enumerate(samples):
        if s.family in families:
            f = families.index(s.family)
            index.append(i)
            family.append(f)
            label.append(classes[f].index(s.options[s.answer_index]))
    return WarmupTargets(np.array(index), np.array(family), np.array(label), list(families), classes)


class PooledHeads(torch.nn.Module):
    """One attention-pooled classifier per family over a video's visual tokens."""

    def __init__(self, width: int, classes: list[int]):
        super().__init__()
        self.scores = torch.nn.ModuleList(torch.nn.Linear(width, 1) for _ in classes)
        self.heads = torch.nn.ModuleList(
            torch.nn.Sequential(torch.nn.Linear(width, HEAD_WIDTH), torch.nn.GELU(), torch.nn.Linear(HEAD_WIDTH, c))
            for c in classes
        )

    def forward(self, tokens: torch.Tensor, family: int) -> torch.Tensor:
        """tokens [L, D] of one video -> logits [C_family]."""
        weights = self.scores[family](tokens).softmax(0)  # [L, 1]
        return self.heads[family]((weights * tokens).sum(0))


def warm_up_projector(env, cfg: Config, train) -> dict:
    """Train env's projector for fit.projector_warmup_steps steps on `train` (a fit.FitData); returns the
    warm-up's record for fit.json: per family the classes and the probe's accuracy over the last steps."""
    from scorerl.io.progress import ProgressBar

    fit = cfg.fit
    targets = warmup_targets(train.samples, list(fit.projector_warmup_families), cfg.data.stage2_manifest)
    projector = projector_parameters(env.model)
    with torch.no_grad():
        width = env.encode_batch([train.frames[targets.index[0]]])[0].features.shape[-1]  # the LLM's width D
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.run.seed)
        heads = PooledHeads(width, [len(c) for c in targets.classes])
    heads.to(next(env.model.parameters()).device)
    set_trainable(env, True)
    env.model.requires_grad_(False)
    for p in projector:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(projector + list(heads.parameters()), lr=fit.lr)

    steps = fit.projector_warmup_steps
    by_family = [np.flatnonzero(targets.family == f) for f in range(len(targets.families))]  # positions in targets
    recent: list[tuple[int, bool]] = []  # (family, correct) of the last quarter of the steps
    bar = ProgressBar(total=steps, keys=("loss",), desc="projector warm-up")
    started, ema = time.perf_counter(), None
    try:
        for step in range(steps):
            rng = fit_step_rng(cfg.run.seed, step, 3)[1]
            pick = np.concatenate(
                [rng.choice(members, min(fit.batch_size, len(members)), replace=False) for members in by_family]
            )  # fit.batch_size videos of EACH family
            visuals = env.encode_batch([train.frames[targets.index[k]] for k in pick])
            losses = []
            for v, k in zip(visuals, pick):
                f = int(targets.family[k])
                logits = heads(v.features.reshape(-1, v.features.shape[-1]), f)  # [T*N, D] -> [C_f]
                losses.append(
                    torch.nn.functional.cross_entropy(
                        logits[None], torch.tensor([targets.label[k]], device=logits.device)
                    )
                )
                if step >= steps - max(1, steps // 4):
                    recent.append((f, int(logits.argmax()) == int(targets.label[k])))
            loss = torch.stack(losses).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
            bar.update(step + 1, {"loss": ema})
    finally:
        bar.close()
    set_trainable(env, True)  # the fit's own param_groups decide what trains next
    accuracy = {
        f: round(float(np.mean([ok for g, ok in recent if g == i])), 3) if any(g == i for g, _ in recent) else None
        for i, f in enumerate(targets.families)
    }
    return {
        "steps": steps,
        "loss": round(ema, 4) if ema is not None else None,
        "probe_accuracy_last_quarter": accuracy,
        "classes": dict(zip(targets.families, targets.classes)),
        "wall_time_s": round(time.perf_counter() - started, 1),
    }
