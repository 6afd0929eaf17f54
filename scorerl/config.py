"""Typed run configuration: YAML files plus `section.key=value` overrides.

Every run is one YAML file whose top-level keys are the sections below. Each field has a default and a one-line
doc (the string literal under it, collected by `field_docs`). Loading checks every key, type and value and raises
`ConfigError` naming the file, the line, the dotted key and, for a misspelt key, the nearest valid one.
Choices marked [ours] in ../shared/SCORE_METHOD.md are fields here, never constants in code.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import inspect
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from scorerl.errors import ConfigError


# --------------------------------------------------------------------------------------------- sections

ANSWER_FORMATS = ("letter", "option")


@dataclass
class RunSection:
    name: str = "run"
    """Run name; the run folder is output_dir/name."""
    output_dir: str = "runs"
    """Parent folder of run folders (checkpoints, metrics.jsonl, resolved config)."""
    seed: int = 0
    """Seed for python, numpy and torch (each process adds its rank)."""

    def validate(self, err):
        if not self.name:
            err("name", "must not be empty")


@dataclass
class EnvSection:
    arch: str = "qwen2_5_vl"
    """Frozen MLLM architecture: qwen2_5_vl | llava_onevision."""
    path: str = "world"
    """Local folder of a transformers checkpoint, or `world` for the built-in world's fitted environment."""
    dtype: str = "float32"
    """Dtype the frozen MLLM runs in: float32 | bfloat16 | float16."""
    device: str = "auto"
    """Device for the frozen MLLM: auto (cuda if available) | cpu | cuda | cuda:N."""
    attn_implementation: str = "sdpa"
    """Attention kernel of the frozen LLM: sdpa | eager | flash_attention_2."""
    token_budget: int = 32768
    """Most tokens (rows x padded length) in one scoring forward; larger batches are chunked to stay under it."""

    def validate(self, err):
        if self.arch not in ("qwen2_5_vl", "llava_onevision"):
            err("arch", f"unknown architecture {self.arch!r}; choose qwen2_5_vl or llava_onevision")
        if self.dtype not in ("float32", "bfloat16", "float16"):
            err("dtype", f"must be float32, bfloat16 or float16, not {self.dtype!r}")
        if self.attn_implementation not in ("sdpa", "eager", "flash_attention_2"):
            err("attn_implementation", "must be sdpa, eager or flash_attention_2")
        if self.token_budget < 1:
            err("token_budget", "must be >= 1")


@dataclass
class DataSection:
    stage1_manifest: str = "world:static_train"
    """JSONL manifest of curriculum stage 1 (static pseudo-videos); `world:<split>` names a built-in world split."""
    stage2_manifest: str = "world:train"
    """JSONL manifest of curriculum stage 2 (real videos)."""
    eval_manifest: str = "world:test"
    """JSONL manifest used by `scorerl eval`."""
    num_frames: int = 8
    """Frames sampled uniformly from each video (an image is repeated this many times)."""
    frame_size: int = 64
    """Frames are resized to frame_size x frame_size pixels before encoding."""
    pseudo_video_jitter: float = 0.0
    """Stage-1 pseudo-videos: std of per-frame pixel noise (0 = exact repeats)."""
    cache_dir: str = ""
    """Feature cache folder; empty = <scorerl home>/features."""
    skip_bad: bool = False
    """Skip manifest lines that are invalid (reported and counted) instead of stopping."""
    answer_format: str = "letter"
    """What the MLLM answers and is scored on: letter (the option's letter) | option (the option's text). [ours]"""

    def validate(self, err):
        if self.num_frames < 2:
            err("num_frames", "must be >= 2 (residuals need a previous frame)")
        if self.frame_size < 8:
            err("frame_size", "must be >= 8")
        if self.pseudo_video_jitter < 0:
            err("pseudo_video_jitter", "must be >= 0")
        if self.answer_format not in ANSWER_FORMATS:
            err("answer_format", f"must be one of {', '.join(ANSWER_FORMATS)}, not {self.answer_format!r}")


