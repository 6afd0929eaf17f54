"""The compressed prefill of a transformers Qwen2.5-VL / LLaVA-OneVision batch: what `scorerl.patch`ed generate and
`compressed_generate` hand to the model's own `generate`.

Steps (docs/method.md, "where it sits": selects, never merges; kept tokens keep their original positions):
1. the model's own encoders run once on the batch's videos and images (`get_video_features`,
   `get_image_features`); LLaVA-OneVision appends one newline token per video, which is always kept;
2. `select(V [T, N, D], (rows, cols)) -> bool [T, N]` picks the visual tokens of each video (and each Qwen2.5-VL
   image: one temporal unit) to keep; LLaVA-OneVision images (anyres: a base view, tiled crops and newline
   tokens, not a T x rows x cols grid) pass whole;
3. the projected tokens are scattered into `inputs_embeds` at their placeholders, as the model's forward does;
4. the position ids of the FULL sequence are computed as the model's own `generate` computes them (Qwen2.5-VL:
   3-D M-RoPE ids from `get_rope_index`; LLaVA-OneVision: the cumulative attention mask);
5. the dropped visual tokens leave ids, embeddings, positions and mask together and the rows are re-left-padded.

The kept ids go to `generate` beside the embeddings so that logits processors see the prompt (repetition
penalty, no-repeat n-grams): the only ids missing are repeats of a placeholder id that stays, so a penalty sees
the same SET of prompt ids as without compression. Padding ids are chosen to keep that so: a row the caller
padded gets the pad id, any other row repeats its own first token (`_pad_ids`).

Decoding after a pruned prefill. transformers has two ways to continue Qwen2.5-VL's M-RoPE ids while decoding:
`generate` extends the explicit `position_ids` it prefilled with (`_update_model_kwargs_for_generation`: last
column + 1 on every axis), while a forward with a cache and NO position ids adds `rope_deltas` (max position + 1 -
prompt length, computed on the full sequence) to the number of cached tokens. After pruning the second is wrong:
the cache holds fewer tokens than the full prompt, so every new token would land `dropped` positions too early.
We always pass explicit position ids, so only the first applies: the k-th new token of a row gets `p_last + k` on
all three axes, `p_last` the original position of the prompt's last token (text, never dropped) - exactly the
position it gets without pruning (`CompressedInputs.ends_at_max` says per row whether that is max + k).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping

import torch

Select = Callable[[torch.Tensor, tuple[int, int]], torch.Tensor]  # (V [T, N, D], (rows, cols)) -> bool [T, N]
ARCHS = ("qwen2_5_vl", "llava_onevision")
# Library videos (integrations/library.py): kept tokens stored once, given instead of pixel_values_videos.
LIBRARY_KEY = "library_videos"
# The inputs the prefill reads (and generate must not get again): the prompt and its pixels.
VISUAL_KEYS = (
    "pixel_values_videos",
    "video_grid_thw",
    "second_per_grid_ts",
    "mm_token_type_ids",
    "pixel_values",
    "image_grid_thw",
    "image_sizes",
    "batch_num_images",
    "image_sizes_videos",
    LIBRARY_KEY,
)
OWN_KEYS = ("input_ids", "inputs_embeds", "attention_mask", "position_ids") + VISUAL_KEYS


@dataclass
class CompressedInputs:
    """The prefill `generate` receives after compression; rows right-aligned (left padding)."""

    input_ids: torch.Tensor  # [B, L'] the kept ids (what logits processors see as the prompt)
    inputs_embeds: torch.Tensor  # [B, L', D]
    attention_mask: torch.Tensor  # [B, L'] long, 0 = padding
    position_ids: torch.Tensor  # [3, B, L'] (Qwen2.5-VL M-RoPE) or [B, L'] (LLaVA-OneVision)
    visual_kept: list[int]  # per row: visual tokens left (LLaVA-OneVision's newline and whole images count)
    visual_total: list[int]  # per row: visual tokens before compression

    def generate_inputs(self) -> dict[str, torch.Tensor]:
        """The keyword arguments of `model.generate` for this prefill."""
        return {
            "input_ids": self.input_ids,
            "inputs_embeds": self.inputs_embeds,
            "attention_mask": self.attention_mask,
            "position_ids": self.position_ids,
        }

    def forward_inputs(self) -> dict[str, torch.Tensor]:
        """The keyword arguments of a plain forward (`model(**...)`) on this prefill: embeddings, no ids."""
        return {
            "inputs_embeds": self.inputs_embeds,
            "attention_mask": self.attention_mask,
            "position_ids": self.position_ids,
        }

    @property
    def ends_at_max(self) -> list[bool]:
        """Per row: does the last prompt token hold the row's largest position (so decoding goes on at max+1)?"""
        pos = self.position_ids if self.position_ids.ndim == 3 else self.position_ids[None]  # [P, B, L']
        real = self.attention_mask.bool()[None].expand_as(pos)
        row_max = pos.masked_fill(~real, torch.iinfo(pos.dtype).min).amax(dim=(0, 2))  # [B]
        return (pos[:, :, -1].amax(0) == row_max).tolist()


