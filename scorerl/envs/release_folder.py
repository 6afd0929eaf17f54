"""`scorerl env tiny ARCH OUT`: a tiny RANDOM model folder laid out exactly like the real release.

Qwen/Qwen2.5-VL-7B-Instruct and llava-hf/llava-onevision-qwen2-7b-ov-hf, file for file: the release's config.json
(Qwen's old flat one, LLaVA's nested one with the old `*_token_index` keys), sharded safetensors under the
release's OLD weight names (transformers renames them on load, as it does for the real checkpoints), a Qwen2
byte-level BPE tokenizer with the release's added tokens after its vocabulary, the chat templates, processor and
generation configs with the release's values. Only the sizes are tiny (and the image size of LLaVA's tower), so
every command runs on a CPU in seconds, and tests prove that what a real folder says (tokenizer, chat template,
processor settings) is what scorerl uses.

Nothing here is written from scorerl's own settings: the folder must stand on its own, as a downloaded one does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from scorerl.envs.build import tiny_llava_onevision_config, tiny_qwen2_5_vl_config
from scorerl.envs.hf import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from scorerl.envs.tokenizer import build_qwen2_bpe
from scorerl.errors import EnvError
from scorerl.io.atomic import build_dir

ARCHS = ("qwen2_5_vl", "llava_onevision")
MARKER = "scorerl_tiny_release.json"  # says "scorerl wrote this folder"; the only file no release has
WRITER = "scorerl env tiny"

# A little English for the BPE to learn a few hundred merges from (the base corpus adds the prompt words).
_CORPUS = [
    "The video shows a person walking across a room, then picking up a red cup from the table.",
    "What happens after the ball rolls to the left? Which object moves first in the video?",
    "Describe the scene: a dog runs through the park while two children play near the trees.",
    "How many people are in the kitchen? What color is the car that stops at the corner?",
    "Select the best answer to the following multiple-choice question based on the video.",
    "Respond with only the letter (A, B, C, or D) of the correct option.",
    "The man opens the door, looks outside and closes it again before sitting down.",
    "A small green square slides up while a large blue circle stays in the middle of the frame.",
    "Why did the woman turn around? Where is the cat at the end of the clip?",
    "First, second, third: count the objects that appear before the light turns off.",
]

# Qwen2.5's added tokens in the release's order (ids 151643..151664 there): the first 14 are special; the tool and
# fill-in-the-middle markers are plain added tokens (special false), as in its tokenizer.json.
_QWEN2_5_ADDED = [
    (t, True)
    for t in (
        "<|endoftext|>",
        "<|im_start|>",
        "<|im_end|>",
        "<|object_ref_start|>",
        "<|object_ref_end|>",
        "<|box_start|>",
        "<|box_end|>",
        "<|quad_start|>",
        "<|quad_end|>",
        "<|vision_start|>",
        "<|vision_end|>",
        "<|vision_pad|>",
        "<|image_pad|>",
        "<|video_pad|>",
    )
] + [
    (t, False)
    for t in (
        "<tool_call>",
        "</tool_call>",
        "<|fim_prefix|>",
        "<|fim_middle|>",
        "<|fim_suffix|>",
        "<|fim_pad|>",
        "<|repo_name|>",
        "<|file_sep|>",
    )
]
# Qwen2-7B-Instruct's three, then the two LLaVA's conversion added (151646, 151647 there).
_LLAVA_ADDED = [(t, True) for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>")]

# Qwen2.5-VL-7B-Instruct's chat template (chat_template.json and tokenizer_config.json): a default system turn,
# Picture/Video numbering on add_vision_id, the video as <|vision_start|><|video_pad|><|vision_end|>.
QWEN2_5_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in "
    "content or 'image_url' in content %}{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] "
    "== 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}"
    "Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in "
    "content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# llava-hf's chat_template.json (its conversion script's): images, then videos, then the text; no system default.
LLAVA_ONEVISION_CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n'}}{# Render all images first #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{# Render all video then #}{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}"
    "{{ '<video>\n' }}{% endfor %}{# Render all text next #}{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] }}"
    "{% endfor %}{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ content['text'] }}{% endgeneration %}{% endfor %}{% endif %}{{'<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Qwen2-7B-Instruct's text-only template, which llava-hf's tokenizer_config.json kept from the text model: it
# cannot render a video (content lists), so a loader that takes the tokenizer's template instead of
# chat_template.json fails on this folder as it would on the release.
QWEN2_TEXT_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Tiny sizes. Everything else (patch 14, merge 2, temporal patch 2, window 112, M-RoPE) is the release's.
_TEXT: dict[str, Any] = dict(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2)
_VISION: dict[str, Any] = dict(vision_depth=2, vision_hidden=32, vision_heads=2)
_LLAVA_IMAGE_SIZE = 112  # the release's 384 = 27 x 27 patches of 14; 112 = 8 x 8, 4 x 4 tokens a frame after pooling
_VOCAB_MULTIPLE = 64  # the releases pad the embedding past the tokenizer (152064 / 152128 rows for 151665 / 151648)
_SHARDS = 2


@dataclass(frozen=True)
class _Layout:
    """What differs between the two releases."""

    added: list  # (token, special) after the learned vocabulary
    dtype: torch.dtype  # the release's weights dtype
    rename: list  # (transformers' prefix, the release's prefix), first match wins


_LAYOUTS = {
    "qwen2_5_vl": _Layout(
        _QWEN2_5_ADDED,
        torch.bfloat16,
        [("model.language_model.", "model."), ("model.visual.", "visual."), ("lm_head.", "lm_head.")],
    ),
    "llava_onevision": _Layout(
        _LLAVA_ADDED,
        torch.float16,
        [
            ("model.language_model.", "language_model.model."),
            ("lm_head.", "language_model.lm_head."),
            # the release keeps SigLIP's inner `vision_model.`; transformers 5 drops it on load
            ("model.vision_tower.", "vision_tower.vision_model."),
            ("model.multi_modal_projector.", "multi_modal_projector."),
            ("model.image_newline", "image_newline"),
        ],
    ),
}


# ------------------------------------------------------------------------------------------------ entry points


def write_tiny_release(arch: str, out: str | Path, seed: int = 0, force: bool = False) -> Path:
    """Write a tiny random `arch` model folder laid out like the real release to `out`; returns the folder.

    `out` must be missing or empty; force=True replaces a folder this function wrote before (it holds MARKER and
    nothing else than what that lists). A user's folder is never written into: EnvError naming it. The same seed
    gives the same files, byte for byte.
    """
    if arch not in ARCHS:
        raise EnvError(f"unknown architecture {arch!r}; choose {' or '.join(ARCHS)}")
    out = Path(out).expanduser()
    _check_target(out, force)
    return build_dir(out, lambda tmp: _write(arch, tmp, seed))


def describe_tiny_release(path: str | Path) -> dict:
    """What write_tiny_release recorded in a folder: arch, seed, parameters, files (EnvError if none)."""
    marker = Path(path) / MARKER
    if not marker.is_file():
        raise EnvError(f"{path}: not a folder written by `{WRITER}` (no {MARKER})")
    try:
        return json.loads(marker.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise EnvError(f"{marker}: not readable JSON ({e})") from None


# ------------------------------------------------------------------------------------------------ the target


def _check_target(out: Path, force: bool) -> None:
    """Refuse anything but a missing or empty folder, or (force) one we wrote that holds only our files."""
    if out.exists() and not out.is_dir():
        raise EnvError(f"{out}: is a file, not a folder; choose a new folder for the tiny model")
    entries = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if not entries:
        return
    if MARKER not in entries:
        raise EnvError(
            f"{out}: folder is not empty and was not written by `{WRITER}` (no {MARKER}); refusing to "
            f"write into it. Choose a new or empty folder"
        )
    if not force:
        raise EnvError(f"{out}: already holds a tiny model written by `{WRITER}`; pass --force to replace it")
    ours = set(describe_tiny_release(out).get("files", [])) | {MARKER}
    foreign = [name for name in entries if name not in ours]
    if foreign:
        raise EnvError(
            f"{out}: holds files `{WRITER}` did not write ({', '.join(foreign)}); refusing to replace "
            f"it. Move them out or choose a new folder"
        )


# ------------------------------------------------------------------------------------------------ the folder


def _write(arch: str, folder: Path, seed: int) -> None:
    layout = _LAYOUTS[arch]
    bpe = build_qwen2_bpe(layout.added, corpus=_CORPUS)
    vocab_size = -(-bpe.get_vocab_size() // _VOCAB_MULTIPLE) * _VOCAB_MULTIPLE
    files = {"qwen2_5_vl": _qwen_files, "llava_onevision": _llava_files}[arch](bpe, layout.added, vocab_size)
    folder.mkdir(parents=True)
    for name, content in files.items():
        _write_json(folder / name, content)
    bpe.save(str(folder / "tokenizer.json"))
    bpe.model.save(str(folder))  # vocab.json and merges.txt, the files a slow Qwen2Tokenizer reads
    parameters, weight_files = _write_weights(arch, folder, seed, layout)
    written = sorted([*files, "tokenizer.json", "vocab.json", "merges.txt", *weight_files])
    _write_json(
        folder / MARKER,
        {
            "written_by": WRITER,
            "arch": arch,
            "seed": seed,
            "parameters": parameters,
            "files": written,
            "note": "random weights: for trying commands, not for results",
        },
    )


def _qwen_files(bpe, added: list, vocab_size: int) -> dict[str, dict]:
    """Qwen2.5-VL-7B-Instruct's JSON files (name -> content); the tokenizer's own template is the VL one."""
    ids = bpe.get_vocab()  # learned vocabulary and added tokens
    return {
        "config.json": _qwen_config(vocab_size, ids),
        "generation_config.json": {
            "bos_token_id": ids["<|endoftext|>"],
            "pad_token_id": ids["<|endoftext|>"],
            "do_sample": True,
            "eos_token_id": [ids["<|im_end|>"], ids["<|endoftext|>"]],
            "repetition_penalty": 1.05,
            "temperature": 0.1,
            "top_p": 0.001,
            "top_k": 1,
            "transformers_version": "4.37.0",
        },
        "preprocessor_config.json": {
            "min_pixels": 3136,
            "max_pixels": 12845056,
            "patch_size": 14,
            "temporal_patch_size": 2,
            "merge_size": 2,
            "image_mean": OPENAI_CLIP_MEAN,
            "image_std": OPENAI_CLIP_STD,
            "image_processor_type": "Qwen2VLImageProcessor",
            "processor_class": "Qwen2_5_VLProcessor",
        },
        "chat_template.json": {"chat_template": QWEN2_5_VL_CHAT_TEMPLATE},
        "tokenizer_config.json": _tokenizer_config(
            ids, added, chat_template=QWEN2_5_VL_CHAT_TEMPLATE, model_max_length=131072, extra={"add_bos_token": False}
        ),
    }


def _llava_files(bpe, added: list, vocab_size: int) -> dict[str, dict]:
    """llava-onevision-qwen2-7b-ov-hf's JSON files (name -> content): image and video processor configs with
    SigLIP's 0.5 mean/std, the processor's token count, and the tokenizer files of the transformers that converted
    it (added_tokens.json, special_tokens_map.json, Qwen2's text template in tokenizer_config.json)."""
    ids = bpe.get_vocab()
    pixels = {
        "do_convert_rgb": True,
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
        "processor_class": "LlavaOnevisionProcessor",
        "resample": 3,
        "rescale_factor": 1 / 255,
        "size": {"height": _LLAVA_IMAGE_SIZE, "width": _LLAVA_IMAGE_SIZE},
    }
    return {
        "config.json": _llava_config(vocab_size, ids),
        "generation_config.json": {
            "_from_model_config": True,
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "transformers_version": "4.45.0.dev0",
        },
        "preprocessor_config.json": {
            **pixels,
            "do_pad": True,
            "image_grid_pinpoints": _pinpoints(_LLAVA_IMAGE_SIZE),
            "image_processor_type": "LlavaOnevisionImageProcessor",
        },
        "video_preprocessor_config.json": {**pixels, "video_processor_type": "LlavaOnevisionVideoProcessor"},
        "processor_config.json": {
            "num_image_tokens": (_LLAVA_IMAGE_SIZE // 14) ** 2,
            "processor_class": "LlavaOnevisionProcessor",
            "vision_feature_select_strategy": "full",
        },
        "chat_template.json": {"chat_template": LLAVA_ONEVISION_CHAT_TEMPLATE},
        "tokenizer_config.json": _tokenizer_config(
            ids,
            added,
            chat_template=QWEN2_TEXT_CHAT_TEMPLATE,
            model_max_length=32768,
            extra={"processor_class": "LlavaOnevisionProcessor"},
        ),
        "special_tokens_map.json": _special_tokens_map(added),
        "added_tokens.json": {t: ids[t] for t, _ in sorted(added)},
    }


def _write_json(path: Path, content: dict) -> None:
    path.write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n")


def _pinpoints(side: int) -> list[list[int]]:
    """The release's any-resolution grid (1..6 x 1..6 tiles of the tower's image size)."""
    return [[side * i, side * j] for i in range(1, 7) for j in range(1, 7)]


# ------------------------------------------------------------------------------------------------ configs


def _qwen_config(vocab_size: int, ids: dict) -> dict:
    """Qwen2.5-VL-7B-Instruct's config.json layout (flat text keys, rope_scaling type mrope) at tiny sizes."""
    cfg = tiny_qwen2_5_vl_config(
        vocab_size,
        ids,
        **_TEXT,
        **_VISION,
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
        window_size=112,
        tokens_per_second=2,
    )
    text, vision = cfg.text_config, cfg.vision_config
    return {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"],
        "attention_dropout": 0.0,
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
        "vision_token_id": ids["<|vision_pad|>"],
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "hidden_act": "silu",
        "hidden_size": text.hidden_size,
        "initializer_range": 0.02,
        "intermediate_size": text.intermediate_size,
        "max_position_embeddings": 128000,
        "max_window_layers": text.num_hidden_layers,
        "model_type": "qwen2_5_vl",
        "num_attention_heads": text.num_attention_heads,
        "num_hidden_layers": text.num_hidden_layers,
        "num_key_value_heads": text.num_key_value_heads,
        "rms_norm_eps": 1e-06,
        "rope_theta": text.rope_parameters["rope_theta"],
        "sliding_window": 32768,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.41.2",
        "use_cache": True,
        "use_sliding_window": False,
        "vision_config": {
            "depth": vision.depth,
            "hidden_act": "silu",
            "hidden_size": vision.hidden_size,
            "intermediate_size": vision.intermediate_size,
            "num_heads": vision.num_heads,
            "in_chans": 3,
            "out_hidden_size": vision.out_hidden_size,
            "patch_size": vision.patch_size,
            "spatial_merge_size": vision.spatial_merge_size,
            "spatial_patch_size": vision.patch_size,
            "window_size": vision.window_size,
            "fullatt_block_indexes": list(vision.fullatt_block_indexes),
            "tokens_per_second": vision.tokens_per_second,
            "temporal_patch_size": vision.temporal_patch_size,
        },
        "rope_scaling": {"type": "mrope", "mrope_section": list(text.rope_parameters["mrope_section"])},
        "vocab_size": vocab_size,
    }


def _llava_config(vocab_size: int, ids: dict) -> dict:
    """llava-onevision-qwen2-7b-ov-hf's config.json layout (nested, `*_token_index`) at tiny sizes."""
    cfg = tiny_llava_onevision_config(vocab_size, ids, **_TEXT, **_VISION, image_size=_LLAVA_IMAGE_SIZE, patch_size=14)
    text, vision = cfg.text_config, cfg.vision_config
    return {
        "architectures": ["LlavaOnevisionForConditionalGeneration"],
        "ignore_index": -100,
        "image_grid_pinpoints": _pinpoints(vision.image_size),
        "image_token_index": ids["<image>"],
        "model_type": "llava_onevision",
        "projector_hidden_act": "gelu",
        "text_config": {
            "_name_or_path": "Qwen/Qwen2-7B-Instruct",
            "architectures": ["Qwen2ForCausalLM"],
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "hidden_size": text.hidden_size,
            "intermediate_size": text.intermediate_size,
            "max_position_embeddings": 32768,
            "max_window_layers": text.num_hidden_layers,
            "model_type": "qwen2",
            "num_attention_heads": text.num_attention_heads,
            "num_hidden_layers": text.num_hidden_layers,
            "num_key_value_heads": text.num_key_value_heads,
            "rms_norm_eps": 1e-06,
            "rope_theta": text.rope_parameters["rope_theta"],
            "sliding_window": None,
            "torch_dtype": "bfloat16",
            "use_sliding_window": False,
            "vocab_size": vocab_size,
        },
        "tie_word_embeddings": False,
        "torch_dtype": "float16",
        "transformers_version": "4.45.0.dev0",
        "use_image_newline_parameter": True,
        "video_token_index": ids["<video>"],
        "vision_aspect_ratio": "anyres_max_9",
        "vision_config": {
            "hidden_size": vision.hidden_size,
            "image_size": vision.image_size,
            "intermediate_size": vision.intermediate_size,
            "model_type": "siglip_vision_model",
            "num_attention_heads": vision.num_attention_heads,
            "num_hidden_layers": vision.num_hidden_layers,
            "patch_size": vision.patch_size,
            "vision_use_head": False,
        },
        "vision_feature_layer": -1,
        "vision_feature_select_strategy": "full",
    }


# ------------------------------------------------------------------------------------------------ tokenizer files


def _added_token(content: str, special: bool) -> dict:
    return {
        "content": content,
        "lstrip": False,
        "normalized": False,
        "rstrip": False,
        "single_word": False,
        "special": special,
    }


def _tokenizer_config(ids: dict, added: list, chat_template: str, model_max_length: int, extra: dict) -> dict:
    """tokenizer_config.json as the releases have it: a Qwen2Tokenizer, no BOS, <|im_end|> ends a turn."""
    return {
        **extra,
        "add_prefix_space": False,
        "added_tokens_decoder": {str(ids[t]): _added_token(t, s) for t, s in added},
        "additional_special_tokens": [t for t, s in added if s and t != "<|endoftext|>"],
        "bos_token": None,
        "chat_template": chat_template,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "model_max_length": model_max_length,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }


def _special_tokens_map(added: list) -> dict:
    """special_tokens_map.json of the llava-hf release (written by the transformers of its conversion)."""

    def entry(t):
        return {k: v for k, v in _added_token(t, True).items() if k != "special"}

    return {
        "additional_special_tokens": [t for t, s in added if s and t != "<|endoftext|>"],
        "eos_token": entry("<|im_end|>"),
        "pad_token": entry("<|endoftext|>"),
    }


# ------------------------------------------------------------------------------------------------ weights


def _write_weights(arch: str, folder: Path, seed: int, layout: _Layout) -> tuple[int, list[str]]:
    """Random weights from the folder's own config.json, saved under the release's names in _SHARDS shards plus
    model.safetensors.index.json. -> (parameter count, file names)."""
    from safetensors.torch import save_file
    from transformers import AutoConfig

    from scorerl.envs import env_class

    config = AutoConfig.from_pretrained(folder, local_files_only=True)  # exactly what a loader will read
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = env_class(arch).model_class()(config)
    state = {
        _release_name(name, layout.rename): t.detach().to(layout.dtype).contiguous()
        for name, t in model.state_dict().items()
    }
    parameters = sum(t.numel() for t in state.values())
    shards = _split(list(state), [state[n].nbytes for n in state], _SHARDS)
    weight_map, names = {}, []
    for i, keys in enumerate(shards, start=1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file({k: state[k] for k in keys}, str(folder / name), metadata={"format": "pt"})
        weight_map.update({k: name for k in keys})
        names.append(name)
    total = sum(t.nbytes for t in state.values())
    _write_json(
        folder / "model.safetensors.index.json",
        {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))},
    )
    return parameters, [*names, "model.safetensors.index.json"]


def _release_name(name: str, rename: list) -> str:
    """transformers' parameter name -> the release's (its checkpoint conversion mapping, run backwards)."""
    for ours, theirs in rename:
        if name.startswith(ours):
            return theirs + name[len(ours) :]
    raise EnvError(
        f"weight {name!r} has no name in the release's layout; this transformers version lays the model "
        "out differently from the one scorerl env tiny knows"
    )


def _split(keys: list[str], sizes: list[int], n: int) -> list[list[str]]:
    """Consecutive keys in n shards of about equal bytes (as save_pretrained's max_shard_size does, in order)."""
    shards: list[list[str]] = [[] for _ in range(n)]
    total, done = sum(sizes), 0
    for key, size in zip(keys, sizes):
        shards[min(n - 1, done * n // max(total, 1))].append(key)
        done += size
    return [s for s in shards if s]
