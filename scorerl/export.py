"""A trained policy as a self-describing folder, loading a policy from whatever folder a user has, and
`ScoreCompressor`, the public object users select tokens with in their own code.

An exported folder (what `scorerl export` and the end of training write):
    policy.safetensors     the MLP weights                                  (TokenPolicy.save_pretrained)
    policy_config.json     feature_dim, state_dim and the PolicySection     (TokenPolicy.save_pretrained)
    export.json            {"format", "scorerl_version", "step", "env": what it was trained against (arch, path,
                            fingerprint, frames, frame size), "source": the checkpoint, "config": the training config}
`TokenPolicy.from_pretrained(folder)` and the eval harness read it; export.json tells a reader which environment and
settings the weights belong to (a policy fed another environment's features is meaningless).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from scorerl.errors import CheckpointError, WriteError
from scorerl.io import atomic

EXPORT_FILE = "export.json"
EXPORT_FORMAT = "scorerl-policy-export/1"


def export_policy(run_or_checkpoint: str | Path, out: str | Path) -> Path:
    """Export the policy of a run folder (its latest complete checkpoint), of one checkpoint folder, or of an
    already exported folder (copied, after it is checked) into `out`.

    A run folder without checkpoints but with a finished policy/ is exported from that folder instead.
    """
    from scorerl.io import checkpoint as ckpt

    src = Path(run_or_checkpoint).expanduser()
    if not src.is_dir():
        raise CheckpointError(f"{src}: no such run or checkpoint folder")
    if (src / ckpt.MARKER).is_file():
        return export_checkpoint(ckpt.load_checkpoint(src), out)
    latest = ckpt.latest_checkpoint(src)
    if latest is not None:
        return export_checkpoint(ckpt.load_checkpoint(latest), out)
    for folder in (src, src / "policy"):  # an exported folder itself, or a run's finished policy/
        if _is_policy_dir(folder):
            return _copy_export(folder, Path(out).expanduser())
    raise CheckpointError(
        f"{src}: neither a checkpoint folder (no {ckpt.MARKER}), a run folder with a complete "
        f"checkpoint in checkpoints/ or a policy/ folder, nor an exported policy folder"
    )


def export_checkpoint(checkpoint, out: str | Path) -> Path:
    """Export a loaded Checkpoint (io/checkpoint.py) into `out`."""
    policy, info = _policy_from_checkpoint(checkpoint)
    return write_export(
        policy, out, config=info["config"], step=info["step"], env=info["env"], source=str(checkpoint.path)
    )


def write_export(policy, out: str | Path, *, config: dict, step: int, env: dict, source: str = "", card=None) -> Path:
    """Write policy + export.json (+ README.md, `card(info)`, when given) into `out` atomically (a temp folder
    renamed into place); returns `out`. `out` must be missing, empty or an export (check_export_target)."""
    from scorerl.version import __version__

    out = Path(out).expanduser()
    check_export_target(out)
    info = {
        "format": EXPORT_FORMAT,
        "scorerl_version": __version__,
        "step": int(step),
        "env": env,
        "source": source,
        "config": config,
    }

    def build(tmp: Path) -> None:
        policy.save_pretrained(tmp)  # refuses a non-finite policy
        (tmp / EXPORT_FILE).write_text(json.dumps(info, indent=2) + "\n")
        if card is not None:
            (tmp / CARD_FILE).write_text(card(info))

    return atomic.build_dir(out, build)


def export_names() -> tuple[str, ...]:
    """Every file an export folder holds: what scorerl may replace there, and all it copies from one."""
    from scorerl.compress.policy import CONFIG_NAME, WEIGHTS_NAME

    return (WEIGHTS_NAME, CONFIG_NAME, EXPORT_FILE, CARD_FILE)


def check_export_target(out: Path) -> None:
    """`out` may be missing, empty, or an export scorerl wrote (only export files, its policy_config.json among
    them), which is then replaced whole. Anything else (a run folder, a user's folder) is refused naming what it
    holds: an export never deletes or overwrites a file scorerl did not write."""
    from scorerl.compress.policy import CONFIG_NAME

    if not out.exists():
        return
    if not out.is_dir():
        raise WriteError(f"{out}: is a file, not a folder; choose a folder for the exported policy")
    entries = sorted(p.name + ("/" if p.is_dir() else "") for p in out.iterdir())
    foreign = [name for name in entries if name not in export_names()]
    if foreign:
        raise WriteError(
            f"{out}: holds {', '.join(foreign)}, which an export does not write; refusing to replace "
            f"it (an export replaces only a folder holding nothing but an earlier export). Choose a "
            f"new or empty folder"
        )
    if entries and CONFIG_NAME not in entries:
        raise WriteError(
            f"{out}: holds {', '.join(entries)} but no {CONFIG_NAME}, so no export scorerl wrote; "
            f"refusing to replace it. Choose a new or empty folder"
        )


def read_export_info(path: str | Path) -> dict:
    """export.json of an exported folder (or of <run>/policy); {} for a bare save_pretrained folder."""
    path = _resolve(Path(path).expanduser())
    f = path / EXPORT_FILE
    if not f.is_file():
        return {}
    try:
        return json.loads(f.read_text())
    except ValueError as e:
        raise CheckpointError(f"{f}: not valid JSON: {e}") from None


def load_policy(path: str | Path, device: str | torch.device = "cpu"):
    """A TokenPolicy (eval mode) from an exported folder, a run folder (its policy/, else its latest checkpoint)
    or a checkpoint folder."""
    return load_policy_and_info(path, device)[0]


def load_policy_and_info(path: str | Path, device: str | torch.device = "cpu") -> tuple:
    """(TokenPolicy in eval mode, {config, step, env, source}) from any of the folders load_policy takes."""
    from scorerl.compress.policy import TokenPolicy
    from scorerl.io import checkpoint as ckpt

    path = Path(path).expanduser()
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such policy, run or checkpoint folder")
    if _is_policy_dir(path) or _is_policy_dir(path / "policy"):
        refuse_pickles(_resolve(path))
        return TokenPolicy.from_pretrained(_resolve(path), device=device).eval(), read_export_info(path)
    if (path / ckpt.MARKER).is_file():
        checkpoint = ckpt.load_checkpoint(path)
    elif (latest := ckpt.latest_checkpoint(path)) is not None:
        checkpoint = ckpt.load_checkpoint(latest)
    else:
        raise CheckpointError(
            f"{path}: not an exported policy (no policy_config.json), a run folder (no policy/ "
            f"and no complete checkpoint) nor a checkpoint folder (no {ckpt.MARKER})"
        )
    policy, info = _policy_from_checkpoint(checkpoint)
    return policy.to(device).eval(), {**info, "source": str(checkpoint.path)}


# ------------------------------------------------------------------------------------------------ helpers


def _policy_from_checkpoint(checkpoint):
    """(TokenPolicy with the checkpoint's weights, {config, step, env}) from a trainer checkpoint."""
    from scorerl.compress.policy import TokenPolicy, check_shapes, parameter_shapes, policy_section

    state, where = checkpoint.state, checkpoint.path / "state.json"
    for key in ("config", "feature_dim"):
        if key not in state:
            raise CheckpointError(f"{where}: has no {key!r}; not a checkpoint written by scorerl's trainer")
    if "policy" not in checkpoint.tensors:
        raise CheckpointError(f"{checkpoint.path}: has no policy.safetensors")
    feature_dim = state["feature_dim"]
    if not isinstance(feature_dim, int) or isinstance(feature_dim, bool) or feature_dim < 1:
        raise CheckpointError(f"{where}: feature_dim must be a positive integer, got {feature_dim!r}")
    # Only the policy section matters here; it is validated like a config file and errors name the file. Its sizes
    # are checked against the weights the checkpoint holds before anything is allocated.
    section = policy_section(state["config"].get("policy"), where)
    check_shapes(
        parameter_shapes(feature_dim, section),
        {k: tuple(t.shape) for k, t in checkpoint.tensors["policy"].items()},
        f"{checkpoint.path}/policy.safetensors (against {where.name})",
    )
    policy = TokenPolicy(feature_dim, section)
    try:
        policy.load_state_dict(checkpoint.tensors["policy"])
    except RuntimeError as e:
        raise CheckpointError(f"{checkpoint.path}/policy.safetensors does not match its config: {e}") from None
    policy.check_finite(f"{checkpoint.path}/policy.safetensors")
    return policy, {"config": state["config"], "step": checkpoint.step, "env": state.get("env", {})}


def _is_policy_dir(path: Path) -> bool:
    from scorerl.compress.policy import CONFIG_NAME

    return (path / CONFIG_NAME).is_file()


def _resolve(path: Path) -> Path:
    """An exported folder itself, or a run folder's policy/."""
    return path if _is_policy_dir(path) or not _is_policy_dir(path / "policy") else path / "policy"


def _copy_export(src: Path, out: Path) -> Path:
    from scorerl.compress.policy import TokenPolicy

    if src.resolve() == out.resolve():
        raise CheckpointError(f"{src}: is already the export folder; choose another --out")
    refuse_pickles(src)
    TokenPolicy.from_pretrained(src)  # checks it (readable, finite) before it is copied anywhere
    check_export_target(out)

    def copy(tmp: Path) -> None:  # the export's own files only: whatever else a user keeps there stays theirs
        tmp.mkdir()
        for name in export_names():
            if (src / name).is_file():
                shutil.copy2(src / name, tmp / name)

    return atomic.build_dir(out, copy)


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def refuse_pickles(folder: Path) -> None:
    """A policy folder holding a pickle-format file is refused by name: scorerl never unpickles what it is handed,
    and a folder mixing formats is not one scorerl wrote."""
    found = sorted(p.name for p in Path(folder).iterdir() if p.suffix in PICKLE_SUFFIXES)
    if found:
        raise CheckpointError(
            f"{folder / found[0]}: a pickle-format file; scorerl loads only safetensors and JSON. "
            f"Remove {', '.join(found)} from {folder}"
        )


# ------------------------------------------------------------------------------------------------ the public object

CARD_FILE = "README.md"


class ScoreCompressor:
    """Which visual tokens of a video to keep, in a user's own code: a trained SCORE policy or a training-free
    baseline behind one interface.

        compressor = ScoreCompressor.from_pretrained("runs/quickstart")      # exported, run or checkpoint folder
        kept = compressor.select(V, ratio=0.1, grid=(rows, cols))            # LongTensor [k], original order
        ScoreCompressor.baseline("vidcom2").select(V, 0.1, grid)             # the same call for a baseline

    V is the projected visual tokens [T, N, D] of ONE video, T temporal units of N = rows x cols tokens; a kept
    index is t * N + n. A policy keeps exactly ceil(ratio * T * N) tokens (per unit when it was trained with
    policy.topk_scope: per_unit); the published baselines keep what their own budget rules give (dycoke, vidcom2:
    scorerl/compress/baselines/).
    """

    def __init__(self, policy=None, *, baseline=None, info: dict | None = None, source: str = ""):
        if (policy is None) == (baseline is None):
            raise ValueError("a ScoreCompressor wraps either a trained policy or a baseline")
        self.policy, self._baseline, self.info, self.source = policy, baseline, info or {}, source

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu") -> "ScoreCompressor":
        """Load from an exported folder, a run folder or a checkpoint folder (safetensors + JSON only; a pickle
        file in the folder, a missing or truncated weights file and non-finite weights are refused by name)."""
        policy, info = load_policy_and_info(path, device)
        return cls(policy, info=info, source=str(Path(path).expanduser()))

    @classmethod
    def baseline(cls, name: str, **options) -> "ScoreCompressor":
        """A training-free method by name (scorerl.compress.baselines: full, uniform, random, pool, framediff,
        dycoke, dycoke_ttm+topk, vidcom2), with its options."""
        from scorerl.compress.baselines import get_compressor

        return cls(baseline=get_compressor(name, **options), source=f"baseline:{name}")

    @property
    def name(self) -> str:
        return "score" if self.policy is not None else self._baseline.name

    def save_pretrained(self, directory: str | Path, eval_report: str | None = None) -> Path:
        """Write the policy folder (weights, config, export.json) plus a README.md model card: what it was
        trained on and how, and `eval_report` (an evaluation's markdown table) when given. The folder can be
        pushed to a model hub as it is."""
        if self.policy is None:
            raise ValueError(f"baseline {self.name!r} has no weights to save")
        info = self.info or {}
        return write_export(
            self.policy,
            directory,
            config=info.get("config", {}),
            step=info.get("step", 0),
            env=info.get("env", {}),
            source=info.get("source", self.source),
            card=lambda written: model_card(written, eval_report),
        )

    def keep_scores(self, features: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
        """Keep logits [..., T, N] of tokens [..., T, N, D] (higher = keep); a trained policy only."""
        from scorerl.compress.policy import keep_logits

        if self.policy is None:
            raise ValueError(f"baseline {self.name!r} has no per-token scores; use select()")
        if features.shape[-1] != self.policy.feature_dim:
            raise CheckpointError(
                f"{self.source}: the policy reads features of width D={self.policy.feature_dim} "
                f"(policy_config.json), these have D={features.shape[-1]}: another model's tokens"
            )
        with torch.inference_mode():
            return keep_logits(self.policy, features, grid)

    def keep_mask(
        self, features: torch.Tensor, ratio: float, grid: tuple[int, int], generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """bool [T, N]: the tokens of one video [T, N, D] to keep at `ratio`."""
        from scorerl.compress.select import topk_mask

        if not 0 < ratio <= 1:
            raise ValueError(f"ratio must be in (0, 1], got {ratio}")
        if self.policy is None:
            return self._baseline.select(features, ratio, grid, generator=generator)
        return topk_mask(self.keep_scores(features, grid), ratio, self.policy.config.topk_scope)

    def select(
        self, features: torch.Tensor, ratio: float, grid: tuple[int, int], generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Kept flat indices (t * N + n) [k] of one video [T, N, D], ascending: the tokens' original order."""
        return self.keep_mask(features, ratio, grid, generator).flatten().nonzero().squeeze(1)


def _frames_cell(env: dict, data: dict) -> str:
    """The model card's frames line: the training config's frame rule (rate or count, size native / capped /
    square, aspect, temporal positions); an info without the config's data section: its frame count and size."""
    from scorerl.data.frames import describe_sampling, sampling_text

    if data:
        return sampling_text(describe_sampling(data))
    return f"{env.get('num_frames', '?')} at {env.get('frame_size', '?')} px"


def model_card(info: dict, eval_report: str | None = None) -> str:
    """README.md of an exported policy: what it is, what it was trained against and how, how to use it."""
    cfg, env = info.get("config", {}), info.get("env", {})
    rl, reward, train, data = (cfg.get(k, {}) for k in ("rl", "reward", "train", "data"))
    lines = [
        "---",
        "library_name: scorerl",
        "tags: [video, token-compression, reinforcement-learning]",
        "---",
        "",
        "# SCORE token-compression policy",
        "",
        "A per-token policy that selects which visual tokens of a video a frozen multimodal LLM needs (SCORE, "
        "arXiv 2603.26365), trained with scorerl.",
        "",
        "| | |",
        "|---|---|",
        f"| environment | `{env.get('arch', '?')}` at `{env.get('path', '?')}` "
        f"(fingerprint {env.get('fingerprint', '?')}) |",
        f"| frames | {_frames_cell(env, data)} |",
        f"| training | {info.get('step', '?')} steps, K = {rl.get('group_size', '?')} masks, estimator "
        f"`{rl.get('estimator', '?')}`, target ratio {reward.get('rho', '?')}, lr {train.get('lr', '?')} |",
        f"| scorerl | {info.get('scorerl_version', '?')} |",
        "",
        "```python",
        "from scorerl import ScoreCompressor",
        "",
        'compressor = ScoreCompressor.from_pretrained("THIS_FOLDER")',
        "kept = compressor.select(visual_tokens, ratio=0.1, grid=(rows, cols))  # indices into T*N, original order",
        "```",
        "",
    ]
    if eval_report:
        lines += ["## Evaluation", "", eval_report.strip(), ""]
    return "\n".join(lines)