@dataclass
class _Visual:
    """One video's or image's projected tokens in placeholder order: T units of N = rows x cols tokens, then
    `suffix` more (LLaVA-OneVision's video newline), always kept. compress False: kept whole."""

    tokens: torch.Tensor  # [T * N + suffix, D]
    T: int
    grid: tuple[int, int]  # (rows, cols)
    suffix: int = 0
    compress: bool = True

    @property
    def features(self) -> torch.Tensor:
        """V [T, N, D], what `select` reads."""
        return self.tokens[: len(self.tokens) - self.suffix].reshape(self.T, self.grid[0] * self.grid[1], -1)


def model_arch(model) -> str:
    """The architecture name of a transformers model this module supports, or ValueError naming it."""
    arch = getattr(getattr(model, "config", None), "model_type", None)
    if arch not in ARCHS:
        raise ValueError(f"compressed generation supports {' and '.join(ARCHS)} models, not {arch!r}")
    return arch


def has_visuals(inputs: Mapping) -> bool:
    return (
        inputs.get("pixel_values_videos") is not None
        or inputs.get("pixel_values") is not None
        or inputs.get(LIBRARY_KEY) is not None
    )


@torch.no_grad()
def compress_inputs(model, inputs: Mapping, select: Select) -> CompressedInputs:
    """The pruned, re-left-padded prefill of `inputs` (what the model's processor returns; see the module doc)."""
    arch = model_arch(model)
    ids, mask = _text_inputs(model, inputs)  # [B, L], [B, L]
    embeds = model.get_input_embeddings()(ids)  # [B, L, D]
    keep = mask.bool().clone()  # [B, L] real tokens; dropped placeholders cleared below
    visual = torch.zeros_like(keep)
    for token_id, visuals in _visuals(model, arch, inputs):
        placeholders = ids == token_id  # [B, L]
        embeds = _scatter(embeds, placeholders, visuals)
        flags = torch.cat([_keep_flags(select, v) for v in visuals]).to(ids.device)  # [sum n_v]
        keep[placeholders] &= flags
        visual |= placeholders
    positions = _full_positions(model, arch, ids, mask, inputs)  # [P, B, L]
    out_ids, embeds, new_mask, positions = _drop_and_left_pad(ids, embeds, positions, keep, _pad_ids(ids, mask))
    return CompressedInputs(
        input_ids=out_ids,
        inputs_embeds=embeds,
        attention_mask=new_mask,
        position_ids=positions if arch == "qwen2_5_vl" else positions[0],  # the LM takes (3, B, L) / (B, L)
        visual_kept=(visual & keep).sum(1).tolist(),
        visual_total=visual.sum(1).tolist(),
    )


# --------------------------------------------------------------------------------------------- inputs


def _text_inputs(model, inputs: Mapping) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids [B, L], attention_mask [B, L]) on the model's device."""
    if inputs.get("input_ids") is None or not has_visuals(inputs):
        raise ValueError(
            "inputs need input_ids and pixel_values_videos or pixel_values (what the model's processor returns)"
        )
    device = model.get_input_embeddings().weight.device
    ids = torch.as_tensor(inputs["input_ids"]).to(device)
    if ids.ndim != 2:
        raise ValueError(f"input_ids must be [B, L], got {list(ids.shape)}")
    mask = inputs.get("attention_mask")
    mask = torch.ones_like(ids) if mask is None else torch.as_tensor(mask).to(device)
    return ids, mask


