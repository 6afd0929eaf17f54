"""Generate with a token compressor inside a user's own transformers code (Qwen2.5-VL, LLaVA-OneVision).

    from scorerl import ScoreCompressor
    from scorerl.integrations.hf_generate import compressed_generate

    inputs = processor(text=texts, videos=videos, padding=True, padding_side="left", return_tensors="pt")
    compressor = ScoreCompressor.from_pretrained("runs/quickstart")
    new_ids = compressed_generate(model, inputs, lambda v, grid: compressor.keep_mask(v, 0.25, grid),
                                  max_new_tokens=64)            # any other `generate` option passes through
    answers = processor.batch_decode(new_ids, skip_special_tokens=True)

What happens (docs/method.md, "where it sits": selects, never merges; kept tokens keep their original positions):
1. the model's own video encoder runs once (`model.model.get_video_features`); LLaVA-OneVision appends one
   newline token per video, which is always kept;
2. `select(V [T, N, D], (rows, cols)) -> bool [T, N]` picks the visual tokens of each video to keep;
3. the projected tokens are scattered into `inputs_embeds` at the video placeholders, as the model's forward does;
4. the position ids of the FULL sequence are computed as the model's own `generate` computes them (Qwen2.5-VL:
   3-D M-RoPE ids from `get_rope_index`; LLaVA-OneVision: the cumulative attention mask);
5. the dropped visual tokens leave embeddings, positions and mask together, the rows are re-left-padded, and the
   model's own `generate(inputs_embeds=..., attention_mask=..., position_ids=...)` runs with the caller's options.

Decoding after a pruned prefill. transformers has two ways to continue Qwen2.5-VL's M-RoPE ids while decoding:
`generate` extends the explicit `position_ids` it prefilled with (`_update_model_kwargs_for_generation`: last
column + 1 on every axis), while a forward with a cache and NO position ids adds `rope_deltas` (max position + 1 -
prompt length, computed on the full sequence) to the number of cached tokens. After pruning the second is wrong:
the cache holds fewer tokens than the full prompt, so every new token would land `dropped` positions too early.
We always pass explicit position ids, so only the first applies and `rope_deltas` is never read: the k-th new
token of a row gets `p_last + k` on all three axes, where `p_last` is the original position of the prompt's last
token. That token is text (never dropped), so a new token gets exactly the position it gets without pruning, and
the position `get_rope_index` gives a token appended to the full sequence. When the prompt's last token holds the
row's largest position (chat prompts end with text after the video; `CompressedInputs.ends_at_max` says per
row), this is max(prefill position) + 1, + 2, ... When it does not (transformers 5.x starts text after a video at
the video's spatial extent, so widely spaced frames, e.g. second_per_grid_ts 20, push temporal ids past a short
text tail), new tokens still go on at p_last + k, exactly as the model's own generate does without pruning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping

import torch

Select = Callable[[torch.Tensor, tuple[int, int]], torch.Tensor]  # (V [T, N, D], (rows, cols)) -> bool [T, N]
ARCHS = ("qwen2_5_vl", "llava_onevision")
# What compressed_generate itself hands to generate, or reads from `inputs`: never a generate option here.
_OWN_KWARGS = ("input_ids", "inputs_embeds", "attention_mask", "position_ids", "pixel_values_videos",
               "video_grid_thw", "second_per_grid_ts", "mm_token_type_ids", "pixel_values", "image_grid_thw")


@dataclass
class CompressedInputs:
    """The prefill `generate` receives after compression; rows right-aligned (left padding)."""

    inputs_embeds: torch.Tensor  # [B, L', D]
    attention_mask: torch.Tensor  # [B, L'] long, 0 = padding
    position_ids: torch.Tensor  # [3, B, L'] (Qwen2.5-VL M-RoPE) or [B, L'] (LLaVA-OneVision)
    visual_kept: list[int]  # per row: visual tokens left (LLaVA-OneVision's newline counts)
    visual_total: list[int]  # per row: visual tokens before compression

    def generate_inputs(self) -> dict[str, torch.Tensor]:
        """The keyword arguments of `model.generate` (and of a plain forward) for this prefill."""
        return {"inputs_embeds": self.inputs_embeds, "attention_mask": self.attention_mask,
                "position_ids": self.position_ids}

    @property
    def ends_at_max(self) -> list[bool]:
        """Per row: does the last prompt token hold the row's largest position (so decoding goes on at max+1)?"""
        pos = self.position_ids if self.position_ids.ndim == 3 else self.position_ids[None]  # [P, B, L']
        real = self.attention_mask.bool()[None].expand_as(pos)
        row_max = pos.masked_fill(~real, torch.iinfo(pos.dtype).min).amax(dim=(0, 2))  # [B]
        return (pos[:, :, -1].amax(0) == row_max).tolist()


