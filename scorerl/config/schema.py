"""The run configuration's schema: one dataclass per section, every rule declared on its field.

Each field declares its type (a `Literal[...]` for a choice), its range (`ge`/`gt`/`le`/`lt` in the field's
metadata, see `opt`), and whether it changes what a training run computes (`inert=True` when it does not: resume
ignores it). Its one-line doc is the string literal under it (collected by `describe.field_docs`). The loader
(`loader.py`) enforces all of it and names the file, line and dotted key of whatever breaks a rule; every float is
finite. The few rules that tie two fields together live in a section's `validate`.

Core sections are listed in `CORE_SECTIONS`; a client adds its own with `register_section` (the built-in world
adds `world` and `fit`). Each section is read only by what uses it: the trainer reads run, env, data, policy,
reward, rl, curriculum and train (`TRAINING_SECTIONS`), `scorerl eval` adds eval, `scorerl bench` bench.
Choices marked [ours] are this project's, not the paper's (docs/method.md); they are fields here, never constants
in code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal


def opt(
    default: Any = dataclasses.MISSING,
    *,
    factory: Callable[[], Any] | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    pattern: str | None = None,
    inert: bool = False,
    items: dict[str, Any] | None = None,
) -> Any:
    """A field with declared rules: ranges (ge/gt/le/lt; for a list, of each item, see `items`), a regex `pattern`
    for strings, `inert` = does not change what a training run computes (resume may differ there)."""
    rules = {k: v for k, v in dict(ge=ge, gt=gt, le=le, lt=lt, pattern=pattern, items=items).items() if v is not None}
    meta = {"rules": rules, "inert": inert}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


ANSWER_FORMATS = ("letter", "option")
DEVICE_PATTERN = r"auto|cpu|mps|cuda(:\d+)?"
# The methods `scorerl eval` runs (eval.methods.available_methods(), which a test keeps equal to this): named here
# so that a misspelt one is refused when the config is read, with its file and line, not after the evaluation
# has started.
EVAL_METHODS = (
    "dycoke",
    "dycoke_ttm+topk",
    "fastv",
    "fastv_input",
    "fastvid_meanq",
    "framediff",
    "full",
    "holitom_meanq",
    "pool",
    "random",
    "score",
    "uniform",
    "vidcom2",
)


@dataclass
class RunSection:
    name: str = opt("run", pattern=r"[^/\\]+", inert=True)
    """Run name; the run folder is output_dir/name."""
    output_dir: str = opt("runs", pattern=r".+", inert=True)
    """Parent folder of run folders (checkpoints, metrics.jsonl, resolved config)."""
    seed: int = opt(0, ge=0)
    """Seed for python, numpy and torch (each process adds its rank)."""

    def validate(self, err: Callable[[str, str], None]) -> None:
        if self.name.strip() in (".", ".."):  # output_dir itself or its parent: never a run folder of its own
            err("name", f"{self.name!r} is not a folder name; name the run (e.g. run.name=my_run)")


@dataclass
class EnvSection:
    arch: Literal["qwen2_5_vl", "llava_onevision"] = "qwen2_5_vl"
    """Frozen MLLM architecture."""
    path: str = opt("world", pattern=r".+")
    """Local folder of a transformers checkpoint, or a registered name (`world`: the built-in world's environment)."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Dtype the frozen MLLM runs in."""
    device: str = opt("auto", pattern=DEVICE_PATTERN)
    """Device for the frozen MLLM: auto (cuda if available) | cpu | mps | cuda | cuda:N."""
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = "sdpa"
    """Attention kernel of the frozen LLM."""
    token_budget: int = opt(32768, ge=1)
    """Most tokens (rows x padded length) in one scoring forward; larger batches are chunked to stay under it."""
    system_prompt: str = ""
    """System turn of the chat template; empty = the folder's own (its scorerl_env.json, else the template's
    default)."""
    placement: Literal["replicate", "zero3", "device_map"] = opt("replicate", inert=True)
    """Where the model's weights live: replicate = whole on every process; zero3 = the language model partitioned
    across all processes with DeepSpeed ZeRO-3 (a 72B on 8 GPUs; needs 2+ processes and deepspeed); device_map =
    split over one node's GPUs by accelerate, one process per node. Scores are the same in all three."""
    zero3_config: str = opt("", inert=True)
    """JSON file with DeepSpeed's zero_optimization block for placement zero3 (e.g. offload_param); empty =
    scorerl's defaults (envs/partition.py)."""


@dataclass
class DataSection:
    stage1_manifest: str = "world:static_train"
    """JSONL manifest of curriculum stage 1 (static pseudo-videos); `world:<split>` names a built-in world split."""
    stage2_manifest: str = "world:train"
    """JSONL manifest of curriculum stage 2 (real videos)."""
    eval_manifest: str = opt("world:test", inert=True)
    """JSONL manifest used by `scorerl eval`."""
    num_frames: int = opt(8, ge=2)
    """Frames sampled uniformly from each video (an image is repeated this many times); >= 2 for residuals."""
    frame_size: int = opt(64, ge=0)
    """Size of frames before the model's own resize rule (Qwen2.5-VL's smart_resize from its folder's processor
    config, LLaVA-OneVision's 384 x 384): 0 = native, the model's rule alone (use this for real models); > 0 with
    keep_aspect = a cap, frames whose longer side exceeds it are scaled down to it (never up); > 0 without
    keep_aspect = squashed to frame_size x frame_size, the built-in world's fixed square grid (it renders 64 px)."""
    sample_fps: float = opt(0.0, ge=0)
    """0: num_frames frames spread evenly over each clip; > 0: this many frames per second of the clip (Qwen2.5-VL's
    processor samples at 2), at least min_frames and at most max_frames. A manifest line's `fps` overrides it."""
    min_frames: int = opt(4, ge=1)
    """Fewest frames a clip sampled by rate gets."""
    max_frames: int = opt(768, ge=1)
    """Most frames a clip sampled by rate gets."""
    keep_aspect: bool = False
    """With frame_size > 0: true = frame_size caps the longer side, aspect kept; false = squash to a square (the
    built-in world's grid). Where frames keep their aspect (this, or frame_size 0) every sample of a training batch
    must give the same token grid (evaluation takes any mix)."""
    temporal_positions: Literal["time", "unit"] = "time"
    """Temporal position step between Qwen2.5-VL's temporal units: time = the real seconds between the sampled
    frames, as the model's own processor passes them (second_per_grid_t); unit = one step per unit (the model's
    default when given none; the built-in world's environment was fitted so)."""
    pseudo_video_jitter: float = opt(0.0, ge=0)
    """Stage-1 pseudo-videos: std of per-frame pixel noise (0 = exact repeats)."""
    features: Literal["cache", "store", "online"] = opt("cache", inert=True)
    """Where visual tokens come from: cache (per-sample files filled on first use), store (built beforehand by
    `scorerl data features`, read lazily; for 7B-scale sets) or online (encoded inside each step; no disk).
    The same tensors either way (docs/data.md)."""
    cache_dir: str = opt("", inert=True)
    """Feature cache folder (data.features=cache); empty = <scorerl home>/features."""
    store_dir: str = opt("", inert=True)
    """Feature store folder (data.features=store); empty = <scorerl home>/stores/<fingerprint of env and frames>."""
    skip_bad: bool = False
    """Skip manifest lines that are invalid (reported and counted) instead of stopping."""
    answer_format: Literal["letter", "option"] = "letter"
    """What the MLLM answers and is scored on: letter (the option's letter) | option (the option's text). [ours]"""

    def validate(self, err: Callable[[str, str], None]) -> None:
        if self.min_frames > self.max_frames:
            err("min_frames", f"must be <= data.max_frames ({self.max_frames}), got {self.min_frames}")
        if 0 < self.frame_size < 8:
            err("frame_size", f"must be 0 (native) or >= 8, got {self.frame_size}")


@dataclass
class PolicySection:
    hidden: int = opt(128, ge=1)
    """Hidden width of the per-token MLP (2D -> hidden -> 1)."""
    layers: int = opt(2, ge=1)
    """Number of linear layers in the MLP."""
    residual: bool = True
    """Put the inter-frame residual dv in each token's state beside v (SCORE's surprise); false = v alone (the
    ablation). [paper: true]"""
    first_unit: Literal["self", "zero"] = "self"
    """Residual of the first temporal unit: self (dv[0] = v[0]) | zero. [ours]"""
    norm: Literal["layer", "l2", "none"] = "layer"
    """Normalisation of v and dv before concatenation. [ours]"""
    norm_residual: Literal["shared", "own"] = "shared"
    """Scale of dv in its norm: shared (v's statistics, so a tiny residual stays tiny) | own (dv's own). [ours]"""
    surprise_scalar: bool = False
    """Append the scalar surprise |dv|/|v| to each token's state. [ours]"""
    positions: bool = False
    """Append normalised (t, row, col) to each token's state. [ours]"""
    rho_init: float = opt(0.25, gt=0, lt=1)
    """Output bias is initialised to logit(rho_init) so early rollouts keep about this fraction. [ours]"""
    topk_scope: Literal["global", "per_unit"] = "global"
    """Inference top-k over the whole video (global) or per temporal unit (per_unit). [ours]"""
    mixer: Literal["none", "conv"] = "none"
    """Mixing between tokens: none (the paper's per-token MLP) | conv (each token's first hidden layer gets a
    zero-initialised depthwise 3-D convolution over its (t, row, col) neighbours added, so it sees its grid neighbours;
    needs layers >= 2; docs/method.md, "A policy that sees its neighbours"). [ours]"""
    mixer_kernel: int = opt(3, ge=1)
    """mixer conv: kernel size k (odd) along t, rows and cols alike; a token sees k // 2 units and tokens each way.
    [ours]"""

    def validate(self, err: Callable[[str, str], None]) -> None:
        if self.mixer != "none" and self.layers < 2:
            err(
                "mixer",
                f"{self.mixer} mixes the hidden states between the first and second linear layers: it needs "
                f"policy.layers >= 2, got {self.layers}",
            )
        if self.mixer_kernel % 2 == 0:
            err("mixer_kernel", f"must be odd (a token at the kernel's centre), got {self.mixer_kernel}")


@dataclass
class RewardSection:
    rho: float = opt(0.1, gt=0, le=1)
    """Target keep ratio used by the sparsity term. [ours]"""
    sparsity: Literal["drop", "target", "over"] = "target"
    """Sparsity term from kept fraction kappa: drop (1-kappa) | target (-|kappa-rho|) | over (-max(0,kappa-rho))."""
    combine: Literal["add", "mul"] = "add"
    """Combine fidelity F and sparsity S: add (F + lambda*S) | mul (exp(-dCE) * S-term). [ours]"""
    lam: float = opt(1.0, ge=0)
    """Weight lambda of the sparsity term (add, split advantage). [ours]"""
    fidelity_clip: float = opt(0.0, ge=0)
    """Clip dCE to [-clip, clip] before forming fidelity; 0 = no clip. [ours]"""


@dataclass
class RLSection:
    group_size: int = opt(8, ge=2)
    """K: Bernoulli masks sampled per sample (one group; at least two to form a baseline)."""
    estimator: Literal["grpo", "split", "split_action", "dr_grpo"] = "split"
    """Advantage estimator (docs/method.md)."""
    std_eps: float = opt(1e-4, ge=0)
    """Epsilon added to the group std (unbiased) before dividing."""
    std_floor: float = opt(0.05, ge=0)
    """split: floor on each component's group std so a near-constant component is not blown up into noise."""
    min_keep: int = opt(1, ge=1)
    """Empty-mask guard: a sampled mask keeping fewer tokens gets the most probable ones added. [ours]"""
    entropy_coef: float = opt(0.0, ge=0)
    """Entropy bonus weight (0 = off)."""
    ppo_epochs: int = opt(1, ge=1)
    """Updates per batch; > 1 turns on PPO-style ratio clipping."""
    clip_eps: float = opt(0.2, gt=0, lt=1)
    """PPO clip range (used when ppo_epochs > 1)."""
    kl_coef: float = opt(0.0, ge=0)
    """Weight of the KL to the initial policy (0 = off)."""
    sampling: Literal["bernoulli", "ranked"] = "bernoulli"
    """How a group's K masks are drawn: bernoulli (each token kept independently with p = sigmoid(logit); the budget
    is soft, shaped by the sparsity reward) [paper] | ranked (budget-aware: the group draws a budget k from rl.budgets
    and each mask is k tokens drawn without replacement from softmax(logits), so the policy learns the ranking that
    inference's top-k keeps, at the budgets it will serve; the sparsity term is then constant within a group and
    only fidelity ranks its masks) [ours]."""
    budgets: list[float] = opt(factory=lambda: [0.05, 0.1, 0.15, 0.25], items={"gt": 0, "le": 1})
    """rl.sampling: ranked: keep ratios a group's budget k = ceil(rho T N) is drawn from, uniformly. [ours]"""

    def validate(self, err: Callable[[str, str], None]) -> None:
        if self.sampling != "ranked":
            return
        if not self.budgets:
            err("budgets", "must name at least one keep ratio for rl.sampling: ranked")
        if self.estimator == "split_action":
            err(
                "estimator",
                "split_action weights kept and dropped tokens apart; rl.sampling: ranked draws have "
                "one log-probability per mask: use split, grpo or dr_grpo",
            )
        if self.ppo_epochs > 1:
            err("ppo_epochs", "PPO ratios are per token; rl.sampling: ranked supports ppo_epochs: 1 only")
        for key in ("entropy_coef", "kl_coef"):
            if getattr(self, key) > 0:
                err(key, "is a Bernoulli (per-token) term; rl.sampling: ranked supports it at 0 only")


@dataclass
class CurriculumSection:
    stage1_steps: int = opt(100, ge=0)
    """Optimizer steps in stage 1 (static pseudo-videos) before switching to stage 2 (switch=steps)."""
    switch: Literal["steps", "plateau"] = "steps"
    """When to move to stage 2."""
    plateau_window: int = opt(20, ge=1)
    """plateau: steps in the moving window of stage-1 reward."""
    plateau_delta: float = 0.01
    """plateau: switch when the window mean improved by less than this over the previous window."""
    mix_steps: int = opt(0, ge=0)
    """Annealed mixing: over this many steps after the switch, stage-1 samples fade out linearly (0 = hard switch)."""
    plateau_max_steps: int = opt(0, ge=0)
    """plateau: switch after at most this many stage-1 steps even if the reward still improves (0 = no cap)."""


@dataclass
class TrainSection:
    max_steps: int = opt(200, ge=1, inert=True)
    """Total optimizer steps over both stages."""
    batch_size: int = opt(4, ge=1)
    """Samples (groups) per process per micro-step."""
    grad_accum: int = opt(1, ge=1)
    """Micro-steps accumulated per optimizer step."""
    lr: float = opt(1e-3, gt=0, le=10)
    """AdamW learning rate of the policy."""
    weight_decay: float = opt(0.0, ge=0)
    """AdamW weight decay."""
    warmup_steps: int = opt(0, ge=0)
    """Linear learning-rate warm-up steps (then constant)."""
    max_grad_norm: float = opt(1.0, ge=0)
    """Gradient clipping norm (0 = off)."""
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    """accelerate mixed precision."""
    checkpoint_every: int = opt(50, ge=1, inert=True)
    """Write a checkpoint every N optimizer steps (and always at the end)."""
    keep_last: int = opt(3, ge=1, inert=True)
    """Keep the last M checkpoints."""
    log_every: int = opt(1, ge=1, inert=True)
    """Log metrics every N optimizer steps."""
    trackers: list[Literal["wandb", "tensorboard"]] = opt(factory=list, inert=True)
    """accelerate trackers besides metrics.jsonl."""
    tracker_project: str = opt("scorerl", pattern=r".+", inert=True)
    """Project name given to the trackers (wandb project; tensorboard subfolder of <run>/trackers)."""
    precompute_features: bool = opt(True, inert=True)
    """Encode every training sample's visual tokens before step 1 (False: encode each on first use)."""


@dataclass
class EvalSection:
    methods: list[str] = opt(
        factory=lambda: ["full", "uniform", "random", "framediff", "score"], items={"pattern": r"\S+"}
    )
    """Compression methods to evaluate (see `scorerl eval --help`)."""
    ratios: list[float] = opt(factory=lambda: [0.05, 0.1, 0.15, 0.25], items={"gt": 0, "le": 1})
    """Keep ratios rho to evaluate."""
    batch_size: int = opt(8, ge=1)
    """Samples per evaluation forward."""
    limit: int = opt(0, ge=0)
    """Evaluate only the first N samples (0 = all)."""
    fastv_layer: int = opt(2, ge=1)
    """FastV's K: visual tokens are ranked by the last prompt token's attention in LLM layer K (1-based), as in
    FastV."""
    bootstrap: int = opt(2000, ge=0, inert=True)
    """Bootstrap resamples of the test questions for the 95% intervals of every accuracy and paired difference
    (seeded with run.seed; 0 = no intervals)."""

    def validate(self, err: Callable[[str, str], None]) -> None:
        if not self.methods:
            err("methods", "must name at least one method")
        if not self.ratios:
            err("ratios", "must name at least one keep ratio")
        for name in self.methods:
            if str(name).strip().lower() not in EVAL_METHODS:
                import difflib

                near = difflib.get_close_matches(str(name).strip().lower(), EVAL_METHODS, n=1)
                hint = f"; did you mean {near[0]!r}?" if near else ""
                err("methods", f"unknown method {name!r}{hint} (available: {', '.join(EVAL_METHODS)})")


@dataclass
class BenchSection:
    ratios: list[float] = opt(factory=lambda: [0.05, 0.1, 0.25], items={"gt": 0, "le": 1})
    """Keep ratios to time."""
    num_frames: int = opt(16, ge=1)
    """Frames (temporal units x temporal patch) of the timed video."""
    frame_size: int = opt(224, ge=8)
    """Frame side in pixels of the timed video."""
    prompt_tokens: int = opt(64, ge=1)
    """Text tokens around the video in the timed prompt."""
    warmup: int = opt(2, ge=0)
    """Untimed runs before timing."""
    repeats: int = opt(5, ge=1)
    """Timed runs; the median is reported."""
    random_init: dict[str, Any] = opt(factory=dict)
    """Build the architecture from this config dict with random weights instead of loading env.path."""
    static_shapes: bool = False
    """Pad each prefill's length up to a bucket (LEFT padding, mask 0) so repeated calls see few shapes."""
    bucket: int = opt(64, ge=0)
    """static_shapes: the padded length is the next multiple of this; 0 = the next power of two."""
    static_max_tokens: int = opt(16384, ge=1)
    """static_shapes: forwards above this many tokens (rows x padded length) stay eager at their exact length."""
    compile: bool = False
    """static_shapes on CUDA: torch.compile(mode="reduce-overhead"), one CUDA graph per bucket; skipped elsewhere."""
    ttft: bool = False
    """Also report time to first token: frame decoding + vision tower + policy + prefill, full vs each ratio."""
    ttft_ratio: float = opt(0.1, gt=0, le=1)
    """ttft: besides full, the pipeline at the bench ratio nearest this one is also run end to end once."""

    def validate(self, err: Callable[[str, str], None]) -> None:
        if not self.ratios:
            err("ratios", "must name at least one keep ratio")
        if self.compile and not self.static_shapes:
            err("compile", "needs bench.static_shapes: true (a CUDA graph holds one shape)")


CORE_SECTIONS: dict[str, type] = {
    "run": RunSection,
    "env": EnvSection,
    "data": DataSection,
    "policy": PolicySection,
    "reward": RewardSection,
    "rl": RLSection,
    "curriculum": CurriculumSection,
    "train": TrainSection,
    "eval": EvalSection,
    "bench": BenchSection,
}
# What `scorerl train` reads; a resume compares only these sections' non-inert fields.
TRAINING_SECTIONS = ("run", "env", "data", "policy", "reward", "rl", "curriculum", "train")
_REGISTERED: dict[str, type] = {}


def register_section(name: str, section: type) -> None:
    """Add a section (a dataclass declared like the ones above) that config files may hold, e.g. the world's."""
    if name in CORE_SECTIONS:
        raise ValueError(f"{name!r} is a core section")
    _REGISTERED[name] = section


def section_types() -> dict[str, type]:
    """Every section a config may hold, in file order: the core's, then the registered ones."""
    return {**CORE_SECTIONS, **_REGISTERED}


class Config:
    """A whole run file: one attribute per section (`cfg.train.lr`), each a validated section dataclass."""

    # The core sections, declared for readers and type checkers; a client's registered sections (the world's
    # `world`, `fit`) are set the same way and typed through __getattr__ below.
    run: RunSection
    env: EnvSection
    data: DataSection
    policy: PolicySection
    reward: RewardSection
    rl: RLSection
    curriculum: CurriculumSection
    train: TrainSection
    eval: EvalSection
    bench: BenchSection

    if TYPE_CHECKING:

        def __getattr__(self, name: str) -> Any: ...  # a registered client section

    def __init__(self, **sections: Any) -> None:
        types = section_types()
        unknown = sorted(set(sections) - set(types))
        if unknown:
            raise TypeError(f"unknown config section(s) {unknown}")
        for name, cls in types.items():
            setattr(self, name, sections[name] if sections.get(name) is not None else cls())

    def sections(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in section_types() if hasattr(self, name)}

    def to_dict(self) -> dict[str, Any]:
        return {name: dataclasses.asdict(section) for name, section in self.sections().items()}

    def to_yaml(self) -> str:
        import yaml

        text: str = yaml.safe_dump(self.to_dict(), sort_keys=False)
        return text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Config) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"Config({', '.join(f'{k}={v!r}' for k, v in self.sections().items())})"
