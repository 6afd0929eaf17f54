"""Generate with a token compressor inside a user's own transformers code (Qwen2.5-VL, LLaVA-OneVision).

The one-line form patches the model the user already has (scorerl/integrations/patch.py):

    import scorerl
    scorerl.patch(model, "runs/quickstart/policy", ratio=0.25)   # a policy folder, a ScoreCompressor or a baseline
    out = model.generate(**processor(text=texts, videos=videos, return_tensors="pt"), max_new_tokens=64)
    scorerl.unpatch(model)

The functional form, on the same code (`generate_compressed`):

    from scorerl.integrations.hf_generate import compressed_generate
    new_ids = compressed_generate(model, inputs, lambda v, grid: compressor.keep_mask(v, 0.25, grid),
                                  max_new_tokens=64)            # any other `generate` option passes through

Both run the model's own `generate` on the compressed prefill of scorerl/integrations/prefill.py (kept tokens at
their original positions, the kept prompt ids visible to logits processors), with every caller option and the
model's generation_config.json as they are: at ratio 1 the tokens equal the unpatched `generate`'s.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping

import torch

from scorerl.integrations.library_prefill import compress_library_inputs, has_library
from scorerl.integrations.prefill import (  # noqa: F401
    ARCHS,
    OWN_KEYS,
    VISUAL_KEYS,
    CompressedInputs,
    Select,
    compress_inputs,
    has_visuals,
    model_arch,
)


def compressed_generate(model, inputs: Mapping, select: Select | None = None, **generate_kwargs):
    """`model.generate` on the visual tokens `select` keeps, with every caller option passed through.

    model: a Qwen2_5_VLForConditionalGeneration or LlavaOnevisionForConditionalGeneration.
    inputs: what the model's processor returns for a batch of prompts with videos and/or images (input_ids with
      every visual expanded into its placeholder tokens, attention_mask, pixel_values_videos / pixel_values;
      Qwen2.5-VL also video_grid_thw / image_grid_thw and optionally second_per_grid_ts and mm_token_type_ids;
      LLaVA-OneVision images also image_sizes). LLaVA-OneVision also accepts pixel_values_videos as a list of
      [F_v, C, H, W] tensors: videos of different lengths, which its processor cannot stack into one tensor.
    select: (V [T, N, D], (rows, cols)) -> bool [T, N], the tokens of ONE video (or Qwen2.5-VL image) to keep,
      e.g. `lambda v, grid: compressor.keep_mask(v, 0.25, grid)` for a ScoreCompressor. None (and unused) for
      inputs from a video library (integrations/library.py, library_inputs): their tokens were chosen once.

    Returns a LongTensor [B * num_return_sequences, n] holding ONLY the new tokens (rows that stopped early padded
    with the pad token); a GenerateOutput whose `sequences` hold only the new tokens when the caller asks for
    `return_dict_in_generate=True`.
    """
    clash = sorted(set(generate_kwargs) & set(OWN_KEYS))
    if clash:
        raise TypeError(f"{', '.join(clash)}: not a generate option here; the prompt and pixels go in `inputs`")
    model_arch(model)  # a clear error for any other model, before its generate is looked up
    out, _ = generate_compressed(model.generate, model, inputs, select, generate_kwargs)
    width = inputs["input_ids"].shape[1]
    if isinstance(out, torch.Tensor):
        return out[:, width:]
    out.sequences = out.sequences[:, width:]
    return out


def generate_compressed(generate: Callable, model, inputs: Mapping, select: Select | None, generate_kwargs: dict):
    """(what `generate` returns, the CompressedInputs it ran on): the model's own `generate` (the unbound
    original under a patch) on the compressed prefill of `inputs`. Its sequences start with the caller's own
    input_ids [B, L] (repeated per returned sequence), then the new tokens, as `generate` on input_ids returns
    them, so code that cuts the prompt off by `input_ids.shape[1]` works unchanged."""
    if has_library(inputs):  # kept tokens stored once: no vision tower, no policy
        compressed = compress_library_inputs(model, inputs)
    elif select is None:
        raise ValueError("select is needed for inputs with pixels (only library inputs come chosen already)")
    else:
        compressed = compress_inputs(model, inputs, select)
    out = generate(**compressed.generate_inputs(), **generate_kwargs)
    return _with_prompt(out, torch.as_tensor(inputs["input_ids"]), compressed.input_ids.shape[1]), compressed


def _with_prompt(out, input_ids: torch.Tensor, kept_width: int):
    """generate's output with its kept-ids prompt [.., :kept_width] replaced by the caller's input_ids."""
    sequences = out if isinstance(out, torch.Tensor) else out.sequences  # [B * n, kept_width + new]
    repeats = sequences.shape[0] // input_ids.shape[0]  # num_return_sequences: rows come in groups per prompt
    prompt = input_ids.to(sequences.device).repeat_interleave(repeats, dim=0)
    full = torch.cat([prompt, sequences[:, kept_width:]], dim=1)
    if isinstance(out, torch.Tensor):
        return full
    out.sequences = full
    return out


def processor_like_inputs(env, videos: list, prompts: list[str], seconds_per_frame: list | None = None) -> dict:
    """The inputs the model's processor would build for `prompts[i]` about `videos[i]` (uint8 [F, H, W, 3]),
    made with a scorerl environment (its chat text, pixel preprocessing and tokenizer), left-padded.

    Placeholders are expanded as the transformers processors do: Qwen2.5-VL `<|video_pad|>` x (t*h*w / merge^2)
    between `<|vision_start|>` and `<|vision_end|>` (processing_qwen2_5_vl.py, replace_video_token);
    LLaVA-OneVision `<video>` x (F * ceil(p/2)^2 + 1), p = image_size // patch_size, the +1 being the newline
    (processing_llava_onevision.py). Qwen2.5-VL also gets video_grid_thw, mm_token_type_ids (0 text, 1 image,
    2 video, as its processor returns them) and second_per_grid_ts: each video's seconds_per_frame x
    temporal_patch_size when given (None entries, or none given: the env's `second_per_grid_t`, if it sets one).
    LLaVA-OneVision's pixel_values_videos is [V, F, 3, S, S] when every video has F frames, else a list of
    [F_v, 3, S, S] (its processor cannot stack those; the model's own forward cannot take them either).
    """
    if len(videos) != len(prompts):
        raise ValueError(f"{len(videos)} videos but {len(prompts)} prompts: one prompt per video")
    tokenizer = env.tokenizer
    if tokenizer.pad_token is None:
        raise ValueError("the tokenizer has no pad token: cannot left-pad a batch")
    pixels = [env.preprocess(v) for v in videos]
    texts = [_expanded_text(env, prompt, _placeholder_count(env, p)) for prompt, p in zip(prompts, pixels)]
    text = tokenizer(texts, padding="longest", padding_side="left", return_tensors="pt")
    inputs = {"input_ids": text["input_ids"].to(env.device), "attention_mask": text["attention_mask"].to(env.device)}
    if env.arch == "qwen2_5_vl":
        inputs.update(_qwen_pixel_inputs(env, pixels, inputs["input_ids"], seconds_per_frame))
    else:
        inputs["pixel_values_videos"] = _llava_pixel_inputs(pixels)
    return inputs


# --------------------------------------------------------------------------------------------- processor-like


def _placeholder_count(env, pixels: dict) -> int:
    """Placeholder tokens the model's processor expands one video into."""
    config = env.model.config.vision_config
    if env.arch == "qwen2_5_vl":
        return int(pixels["video_grid_thw"][0].prod()) // config.spatial_merge_size**2
    frames = pixels["pixel_values_videos"].shape[1]  # [1, F, 3, S, S]
    return frames * math.ceil((config.image_size // config.patch_size) / 2) ** 2 + 1


def _expanded_text(env, prompt: str, count: int) -> str:
    """The chat text of one prompt with its video placeholder repeated `count` times (the env's template)."""
    before, after = env.text_around_video(prompt)
    token = env.tokenizer.convert_ids_to_tokens(env.video_token_id)
    return before + token * count + after


def _qwen_pixel_inputs(env, pixels: list[dict], ids: torch.Tensor, seconds_per_frame: list | None) -> dict:
    """pixel_values_videos [sum t*h*w, C*tp*p*p], video_grid_thw [V, 3], mm_token_type_ids [B, L] (and
    second_per_grid_ts [V] when the env sets one), as Qwen2.5-VL's processor returns them."""
    config = env.model.config
    out = {
        "pixel_values_videos": torch.cat([p["pixel_values_videos"] for p in pixels]),
        "video_grid_thw": torch.cat([p["video_grid_thw"] for p in pixels]),
        "mm_token_type_ids": (ids == config.image_token_id).long() + 2 * (ids == config.video_token_id).long(),
    }
    default = env.settings.get("second_per_grid_t")
    tp = config.vision_config.temporal_patch_size
    seconds = [default if spf is None else spf * tp for spf in (seconds_per_frame or [None] * len(pixels))]
    if any(s is not None for s in seconds):  # the processor's default for a video without timing: 1 s per unit
        out["second_per_grid_ts"] = torch.tensor([1.0 if s is None else float(s) for s in seconds])
    return out


def _llava_pixel_inputs(pixels: list[dict]):
    """[V, F, 3, S, S] when every video has F frames, else a list of [F_v, 3, S, S]."""
    videos = [p["pixel_values_videos"][0] for p in pixels]  # [F_v, 3, S, S]
    if len({v.shape[0] for v in videos}) == 1:
        return torch.stack(videos)
    return videos
