"""The SCORE policy: one small MLP shared by all tokens, state h [..., S] -> keep logit [...] (docs/method.md, policy).

The named variant `policy.mixer: conv` [ours] adds a zero-initialised 3-D convolution over each token's (t, row,
col) neighbours to the first hidden layer (docs/method.md, "A policy that sees its neighbours"); it needs each
sample's token grid, which keep_logits and batch_keep_logits pass as a layout [(T_b, rows_b, cols_b)].

A trained policy is a self-describing folder (no pickles):
    policy.safetensors    the MLP weights (and the mixer's)
    policy_config.json    {"format_version", "scorerl_version", "feature_dim", "state_dim", "policy": {PolicySection}}
The state options (first_unit, norm, ...) travel with the weights: a policy must be fed the state it was trained on.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import torch
import torch.nn as nn

from scorerl.compress.batch import TokenBatch, pad_stack
from scorerl.compress.state import state_dim, state_from_config
from scorerl.config import PolicySection
from scorerl.errors import CheckpointError, ConfigError

WEIGHTS_NAME = "policy.safetensors"
CONFIG_NAME = "policy_config.json"
FORMAT_VERSION = 1
_LAST_LAYER_SCALE = 1e-2  # small last-layer weights: every token starts at p ~ rho_init, whatever its state
# PolicySection fields added after policies were first saved, with the value that computes as before: a policy
# folder (and a library's policy identity) leaves them out at that value, so every policy saved before is written,
# and identified, exactly as it was.
_ADDED_FIELDS = {"mixer": "none", "mixer_kernel": 3}

Layout = Sequence[tuple[int, int, int]]  # (T_b, rows_b, cols_b) of each sample, in the order its tokens are packed


class TokenPolicy(nn.Module):
    """Per-token MLP: S -> hidden -> ... -> 1 with `config.layers` linear layers and GELU between them.

    mixer conv: after the first linear layer and its GELU, a = GELU(W1 h) [hidden per token] becomes
    a + conv(a), conv a depthwise 3-D convolution over (t, row, col) of each sample's token grid (each of the
    hidden channels filtered over its own k x k x k neighbourhood, zero padding k // 2) whose weights and bias
    start at zero, so a fresh conv policy computes what the MLP with the same first and later layers computes; the
    remaining layers follow as in the MLP.
    """

    def __init__(self, feature_dim: int, config: PolicySection | None = None):
        super().__init__()
        config = config if config is not None else PolicySection()
        if config.mixer != "none" and config.layers < 2:  # a config file says so already (PolicySection.validate)
            raise ConfigError(
                f"policy.mixer: {config.mixer} mixes the hidden states between the first and second linear layers: "
                f"it needs policy.layers >= 2, got {config.layers}"
            )
        if config.mixer_kernel < 1 or config.mixer_kernel % 2 == 0:
            raise ConfigError(f"policy.mixer_kernel: must be odd and >= 1, got {config.mixer_kernel}")
        self.config = config
        self.feature_dim = int(feature_dim)
        self.state_dim = state_dim(self.feature_dim, config)
        widths = [self.state_dim] + [config.hidden] * (config.layers - 1) + [1]
        layers: list[nn.Module] = []
        for j, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(nn.Linear(a, b))
            if j < len(widths) - 2:
                layers.append(nn.GELU())
        self.mlp = nn.Sequential(*layers)
        last = layers[-1]
        assert isinstance(last, nn.Linear)
        with torch.no_grad():
            last.weight.mul_(_LAST_LAYER_SCALE)
            last.bias.fill_(math.log(config.rho_init / (1 - config.rho_init)))  # logit(rho_init)
        # Built after the MLP, so the MLP's weights draw the same random numbers as without it (same seed, same
        # MLP), and zeroed: a fresh conv policy computes exactly what that MLP computes.
        self.conv: nn.Conv3d | None = None
        if config.mixer == "conv":
            k = config.mixer_kernel
            # Depthwise (each hidden channel filtered over its own neighbours; the next linear layer mixes
            # channels): a full hidden -> hidden kernel has fan-in k^3 * hidden, and Adam moves every weight by
            # about lr per step, so its output moved ~k^3 times faster than the MLP's layers' and the policy
            # saturated within 300 steps on world v4 (keep probabilities pinned, identical masks in a group).
            self.conv = nn.Conv3d(config.hidden, config.hidden, k, padding=k // 2, groups=config.hidden)
            with torch.no_grad():
                self.conv.weight.zero_()
                assert self.conv.bias is not None
                self.conv.bias.zero_()

    @classmethod
    def from_config(cls, policy_section: PolicySection, feature_dim: int) -> "TokenPolicy":
        return cls(feature_dim, policy_section)

    def forward(self, h: torch.Tensor, layout: Layout | None = None) -> torch.Tensor:
        """Keep logits [...] of states h [..., S].

        The MLP ignores `layout`. mixer conv needs it: h holds the samples' tokens packed one after the other
        (flattened over its leading dims), sample b's T_b * rows_b * cols_b tokens in (t, row, col) order, i.e. its
        [T_b, N_b] flattened with token i of a unit at row i // cols_b, column i % cols_b.
        """
        if h.shape[-1] != self.state_dim:
            raise ValueError(f"state width {h.shape[-1]} != policy state_dim {self.state_dim}")
        if self.conv is None:
            logits: torch.Tensor = self.mlp(h).squeeze(-1)
            return logits
        if layout is None:
            raise ValueError(
                "policy.mixer conv mixes each token with its grid neighbours: it needs the layout "
                "[(T, rows, cols)] of the samples packed in h (keep_logits and batch_keep_logits pass it)"
            )
        flat = h.reshape(-1, h.shape[-1])  # [M, S]
        hidden = self.mlp[:2](flat)  # [M, hidden]: the first linear layer and its GELU, per token
        hidden = hidden + self._mix(hidden, layout)
        mixed: torch.Tensor = self.mlp[2:](hidden).squeeze(-1)  # [M]
        return mixed.view(h.shape[:-1])

    def _mix(self, hidden: torch.Tensor, layout: Layout) -> torch.Tensor:
        """conv(hidden) [M, H] of packed per-token hidden states [M, H], each sample on its own (T, rows, cols)
        grid (zero padding at its edges: no sample sees another's tokens); consecutive samples of one shape are
        convolved as one batch."""
        assert self.conv is not None
        sizes = [int(t) * int(r) * int(c) for t, r, c in layout]
        if sum(sizes) != hidden.shape[0]:
            raise ValueError(f"layout {list(layout)} holds {sum(sizes)} tokens, the states hold {hidden.shape[0]}")
        H, out, start = hidden.shape[1], [], 0
        for (t, r, c), run in itertools.groupby(tuple(int(x) for x in shape) for shape in layout):
            n = len(list(run))
            count = n * t * r * c
            x = hidden[start : start + count].reshape(n, t, r, c, H).permute(0, 4, 1, 2, 3)  # [n, H, T, rows, cols]
            out.append(self.conv(x).permute(0, 2, 3, 4, 1).reshape(count, H))
            start += count
        return torch.cat(out)

    def flops(self, num_tokens: int) -> float:
        """Matmul FLOPs of scoring num_tokens tokens (2 * in * out per token per linear layer, and for mixer conv
        2 * k^3 * hidden per token (depthwise), edge tokens included as if their zero padding were neighbours; state
        building and activations ignored), the convention of scorerl/eval/flops.py."""
        per_token = sum(2 * m.in_features * m.out_features for m in self.modules() if isinstance(m, nn.Linear))
        if self.conv is not None:
            per_token += 2 * self.conv.weight.numel()  # 2 * hidden * k^3 (depthwise)
        return float(num_tokens * per_token)

    def keep_prob(self, h: torch.Tensor, layout: Layout | None = None) -> torch.Tensor:
        """Keep probabilities p [...] = sigmoid(logits) of states h [..., S] (layout: see forward)."""
        return torch.sigmoid(self(h, layout))

    # ------------------------------------------------------------------ self-describing folder

    def check_finite(self, where: str) -> None:
        """CheckpointError naming `where` and the first non-finite weight: such a policy must never be saved,
        exported or evaluated (its keep logits are NaN and its top-k meaningless)."""
        for name, t in self.state_dict().items():
            if not torch.isfinite(t).all():
                raise CheckpointError(f"{where}: weight {name} is not finite (NaN or inf); refusing to use it")

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write policy.safetensors + policy_config.json into directory (created if needed); a non-finite policy
        is refused."""
        from safetensors.torch import save

        from scorerl.io import atomic
        from scorerl.version import __version__

        self.check_finite(str(directory))
        directory = Path(directory)
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in self.state_dict().items()}
        # Through the atomic writer (not save_file, which creates 0600 files): the umask's mode, and a full disk
        # is a WriteError naming the file.
        atomic.write_bytes(directory / WEIGHTS_NAME, save(tensors, metadata={"format": "pt"}))
        meta = {
            "format_version": FORMAT_VERSION,
            "scorerl_version": __version__,
            "feature_dim": self.feature_dim,
            "state_dim": self.state_dim,
            "policy": policy_fields(self.config),
        }
        atomic.write_text(directory / CONFIG_NAME, json.dumps(meta, indent=2) + "\n")
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu") -> "TokenPolicy":
        """Rebuild a policy from a save_pretrained folder; reads only JSON and safetensors."""
        from safetensors.torch import load_file

        directory = Path(directory)
        cfg_path, w_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
        if not directory.is_dir():
            raise CheckpointError(f"{directory}: policy folder not found")
        if not cfg_path.is_file():
            raise CheckpointError(f"{cfg_path}: missing (a policy folder holds {CONFIG_NAME} and {WEIGHTS_NAME})")
        try:
            meta = json.loads(cfg_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{cfg_path}: not valid JSON: {e}") from None
        if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
            got = meta.get("format_version") if isinstance(meta, dict) else None
            raise CheckpointError(f"{cfg_path}: format_version {got!r} is not {FORMAT_VERSION} (not a scorerl policy?)")
        config = policy_section(meta.get("policy"), cfg_path)
        feature_dim = meta.get("feature_dim")
        if not isinstance(feature_dim, int) or feature_dim < 1:
            raise CheckpointError(f"{cfg_path}: feature_dim must be a positive integer, got {feature_dim!r}")
        expected = parameter_shapes(feature_dim, config)
        if meta.get("state_dim", expected["mlp.0.weight"][1]) != expected["mlp.0.weight"][1]:
            raise CheckpointError(
                f"{cfg_path}: state_dim {meta['state_dim']} disagrees with its options ({expected['mlp.0.weight'][1]})"
            )
        if not w_path.is_file():
            raise CheckpointError(f"{w_path}: missing")
        # The sizes in policy_config.json are checked against the weights file's header BEFORE the policy is
        # built: a crafted `hidden: 1000000` must not allocate anything, let alone 800 GB.
        check_shapes(expected, _header_shapes(w_path), f"{w_path} (against {CONFIG_NAME})")
        policy = cls(feature_dim, config)
        try:
            tensors = load_file(str(w_path))
        except Exception as e:  # safetensors raises its own error type on a truncated / corrupt file
            raise CheckpointError(f"{w_path}: cannot read safetensors: {e}") from None
        policy.load_state_dict(tensors)
        policy.check_finite(str(w_path))
        return policy.to(device)


def parameter_shapes(feature_dim: int, config: PolicySection) -> dict[str, tuple[int, ...]]:
    """The shape of every weight of TokenPolicy(feature_dim, config), by name, computed without building it."""
    widths = [state_dim(feature_dim, config)] + [config.hidden] * (config.layers - 1) + [1]
    shapes: dict[str, tuple[int, ...]] = {}
    for j, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        shapes[f"mlp.{2 * j}.weight"], shapes[f"mlp.{2 * j}.bias"] = (b, a), (b,)  # GELUs sit at the odd indices
    if config.mixer == "conv":
        k, H = config.mixer_kernel, config.hidden
        shapes["conv.weight"], shapes["conv.bias"] = (H, 1, k, k, k), (H,)
    return shapes


def policy_fields(config: PolicySection) -> dict[str, Any]:
    """The PolicySection as the JSON mapping a policy folder holds: every field, except fields added since
    policies were first saved while they hold the value that computes as before (so a policy of the paper's MLP
    is written, and a library identifies it, exactly as before they existed)."""
    fields = dataclasses.asdict(config)
    return {k: v for k, v in fields.items() if k not in _ADDED_FIELDS or v != _ADDED_FIELDS[k]}


def check_shapes(expected: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]], where: str) -> None:
    """CheckpointError naming `where` unless the weights found have exactly the expected names and shapes."""
    missing, unexpected = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{where}: the weights do not match the policy's config: missing {missing}, unexpected {unexpected}"
        )
    for name, shape in found.items():
        if tuple(shape) != tuple(expected[name]):
            raise CheckpointError(
                f"{where}: {name} has shape {tuple(shape)}, the config implies {tuple(expected[name])}"
            )


