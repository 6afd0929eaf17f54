"""Optimizer and RNG state as safetensors + JSON (never pickle): what a checkpoint needs beyond the weights.

tensors, layout = flatten_optimizer_state(optimizer.state_dict())   # tensors -> safetensors, layout -> JSON
optimizer.load_state_dict(unflatten_optimizer_state(tensors, layout))
rng = capture_rng_state(); ...; restore_rng_state(rng)               # python, numpy, torch CPU/CUDA, named
"""

from __future__ import annotations

import random
import warnings
from typing import Any

import numpy as np
import torch

from scorerl.errors import CheckpointError


def flatten_optimizer_state(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A torch optimizer state_dict as (tensors for safetensors, JSON layout); tensors are named by their path,
    e.g. `state.0.exp_avg`. Usage: tensors["optimizer"], state["optimizer"] = flatten_optimizer_state(opt.state_dict())
    """
    tensors: dict[str, torch.Tensor] = {}
    return tensors, _encode(state_dict, "", tensors)


def unflatten_optimizer_state(tensors: dict[str, torch.Tensor], layout: dict[str, Any]) -> dict[str, Any]:
    """Inverse of flatten_optimizer_state: a state_dict for optimizer.load_state_dict."""
    state_dict: dict[str, Any] = _decode(layout, tensors)
    return state_dict


def _encode(obj: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Python value -> JSON, with tensors moved out into `tensors` and tuples / int keys / arrays marked."""
    if torch.is_tensor(obj):
        tensors[path] = obj
        return {"__tensor__": path}
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype)}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, f"{path}.{i}".lstrip("."), tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, f"{path}.{i}".lstrip("."), tensors) for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: _encode(v, f"{path}.{k}".lstrip("."), tensors) for k, v in obj.items()}
        # JSON keys are strings; keep the real keys (optimizer param ids are ints) as a list of pairs.
        return {"__items__": [[k, _encode(v, f"{path}.{k}".lstrip("."), tensors)] for k, v in obj.items()]}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"{path or '<root>'}: cannot store a {type(obj).__name__} in a checkpoint")


def _decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        name = obj["__tensor__"]
        if name not in tensors:
            raise CheckpointError(f"checkpoint layout names tensor {name!r}, which is not in its safetensors file")
        return tensors[name]
    if "__ndarray__" in obj:
        return np.array(obj["__ndarray__"], dtype=obj["dtype"])
    if "__tuple__" in obj:
        return tuple(_decode(v, tensors) for v in obj["__tuple__"])
    if "__items__" in obj:
        return {k: _decode(v, tensors) for k, v in obj["__items__"]}
    return {k: _decode(v, tensors) for k, v in obj.items()}


# ------------------------------------------------------------------------------------------------ RNG


def capture_rng_state(
    generators: dict[str, torch.Generator] | None = None,
    numpy_generators: dict[str, np.random.Generator] | None = None,
) -> dict[str, Any]:
    """Every RNG state of this process: python, numpy legacy, torch CPU, CUDA (if any), and the named generators."""
    version, internal, gauss = random.getstate()
    return {
        "python": {"version": version, "state": list(internal), "gauss": gauss},
        "numpy": _encode(np.random.get_state(legacy=False), "", {}),
        "numpy_generators": {k: _encode(g.bit_generator.state, "", {}) for k, g in (numpy_generators or {}).items()},
        "torch_cpu": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "generators": {k: g.get_state() for k, g in (generators or {}).items()},
    }


def restore_rng_state(
    state: dict[str, Any],
    generators: dict[str, torch.Generator] | None = None,
    numpy_generators: dict[str, np.random.Generator] | None = None,
) -> None:
    """Set every RNG captured by capture_rng_state; each named generator passed must be in the state."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    np.random.set_state(_decode(state["numpy"], {}))
    for name, g in (numpy_generators or {}).items():
        if name not in state["numpy_generators"]:
            raise CheckpointError(f"checkpoint has no state for numpy generator {name!r}")
        g.bit_generator.state = _decode(state["numpy_generators"][name], {})
    torch.set_rng_state(state["torch_cpu"])
    _restore_cuda(state["cuda"])
    for name, torch_generator in (generators or {}).items():
        if name not in state["generators"]:
            raise CheckpointError(f"checkpoint has no state for torch generator {name!r}")
        torch_generator.set_state(state["generators"][name])


def _restore_cuda(states: list[torch.Tensor]) -> None:
    if not states:
        return
    if not torch.cuda.is_available() or torch.cuda.device_count() != len(states):
        have = torch.cuda.device_count() if torch.cuda.is_available() else 0
        warnings.warn(
            f"checkpoint holds {len(states)} CUDA RNG states but {have} devices are visible; "
            "CUDA RNG not restored, so GPU-side random draws will differ from the original run",
            stacklevel=2,
        )
        return
    torch.cuda.set_rng_state_all(states)
