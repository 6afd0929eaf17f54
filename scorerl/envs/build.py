"""Environments with random weights: tiny configs of the REAL architectures (Qwen2.5-VL, LLaVA-OneVision) for
tests and the built-in world, and any size from a config dict for the prefill benchmark (a 7B in bf16).

Every size is an argument, so the world's environment fit can build the same architectures larger. The models
are the unmodified transformers classes: whatever works here works on a real checkpoint.
"""

from __future__ import annotations

import inspect

import torch

from scorerl.envs.base import VideoEnv
from scorerl.envs.hf import DTYPES, resolve_device
from scorerl.envs.tokenizer import build_tokenizer
from scorerl.errors import ConfigError, EnvError


def _mrope_section(head_dim: int) -> list[int]:
    """Split head_dim/2 rotary pairs into (temporal, height, width) like Qwen's [16, 24, 24] for head_dim 128."""
    half = head_dim // 2
    hw = (3 * half) // 8
    return [half - 2 * hw, hw, hw]


def _text_config(
    vocab_size,
    hidden_size,
    num_layers,
    num_heads,
    num_kv_heads,
    intermediate_size,
    token_ids,
    initializer_range,
    max_position_embeddings,
) -> dict:
    return dict(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        intermediate_size=intermediate_size or 2 * hidden_size,
        initializer_range=initializer_range,
        max_position_embeddings=max_position_embeddings,
        rms_norm_eps=1e-6,
        bos_token_id=None,
        eos_token_id=token_ids["<|im_end|>"],
        pad_token_id=token_ids["<|endoftext|>"],
    )


def tiny_qwen2_5_vl_config(
    vocab_size: int,
    token_ids: dict[str, int],
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 0,
    vision_depth: int = 2,
    vision_hidden: int = 32,
    vision_heads: int = 2,
    patch_size: int = 8,
    spatial_merge_size: int = 2,
    temporal_patch_size: int = 1,
    tokens_per_second: int = 2,
    window_size: int = 0,
    full_attention_blocks: list[int] | None = None,
    rope_theta: float = 1e6,
    initializer_range: float = 0.02,
    max_position_embeddings: int = 4096,
):
    """Qwen2.5-VL config; `token_ids` maps special-token strings to ids (from the tokenizer).

    intermediate_size 0 = 2 x hidden_size. temporal_patch_size=1 makes one temporal unit per frame. window_size
    0 = two merged units per window side, so the vision tower's window attention (all blocks but the last) runs.
    full_attention_blocks: the vision blocks that attend over the whole frame (None = the last one, as in
    Qwen2.5-VL); [] with window_size = patch_size * spatial_merge_size keeps every visual token local.
    """
    from transformers import Qwen2_5_VLConfig

    head_dim = hidden_size // num_heads
    text = _text_config(
        vocab_size,
        hidden_size,
        num_layers,
        num_heads,
        num_kv_heads,
        intermediate_size,
        token_ids,
        initializer_range,
        max_position_embeddings,
    )
    text["rope_parameters"] = {
        "rope_type": "default",
        "rope_theta": rope_theta,
        "mrope_section": _mrope_section(head_dim),
    }
    vision = dict(
        depth=vision_depth,
        hidden_size=vision_hidden,
        num_heads=vision_heads,
        intermediate_size=2 * vision_hidden,
        out_hidden_size=hidden_size,
        patch_size=patch_size,
        spatial_merge_size=spatial_merge_size,
        temporal_patch_size=temporal_patch_size,
        tokens_per_second=tokens_per_second,
        window_size=window_size or 2 * patch_size * spatial_merge_size,
        fullatt_block_indexes=[vision_depth - 1] if full_attention_blocks is None else list(full_attention_blocks),
        initializer_range=initializer_range,
    )
    return Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=token_ids["<|image_pad|>"],
        video_token_id=token_ids["<|video_pad|>"],
        vision_start_token_id=token_ids["<|vision_start|>"],
        vision_end_token_id=token_ids["<|vision_end|>"],
    )


def tiny_llava_onevision_config(
    vocab_size: int,
    token_ids: dict[str, int],
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 0,
    vision_depth: int = 2,
    vision_hidden: int = 32,
    vision_heads: int = 2,
    image_size: int = 64,
    patch_size: int = 8,
    rope_theta: float = 1e6,
    initializer_range: float = 0.02,
    max_position_embeddings: int = 4096,
):
    """LLaVA-OneVision config: tiny SigLIP vision tower + tiny Qwen2 LM. Frames are resized to image_size.

    Each frame gives ceil(p/2)^2 tokens (p = image_size // patch_size, 2x bilinear pooling) plus one newline
    token after the whole video, as in the real model (vision_feature_layer -1, select strategy `full`).
    """
    from transformers import LlavaOnevisionConfig

    text = _text_config(
        vocab_size,
        hidden_size,
        num_layers,
        num_heads,
        num_kv_heads,
        intermediate_size,
        token_ids,
        initializer_range,
        max_position_embeddings,
    )
    text.update(model_type="qwen2", rope_parameters={"rope_type": "default", "rope_theta": rope_theta})
    vision = dict(
        model_type="siglip_vision_model",
        hidden_size=vision_hidden,
        intermediate_size=2 * vision_hidden,
        num_hidden_layers=vision_depth,
        num_attention_heads=vision_heads,
        image_size=image_size,
        patch_size=patch_size,
        vision_use_head=False,
    )
    return LlavaOnevisionConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=token_ids["<image>"],
        video_token_id=token_ids["<video>"],
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
        image_grid_pinpoints=[[image_size, image_size]],
        tie_word_embeddings=False,
    )