@dataclass
class _Video:
    """One video's projected tokens in placeholder order: T units of N = rows x cols tokens, then `suffix` more."""

    tokens: torch.Tensor  # [T * N + suffix, D]
    T: int
    grid: tuple[int, int]  # (rows, cols)
    suffix: int  # LLaVA-OneVision's newline: 1, always kept

    @property
    def features(self) -> torch.Tensor:
        """V [T, N, D], what `select` reads."""
        return self.tokens[:len(self.tokens) - self.suffix].reshape(self.T, self.grid[0] * self.grid[1], -1)


# --------------------------------------------------------------------------------------------- public entry points


def compressed_generate(model, inputs: Mapping, select: Select, **generate_kwargs):
    """`model.generate` on the video tokens `select` keeps, with every caller option passed through.

    model: a Qwen2_5_VLForConditionalGeneration or LlavaOnevisionForConditionalGeneration.
    inputs: what the model's processor returns for a batch of prompts with one or more videos each (input_ids
      with every video expanded into its placeholder tokens, attention_mask, pixel_values_videos; Qwen2.5-VL
      also video_grid_thw and optionally second_per_grid_ts and mm_token_type_ids). LLaVA-OneVision also
      accepts pixel_values_videos as a list of [F_v, C, H, W] tensors: videos of different lengths, which its
      processor cannot stack into one tensor. Images are not supported.
    select: (V [T, N, D], (rows, cols)) -> bool [T, N], the tokens of ONE video to keep, e.g.
      `lambda v, grid: compressor.keep_mask(v, 0.25, grid)` for a ScoreCompressor.

    Returns what `generate` returns on `inputs_embeds`: by default a LongTensor [B * num_return_sequences, n]
    holding ONLY the new tokens (no prompt, unlike generate on input_ids), rows that stopped early padded with
    the pad token; a GenerateOutput when the caller asks for `return_dict_in_generate=True`.
    """
    clash = sorted(set(generate_kwargs) & set(_OWN_KWARGS))
    if clash:
        raise TypeError(f"{', '.join(clash)}: not a generate option here; the prompt and videos go in `inputs`")
    compressed = compress_inputs(model, inputs, select)
    return model.generate(**compressed.generate_inputs(), **generate_kwargs)


@torch.no_grad()
def compress_inputs(model, inputs: Mapping, select: Select) -> CompressedInputs:
    """The pruned, re-left-padded prefill of `compressed_generate` (see the module doc for the steps)."""
    arch = model_arch(model)
    ids, mask = _text_inputs(model, inputs)  # [B, L], [B, L]
    videos = _qwen_videos(model, inputs) if arch == "qwen2_5_vl" else _llava_videos(model, inputs)
    placeholders = ids == model.config.video_token_id  # [B, L]
    embeds = _scatter_tokens(model, ids, placeholders, videos)  # [B, L, D]
    positions = _full_positions(model, arch, ids, mask, inputs)  # [P, B, L]
    flags = torch.cat([_keep_flags(select, v) for v in videos]) if videos else placeholders.new_zeros(0)
    keep = _keep_columns(placeholders, mask, flags.to(ids.device))  # [B, L]
    embeds, new_mask, positions = _drop_and_left_pad(embeds, positions, keep)
    return CompressedInputs(
        inputs_embeds=embeds, attention_mask=new_mask,
        position_ids=positions if arch == "qwen2_5_vl" else positions[0],  # the LM takes (3, B, L) / (B, L)
        visual_kept=(placeholders & keep).sum(1).tolist(), visual_total=placeholders.sum(1).tolist())


