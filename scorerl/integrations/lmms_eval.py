"""lmms-eval plugin: any scorerl environment (a local Qwen2.5-VL or LLaVA-OneVision folder) with a trained SCORE
policy or a baseline at a keep ratio, evaluated by the harness this field reports with.

    pip install 'scorerl[lmms]' && pip install --no-deps lmms-eval==0.7.3
    python -m lmms_eval --model scorerl \\
        --model_args pretrained=/models/Qwen2.5-VL-7B-Instruct,arch=qwen2_5_vl,compressor=runs/quickstart/policy,ratio=0.1 \\
        --tasks mvbench --batch_size 1

It registers through lmms-eval's entry-points group `lmms_eval.models` (pyproject.toml), as a "simple" model.
Each request's visual comes from the task's `doc_to_visual` (a video path, or an image as a static pseudo-video),
is sampled by `num_frames`, or by `fps` up to `max_frames` (the real time between frames reaching the model's
positions), sized by the model's own rule (`frame_size=0`, the default: native; `frame_size=N,keep_aspect=true`
caps the longer side at N; `frame_size=N` alone squashes to N x N), encoded once by the frozen model, compressed by `compressor` (a policy folder, run or checkpoint; or a
baseline name: uniform, random, pool, framediff, dycoke, dycoke_ttm+topk, vidcom2; `full` or ratio=1 keeps
everything) and answered with the kept tokens at their original positions: `loglikelihood` scores the
continuation by teacher forcing (one prefill), `generate_until` decodes greedily and cuts at the task's stops.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

try:
    from lmms_eval.api.model import lmms
    from lmms_eval.models.registry_v2 import ModelManifest
except ImportError as e:  # an optional dependency: say how to get it
    raise ImportError("the lmms-eval plugin needs lmms-eval: pip install 'scorerl[lmms]' && "
                      "pip install --no-deps lmms-eval==0.7.3") from e

from scorerl.config import EnvSection
from scorerl.data.frames import FrameSampling, frame_factor_of, pseudo_video, read_clip, target_size
from scorerl.envs import load_env
from scorerl.export import ScoreCompressor
from scorerl.types import ScoreRequest, VisualTokens

MODEL_NAME = "scorerl"


def manifest() -> ModelManifest:
    """What lmms-eval's entry point loads: the model's name and class."""
    return ModelManifest(model_id=MODEL_NAME, simple_class_path=f"{__name__}.ScoreRLModel")


class ScoreRLModel(lmms):
    """A frozen video MLLM whose visual tokens are compressed before the LLM (`--model scorerl`)."""

    is_simple = True

    def __init__(self, pretrained: str, arch: str = "qwen2_5_vl", compressor: str = "full", ratio: float = 1.0,
                 num_frames: int = 16, frame_size: int = 0, fps: float = 0.0, max_frames: int = 768,
                 keep_aspect: bool = False, device: str = "auto", dtype: str = "bfloat16", max_new_tokens: int = 64,
                 batch_size: int | str = 1, **unused) -> None:
        super().__init__()
        self.env = load_env(EnvSection(arch=arch, path=str(pretrained), device=device, dtype=dtype))
        self.ratio, self.num_frames, self.frame_size = float(ratio), int(num_frames), int(frame_size)
        # Frames as the model's own processor samples them (docs/data.md): by count, or by rate (fps > 0), counts
        # rounded to its temporal unit; frame_size 0 = native (the model's own resize rule alone).
        self.sampling = FrameSampling(num_frames=int(num_frames), size=int(frame_size), fps=float(fps),
                                      max_frames=int(max_frames), keep_aspect=str(keep_aspect).lower() == "true",
                                      timed=True, frame_factor=frame_factor_of(self.env))
        self.max_new_tokens = int(max_new_tokens)
        self.compressor = self._compressor(str(compressor))
        self.task_dict: dict = {}

    @staticmethod
    def _compressor(spec: str) -> ScoreCompressor:
        if Path(spec).expanduser().is_dir():
            return ScoreCompressor.from_pretrained(spec)
        return ScoreCompressor.baseline(spec)

    # ---------------------------------------------------------------- requests

    def loglikelihood(self, requests) -> list[tuple[float, bool]]:
        out = []
        for req in requests:
            context, target, doc_to_visual, doc_id, task, split = req.args
            doc = self.task_dict[task][split][doc_id]
            continuation = target(doc) if callable(target) else target
            request = self._request(doc_to_visual(doc), context, continuation)
            (logp, greedy), = self.env.token_logprobs([request], with_greedy=True)
            out.append((float(logp.sum()), bool(greedy.all())))
        return out

    def generate_until(self, requests) -> list[str]:
        out = []
        for req in requests:
            context, gen_kwargs, doc_to_visual, doc_id, task, split = req.args
            request = self._request(doc_to_visual(self.task_dict[task][split][doc_id]), context, "")
            text = self.env.generate(request, max_new_tokens=int(gen_kwargs.get("max_new_tokens", self.max_new_tokens)))
            out.append(cut_at_stops(text, gen_kwargs.get("until", [])))
        return out

    def generate_until_multi_round(self, requests) -> list[str]:
        raise NotImplementedError("scorerl's lmms-eval model answers single-round tasks")

    # ---------------------------------------------------------------- visuals

    def _request(self, visuals, context: str, target: str) -> ScoreRequest:
        tokens = self._encode(visuals)
        keep = None
        if self.ratio < 1 and self.compressor.name != "full":
            keep = self.compressor.keep_mask(tokens.features.float(), self.ratio, tokens.grid)
        return ScoreRequest(tokens, context, target=target, keep=keep)

    def _encode(self, visuals) -> VisualTokens:
        """The first visual of a doc (a video path, or an image as a static pseudo-video) -> its tokens."""
        if not visuals:
            raise ValueError("scorerl's lmms-eval model needs a visual per doc (doc_to_visual returned none)")
        first, seconds_per_frame = visuals[0], None
        if isinstance(first, (str, Path)):
            clip = read_clip(first, self.sampling)
            frames, seconds_per_frame = clip.frames, clip.seconds_per_frame
        else:  # a PIL image (image tasks): sized as video frames are (frame_size 0 keeps its own size)
            image = first.convert("RGB")
            height, width = target_size(image.height, image.width, self.sampling.size, self.sampling.keep_aspect)
            if (image.height, image.width) != (height, width):
                image = image.resize((width, height))
            frames = pseudo_video(np.asarray(image, dtype=np.uint8), self.num_frames)
        with torch.inference_mode():
            return self.env.encode(frames, seconds_per_frame=seconds_per_frame)


def cut_at_stops(text: str, until) -> str:
    """The text up to the first of the task's stop strings."""
    for stop in [until] if isinstance(until, str) else list(until or []):
        if stop and stop in text:
            text = text[:text.index(stop)]
    return text