def tiny_config(arch: str, tokenizer, **sizes):
    """The tiny config of `arch` whose vocabulary and special-token ids match `tokenizer`."""
    from scorerl.envs.tokenizer import special_tokens

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in special_tokens(arch)}
    builder = {"qwen2_5_vl": tiny_qwen2_5_vl_config, "llava_onevision": tiny_llava_onevision_config}[arch]
    valid = [k for k, p in inspect.signature(builder).parameters.items() if p.kind is p.KEYWORD_ONLY]
    unknown = sorted(set(sizes) - set(valid))
    if unknown:
        raise EnvError(f"unknown {arch} size key(s) {unknown}; valid keys: {', '.join(valid)}")
    return builder(len(tokenizer), ids, **sizes)


def build_tiny_env(
    arch: str = "qwen2_5_vl",
    corpus: list[str] | None = None,
    seed: int = 0,
    vocab_size: int = 512,
    token_budget: int = 32768,
    **sizes,
):
    """Tokenizer + randomly initialised model of `arch`, in memory, fp32 on CPU, wrapped as a frozen VideoEnv."""
    from scorerl.envs import env_class

    tokenizer = build_tokenizer(corpus, vocab_size=vocab_size, arch=arch)
    config = tiny_config(arch, tokenizer, **sizes)
    cls = env_class(arch)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = cls.model_class()(config)
    return cls(model, tokenizer, token_budget=token_budget)


def build_random_env(
    arch: str,
    config: dict,
    dtype: str = "float32",
    device: str = "auto",
    attn_implementation: str = "sdpa",
    token_budget: int = 32768,
    seed: int = 0,
    vocab_size: int = 512,
) -> VideoEnv:
    """A VideoEnv of `arch` built from a transformers config dict with random weights and a built-in tokenizer.

    The dict is the model's config.json content (text_config / vision_config sub-dicts, or flat text keys). Special
    token ids are set from the tokenizer (its ids are small); the vocabulary keeps the dict's size, so the
    embedding and LM head cost what the real model's do. The weights are created directly on the device in
    `dtype`: a 7B model never passes through CPU memory in float32.
    """
    from scorerl.envs import env_class

    tokenizer = build_tokenizer(vocab_size=vocab_size, arch=arch)
    cls = env_class(arch)
    model_cls = cls.model_class()
    hf_config = model_config_from_dict(arch, config, tokenizer, model_cls.config_class)
    target = resolve_device(device)
    with torch.random.fork_rng(devices=[target] if target.type == "cuda" else []):
        torch.manual_seed(seed)
        with torch.device(target):
            model = model_cls._from_config(hf_config, dtype=DTYPES[dtype], attn_implementation=attn_implementation)
    return cls(model.eval(), tokenizer, token_budget=token_budget)


def model_config_from_dict(arch: str, config: dict, tokenizer, config_class):
    """A transformers config of `arch` from a dict, with special-token ids (and a missing M-RoPE split) filled in
    so the built-in tokenizer drives it."""
    cfg = {k: (dict(v) if isinstance(v, dict) else v) for k, v in config.items()}
    text = cfg.setdefault("text_config", {})
    for key in [k for k in cfg if k not in ("text_config", "vision_config") and not k.endswith("_token_id")]:
        text.setdefault(key, cfg.pop(key))  # flat LM keys, as in older config.json files, belong to the text part
    # The tiny config of the same arch names every token id the architecture needs, matched to this tokenizer.
    ids = tiny_config(arch, tokenizer).to_dict()
    for key, value in ids.items():
        if key.endswith("_token_id"):
            cfg[key] = value
    for key in ("eos_token_id", "pad_token_id", "bos_token_id"):
        text[key] = ids["text_config"].get(key)
    vocab = text.setdefault("vocab_size", len(tokenizer))
    if vocab < len(tokenizer):
        raise ConfigError(
            f"bench.random_init: vocab_size {vocab} is smaller than the built-in tokenizer ({len(tokenizer)} tokens)"
        )
    if arch == "qwen2_5_vl":
        _fill_mrope(text)
        # The projector must emit tokens of the LLM's width; a dict that leaves it out means exactly that.
        cfg.setdefault("vision_config", {}).setdefault("out_hidden_size", text.get("hidden_size"))
    try:
        return config_class(**cfg)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"bench.random_init: not a valid {arch} config: {e}") from None


def _fill_mrope(text: dict) -> None:
    """Qwen2.5-VL's M-RoPE needs (temporal, height, width) rotary sections summing to head_dim / 2."""
    hidden, heads = text.get("hidden_size"), text.get("num_attention_heads")
    if hidden is None or heads is None:
        raise ConfigError("bench.random_init: text_config needs hidden_size and num_attention_heads")
    half = text.get("head_dim", hidden // heads) // 2
    rope = dict(text.get("rope_parameters") or {"rope_type": "default", "rope_theta": 1e6})
    if "mrope_section" not in rope:
        hw = (3 * half) // 8  # Qwen's [16, 24, 24] for head_dim 128
        rope["mrope_section"] = [half - 2 * hw, hw, hw]
    if sum(rope["mrope_section"]) != half:
        raise ConfigError(f"bench.random_init: mrope_section {rope['mrope_section']} must sum to head_dim/2 = {half}")
    text["rope_parameters"] = rope
