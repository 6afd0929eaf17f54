"""The batched-window vision attention computes what transformers' per-window loop computes."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLVisionAttention

from scorerl.envs.build import build_tiny_env
from scorerl.envs.vision_windows import batch_vision_windows, equal_window_length

pytestmark = pytest.mark.usefixtures("one_thread")


def test_equal_window_length():
    assert equal_window_length(torch.tensor([0, 4, 8, 12])) == 4
    assert equal_window_length(torch.tensor([0, 4, 6, 10])) is None
    assert equal_window_length(torch.tensor([0])) is None
    assert equal_window_length(torch.tensor([0, 0, 0])) is None


@pytest.fixture(scope="module")
def envs():
    """(env whose vision attention is batched, the same weights with transformers' own forward)."""
    env = build_tiny_env("qwen2_5_vl", seed=0, initializer_range=0.1, temporal_patch_size=2)
    reference = copy.deepcopy(env.model)
    for module in reference.modules():
        if isinstance(module, Qwen2_5_VLVisionAttention):
            del module.forward  # the instance attribute: back to the class's (transformers') forward
    return env, reference


def _features_and_grad(model, inputs):
    model.zero_grad(set_to_none=True)
    with torch.enable_grad():
        model.requires_grad_(True)
        out = model.model.get_video_features(**inputs).pooler_output[0]
        (out * torch.linspace(-1, 1, out.numel()).reshape(out.shape)).sum().backward()
        model.requires_grad_(False)
    qkv = next(m for m in model.modules() if isinstance(m, Qwen2_5_VLVisionAttention)).qkv.weight.grad
    return out.detach(), qkv.clone()


@pytest.mark.parametrize(
    "size", [64, 48]
)  # 64 px: equal 32 px windows; 48 px: 32 + 16 (the loop; its full-attention block is batched)
def test_same_features_and_gradients_as_transformers(envs, size):
    env, reference = envs
    frames = np.random.default_rng(size).integers(0, 256, (4, size, size, 3), dtype=np.uint8)
    inputs = env.preprocess(frames)
    ours, ours_grad = _features_and_grad(env.model, inputs)
    theirs, theirs_grad = _features_and_grad(reference, inputs)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours_grad, theirs_grad, atol=1e-5, rtol=1e-4)


def test_every_vision_attention_is_batched_once(envs):
    env, _ = envs
    blocks = len(env.model.model.visual.blocks)
    assert sum(getattr(m, "_scorerl_batched_windows", False) for m in env.model.modules()) == blocks
    assert batch_vision_windows(env.model) == 0  # idempotent: already batched