def _visuals(model, arch: str, inputs: Mapping) -> list[tuple[int, list[_Visual]]]:
    """(placeholder token id, its visuals in order) for the batch's videos and images."""
    out = []
    if inputs.get("pixel_values_videos") is not None:
        videos = _qwen_videos(model, inputs) if arch == "qwen2_5_vl" else _llava_videos(model, inputs)
        out.append((model.config.video_token_id, videos))
    if inputs.get("pixel_values") is not None:
        images = _qwen_images(model, inputs) if arch == "qwen2_5_vl" else _llava_images(model, inputs)
        out.append((model.config.image_token_id, images))
    return out


def _split_rows(pooled, sizes: list[int]) -> list[torch.Tensor]:
    """Per-visual token blocks: transformers returns a list, or one [sum n_v, D] tensor in some versions."""
    if isinstance(pooled, torch.Tensor):
        return list(pooled.split(sizes))
    return list(pooled)


def _qwen_blocks(model, pooled, grid_thw: torch.Tensor) -> list[_Visual]:
    m = model.config.vision_config.spatial_merge_size
    sizes = [t * h * w // (m * m) for t, h, w in grid_thw.tolist()]
    return [
        _Visual(tokens=tokens, T=t, grid=(h // m, w // m))  # tokens [t * (h/m) * (w/m), D]
        for tokens, (t, h, w) in zip(_split_rows(pooled, sizes), grid_thw.tolist())
    ]


def _qwen_videos(model, inputs: Mapping) -> list[_Visual]:
    """Qwen2.5-VL: ONE encoder call for every video of the batch (its attention never crosses a video)."""
    if inputs.get("video_grid_thw") is None:
        raise ValueError("Qwen2.5-VL inputs need video_grid_thw [V, 3] (what its processor returns)")
    device = model.get_input_embeddings().weight.device
    grid_thw = torch.as_tensor(inputs["video_grid_thw"]).to(device)  # [V, 3] in patches
    pixels = torch.as_tensor(inputs["pixel_values_videos"]).to(device)  # [sum t*h*w, C * tp * p * p]
    pooled = model.model.get_video_features(pixel_values_videos=pixels, video_grid_thw=grid_thw).pooler_output
    return _qwen_blocks(model, pooled, grid_thw)


def _qwen_images(model, inputs: Mapping) -> list[_Visual]:
    """Qwen2.5-VL images: one temporal unit each (its processor repeats the image temporal_patch_size times)."""
    if inputs.get("image_grid_thw") is None:
        raise ValueError("Qwen2.5-VL inputs with pixel_values need image_grid_thw [I, 3] (what its processor returns)")
    device = model.get_input_embeddings().weight.device
    grid_thw = torch.as_tensor(inputs["image_grid_thw"]).to(device)  # [I, 3]
    pixels = torch.as_tensor(inputs["pixel_values"]).to(device)  # [sum h*w, C * tp * p * p]
    pooled = model.model.get_image_features(pixel_values=pixels, image_grid_thw=grid_thw).pooler_output
    return _qwen_blocks(model, pooled, grid_thw)


def _llava_videos(model, inputs: Mapping) -> list[_Visual]:
    """LLaVA-OneVision: one encoder call for a [V, F, C, H, W] tensor, one per video for a list of [F_v, ...]
    (the tower takes one frame count per call); each video's tokens end with the model's newline token."""
    pixels = inputs["pixel_values_videos"]
    param = next(model.model.vision_tower.parameters())
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
    return [_Visual(tokens=block, T=f, grid=(side, side), suffix=1) for block, f in zip(blocks, frames)]


def _llava_images(model, inputs: Mapping) -> list[_Visual]:
    """LLaVA-OneVision images through the model's own anyres packing (base view, crops, newlines): kept whole."""
    config = model.config
    param = next(model.model.vision_tower.parameters())
    pixels = torch.as_tensor(inputs["pixel_values"]).to(param.device, param.dtype)  # [I, P, C, S, S]
    out = model.model.get_image_features(
        pixels,
        torch.as_tensor(inputs["image_sizes"]).to(param.device),
        vision_feature_layer=config.vision_feature_layer,
        vision_feature_select_strategy=config.vision_feature_select_strategy,
        batch_num_images=inputs.get("batch_num_images"),
    )
    return [_Visual(tokens=block, T=1, grid=(1, len(block)), compress=False) for block in out.pooler_output]


# --------------------------------------------------------------------------------------------- layout


def _keep_flags(select: Select, visual: _Visual) -> torch.Tensor:
    """bool [T * N + suffix]: which of one visual's placeholder tokens stay (the suffix always does)."""
    flags = torch.ones(len(visual.tokens), dtype=torch.bool)
    if not visual.compress:
        return flags
    V = visual.features  # [T, N, D]
    keep = torch.as_tensor(select(V, visual.grid))
    if keep.dtype != torch.bool:  # probabilities or scores passed by mistake would silently keep everything
        raise TypeError(f"select must return a bool mask [T, N], got dtype {keep.dtype}")
    if tuple(keep.shape) != tuple(V.shape[:2]):
        raise ValueError(f"select returned a mask of shape {list(keep.shape)} for tokens [T, N] = {list(V.shape[:2])}")
    flags[: keep.numel()] = keep.reshape(-1).cpu()
    return flags


def _scatter(embeds: torch.Tensor, placeholders: torch.Tensor, visuals: list[_Visual]) -> torch.Tensor:
    """embeds [B, L, D] with the visuals' tokens at their placeholders, in row-major order (the same
    masked_scatter the model's forward does)."""
    tokens = torch.cat([v.tokens for v in visuals]).to(embeds.device, embeds.dtype)  # [sum n_v, D]
    if int(placeholders.sum()) != tokens.shape[0]:
        raise ValueError(
            f"input_ids hold {int(placeholders.sum())} placeholders but the pixels give "
            f"{tokens.shape[0]} tokens: were the prompts expanded by this model's processor?"
        )
    return embeds.masked_scatter(placeholders[..., None], tokens)


def _full_positions(model, arch: str, ids: torch.Tensor, mask: torch.Tensor, inputs: Mapping) -> torch.Tensor:
    """Position ids [P, B, L] of the unpruned sequences, as the model's generate computes them."""
    if arch == "llava_onevision":
        positions = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)  # [B, L], padding at 0
        return positions[None]
    config = model.config
    mm_types = inputs.get("mm_token_type_ids")  # 0 text, 1 image, 2 video
    if mm_types is None:
        mm_types = (ids == config.image_token_id).int() + (ids == config.video_token_id).int() * 2

    def tensor(key):
        return None if inputs.get(key) is None else torch.as_tensor(inputs[key]).to(ids.device)

    positions, _ = model.model.get_rope_index(
        ids,
        mm_token_type_ids=torch.as_tensor(mm_types).to(ids.device),
        image_grid_thw=tensor("image_grid_thw"),
        video_grid_thw=tensor("video_grid_thw"),
        second_per_grid_ts=tensor("second_per_grid_ts"),
        attention_mask=mask,
    )
    return positions  # [3, B, L]


def _pad_ids(ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """([B] the id each row's new left padding holds, bool [B] the caller padded this row). A padded row: its
    own padding id (column 0 under left padding), already among the ids a penalty sees; any other row: its first
    token, so the padding adds no id to that set."""
    padded = (mask == 0).any(1)  # [B]
    first_real = ids.gather(1, mask.long().argmax(1, keepdim=True))[:, 0]  # [B]
    return torch.where(padded, ids[:, 0], first_real), padded


def _drop_and_left_pad(
    ids: torch.Tensor,
    embeds: torch.Tensor,
    positions: torch.Tensor,
    keep: torch.Tensor,
    pad: tuple[torch.Tensor, torch.Tensor],
):
    """Keep columns `keep` [B, L] of ids [B, L], embeds [B, L, D] and positions [P, B, L], right-aligned into
    width L' = max kept (one more when a row the caller padded would be left without padding, whose pad id a
    penalty must still see): (ids [B, L'], embeds [B, L', D], attention_mask [B, L'], positions [P, B, L']).
    Padding gets position 0, as transformers leaves it; no real token attends to it."""
    B, _, D = embeds.shape
    pad_ids, padded = pad
    lengths = keep.sum(1).tolist()
    width = max(lengths) + int(any(p and n == max(lengths) for p, n in zip(padded.tolist(), lengths)))
    out_ids = pad_ids[:, None].expand(B, width).clone()
    out_embeds = embeds.new_zeros(B, width, D)
    out_mask = torch.zeros(B, width, dtype=torch.long, device=embeds.device)
    out_positions = positions.new_zeros(positions.shape[0], B, width)
    for b, n in enumerate(lengths):
        out_ids[b, width - n :] = ids[b, keep[b]]
        out_embeds[b, width - n :] = embeds[b, keep[b]]
        out_mask[b, width - n :] = 1
        out_positions[:, b, width - n :] = positions[:, b, keep[b]]
    return out_ids, out_embeds, out_mask, out_positions
