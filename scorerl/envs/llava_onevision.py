"""LLaVA-OneVision as a frozen reward environment.

Each frame is resized to the video processor's size.height x size.width (384 x 384 for the 7B, the SigLIP image
size: that square IS the model's own rule, LlavaOnevisionVideoProcessor), encoded, projected and 2x
bilinear-pooled into rows x cols tokens; the model then appends ONE learned newline token after the whole video.
That newline is the `suffix` (always kept). Positions are plain 1-D indices on the full sequence.
"""

from __future__ import annotations

import math

import torch

from scorerl.envs.hf import HFVideoEnv, check_frames, normalize_frames, pixel_order, processor_pixels, resize_frames
from scorerl.types import VisualTokens


class LlavaOneVisionEnv(HFVideoEnv):
    arch = "llava_onevision"
    model_type = "llava_onevision"

    @classmethod
    def model_class(cls):
        from transformers import LlavaOnevisionForConditionalGeneration

        return LlavaOnevisionForConditionalGeneration

    def preprocess(self, frames) -> dict[str, torch.Tensor]:
        """Frames uint8 [F, H, W, 3] -> {pixel_values_videos [1, F, 3, S, S']}: (S, S') = the processor file's
        size.height x size.width, else the vision tower's image_size square (an environment without a processor
        file). settings["pixels"] "processor": transformers' order (resize uint8 bicubic, then rescale and
        normalise); "float": normalise, then resize (the built-in world's environment)."""
        frames = check_frames(frames, min_frames=1)
        if self.video_processor is not None:  # transformers' own, where torchvision works
            return self.own_processor_inputs(frames)
        s = self.settings
        height, width = s.get("size") or [self.model.config.vision_config.image_size] * 2
        if pixel_order(s) == "processor":
            x = processor_pixels(
                frames,
                height,
                width,
                s["image_mean"],
                s["image_std"],
                self.device,
                float(s.get("rescale_factor") or 1 / 255),
            )
        else:
            x = resize_frames(normalize_frames(frames, s["image_mean"], s["image_std"], self.device), height, width)
        return {"pixel_values_videos": x[None].to(self.dtype)}  # [1, F, 3, S, S']

    def encode_batch(self, frames: list, seconds_per_frame: list | None = None) -> list[VisualTokens]:
        # The tower pools per video, so a batch gains nothing; positions are 1-D, so frame timing plays no part.
        return [self._encode_one(f) for f in frames]

    def _encode_one(self, frames) -> VisualTokens:
        inputs = self.preprocess(frames)
        F = inputs["pixel_values_videos"].shape[1]
        vision = self.model.config.vision_config
        side = math.ceil(vision.image_size // vision.patch_size / 2)  # tokens per side after 2x pooling
        with torch.set_grad_enabled(self.grad):
            out = self.model.model.get_video_features(**inputs)
        tokens = out.pooler_output[0]  # [F * side * side + 1, D]: frames in raster order, then the newline
        return VisualTokens(
            features=tokens[:-1].reshape(F, side * side, -1), grid=(side, side), suffix=tokens[-1:], meta={}
        )

    def full_positions(self, input_ids: torch.Tensor, visual: VisualTokens) -> torch.Tensor:
        return torch.arange(len(input_ids))[None]  # [1, L]

    def model_positions(self, positions: torch.Tensor) -> torch.Tensor:
        return positions[0]  # the LM takes (B, L)
