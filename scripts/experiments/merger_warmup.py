"""Experiment (not a supported interface): warm the vision merger up on `direction`, then fit with it frozen.

The result this script produced (docs/world.md, "Direction is not learned"): 88.6% with all tokens, `direction`
96%. It reaches into scorerl.envs.fit's internals (it wraps `build_fit_env` and redefines which parameters count as
the frozen vision encoder), so it is kept as the record of how the figure was obtained until the recipe becomes a
fit option.

Recipe:
  1. build the fit environment as `scorerl env fit` does (vision encoder at its random initialisation);
  2. warm-up: train only the merger, with an attention-pooling + 2-layer head on its output tokens, on the
     `direction` clips of the train split (no mirror, AdamW at a constant 2e-3, batch 16, WARMUP steps);
  3. the normal fit, with the merger frozen as well (only the LLM trains).

    SCORERL_HOME=... python scripts/experiments/merger_warmup.py WARMUP OUT_DIR [section.key=value ...]
    e.g. python scripts/experiments/merger_warmup.py 800 /tmp/env_warm fit.vision_lr_scale=0
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import scorerl.envs.fit as fit  # noqa: E402
from scorerl.config import load_config  # noqa: E402

DIRECTIONS = ["left", "right", "up", "down"]
BATCH = 16


def direction_labels(data: fit.FitData) -> tuple[np.ndarray, np.ndarray]:
    """(indices of the `direction` samples, their label 0-3 from the scene's moving object)."""
    idx, labels = [], []
    for i, s in enumerate(data.samples):
        if s.family == "direction":
            mover = next(o for o in s.scene["objects"] if o["role"] == "moving")
            idx.append(i)
            labels.append(DIRECTIONS.index(mover["direction"]))
    return np.array(idx), np.array(labels)


def warm_up_merger(env, cfg, steps: int) -> None:
    train = fit.load_split(cfg.data.stage2_manifest, cfg.data.num_frames, cfg.data.frame_size, "warm-up")
    idx_all, labels = direction_labels(train)
    width = cfg.fit.model["hidden_size"]
    head = torch.nn.Sequential(torch.nn.Linear(width, 128), torch.nn.GELU(), torch.nn.Linear(128, 4))
    score = torch.nn.Linear(width, 1)  # attention-pooling logits over the video's tokens
    fit.set_trainable(env, True)
    visual = env.model.model.visual
    for name, p in visual.named_parameters():
        p.requires_grad_(name.startswith("merger."))
    params = list(visual.merger.parameters()) + list(head.parameters()) + list(score.parameters())
    optimizer = torch.optim.AdamW(params, lr=2e-3)
    rng = np.random.default_rng(0)
    started, ema = time.perf_counter(), None
    for step in range(steps):
        pick = rng.choice(len(idx_all), BATCH, replace=False)
        tokens = torch.stack([v.features.reshape(-1, width)
                              for v in fit.encode_batch(env, [train.frames[idx_all[k]] for k in pick])])  # [B, T*N, D]
        pooled = (score(tokens).softmax(1) * tokens).sum(1)  # [B, D]
        loss = torch.nn.functional.cross_entropy(head(pooled), torch.from_numpy(labels[pick]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        if step % 100 == 0 or step == steps - 1:
            print(f"merger warm-up step {step}: loss {ema:.3f} ({time.perf_counter() - started:.0f} s)", flush=True)


def main() -> None:
    steps, out, overrides = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "world" / "env.yaml", overrides)
    build = fit.build_fit_env

    def build_and_warm_up(cfg, corpus):
        env = build(cfg, corpus)
        warm_up_merger(env, cfg, steps)
        return env

    fit.build_fit_env = build_and_warm_up
    fit._PROJECTOR = ("model.multi_modal_projector.",)  # the Qwen merger now counts as encoder: frozen in the fit
    fit.fit_env(cfg, out=out)


if __name__ == "__main__":
    main()
