"""lmms-eval plugin: a local Qwen2.5-VL or LLaVA-OneVision folder with a trained SCORE policy or a baseline at a
keep ratio, evaluated by lmms-eval's own evaluator (docs/method.md, "lmms-eval").

    python -m lmms_eval --model scorerl --tasks mvbench --batch_size 4 \\
        --model_args pretrained=/models/Qwen2.5-VL-7B-Instruct,arch=qwen2_5_vl,compressor=runs/q/policy,ratio=0.1

Conventions, as lmms-eval's own models keep them:
- `loglikelihood` returns (loss, is_greedy) per request: the MEAN negative log-likelihood of the continuation's
  tokens (lmms-eval picks a multiple-choice answer by argmin), and whether greedy decoding gives it;
- requests go `batch_size` at a time (one batched forward or `generate` per batch; generation requests are
  grouped by their generation settings first);
- a task's generation settings are honoured: max_new_tokens, temperature (0 = greedy, > 0 samples), do_sample,
  top_p, top_k, num_beams, and `until` stop strings; anything the task leaves out comes from the folder's
  generation_config.json, as with the model's own generate;
- `generate_until_multi_round`: each round's context and visuals come from the task's doc_to_text.

Visuals: a video path is sampled by `num_frames`, or by `fps` up to `max_frames` (the real time between frames
reaching Qwen2.5-VL's positions), frames at the model's own size rule (`frame_size=0`, the default: native;
`frame_size=N,keep_aspect=true` caps the longer side; `frame_size=N` alone squashes to N x N); an image becomes
a static pseudo-video of `num_frames` frames, as scorerl's stage 1 trains on images. The compressor (a policy
folder, run or checkpoint; or a baseline name) keeps `ratio` of each video's tokens at their original positions.
`library=LIB` (built by `scorerl compress` for the same model, frame rule, compressor and ratio, else refused by
name): a doc's video found there is answered from its stored kept tokens, with no decoding or vision tower.

lmms-eval 0.7.x turns every model output that is not text into a string (`unwrap_generation_output`), so no
log-likelihood task can score ("too many values to unpack"); importing this module lets (number, bool) pairs
through that function unchanged (`_pass_loglikelihood_pairs`; nothing changes where lmms-eval already does so).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np
import torch

try:
    from lmms_eval.api.model import lmms
except ImportError as e:  # an optional dependency: say how to get it
    raise ImportError(
        "the lmms-eval plugin needs lmms-eval: pip install 'scorerl[lmms]' && pip install --no-deps lmms-eval==0.7.3"
    ) from e

from scorerl.config import EnvSection
from scorerl.data.frames import FrameSampling, frame_factor_of, pseudo_video, read_clip, target_size
from scorerl.envs import load_env
from scorerl.errors import ScoreRLError
from scorerl.integrations.hf_generate import compressed_generate, processor_like_inputs
from scorerl.integrations.library import VideoLibrary, library_inputs, media_key
from scorerl.integrations.lmms_entry import MODEL_NAME, manifest
from scorerl.integrations.patch import load_compressor, selector
from scorerl.types import ScoreRequest

GREEDY = {"do_sample": False}  # the folder's sampling settings then play no part


class ScoreRLModel(lmms):
    """A frozen video MLLM whose visual tokens are compressed before the LLM (`--model scorerl`)."""

    is_simple = True

    def __init__(
        self,
        pretrained: str,
        arch: Literal["qwen2_5_vl", "llava_onevision"] = "qwen2_5_vl",
        compressor: str = "full",
        ratio: float = 1.0,
        num_frames: int = 16,
        frame_size: int = 0,
        fps: float = 0.0,
        max_frames: int = 768,
        keep_aspect: bool = False,
        device: str = "auto",
        dtype: Literal["float32", "bfloat16", "float16"] = "bfloat16",
        max_new_tokens: int = 64,
        batch_size: int | str = 1,
        library: str = "",
        **unused,
    ) -> None:
        super().__init__()
        self.env = load_env(EnvSection(arch=arch, path=str(pretrained), device=device, dtype=dtype))
        self.ratio, self.num_frames = float(ratio), int(num_frames)
        # Frames as the model's own processor samples them (docs/data.md): by count, or by rate (fps > 0), counts
        # rounded to its temporal unit; frame_size 0 = native (the model's own resize rule alone).
        self.sampling = FrameSampling(
            num_frames=int(num_frames),
            size=int(frame_size),
            fps=float(fps),
            max_frames=int(max_frames),
            keep_aspect=str(keep_aspect).lower() == "true",
            timed=True,
            frame_factor=frame_factor_of(self.env),
        )
        self.max_new_tokens = int(max_new_tokens)
        self.batch_size_per_gpu = max(1, int(batch_size)) if str(batch_size).isdigit() else 1  # "auto" -> 1
        self.compressor = load_compressor(str(compressor))
        self.select = selector(self.compressor, self.ratio)
        self.task_dict: dict = {}
        # library=PATH (`scorerl compress`): videos found there skip decoding, the vision tower and the policy;
        # a library built for another model, processor, frame rule, compressor or ratio is refused by name.
        self.library = (
            None
            if not library
            else VideoLibrary.open(
                library,
                env=self.env,
                env_dir=Path(pretrained),
                sampling=self.sampling,
                compressor=self.compressor,
                ratio=self.ratio,
            )
        )
        self.library_hits = 0  # requests answered from the library

    # ---------------------------------------------------------------- requests

    def loglikelihood(self, requests) -> list[tuple[float, bool]]:
        """(mean NLL of the continuation's tokens, whether greedy decoding gives them) per request."""
        out = []
        for batch in _chunks([r.args for r in requests], self.batch_size_per_gpu):
            scored = []
            for context, target, doc_to_visual, doc_id, task, split in batch:
                doc = self.task_dict[task][split][doc_id]
                continuation = target(doc) if callable(target) else target
                scored.append(self._request(doc_to_visual(doc), context, continuation))
            with torch.inference_mode():
                for logp, greedy in self.env.token_logprobs(scored, with_greedy=True):  # logp [n], greedy [n]
                    out.append((float(-logp.float().mean()), bool(greedy.all())))
        return out

    def generate_until(self, requests) -> list[str]:
        """Batches of requests with the same generation settings, each one compressed `generate` call."""
        args = [r.args for r in requests]
        out: list[str | None] = [None] * len(args)
        groups: dict[str, list[int]] = {}
        for i, (_, gen_kwargs, *_rest) in enumerate(args):
            groups.setdefault(json.dumps(gen_kwargs, sort_keys=True, default=str), []).append(i)
        for indices in groups.values():
            for batch in _chunks(indices, self.batch_size_per_gpu):
                items = []
                for i in batch:
                    context, gen_kwargs, doc_to_visual, doc_id, task, split = args[i]
                    items.append((doc_to_visual(self.task_dict[task][split][doc_id]), context))
                for i, text in zip(batch, self._generate(items, args[batch[0]][1])):
                    out[i] = text
        answers: list[str] = []
        for i, answer in enumerate(out):
            if answer is None:
                raise ScoreRLError(f"generate_until: request {i} got no answer")
            answers.append(answer)
        return answers

    def generate_until_multi_round(self, requests) -> list[list[str]]:
        """Per request, every round's answer: round 0 from the request, later rounds from the task's
        doc_to_text(doc, previous_output=..., round_idx=..., previous_round_info=...) until it says stop."""
        out = []
        for context, gen_kwargs, doc_to_visual, doc_to_text, doc_id, task, split in (r.args for r in requests):
            doc = self.task_dict[task][split][doc_id]
            visuals, answers, info = doc_to_visual(doc), [], None
            for round_idx in range(1, 1000):
                answers.append(self._generate([(visuals, context)], gen_kwargs)[0])
                visuals, context, stop, answers, info = doc_to_text(
                    doc, previous_output=answers, round_idx=round_idx, previous_round_info=info
                )
                answers = list(answers)
                if stop:
                    break
            out.append(answers)
        return out

    # ---------------------------------------------------------------- generation

    def _generate(self, items: list[tuple], gen_kwargs: dict) -> list[str]:
        """Texts answering (visuals, context) items in one compressed `generate` call, cut at the stops."""
        options, until = generation_options(gen_kwargs, self.max_new_tokens)
        entries = [self._entry(visuals) for visuals, _ in items]
        if all(e is not None for e in entries):  # the whole batch from the library: no pixels at all
            self.library_hits += len(entries)
            inputs = library_inputs(self.env, entries, [context for _, context in items])
        else:
            clips = [self._frames(visuals) for visuals, _ in items]
            inputs = processor_like_inputs(
                self.env,
                [frames for frames, _ in clips],
                [context for _, context in items],
                seconds_per_frame=[spf for _, spf in clips],
            )
        with torch.inference_mode():
            new = compressed_generate(self.env.model, inputs, self.select, **options)  # [B, n] new tokens only
        texts = self.env.tokenizer.batch_decode(new, skip_special_tokens=True)
        return [cut_at_stops(text, until) for text in texts]

    # ---------------------------------------------------------------- visuals

    def _entry(self, visuals):
        """The library entry of a doc's video (its whole clip), or None (no library, an image, not in it)."""
        if self.library is None or not visuals or not isinstance(visuals[0], (str, Path)):
            return None
        key = media_key(visuals[0])
        return self.library.get(key) if key in self.library else None

    def _request(self, visuals, context: str, target: str) -> ScoreRequest:
        entry = self._entry(visuals)
        if entry is not None:  # the environment's scoring path on the stored kept tokens
            self.library_hits += 1
            tokens, keep = entry.visual_tokens()
            return ScoreRequest(tokens, context, target=target, keep=None if bool(keep.all()) else keep)
        frames, seconds_per_frame = self._frames(visuals)
        with torch.inference_mode():
            tokens = self.env.encode(frames, seconds_per_frame=seconds_per_frame)
        keep = self.select(tokens.features, tokens.grid)  # bool [T, N]
        return ScoreRequest(tokens, context, target=target, keep=None if bool(keep.all()) else keep.cpu())

    def _frames(self, visuals) -> tuple[np.ndarray, float | None]:
        """The first visual of a doc -> (uint8 frames [F, H, W, 3], seconds between frames or None)."""
        if not visuals:
            raise ValueError("scorerl's lmms-eval model needs a visual per doc (doc_to_visual returned none)")
        first = visuals[0]
        if isinstance(first, (str, Path)):
            clip = read_clip(first, self.sampling)
            return clip.frames, clip.seconds_per_frame
        image = first.convert("RGB")  # a PIL image: sized as video frames are (frame_size 0 keeps its own size)
        height, width = target_size(image.height, image.width, self.sampling.size, self.sampling.keep_aspect)
        if (image.height, image.width) != (height, width):
            image = image.resize((width, height))
        return pseudo_video(np.asarray(image, dtype=np.uint8), self.num_frames), None


def generation_options(gen_kwargs: dict, max_new_tokens: int) -> tuple[dict, list[str]]:
    """(generate options, stop strings) of a task's generation settings, as lmms-eval's own models read them:
    temperature 0 (or do_sample false) decodes greedily, temperature > 0 samples at it; what the task leaves out
    stays the folder's generation_config.json."""
    gen = dict(gen_kwargs or {})
    until = gen.pop("until", None)
    until = [until] if isinstance(until, str) else list(until or [])
    options: dict[str, int | float] = {"max_new_tokens": int(gen.pop("max_new_tokens", max_new_tokens))}
    temperature = gen.pop("temperature", None)
    sample = gen.pop("do_sample", None)
    if sample is None and temperature is not None:
        sample = float(temperature) > 0
    if sample is False:
        options.update(GREEDY)
    elif sample:
        options.update(do_sample=True, **({"temperature": float(temperature)} if temperature else {}))
    for key, cast in (("top_p", float), ("top_k", int), ("num_beams", int)):
        if gen.get(key) is not None and (sample or key == "num_beams"):
            options[key] = cast(gen[key])
    return options, until


def cut_at_stops(text: str, until) -> str:
    """The text up to the first of the task's stop strings."""
    for stop in [until] if isinstance(until, str) else list(until or []):
        if stop and stop in text:
            text = text[: text.index(stop)]
    return text


def _chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _pass_loglikelihood_pairs() -> None:
    """lmms-eval 0.7.x: its evaluator stores `unwrap_generation_output(x)[0]` as each response, and that
    function turns anything but text into `str(x)`, so a log-likelihood (loss, is_greedy) pair reaches the task
    as "(1.2, True)" and every multiple-choice task fails. Wrap it so such pairs pass unchanged (checked first:
    a version that already passes them is left alone)."""
    try:
        from lmms_eval import evaluator
    except ImportError:
        return
    unwrap = getattr(evaluator, "unwrap_generation_output", None)
    if unwrap is None or getattr(unwrap, "scorerl_passes_pairs", False) or unwrap((1.0, True))[0] == (1.0, True):
        return

    def passing(output):
        if (
            isinstance(output, (tuple, list))
            and len(output) == 2
            and isinstance(output[0], (int, float))
            and isinstance(output[1], (bool, np.bool_))
        ):
            return tuple(output), None
        return unwrap(output)

    setattr(passing, "scorerl_passes_pairs", True)  # noqa: B010  (mypy: a def has no declared attributes)
    evaluator.unwrap_generation_output = passing


def _register() -> None:
    """Register `--model scorerl` in lmms-eval's registry now, whatever was imported first (the entry point
    registers it too, where the package is installed)."""
    from lmms_eval.models import MODEL_REGISTRY_V2

    MODEL_REGISTRY_V2.register_manifest(manifest(), overwrite=True)


_pass_loglikelihood_pairs()
_register()
__all__ = ["MODEL_NAME", "ScoreRLModel", "cut_at_stops", "generation_options", "manifest"]