@dataclass
class PolicySection:
    hidden: int = 128
    """Hidden width of the per-token MLP (2D -> hidden -> 1)."""
    layers: int = 2
    """Number of linear layers in the MLP (>= 1)."""
    first_unit: str = "self"
    """Residual of the first temporal unit: self (dv[0] = v[0]) | zero. [ours]"""
    norm: str = "layer"
    """Normalisation of v and dv before concatenation: layer | l2 | none. [ours]"""
    norm_residual: str = "shared"
    """Scale of dv in its norm: shared (v's statistics, so a tiny residual stays tiny) | own (dv's own). [ours]"""
    surprise_scalar: bool = False
    """Append the scalar surprise |dv|/|v| to each token's state. [ours]"""
    positions: bool = False
    """Append normalised (t, row, col) to each token's state. [ours]"""
    rho_init: float = 0.25
    """Output bias is initialised to logit(rho_init) so early rollouts keep about this fraction. [ours]"""
    topk_scope: str = "global"
    """Inference top-k over the whole video (global) or per temporal unit (per_unit). [ours]"""

    def validate(self, err):
        if self.hidden < 1:
            err("hidden", "must be >= 1")
        if self.layers < 1:
            err("layers", "must be >= 1")
        if self.first_unit not in ("self", "zero"):
            err("first_unit", "must be self or zero")
        if self.norm not in ("layer", "l2", "none"):
            err("norm", "must be layer, l2 or none")
        if self.norm_residual not in ("shared", "own"):
            err("norm_residual", "must be shared or own")
        if not 0 < self.rho_init < 1:
            err("rho_init", "must be in (0, 1)")
        if self.topk_scope not in ("global", "per_unit"):
            err("topk_scope", "must be global or per_unit")


@dataclass
class RewardSection:
    rho: float = 0.1
    """Target keep ratio used by the sparsity term. [ours]"""
    sparsity: str = "target"
    """Sparsity term from kept fraction kappa: drop (1-kappa) | target (-|kappa-rho|) | over (-max(0,kappa-rho))."""
    combine: str = "add"
    """Combine fidelity F and sparsity S: add (F + lambda*S) | mul (exp(-dCE) * S-term). [ours]"""
    lam: float = 1.0
    """Weight lambda of the sparsity term (add, split advantage). [ours]"""
    fidelity_clip: float = 0.0
    """Clip dCE to [-clip, clip] before forming fidelity; 0 = no clip. [ours]"""

    def validate(self, err):
        if not 0 < self.rho <= 1:
            err("rho", "must be in (0, 1]")
        if self.sparsity not in ("drop", "target", "over"):
            err("sparsity", "must be drop, target or over")
        if self.combine not in ("add", "mul"):
            err("combine", "must be add or mul")
        if self.lam < 0:
            err("lam", "must be >= 0")
        if self.fidelity_clip < 0:
            err("fidelity_clip", "must be >= 0")


@dataclass
class RLSection:
    group_size: int = 8
    """K: Bernoulli masks sampled per sample (one group)."""
    estimator: str = "split"
    """Advantage estimator: grpo | split | split_action | dr_grpo."""
    std_eps: float = 1e-4
    """Epsilon added to the group std (unbiased) before dividing."""
    std_floor: float = 0.05
    """split: floor on each component's group std so a near-constant component is not blown up into noise."""
    min_keep: int = 1
    """Empty-mask guard: a sampled mask keeping fewer tokens gets the most probable ones added. [ours]"""
    entropy_coef: float = 0.0
    """Entropy bonus weight (0 = off)."""
    ppo_epochs: int = 1
    """Updates per batch; > 1 turns on PPO-style ratio clipping."""
    clip_eps: float = 0.2
    """PPO clip range (used when ppo_epochs > 1)."""
    kl_coef: float = 0.0
    """Weight of the KL to the initial policy (0 = off)."""

    def validate(self, err):
        if self.group_size < 2:
            err("group_size", "must be >= 2 (a group needs at least two masks to form a baseline)")
        if self.estimator not in ("grpo", "split", "split_action", "dr_grpo"):
            err("estimator", "must be grpo, split, split_action or dr_grpo")
        if self.std_eps < 0 or self.std_floor < 0:
            err("std_floor", "std_eps and std_floor must be >= 0")
        if self.min_keep < 1:
            err("min_keep", "must be >= 1")
        if self.ppo_epochs < 1:
            err("ppo_epochs", "must be >= 1")
        if not 0 < self.clip_eps < 1:
            err("clip_eps", "must be in (0, 1)")


