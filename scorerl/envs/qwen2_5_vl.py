"""Qwen2.5-VL as a frozen reward environment.

Pixels are patchified in code exactly as `Qwen2VLVideoProcessor.patchify` does (its processor needs torchvision):
one temporal unit = temporal_patch_size frames; one visual token = one spatial_merge_size^2 block of patches.
Positions are the model's own 3-D M-RoPE ids (`get_rope_index`) on the full sequence.
"""

from __future__ import annotations

import math

import torch

from scorerl.types import VisualTokens
from scorerl.envs.hf import HFVideoEnv, check_frames, normalize_frames, resize_frames


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Nearest (H, W) that are multiples of factor with min_pixels <= H*W <= max_pixels (Qwen's rule)."""
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return h, w


def patchify(videos: torch.Tensor, patch_size: int, merge_size: int, temporal_patch_size: int):
    """Normalised videos [B, F, C, H, W] -> (patches [B, t*h*w, C*tp*p*p], t, h, w), Qwen2VL's flat layout.

    F is padded to a multiple of temporal_patch_size by repeating the last frame. Patches are ordered
    (t, row block, col block, row in block, col in block), so each merge block's patches are consecutive.
    """
    B, F, C, H, W = videos.shape
    if pad := -F % temporal_patch_size:
        videos = torch.cat([videos, videos[:, -1:].expand(-1, pad, -1, -1, -1)], dim=1)
        F += pad
    t, h, w = F // temporal_patch_size, H // patch_size, W // patch_size
    patches = videos.reshape(B, t, temporal_patch_size, C, h // merge_size, merge_size, patch_size,
                             w // merge_size, merge_size, patch_size)
    patches = patches.permute(0, 1, 4, 7, 5, 8, 3, 2, 6, 9)
    return patches.reshape(B, t * h * w, C * temporal_patch_size * patch_size * patch_size), t, h, w


class Qwen25VLEnv(HFVideoEnv):
    arch = "qwen2_5_vl"
    model_type = "qwen2_5_vl"
    position_rows = 3  # M-RoPE: temporal, height, width

    def __init__(self, model, tokenizer, token_budget: int = 32768, settings: dict | None = None):
        from scorerl.envs.vision_windows import batch_vision_windows

        super().__init__(model, tokenizer, token_budget=token_budget, settings=settings)
        batch_vision_windows(self.model)  # same result as transformers' per-window loop, in one call

    @classmethod
    def model_class(cls):
        from transformers import Qwen2_5_VLForConditionalGeneration

        return Qwen2_5_VLForConditionalGeneration

    def default_settings(self) -> dict:
        factor = self._vision.patch_size * self._vision.spatial_merge_size
        # second_per_grid_t: seconds per temporal unit for the temporal M-RoPE spacing (None = model default 1.0)
        return {**super().default_settings(), "min_pixels": factor * factor, "max_pixels": 16384 * 28 * 28,
                "second_per_grid_t": None}

    @property
    def _vision(self):
        return self.model.config.vision_config

    # ---------------------------------------------------------------- vision

    def preprocess(self, frames) -> dict[str, torch.Tensor]:
        """Frames uint8 [F, H, W, 3] -> {pixel_values_videos [t*h*w, C*tp*p*p], video_grid_thw [1, 3]}."""
        frames = check_frames(frames, min_frames=1)
        v = self._vision
        factor = v.patch_size * v.spatial_merge_size
        H, W = smart_resize(frames.shape[1], frames.shape[2], factor, self.settings["min_pixels"],
                            self.settings["max_pixels"])
        x = normalize_frames(frames, self.settings["image_mean"], self.settings["image_std"], self.device)
        x = resize_frames(x, H, W)  # [F, 3, H, W]
        patches, t, h, w = patchify(x[None], v.patch_size, v.spatial_merge_size, v.temporal_patch_size)
        return {"pixel_values_videos": patches[0].to(self.dtype),
                "video_grid_thw": torch.tensor([[t, h, w]], device=self.device)}

    def encode_batch(self, frames: list, seconds_per_frame: list | None = None) -> list[VisualTokens]:
        """Visual tokens of several videos with ONE vision-tower call (its attention never crosses a video, so
        batching changes nothing); with gradients when self.grad (the world's environment fit). A video's
        seconds_per_frame becomes its second_per_grid_t (temporal_patch_size frames per unit), as the model's own
        processor passes it."""
        inputs = [self.preprocess(f) for f in frames]
        pixels = torch.cat([x["pixel_values_videos"] for x in inputs])  # [sum t*h*w, C*tp*p*p]
        grid_thw = torch.cat([x["video_grid_thw"] for x in inputs])  # [B, 3]
        m = self._vision.spatial_merge_size
        with torch.set_grad_enabled(self.grad):
            pooled = self.model.model.get_video_features(pixel_values_videos=pixels,
                                                         video_grid_thw=grid_thw).pooler_output
        timing = seconds_per_frame or [None] * len(frames)
        out = []
        for tokens, (t, h, w), spf in zip(pooled, grid_thw.tolist(), timing):  # tokens [t * (h/m) * (w/m), D]
            meta = {"grid_thw": [t, h, w]}
            if spf is not None:
                meta["second_per_grid_t"] = spf * self._vision.temporal_patch_size
            out.append(VisualTokens(features=tokens.reshape(t, (h // m) * (w // m), -1),  # [T, N, D], (t, row, col)
                                    grid=(h // m, w // m), meta=meta))
        return out

    # ---------------------------------------------------------------- positions

    def grid_thw(self, visual: VisualTokens) -> torch.Tensor:
        """video_grid_thw [1, 3] in patches, rebuilt from features [T, N, D] and grid (rows, cols)."""
        m = self._vision.spatial_merge_size
        rows, cols = visual.grid
        return torch.tensor([[visual.features.shape[0], rows * m, cols * m]])

    def full_positions(self, input_ids: torch.Tensor, visual: VisualTokens) -> torch.Tensor:
        ids = input_ids[None]  # [1, L]
        mm_types = (ids == self.video_token_id).int() * 2  # 0 text, 1 image, 2 video
        sec = visual.meta.get("second_per_grid_t", self.settings.get("second_per_grid_t"))  # the clip's own first
        positions, _ = self.model.model.get_rope_index(
            ids, mm_token_type_ids=mm_types, video_grid_thw=self.grid_thw(visual),
            second_per_grid_ts=None if sec is None else torch.tensor([float(sec)]))
        return positions[:, 0]  # [3, L]

    def model_positions(self, positions: torch.Tensor) -> torch.Tensor:
        return positions  # the model takes (3, B, L)
