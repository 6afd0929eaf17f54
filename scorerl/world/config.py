"""The world's own config sections, `world` (what to render) and `fit` (how to fit its environment).

Declared like the core sections (scorerl/config/schema.py) and registered by `import scorerl.world`; only the
world's commands read them, so no change here blocks `scorerl train --resume`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from scorerl.config.schema import opt


@dataclass
class WorldSection:
    train: int = opt(3000, ge=1)
    """Video QA samples in the train split."""
    test: int = opt(500, ge=1)
    """Video QA samples in the test split."""
    static_train: int = opt(1000, ge=0)
    """Static pseudo-video (image QA) samples for curriculum stage 1."""
    frames: int = opt(16, ge=1)
    """Frames rendered per video."""
    size: int = opt(64, ge=1)
    """Rendered frame side in pixels."""
    seed: int = opt(0, ge=0)
    """Seed of the world generator."""
    version: Literal[3, 4] = 3
    """3: each video holds only what its question is about (the default; `world:<split>`). 4: the same plus a
    random subset of nuisances per video, each with its probability below (`world_v4:<split>`; docs/world.md)."""
    nuisance_flicker: float = opt(0.5, ge=0, le=1)
    """Version 4: probability that a video has a flickering textured patch (a screen or foliage)."""
    nuisance_camera: float = opt(0.5, ge=0, le=1)
    """Version 4: probability that a video's background pans and/or shakes (videos only)."""
    nuisance_overlay: float = opt(0.5, ge=0, le=1)
    """Version 4: probability that a video has a corner logo and a ticking timestamp."""
    nuisance_movers: float = opt(0.5, ge=0, le=1)
    """Version 4: probability that a video has 1-2 grey shapes crossing it."""


@dataclass
class FitSection:
    steps: int = opt(2000, ge=1)
    """Optimizer steps of the environment fit."""
    batch_size: int = opt(16, ge=1)
    """Samples per fit step."""
    lr: float = opt(1e-3, gt=0, le=10)
    """AdamW learning rate of the fit."""
    keep_min: float = opt(0.05, gt=0, le=1)
    """Token-dropout keep ratio is drawn uniformly from [keep_min, 1] per sample (1 = no dropout)."""
    full_prob: float = opt(0.3, ge=0, le=1)
    """Probability that a fit sample keeps all tokens."""
    evidence_prob: float = opt(0.0, ge=0, le=1)
    """Probability that a sparse fit mask keeps the tokens showing the coloured objects first, then random others
    (the same number of tokens; scorerl/world/fit_data.evidence_first); 0 = uniformly random masks only."""
    checkpoint_every: int = opt(500, ge=1)
    """Write a fit checkpoint every N steps."""
    model: dict = opt(factory=dict)
    """Overrides of the small model's architecture config (hidden size, layers, ...)."""
    warmup_steps: int = opt(50, ge=0)
    """Linear learning-rate warm-up steps of the fit (then cosine decay to lr * min_lr_ratio at the last step)."""
    min_lr_ratio: float = opt(0.05, ge=0, le=1)
    """Final learning rate of the cosine decay, as a fraction of lr."""
    weight_decay: float = opt(0.0, ge=0)
    """AdamW weight decay of the fit."""
    max_grad_norm: float = opt(1.0, ge=0)
    """Gradient clipping norm of the fit (0 = off)."""
    vocab_size: int = opt(512, ge=300)
    """Upper bound of the BPE vocabulary trained on the world's prompts (>= 256 bytes + special tokens + letters)."""
    image_data: bool = True
    """Also fit on data.stage1_manifest (image QA as static pseudo-videos), mixed into the video batches."""
    augment: bool = True
    """Random left-right mirror of the frames, with left/right in the text swapped to match."""
    keep_last: int = opt(2, ge=1)
    """Keep the last M fit checkpoints (under <out>/checkpoints)."""
    threads: int = opt(2, ge=0)
    """torch CPU threads during the fit (0 = torch's default)."""
    eval_batch_size: int = opt(64, ge=1)
    """Samples per forward when the fitted environment is scored on data.eval_manifest."""
    extra_questions: int = opt(1, ge=0)
    """Questions per video derived from its scene description (world generator) besides the manifest's own."""
    vision_lr_scale: float = opt(1.0, ge=0)
    """Learning-rate multiplier of the vision encoder (Qwen2.5-VL's `visual` blocks and patch embedding, LLaVA's
    `vision_tower`; the merger / projector has its own, projector_lr_scale). 0 keeps it at its random
    initialisation (docs/world.md: why the world's environment does)."""
    projector_lr_scale: float = opt(1.0, ge=0)
    """Learning-rate multiplier of the merger / projector into the LLM (Qwen2.5-VL's `visual.merger`, LLaVA's
    `multi_modal_projector`). 0 keeps it as it is: at its random initialisation, or as the warm-up left it."""
    projector_warmup_steps: int = opt(0, ge=0)
    """Steps of a warm-up BEFORE the fit that trains only the projector, through one throwaway pooled classifier
    per family in projector_warmup_families, to predict each train video's answer text; each step
    draws fit.batch_size videos of every family (0 = no warm-up).
    scorerl/world/projector_warmup.py says why; docs/world.md what it changed."""
    projector_warmup_families: list[str] = opt(factory=list, items={"pattern": r"\S+"})
    """Question families the projector warm-up learns; only families whose answer is a property of the video
    (the same question every time), e.g. [direction, count]."""
    family_weights: dict = opt(factory=dict)
    """Relative weight of question families in the fit, e.g. {direction: 4} (unlisted families weigh 1): a sample
    of family f is drawn w_f times as often, and derived questions choose families in proportion to w_f. Empty =
    every sample once per epoch, derived families uniform."""

    def validate(self, err):
        if self.projector_warmup_steps > 0 and not self.projector_warmup_families:
            err("projector_warmup_families", "must name at least one family when projector_warmup_steps > 0")
        for family, weight in self.family_weights.items():
            if not isinstance(weight, (int, float)) or isinstance(weight, bool) or weight <= 0:
                err(f"family_weights.{family}", f"must be a number > 0, got {weight!r}")