def processor_like_inputs(env, videos: list, prompts: list[str]) -> dict:
    """The inputs the model's processor would build for `prompts[i]` about `videos[i]` (uint8 [F, H, W, 3]),
    made with a scorerl environment (its chat text, pixel preprocessing and tokenizer), left-padded.

    Placeholders are expanded as the transformers processors do: Qwen2.5-VL `<|video_pad|>` x (t*h*w / merge^2)
    between `<|vision_start|>` and `<|vision_end|>` (processing_qwen2_5_vl.py, replace_video_token);
    LLaVA-OneVision `<video>` x (F * ceil(p/2)^2 + 1), p = image_size // patch_size, the +1 being the newline
    (processing_llava_onevision.py). Qwen2.5-VL also gets video_grid_thw, mm_token_type_ids (0 text, 1 image,
    2 video, as its processor returns them) and second_per_grid_ts when the env sets `second_per_grid_t`.
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
        inputs.update(_qwen_pixel_inputs(env, pixels, inputs["input_ids"]))
    else:
        inputs["pixel_values_videos"] = _llava_pixel_inputs(pixels)
    return inputs


def model_arch(model) -> str:
    """The architecture name of a transformers model this module supports, or ValueError naming it."""
    arch = getattr(getattr(model, "config", None), "model_type", None)
    if arch not in ARCHS:
        raise ValueError(f"compressed generation supports {' and '.join(ARCHS)} models, not {arch!r}")
    return arch


# --------------------------------------------------------------------------------------------- inputs


def _text_inputs(model, inputs: Mapping) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids [B, L], attention_mask [B, L]) on the model's device; images refused by name."""
    if inputs.get("pixel_values") is not None or inputs.get("image_grid_thw") is not None:
        raise ValueError("compressed generation handles videos; these inputs hold images (pixel_values)")
    if inputs.get("input_ids") is None or inputs.get("pixel_values_videos") is None:
        raise ValueError("inputs need input_ids and pixel_values_videos (what the model's processor returns)")
    device = model.get_input_embeddings().weight.device
    ids = torch.as_tensor(inputs["input_ids"]).to(device)
    if ids.ndim != 2:
        raise ValueError(f"input_ids must be [B, L], got {list(ids.shape)}")
    if (ids == model.config.image_token_id).any():
        raise ValueError("input_ids hold image placeholder tokens; compressed generation handles videos only")
    mask = inputs.get("attention_mask")
    mask = torch.ones_like(ids) if mask is None else torch.as_tensor(mask).to(device)
    return ids, mask


def _split_rows(pooled, sizes: list[int]) -> list[torch.Tensor]:
    """Per-video token blocks: transformers returns a list, or one [sum n_v, D] tensor in some versions."""
    if isinstance(pooled, torch.Tensor):
        return list(pooled.split(sizes))
    return list(pooled)