def _header_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Names and shapes of a safetensors file's tensors, from its header alone (nothing is read or allocated)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error type on a truncated / corrupt header
        raise CheckpointError(f"{path}: cannot read safetensors: {e}") from None


def policy_section(fields: object, path: Path) -> PolicySection:
    """PolicySection from the JSON `policy` mapping, checked like a config file; errors name the file."""
    from scorerl.config.loader import build_section

    def fail(key: str, msg: str) -> NoReturn:
        raise CheckpointError(f"{path}: {key}: {msg}")

    if not isinstance(fields, dict):
        fail("policy", "must be a mapping of PolicySection fields")
    section: PolicySection = build_section(PolicySection, fields, "policy.", fail)
    return section


def unwrap(policy: nn.Module) -> "TokenPolicy":
    """The TokenPolicy inside an accelerate / DDP / DeepSpeed wrapper (for its config; never for the forward)."""
    while not isinstance(policy, TokenPolicy):
        inner = getattr(policy, "module", None)
        if not isinstance(inner, nn.Module):
            raise TypeError(f"not a TokenPolicy, nor a wrapper of one: {type(policy).__name__}")
        policy = inner
    return policy


def keep_logits(policy: nn.Module, v: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
    """Tokens v [..., T, N, D] -> keep logits [..., T, N]: THE scoring path, shared by training (rollout and every
    update epoch), evaluation, the benchmark, export and inference.

    The state options come from the policy's own config (what it was trained on). A wrapped policy (DDP,
    DeepSpeed) is called through its wrapper, so its gradients synchronise. Features are promoted to float32 for
    the norms (bf16 residuals lose the small surprises), the state is cast to the policy's dtype and device.
    """
    core = unwrap(policy)
    h = _token_states(core, v, grid)  # [..., T, N, S]
    if core.conv is None:
        return _policy_logits(policy, core, h)  # [..., T, N]
    T, N = v.shape[-3], v.shape[-2]
    rows, cols = _grid_of(grid, N)
    samples = math.prod(v.shape[:-3])  # leading dims: samples of one grid
    return _policy_logits(policy, core, h, [(T, rows, cols)] * samples)  # [..., T, N]


def batch_keep_logits(policy: nn.Module, batch: TokenBatch) -> torch.Tensor:
    """keep_logits of a ragged batch: B samples [T_b, N_b, D] -> logits [B, T, N] (padded with 0; batch.valid says
    which entries are real).

    Each sample's state is its own (residuals along its own T_b, positions from its own grid), and the states of
    the whole batch go through the policy as ONE packed [sum T_b N_b, S] forward. The MLP acts per token, so a
    sample's logits equal keep_logits of that sample alone; for a batch of one shape they equal keep_logits of
    the stacked [B, T, N, D] bit for bit (the same per-token operations, the same [B T N, S] matmul). mixer conv
    gets the batch's layout in the same single call and convolves each sample on its own grid, so the same holds.
    """
    core = unwrap(policy)
    states = [_token_states(core, v, grid).flatten(0, 1) for v, grid in zip(batch.features, batch.grids)]
    layout = None if core.conv is None else batch.layout
    packed = _policy_logits(policy, core, torch.cat(states), layout)  # [sum T_b N_b]
    pieces = [piece.view(t, n) for piece, (t, n) in zip(packed.split(batch.token_counts()), batch.shapes)]
    return pad_stack(pieces, batch.padded_shape)  # [B, T, N]


def _token_states(core: TokenPolicy, v: torch.Tensor, grid: tuple[int, int] | None) -> torch.Tensor:
    """State h [..., T, N, S] of tokens v [..., T, N, D] with the policy's own options, in float32 (bf16 residuals
    lose the small surprises); ValueError for features of another width."""
    if v.shape[-1] != core.feature_dim:
        raise ValueError(f"features have width D={v.shape[-1]}, the policy was built for D={core.feature_dim}")
    return state_from_config(v.float(), core.config, grid)


def _grid_of(grid: tuple[int, int] | None, N: int) -> tuple[int, int]:
    """(rows, cols) of a unit's N tokens for mixer conv; ValueError without a grid that holds them."""
    if grid is None or len(grid) != 2 or int(grid[0]) * int(grid[1]) != N:
        raise ValueError(
            f"policy.mixer conv mixes each token with its grid neighbours: it needs grid=(rows, cols) with "
            f"rows * cols == N={N}, got {grid!r}"
        )
    return int(grid[0]), int(grid[1])


def _policy_logits(policy: nn.Module, core: TokenPolicy, h: torch.Tensor, layout: Layout | None = None) -> torch.Tensor:
    """policy(h) [...] with h cast to the policy's dtype and device, called through the wrapper (DDP gradients);
    the layout goes along only when the policy mixes tokens (the MLP is called as it always was)."""
    param = next(core.parameters())
    h = h.to(device=param.device, dtype=param.dtype)
    logits: torch.Tensor = policy(h) if layout is None else policy(h, layout)
    return logits