@dataclass
class CurriculumSection:
    stage1_steps: int = 100
    """Optimizer steps in stage 1 (static pseudo-videos) before switching to stage 2 (switch=steps)."""
    switch: str = "steps"
    """When to move to stage 2: steps | plateau."""
    plateau_window: int = 20
    """plateau: steps in the moving window of stage-1 reward."""
    plateau_delta: float = 0.01
    """plateau: switch when the window mean improved by less than this over the previous window."""
    mix_steps: int = 0
    """Annealed mixing: over this many steps after the switch, stage-1 samples fade out linearly (0 = hard switch)."""
    plateau_max_steps: int = 0
    """plateau: switch after at most this many stage-1 steps even if the reward still improves (0 = no cap)."""

    def validate(self, err):
        if self.stage1_steps < 0:
            err("stage1_steps", "must be >= 0")
        if self.switch not in ("steps", "plateau"):
            err("switch", "must be steps or plateau")
        if self.plateau_window < 1:
            err("plateau_window", "must be >= 1")
        if self.mix_steps < 0:
            err("mix_steps", "must be >= 0")
        if self.plateau_max_steps < 0:
            err("plateau_max_steps", "must be >= 0")


@dataclass
class TrainSection:
    max_steps: int = 200
    """Total optimizer steps over both stages."""
    batch_size: int = 4
    """Samples (groups) per process per micro-step."""
    grad_accum: int = 1
    """Micro-steps accumulated per optimizer step."""
    lr: float = 1e-3
    """AdamW learning rate of the policy."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    warmup_steps: int = 0
    """Linear learning-rate warm-up steps (then constant)."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm (0 = off)."""
    mixed_precision: str = "no"
    """accelerate mixed precision: no | bf16 | fp16."""
    deepspeed_config: str = ""
    """Path of a DeepSpeed JSON config passed through to accelerate (empty = no DeepSpeed)."""
    checkpoint_every: int = 50
    """Write a checkpoint every N optimizer steps (and always at the end)."""
    keep_last: int = 3
    """Keep the last M checkpoints."""
    log_every: int = 1
    """Log metrics every N optimizer steps."""
    trackers: list = field(default_factory=list)
    """accelerate trackers besides metrics.jsonl: wandb, tensorboard."""
    tracker_project: str = "scorerl"
    """Project name given to the trackers (wandb project; tensorboard subfolder of <run>/trackers)."""
    precompute_features: bool = True
    """Encode every training sample's visual tokens before step 1 (False: encode each on first use)."""

    def validate(self, err):
        for key in ("max_steps", "batch_size", "grad_accum", "checkpoint_every", "keep_last", "log_every"):
            if getattr(self, key) < 1:
                err(key, "must be >= 1")
        if self.lr <= 0:
            err("lr", "must be > 0")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            err("mixed_precision", "must be no, bf16 or fp16")
        if not self.tracker_project:
            err("tracker_project", "must not be empty")
        for t in self.trackers:
            if t not in ("wandb", "tensorboard"):
                err("trackers", f"unknown tracker {t!r}; choose wandb or tensorboard")


@dataclass
class EvalSection:
    methods: list = field(default_factory=lambda: ["full", "uniform", "random", "framediff", "score"])
    """Compression methods to evaluate (see `scorerl eval --help`)."""
    ratios: list = field(default_factory=lambda: [0.05, 0.1, 0.15, 0.25])
    """Keep ratios rho to evaluate."""
    batch_size: int = 8
    """Samples per evaluation forward."""
    limit: int = 0
    """Evaluate only the first N samples (0 = all)."""
    fastv_layer: int = 2
    """FastV's K: visual tokens are ranked by the last prompt token's attention in LLM layer K (1-based), as in FastV."""

    def validate(self, err):
        for r in self.ratios:
            if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0 < r <= 1:
                err("ratios", f"every ratio must be in (0, 1], got {r!r}")
        if not self.methods:
            err("methods", "must name at least one method")
        for m in self.methods:
            if not isinstance(m, str) or not m.strip():
                err("methods", f"every method must be a non-empty name, got {m!r}")
        if self.batch_size < 1:
            err("batch_size", "must be >= 1")
        if self.limit < 0:
            err("limit", "must be >= 0")
        if self.fastv_layer < 1:
            err("fastv_layer", "must be >= 1 (FastV's K counts layers from 1)")


