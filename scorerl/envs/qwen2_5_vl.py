"""Qwen2.5-VL as a frozen reward environment.

Pixels are prepared exactly as transformers' `Qwen2VLVideoProcessor` prepares them (its processor needs
torchvision, so the steps are reproduced here): each frame is sized by `smart_resize` to multiples of
patch_size * merge_size within the per-frame pixel limits (optionally bounded by the total-video budget of
`cap_pixels_per_frame`), the uint8 frames are resized (bicubic, antialias) and only then rescaled and normalised,
and the result is patchified: one temporal unit = temporal_patch_size frames; one visual token = one
spatial_merge_size^2 block of patches. Positions are the model's own 3-D M-RoPE ids (`get_rope_index`).
"""

from __future__ import annotations

import math

import torch

from scorerl.envs.hf import (
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    HFVideoEnv,
    check_frames,
    normalize_frames,
    pixel_order,
    processor_pixels,
    resize_frames,
)
from scorerl.errors import EnvError
from scorerl.types import VisualTokens

# Qwen2VLVideoProcessor's class defaults: the per-frame pixel limits (size.shortest_edge, size.longest_edge) where
# the folder's processor file gives none, and the total-video budget of cap_pixels_per_frame.
VIDEO_MIN_PIXELS = 128 * 28 * 28
VIDEO_MAX_PIXELS = 768 * 28 * 28
MAX_VIDEO_TOKENS = 128000


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """(H, W), multiples of factor, nearest the frame's own with min_pixels <= H*W <= max_pixels: transformers'
    `smart_resize` (image_processing_qwen2_vl.py) line for line, so the token counts agree everywhere."""
    if max(height, width) / min(height, width) > 200:
        raise EnvError(
            f"a frame of {height}x{width}: Qwen2.5-VL needs an aspect ratio below 200, got "
            f"{max(height, width) / min(height, width)}"
        )
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def frame_max_pixels(
    num_frames: int,
    factor: int,
    temporal_patch_size: int,
    min_pixels: int,
    max_pixels: int,
    cap_pixels_per_frame: bool = False,
    max_video_tokens: int = MAX_VIDEO_TOKENS,
) -> int:
    """The per-frame pixel cap of a video of num_frames frames (Qwen2VLVideoProcessor.resize): max_pixels, or
    with cap_pixels_per_frame (qwen-vl-utils' rule) at most an even share of 90% of max_video_tokens tokens'
    worth of pixels, floored at 1.05 x min_pixels."""
    if not cap_pixels_per_frame:
        return max_pixels
    total_pixels = int(max_video_tokens * factor * factor * 0.9)
    return max(min(max_pixels, total_pixels * temporal_patch_size // num_frames), int(min_pixels * 1.05))


def video_grid(
    num_frames: int, height: int, width: int, settings: dict, patch_size: int, merge_size: int, temporal_patch_size: int
) -> tuple[int, int, int]:
    """(t, h, w) in patches of a video of num_frames frames of height x width, by the processor's rule and
    `settings` (min_pixels, max_pixels, cap_pixels_per_frame, max_video_tokens): what preprocess gives, without
    pixels. Visual tokens = t * h * w / merge_size^2."""
    factor = patch_size * merge_size
    cap = frame_max_pixels(
        num_frames,
        factor,
        temporal_patch_size,
        settings["min_pixels"],
        settings["max_pixels"],
        bool(settings.get("cap_pixels_per_frame")),
        int(settings.get("max_video_tokens") or MAX_VIDEO_TOKENS),
    )
    H, W = smart_resize(height, width, factor, settings["min_pixels"], cap)
    return -(-num_frames // temporal_patch_size), H // patch_size, W // patch_size


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
    patches = videos.reshape(
        B, t, temporal_patch_size, C, h // merge_size, merge_size, patch_size, w // merge_size, merge_size, patch_size
    )
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
        """Settings of an environment without a processor file (the built-in world's, the tests' tiny ones): pixel
        limits that leave its small frames at their size. A real folder's file overrides them (_read_settings)."""
        factor = self._vision.patch_size * self._vision.spatial_merge_size
        # second_per_grid_t: seconds per temporal unit for the temporal M-RoPE spacing (None = model default 1.0)
        return {
            **super().default_settings(),
            "min_pixels": factor * factor,
            "max_pixels": 16384 * 28 * 28,
            "cap_pixels_per_frame": False,
            "max_video_tokens": MAX_VIDEO_TOKENS,
            "second_per_grid_t": None,
        }

    @classmethod
    def processor_defaults(cls) -> dict:
        """Qwen2VLVideoProcessor's class defaults for what the folder's file leaves out (cap_pixels_per_frame:
        unset there = off, with a warning)."""
        return {
            "image_mean": OPENAI_CLIP_MEAN,
            "image_std": OPENAI_CLIP_STD,
            "min_pixels": VIDEO_MIN_PIXELS,
            "max_pixels": VIDEO_MAX_PIXELS,
            "cap_pixels_per_frame": False,
            "max_video_tokens": MAX_VIDEO_TOKENS,
        }

    @property
    def frame_factor(self) -> int:
        """Frames per temporal unit: frame counts are rounded to it, as the processor's sample_frames rounds."""
        return int(self._vision.temporal_patch_size)

    @property
    def _vision(self):
        return self.model.config.vision_config

    # ---------------------------------------------------------------- vision

    def preprocess(self, frames) -> dict[str, torch.Tensor]:
        """Frames uint8 [F, H, W, 3] -> {pixel_values_videos [t*h*w, C*tp*p*p], video_grid_thw [1, 3]}, as
        Qwen2VLVideoProcessor computes them (settings["pixels"] "processor"; "float" keeps the order the built-in
        world's environment was fitted with: normalise, then resize in float)."""
        frames = check_frames(frames, min_frames=1)
        if self.video_processor is not None:  # transformers' own, where torchvision works
            return self.own_processor_inputs(frames)
        v, s = self._vision, self.settings
        _, gh, gw = video_grid(
            frames.shape[0],
            frames.shape[1],
            frames.shape[2],
            s,
            v.patch_size,
            v.spatial_merge_size,
            v.temporal_patch_size,
        )
        H, W = gh * v.patch_size, gw * v.patch_size
        if pixel_order(s) == "processor":
            x = processor_pixels(
                frames, H, W, s["image_mean"], s["image_std"], self.device, float(s.get("rescale_factor") or 1 / 255)
            )  # [F, 3, H, W] float32
        else:
            x = resize_frames(normalize_frames(frames, s["image_mean"], s["image_std"], self.device), H, W)
        patches, t, h, w = patchify(x[None], v.patch_size, v.spatial_merge_size, v.temporal_patch_size)
        return {
            "pixel_values_videos": patches[0].to(self.dtype),
            "video_grid_thw": torch.tensor([[t, h, w]], device=self.device),
        }

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
            pooled = self.model.model.get_video_features(
                pixel_values_videos=pixels, video_grid_thw=grid_thw
            ).pooler_output
        timing = seconds_per_frame or [None] * len(frames)
        out = []
        for tokens, (t, h, w), spf in zip(pooled, grid_thw.tolist(), timing):  # tokens [t * (h/m) * (w/m), D]
            meta = {"grid_thw": [t, h, w]}
            if spf is not None:
                meta["second_per_grid_t"] = spf * self._vision.temporal_patch_size
            out.append(
                VisualTokens(
                    features=tokens.reshape(t, (h // m) * (w // m), -1),  # [T, N, D], (t, row, col)
                    grid=(h // m, w // m),
                    meta=meta,
                )
            )
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
            ids,
            mm_token_type_ids=mm_types,
            video_grid_thw=self.grid_thw(visual),
            second_per_grid_ts=None if sec is None else torch.tensor([float(sec)]),
        )
        return positions[:, 0]  # [3, L]

    def model_positions(self, positions: torch.Tensor) -> torch.Tensor:
        return positions  # the model takes (3, B, L)
