"""`scorerl.patch(model, compressor, ratio)`: the compressor inside the user's own `model.generate`.

    import scorerl
    scorerl.patch(model, "runs/quickstart/policy", ratio=0.25)
    inputs = processor(text=texts, videos=videos, padding=True, padding_side="left", return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=64)     # the user's own call, settings and generation_config
    answers = processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    scorerl.unpatch(model)

After `patch`, a `generate` call with videos or images (pixel_values_videos / pixel_values) runs on the kept
visual tokens at their original positions (scorerl/integrations/prefill.py); one without them is the model's own
call, untouched. The output keeps generate's own shape: the caller's input_ids, then the new tokens. Only the
instance is changed (its `generate` attribute); `unpatch` removes it, and the class is never touched.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from scorerl.integrations.hf_generate import generate_compressed
from scorerl.integrations.prefill import VISUAL_KEYS, Select, has_visuals, model_arch

_STATE = "_scorerl_patch"  # the attribute holding a patched model's compressor and ratio


def patch(model, compressor, ratio: float = 1.0):
    """Make `model.generate` compress the visual tokens of every call that has videos or images; returns model.

    model: a transformers Qwen2_5_VLForConditionalGeneration or LlavaOnevisionForConditionalGeneration.
    compressor: a ScoreCompressor, a policy folder (exported, run or checkpoint), a baseline name (uniform,
      random, pool, framediff, dycoke, dycoke_ttm+topk, vidcom2, full) or a function (V [T, N, D], (rows, cols))
      -> bool [T, N] (then `ratio` is the function's business).
    ratio: the share of each video's tokens to keep, in (0, 1]; 1 keeps all (the model's own output exactly).
    Patching a patched model replaces its compressor and ratio.
    """
    model_arch(model)  # names the model type it cannot handle
    select = selector(compressor, ratio)
    unpatch(model)
    original = model.generate  # the bound method of the model's class

    @functools.wraps(original)
    def generate(*args, **kwargs):
        inputs = _as_keywords(args, kwargs)
        if not has_visuals(inputs):
            return original(**inputs)
        visual = {k: inputs.pop(k) for k in ("input_ids", "attention_mask", *VISUAL_KEYS) if k in inputs}
        out, _ = generate_compressed(original, model, visual, select, inputs)
        return out

    model.generate = generate
    setattr(model, _STATE, {"compressor": compressor, "ratio": ratio})
    return model


def unpatch(model):
    """Give `model` its own `generate` back (a model that was never patched is left as it is); returns model."""
    if _STATE in vars(model):
        delattr(model, "generate")
        delattr(model, _STATE)
    return model


def is_patched(model) -> bool:
    return _STATE in vars(model)


def selector(compressor, ratio: float) -> Select:
    """The per-visual keep function of `compressor` at `ratio` (see `patch`)."""
    if callable(compressor) and not hasattr(compressor, "keep_mask"):
        return compressor
    ratio = float(ratio)
    if not 0 < ratio <= 1:
        raise ValueError(f"ratio must be in (0, 1], got {ratio}")
    compressor = load_compressor(compressor)
    if ratio >= 1 or compressor.name == "full":
        return keep_all

    def select(features: torch.Tensor, grid) -> torch.Tensor:  # features [T, N, D] on the model's device
        device = _policy_device(compressor, features.device)
        return compressor.keep_mask(features.float().to(device), ratio, tuple(grid)).to(features.device)

    return select


def load_compressor(spec):
    """A ScoreCompressor from itself, a policy folder or a baseline name."""
    from scorerl.export import ScoreCompressor

    if isinstance(spec, ScoreCompressor):
        return spec
    if Path(str(spec)).expanduser().is_dir():
        return ScoreCompressor.from_pretrained(spec)
    return ScoreCompressor.baseline(str(spec))


def keep_all(features: torch.Tensor, grid) -> torch.Tensor:
    return torch.ones(features.shape[:2], dtype=torch.bool, device=features.device)


def _policy_device(compressor, fallback: torch.device) -> torch.device:
    """Where the policy's weights are (a baseline computes wherever its features are)."""
    if compressor.policy is None:
        return fallback
    return next(compressor.policy.parameters()).device


def _as_keywords(args: tuple, kwargs: dict) -> dict:
    """generate(inputs, generation_config, ...) positional arguments as keywords."""
    if len(args) > 2:
        raise TypeError("a patched generate takes at most input_ids and generation_config by position")
    names = ("input_ids", "generation_config")[: len(args)]
    for name, value in zip(names, args):
        if name in kwargs:
            raise TypeError(f"generate got {name} both by position and by keyword")
        kwargs[name] = value
    if "inputs" in kwargs:  # generate's own name for its first argument
        kwargs["input_ids"] = kwargs.pop("inputs")
    return kwargs