@dataclass
class BenchSection:
    ratios: list = field(default_factory=lambda: [0.05, 0.1, 0.25])
    """Keep ratios to time."""
    num_frames: int = 16
    """Frames (temporal units x temporal patch) of the timed video."""
    frame_size: int = 224
    """Frame side in pixels of the timed video."""
    prompt_tokens: int = 64
    """Text tokens around the video in the timed prompt."""
    warmup: int = 2
    """Untimed runs before timing."""
    repeats: int = 5
    """Timed runs; the median is reported."""
    random_init: dict = field(default_factory=dict)
    """Build the architecture from this config dict with random weights instead of loading env.path."""

    def validate(self, err):
        for r in self.ratios:
            if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0 < r <= 1:
                err("ratios", f"every ratio must be in (0, 1], got {r!r}")
        if self.num_frames < 1:
            err("num_frames", "must be >= 1")
        if self.frame_size < 8:
            err("frame_size", "must be >= 8")
        if self.prompt_tokens < 1:
            err("prompt_tokens", "must be >= 1")
        if self.warmup < 0:
            err("warmup", "must be >= 0")
        if self.repeats < 1:
            err("repeats", "must be >= 1")


@dataclass
class WorldSection:
    train: int = 3000
    """Video QA samples in the train split."""
    test: int = 500
    """Video QA samples in the test split."""
    static_train: int = 1000
    """Static pseudo-video (image QA) samples for curriculum stage 1."""
    frames: int = 16
    """Frames rendered per video."""
    size: int = 64
    """Rendered frame side in pixels."""
    seed: int = 0
    """Seed of the world generator."""

    def validate(self, err):
        for key in ("train", "test", "frames", "size"):
            if getattr(self, key) < 1:
                err(key, "must be >= 1")


