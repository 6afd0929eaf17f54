"""The compressed prefill of prompts about library videos (integrations/library.py): no pixels, no vision tower,
no policy. It is prefill.compress_inputs with the encoder and `select` replaced by what the library stored, and
every other step shared: the full sequence's positions from the model's own `get_rope_index` (Qwen2.5-VL) or
the attention mask (LLaVA-OneVision), the same drop-and-re-left-pad, the same kept ids and padding ids. So the
result equals compressing the video on the spot, token for token.

Only the kept columns are ever embedded: the full placeholder run exists as ids [B, L] (cheap) for the position
rule, never as embeddings [B, L, D] (274 MB for a 64-frame 720p video on the 7B).
"""

from __future__ import annotations

from typing import Mapping

import torch

from scorerl.integrations.prefill import (
    LIBRARY_KEY,
    CompressedInputs,
    _drop_and_left_pad,
    _full_positions,
    _pad_ids,
    _text_inputs,
    model_arch,
)


def has_library(inputs: Mapping) -> bool:
    return inputs.get(LIBRARY_KEY) is not None


@torch.no_grad()
def compress_library_inputs(model, inputs: Mapping) -> CompressedInputs:
    """The pruned, re-left-padded prefill of library_inputs(...) (one library video per row)."""
    arch = model_arch(model)
    if inputs.get("pixel_values_videos") is not None or inputs.get("pixel_values") is not None:
        raise ValueError(
            f"inputs hold both {LIBRARY_KEY} and pixels: a batch answers from the library or from videos, not both"
        )
    entries = list(inputs[LIBRARY_KEY])
    ids, mask = _text_inputs(model, inputs)  # [B, L], [B, L]
    placeholders = ids == model.config.video_token_id  # [B, L]
    total = sum(e.total for e in entries)
    if int(placeholders.sum()) != total:
        raise ValueError(
            f"input_ids hold {int(placeholders.sum())} video placeholders but the library entries "
            f"need {total}: build the prompts with scorerl.integrations.library.library_inputs"
        )
    keep = mask.bool().clone()  # [B, L] real tokens; dropped placeholders cleared below
    keep[placeholders] &= torch.cat([e.flags() for e in entries]).to(ids.device)
    positions = _full_positions(model, arch, ids, mask, inputs)  # [P, B, L] of the FULL sequence
    # One channel marks the columns that receive a stored token; it travels through the same drop-and-pad.
    marker = (placeholders & keep).float()[..., None]  # [B, L, 1]
    out_ids, marker, new_mask, positions = _drop_and_left_pad(ids, marker, positions, keep, _pad_ids(ids, mask))
    embeds = model.get_input_embeddings()(out_ids)  # [B, L', D]: text as the model embeds it
    embeds = embeds.masked_fill(new_mask[..., None] == 0, 0)  # padding holds zeros, as in compress_inputs
    tokens = torch.cat([e.tokens for e in entries]).to(embeds.device, embeds.dtype)  # [sum K, D]
    slots = marker[..., 0] > 0  # [B, L'] kept visual columns, row-major = entry order
    if int(slots.sum()) != tokens.shape[0]:
        raise ValueError(f"the library entries hold {tokens.shape[0]} tokens for {int(slots.sum())} kept places")
    embeds = embeds.masked_scatter(slots[..., None], tokens)
    return CompressedInputs(
        input_ids=out_ids,
        inputs_embeds=embeds,
        attention_mask=new_mask,
        position_ids=positions if arch == "qwen2_5_vl" else positions[0],  # the LM takes (3, B, L) / (B, L)
        visual_kept=slots.sum(1).tolist(),
        visual_total=placeholders.sum(1).tolist(),
    )
