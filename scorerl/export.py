"""A trained policy as a self-describing folder, and loading a policy from whatever folder a user has.

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

from scorerl.errors import CheckpointError
from scorerl.io import atomic

EXPORT_FILE = "export.json"
EXPORT_FORMAT = "scorerl-policy-export/1"


def export_policy(run_or_checkpoint: str | Path, out: str | Path) -> Path:
    """Export the policy of a run folder (its latest complete checkpoint) or of one checkpoint folder into `out`.

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
    if _is_policy_dir(src / "policy"):
        return _copy_export(src / "policy", Path(out).expanduser())
    raise CheckpointError(f"{src}: neither a checkpoint folder (no {ckpt.MARKER}) nor a run folder with a complete "
                          f"checkpoint in checkpoints/ or a policy/ folder")


def export_checkpoint(checkpoint, out: str | Path) -> Path:
    """Export a loaded Checkpoint (io/checkpoint.py) into `out`."""
    policy, info = _policy_from_checkpoint(checkpoint)
    return write_export(policy, out, config=info["config"], step=info["step"], env=info["env"],
                        source=str(checkpoint.path))


def write_export(policy, out: str | Path, *, config: dict, step: int, env: dict, source: str = "") -> Path:
    """Write policy + export.json into `out` atomically (a temp folder renamed into place); returns `out`."""
    import scorerl

    info = {"format": EXPORT_FORMAT, "scorerl_version": scorerl.__version__, "step": int(step), "env": env,
            "source": source, "config": config}

    def build(tmp: Path) -> None:
        policy.save_pretrained(tmp)  # refuses a non-finite policy
        (tmp / EXPORT_FILE).write_text(json.dumps(info, indent=2) + "\n")

    return atomic.build_dir(Path(out).expanduser(), build)


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
    from scorerl.compress.policy import TokenPolicy
    from scorerl.io import checkpoint as ckpt

    path = Path(path).expanduser()
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such policy, run or checkpoint folder")
    if _is_policy_dir(path) or _is_policy_dir(path / "policy"):
        return TokenPolicy.from_pretrained(_resolve(path), device=device).eval()
    if (path / ckpt.MARKER).is_file():
        checkpoint = ckpt.load_checkpoint(path)
    elif (latest := ckpt.latest_checkpoint(path)) is not None:
        checkpoint = ckpt.load_checkpoint(latest)
    else:
        raise CheckpointError(f"{path}: not an exported policy (no policy_config.json), a run folder (no policy/ "
                              f"and no complete checkpoint) nor a checkpoint folder (no {ckpt.MARKER})")
    policy, _ = _policy_from_checkpoint(checkpoint)
    return policy.to(device).eval()


# ------------------------------------------------------------------------------------------------ helpers


def _policy_from_checkpoint(checkpoint):
    """(TokenPolicy with the checkpoint's weights, {config, step, env}) from a trainer checkpoint."""
    from scorerl.compress.policy import TokenPolicy, policy_section

    state, where = checkpoint.state, checkpoint.path / "state.json"
    for key in ("config", "feature_dim"):
        if key not in state:
            raise CheckpointError(f"{where}: has no {key!r}; not a checkpoint written by scorerl's trainer")
    if "policy" not in checkpoint.tensors:
        raise CheckpointError(f"{checkpoint.path}: has no policy.safetensors")
    # Only the policy section matters here; it is validated like a config file and errors name the file.
    policy = TokenPolicy(int(state["feature_dim"]), policy_section(state["config"].get("policy"), where))
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

    TokenPolicy.from_pretrained(src)  # checks it (readable, finite) before it is copied anywhere
    return atomic.build_dir(out, lambda tmp: shutil.copytree(src, tmp))