@dataclass
class FitSection:
    steps: int = 2000
    """Optimizer steps of the environment fit."""
    batch_size: int = 16
    """Samples per fit step."""
    lr: float = 1e-3
    """AdamW learning rate of the fit."""
    keep_min: float = 0.05
    """Token-dropout keep ratio is drawn uniformly from [keep_min, 1] per sample (1 = no dropout)."""
    full_prob: float = 0.3
    """Probability that a fit sample keeps all tokens."""
    checkpoint_every: int = 500
    """Write a fit checkpoint every N steps."""
    model: dict = field(default_factory=dict)
    """Overrides of the small model's architecture config (hidden size, layers, ...)."""
    warmup_steps: int = 50
    """Linear learning-rate warm-up steps of the fit (then cosine decay to lr * min_lr_ratio at the last step)."""
    min_lr_ratio: float = 0.05
    """Final learning rate of the cosine decay, as a fraction of lr."""
    weight_decay: float = 0.0
    """AdamW weight decay of the fit."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm of the fit (0 = off)."""
    vocab_size: int = 512
    """Upper bound of the BPE vocabulary trained on the world's prompts."""
    image_data: bool = True
    """Also fit on data.stage1_manifest (image QA as static pseudo-videos), mixed into the video batches."""
    augment: bool = True
    """Random left-right mirror of the frames, with left/right in the text swapped to match."""
    keep_last: int = 2
    """Keep the last M fit checkpoints (under <out>/checkpoints)."""
    threads: int = 2
    """torch CPU threads during the fit (0 = torch's default)."""
    eval_batch_size: int = 64
    """Samples per forward when the fitted environment is scored on data.eval_manifest."""
    extra_questions: int = 1
    """Questions per video derived from its scene description (world generator) besides the manifest's own."""
    vision_lr_scale: float = 1.0
    """Learning-rate multiplier of the vision encoder (Qwen2.5-VL's `visual` blocks and patch embedding, LLaVA's
    `vision_tower`; the merger / projector has its own, projector_lr_scale). 0 keeps it at its random
    initialisation (docs/world.md: why the world's environment does)."""
    projector_lr_scale: float = 1.0
    """Learning-rate multiplier of the merger / projector into the LLM (Qwen2.5-VL's `visual.merger`, LLaVA's
    `multi_modal_projector`). 0 keeps it as it is: at its random initialisation, or as the warm-up left it."""
    projector_warmup_steps: int = 0
    """Steps of a warm-up BEFORE the fit that trains only the projector, through one throwaway pooled classifier
    per family in projector_warmup_families, to predict each train video's answer text; each step
    draws fit.batch_size videos of every family (0 = no warm-up).
    scorerl/envs/projector_warmup.py says why; docs/world.md what it changed."""
    projector_warmup_families: list = field(default_factory=list)
    """Question families the projector warm-up learns; only families whose answer is a property of the video
    (the same question every time), e.g. [direction, count]."""
    family_weights: dict = field(default_factory=dict)
    """Relative weight of question families in the fit, e.g. {direction: 4} (unlisted families weigh 1): a sample
    of family f is drawn w_f times as often, and derived questions choose families in proportion to w_f. Empty =
    every sample once per epoch, derived families uniform."""

    def validate(self, err):
        for key in ("steps", "batch_size", "checkpoint_every", "keep_last", "eval_batch_size"):
            if getattr(self, key) < 1:
                err(key, "must be >= 1")
        if self.lr <= 0:
            err("lr", "must be > 0")
        if not 0 < self.keep_min <= 1:
            err("keep_min", "must be in (0, 1]")
        if not 0 <= self.full_prob <= 1:
            err("full_prob", "must be in [0, 1]")
        if self.warmup_steps < 0:
            err("warmup_steps", "must be >= 0")
        if not 0 <= self.min_lr_ratio <= 1:
            err("min_lr_ratio", "must be in [0, 1]")
        if self.weight_decay < 0 or self.max_grad_norm < 0:
            err("weight_decay" if self.weight_decay < 0 else "max_grad_norm", "must be >= 0")
        if self.vocab_size < 300:
            err("vocab_size", "must be >= 300 (256 bytes + special tokens + option letters)")
        if self.threads < 0:
            err("threads", "must be >= 0")
        if self.extra_questions < 0:
            err("extra_questions", "must be >= 0")
        if self.vision_lr_scale < 0:
            err("vision_lr_scale", "must be >= 0")
        if self.projector_lr_scale < 0:
            err("projector_lr_scale", "must be >= 0")
        if self.projector_warmup_steps < 0:
            err("projector_warmup_steps", "must be >= 0")
        families = self.projector_warmup_families
        if not isinstance(families, list) or not all(isinstance(f, str) and f for f in families):
            err("projector_warmup_families", f"must be a list of family names, got {families!r}")
        elif self.projector_warmup_steps > 0 and not families:
            err("projector_warmup_families", "must name at least one family when projector_warmup_steps > 0")
        for family, weight in self.family_weights.items():
            if not isinstance(weight, (int, float)) or isinstance(weight, bool) or weight <= 0:
                err(f"family_weights.{family}", f"must be a number > 0, got {weight!r}")


@dataclass
class Config:
    run: RunSection = field(default_factory=RunSection)
    env: EnvSection = field(default_factory=EnvSection)
    data: DataSection = field(default_factory=DataSection)
    policy: PolicySection = field(default_factory=PolicySection)
    reward: RewardSection = field(default_factory=RewardSection)
    rl: RLSection = field(default_factory=RLSection)
    curriculum: CurriculumSection = field(default_factory=CurriculumSection)
    train: TrainSection = field(default_factory=TrainSection)
    eval: EvalSection = field(default_factory=EvalSection)
    bench: BenchSection = field(default_factory=BenchSection)
    world: WorldSection = field(default_factory=WorldSection)
    fit: FitSection = field(default_factory=FitSection)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# --------------------------------------------------------------------------------------------- loading


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> Config:
    """Read a YAML run file (or start from defaults when path is None), apply `a.b=value` overrides, check all."""
    source = str(path) if path is not None else "<defaults>"
    data: dict = {}
    lines: dict[str, int] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        text = path.read_text()
        try:
            data = yaml.safe_load(text) or {}
            lines = _key_lines(yaml.compose(text))
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(data).__name__}")
    for item in overrides:
        key, value = _parse_override(item)
        _set_dotted(data, key, value, source="command line")
        lines[key] = -1
    return config_from_dict(data, source=source, lines=lines)