def _qwen_videos(model, inputs: Mapping) -> list[_Video]:
    """Qwen2.5-VL: ONE encoder call for every video of the batch (its attention never crosses a video)."""
    grid_thw = inputs.get("video_grid_thw")
    if grid_thw is None:
        raise ValueError("Qwen2.5-VL inputs need video_grid_thw [V, 3] (what its processor returns)")
    device = model.get_input_embeddings().weight.device
    grid_thw = torch.as_tensor(grid_thw).to(device)  # [V, 3] in patches
    pixels = torch.as_tensor(inputs["pixel_values_videos"]).to(device)  # [sum t*h*w, C * tp * p * p]
    pooled = model.model.get_video_features(pixel_values_videos=pixels, video_grid_thw=grid_thw).pooler_output
    m = model.config.vision_config.spatial_merge_size
    sizes = [t * h * w // (m * m) for t, h, w in grid_thw.tolist()]
    return [_Video(tokens=tokens, T=t, grid=(h // m, w // m), suffix=0)  # tokens [t * (h/m) * (w/m), D]
            for tokens, (t, h, w) in zip(_split_rows(pooled, sizes), grid_thw.tolist())]


def _llava_videos(model, inputs: Mapping) -> list[_Video]:
    """LLaVA-OneVision: one encoder call for a [V, F, C, H, W] tensor, one per video for a list of [F_v, ...]
    (the tower takes one frame count per call); each video's tokens end with the model's newline token."""
    pixels = inputs["pixel_values_videos"]
    tower = model.model.vision_tower
    param = next(tower.parameters())
    if isinstance(pixels, torch.Tensor):
        if pixels.ndim != 5:
            raise ValueError(f"pixel_values_videos must be [V, F, C, H, W], got {list(pixels.shape)}")
        pooled = model.model.get_video_features(pixel_values_videos=pixels.to(param.device, param.dtype))
        blocks, frames = list(pooled.pooler_output), [pixels.shape[1]] * pixels.shape[0]  # [F * N + 1, D] each
    else:
        blocks, frames = [], []
        for video in pixels:  # [F_v, C, H, W]
            out = model.model.get_video_features(pixel_values_videos=video[None].to(param.device, param.dtype))
            blocks.append(out.pooler_output[0])
            frames.append(video.shape[0])
    vision = model.config.vision_config
    side = math.ceil(vision.image_size // vision.patch_size / 2)  # tokens per side after the 2x pooling
    for block, f in zip(blocks, frames):
        if block.shape[0] != f * side * side + 1:
            raise ValueError(f"a {f}-frame video gave {block.shape[0]} tokens, expected {f * side * side + 1}")
    return [_Video(tokens=block, T=f, grid=(side, side), suffix=1) for block, f in zip(blocks, frames)]


# --------------------------------------------------------------------------------------------- layout


def _keep_flags(select: Select, video: _Video) -> torch.Tensor:
    """bool [T * N + suffix]: which of one video's placeholder tokens stay (the suffix always does)."""
    V = video.features  # [T, N, D]
    keep = torch.as_tensor(select(V, video.grid))
    if keep.dtype != torch.bool:  # probabilities or scores passed by mistake would silently keep everything
        raise TypeError(f"select must return a bool mask [T, N], got dtype {keep.dtype}")
    if tuple(keep.shape) != tuple(V.shape[:2]):
        raise ValueError(f"select returned a mask of shape {list(keep.shape)} for tokens [T, N] = {list(V.shape[:2])}")
    flags = torch.ones(len(video.tokens), dtype=torch.bool, device=keep.device)
    flags[:keep.numel()] = keep.reshape(-1)
    return flags


def _scatter_tokens(model, ids: torch.Tensor, placeholders: torch.Tensor, videos: list[_Video]) -> torch.Tensor:
    """inputs_embeds [B, L, D]: text embeddings with the videos' tokens at their placeholders, in row-major order
    (the same masked_scatter the model's forward does)."""
    embeds = model.get_input_embeddings()(ids)  # [B, L, D]
    if not videos:
        return embeds
    tokens = torch.cat([v.tokens for v in videos]).to(embeds.device, embeds.dtype)  # [sum n_v, D]
    if int(placeholders.sum()) != tokens.shape[0]:
        raise ValueError(f"input_ids hold {int(placeholders.sum())} video placeholders but the videos give "
                         f"{tokens.shape[0]} tokens: were the prompts expanded by this model's processor?")
    return embeds.masked_scatter(placeholders[..., None], tokens)


def _full_positions(model, arch: str, ids: torch.Tensor, mask: torch.Tensor, inputs: Mapping) -> torch.Tensor:
    """Position ids [P, B, L] of the unpruned sequences, as the model's generate computes them."""
    if arch == "llava_onevision":
        positions = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)  # [B, L], padding at 0
        return positions[None]
    mm_types = inputs.get("mm_token_type_ids")
    mm_types = (ids == model.config.video_token_id).int() * 2 if mm_types is None else torch.as_tensor(mm_types)
    seconds = inputs.get("second_per_grid_ts")
    positions, _ = model.model.get_rope_index(
        ids, mm_token_type_ids=mm_types.to(ids.device), video_grid_thw=torch.as_tensor(inputs["video_grid_thw"]),
        second_per_grid_ts=None if seconds is None else torch.as_tensor(seconds), attention_mask=mask)
    return positions  # [3, B, L]


def _keep_columns(placeholders: torch.Tensor, mask: torch.Tensor, flags: torch.Tensor) -> torch.Tensor:
    """bool [B, L]: real tokens minus the dropped placeholders (flags [sum n_v] in row-major placeholder order)."""
    dropped = torch.zeros_like(placeholders)
    dropped[placeholders] = ~flags
    return mask.bool() & ~dropped


def _drop_and_left_pad(embeds: torch.Tensor, positions: torch.Tensor, keep: torch.Tensor):
    """Keep columns `keep` [B, L] of embeds [B, L, D] and positions [P, B, L], right-aligned into width L' =
    max kept: (embeds [B, L', D], attention_mask [B, L'], positions [P, B, L']). Padding gets position 0, as
    transformers leaves it; no real token attends to it."""
    B, _, D = embeds.shape
    lengths = keep.sum(1).tolist()
    width = max(lengths)
    out_embeds = embeds.new_zeros(B, width, D)
    out_mask = torch.zeros(B, width, dtype=torch.long, device=embeds.device)
    out_positions = positions.new_zeros(positions.shape[0], B, width)
    for b, n in enumerate(lengths):
        out_embeds[b, width - n:] = embeds[b, keep[b]]
        out_mask[b, width - n:] = 1
        out_positions[:, b, width - n:] = positions[:, b, keep[b]]
    return out_embeds, out_mask, out_positions


# --------------------------------------------------------------------------------------------- processor-like


def _placeholder_count(env, pixels: dict) -> int:
    """Placeholder tokens the model's processor expands one video into."""
    config = env.model.config.vision_config
    if env.arch == "qwen2_5_vl":
        return int(pixels["video_grid_thw"][0].prod()) // config.spatial_merge_size ** 2
    frames = pixels["pixel_values_videos"].shape[1]  # [1, F, 3, S, S]
    return frames * math.ceil((config.image_size // config.patch_size) / 2) ** 2 + 1


def _expanded_text(env, prompt: str, count: int) -> str:
    """The chat text of one prompt with its video placeholder repeated `count` times (the env's template)."""
    before, after = env.text_around_video(prompt)
    token = env.tokenizer.convert_ids_to_tokens(env.video_token_id)
    return before + token * count + after


def _qwen_pixel_inputs(env, pixels: list[dict], ids: torch.Tensor) -> dict:
    """pixel_values_videos [sum t*h*w, C*tp*p*p], video_grid_thw [V, 3], mm_token_type_ids [B, L] (and
    second_per_grid_ts [V] when the env sets one), as Qwen2.5-VL's processor returns them."""
    config = env.model.config
    out = {"pixel_values_videos": torch.cat([p["pixel_values_videos"] for p in pixels]),
           "video_grid_thw": torch.cat([p["video_grid_thw"] for p in pixels]),
           "mm_token_type_ids": (ids == config.image_token_id).long() + 2 * (ids == config.video_token_id).long()}
    seconds = env.settings.get("second_per_grid_t")
    if seconds is not None:
        out["second_per_grid_ts"] = torch.full((len(pixels),), float(seconds))
    return out


def _llava_pixel_inputs(pixels: list[dict]):
    """[V, F, 3, S, S] when every video has F frames, else a list of [F_v, 3, S, S]."""
    videos = [p["pixel_values_videos"][0] for p in pixels]  # [F_v, 3, S, S]
    if len({v.shape[0] for v in videos}) == 1:
        return torch.stack(videos)
    return videos