def config_from_dict(data: dict, source: str = "<dict>", lines: dict[str, int] | None = None) -> Config:
    lines = lines or {}

    def where(key: str) -> str:
        line = lines.get(key)
        if line == -1:
            return "command line"
        return f"{source}, line {line + 1}" if line is not None else source

    def fail(key: str, msg: str):
        raise ConfigError(f"{where(key)}: {key}: {msg}")

    return _build(Config, data, prefix="", fail=fail)


def _build(cls, data: Any, prefix: str, fail):
    if not isinstance(data, dict):
        fail(prefix.rstrip(".") or "<top>", f"must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        dotted = prefix + str(key)
        if key not in fields:
            near = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.5)
            hint = f"; did you mean {prefix + near[0]!r}?" if near else f"; valid keys: {', '.join(fields)}"
            fail(dotted, f"unknown key{hint}")
        kind = hints[key]
        if dataclasses.is_dataclass(kind):
            kwargs[key] = _build(kind, value if value is not None else {}, dotted + ".", fail)
        else:
            kwargs[key] = _coerce(value, kind, dotted, fail)
    obj = cls(**kwargs)
    if hasattr(obj, "validate"):
        obj.validate(lambda key, msg: fail(prefix + key, msg))
    return obj


def _coerce(value, kind, dotted, fail):
    origin = typing.get_origin(kind) or kind
    if kind is float and isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string
        try:
            value = float(value)
        except ValueError:
            pass
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and math.isnan(value):
            fail(dotted, "must be a number, not NaN")
        return float(value)
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is bool and isinstance(value, bool):
        return value
    if kind is str and isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    if origin is list:
        if isinstance(value, str):  # "a,b,c" from the command line
            value = [yaml.safe_load(v) for v in value.split(",") if v.strip()]
        if isinstance(value, list):
            return list(value)
    if origin is dict and isinstance(value, dict):
        return dict(value)
    name = getattr(kind, "__name__", str(kind))
    fail(dotted, f"expected {name}, got {type(value).__name__} {value!r}")


def _parse_override(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise ConfigError(f"command line: override {item!r} must look like section.key=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or key.startswith(".") or key.endswith("."):
        raise ConfigError(f"command line: override {item!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def _set_dotted(data: dict, key: str, value, source: str):
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        nxt = node.setdefault(part, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"{source}: {key}: {part!r} is not a section")
        node = nxt
    node[parts[-1]] = value


def _key_lines(node, prefix: str = "") -> dict[str, int]:
    """Map each dotted key of a composed YAML mapping to its 0-based line, for error messages."""
    out: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            dotted = prefix + str(k.value)
            out[dotted] = k.start_mark.line
            out.update(_key_lines(v, dotted + "."))
    return out


def field_docs(cls) -> dict[str, str]:
    """The one-line doc under each dataclass field (the string literal that follows it in the source)."""
    try:
        tree = ast.parse(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body
    docs = {}
    for node, nxt in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            docs[node.target.id] = str(nxt.value.value)
    return docs


def describe(config: Config) -> str:
    """The resolved config as YAML with each field's doc as a trailing comment (for `scorerl config show`)."""
    out = []
    for section in dataclasses.fields(config):
        value = getattr(config, section.name)
        docs = field_docs(type(value))
        out.append(f"{section.name}:")
        for f in dataclasses.fields(value):
            dumped = yaml.safe_dump(getattr(value, f.name), default_flow_style=True, width=10_000).strip()
            dumped = dumped.removesuffix("\n...").removesuffix("...").strip()
            doc = docs.get(f.name, "")
            out.append(f"  {f.name}: {dumped}" + (f"  # {doc}" if doc else ""))
    return "\n".join(out) + "\n"


def diff_configs(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dicts (for resume checks)."""
    keys = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            keys += diff_configs(va, vb, prefix + k + ".")
        elif va != vb:
            keys.append(prefix + k)
    return keys
