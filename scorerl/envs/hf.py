"""What every HF video MLLM environment shares: loading, checks, sequence layout, batching, scoring.

A subclass (qwen2_5_vl.py, llava_onevision.py) supplies only what differs between architectures:
the model class, the chat text around the video, the position ids of the full sequence, and `encode`.

Sequence of one request, before dropping (L tokens):

    [text before video] [T*N visual tokens] [S suffix tokens] [text after video: prompt + answer cue] [target]

Position ids are computed on this full sequence (P rows: 3 for Qwen's M-RoPE, 1 otherwise). Dropped visual
tokens are then removed from the embeddings and the position ids together, so every kept token keeps its
original position. Requests are right-aligned (LEFT padding) so all their targets end at the last column and one
`logits_to_keep` covers every row's target.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scorerl.envs.base import VideoEnv
from scorerl.errors import ConfigError, EnvError
from scorerl.types import ScoreRequest, VisualTokens

OPENAI_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
SETTINGS_FILE = "scorerl_env.json"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class Sequence:
    """One request laid out for the LLM, dropped visual tokens already removed (L' = kept length)."""

    embeds: torch.Tensor  # [L', D]
    positions: torch.Tensor  # [P, L'] original position ids of the kept tokens
    target: torch.Tensor  # [t] target token ids; they are the last t tokens of the sequence
    visual_start: int  # index in the kept sequence of the first kept visual token
    kept: torch.Tensor  # [K] flat indices (t * N + n) of the kept visual tokens, in sequence order

    def __len__(self) -> int:
        return self.embeds.shape[0]


class _StopForward(Exception):
    """Raised by a forward hook once the layer we need has run, so the rest of the LLM is skipped."""


# --------------------------------------------------------------------------------------------- pure helpers


def resolve_device(device: str) -> torch.device:
    """env.device as a torch device: auto = cuda when available, else cpu; a CUDA device on a machine without
    CUDA is a ConfigError naming env.device, not a traceback from deep inside the model's loading."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"env.device {device!r}: CUDA is not available on this machine (use env.device=cpu)")
    try:
        return torch.device(device)
    except RuntimeError as e:
        raise ConfigError(f"env.device {device!r}: {e}") from None


def chunk_by_budget(lengths: list[int], budget: int) -> list[list[int]]:
    """Group row indices so each group's rows x padded length <= budget (a row longer than budget goes alone).

    Rows are taken longest first, so rows of similar length share a forward and little is spent on padding.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    chunks: list[list[int]] = []
    for i in order:
        # sorted longest first: the first row of a chunk sets its padded length
        if chunks and (len(chunks[-1]) + 1) * lengths[chunks[-1][0]] <= budget:
            chunks[-1].append(i)
        else:
            chunks.append([i])
    return chunks


def left_pad(seqs: list[Sequence]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-align sequences: embeds [B, L, D], attention_mask [B, L] (0 = padding), positions [P, B, L]."""
    width = max(len(s) for s in seqs)
    first = seqs[0]
    embeds = first.embeds.new_zeros(len(seqs), width, first.embeds.shape[-1])
    mask = torch.zeros(len(seqs), width, dtype=torch.long, device=first.embeds.device)
    # padding positions are never attended to; 1 matches what transformers fills in for padding
    positions = torch.ones(first.positions.shape[0], len(seqs), width, dtype=torch.long, device=first.embeds.device)
    for b, s in enumerate(seqs):
        n = len(s)
        embeds[b, width - n :] = s.embeds
        mask[b, width - n :] = 1
        positions[:, b, width - n :] = s.positions
    return embeds, mask, positions


@dataclass
class StaticShapes:
    """How the static-shape prefill pads and (on CUDA) compiles. Why: eager transformers at batch 1 spends a short
    prefill mostly launching kernels; CUDA graphs remove that, but a graph holds one shape, so every forward's
    length is rounded up to a few bucket lengths first."""

    bucket: int = 64  # padded length = the next multiple of bucket; 0 = the next power of two
    compile: bool = False  # CUDA only: torch.compile(mode="reduce-overhead") = CUDA graphs, one per bucket
    max_tokens: int = 16384  # rows x padded length above this stay eager at their exact length (compute-bound)


def bucket_length(n: int, bucket: int) -> int:
    """n rounded up to its bucket: the next multiple of `bucket`, or (bucket 0) the next power of two."""
    if n < 1 or bucket < 0:
        raise ValueError(f"need n >= 1 and bucket >= 0, got n={n}, bucket={bucket}")
    if bucket == 0:
        return 1 << (n - 1).bit_length()
    return -(-n // bucket) * bucket


def pad_left_to(
    embeds: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, width: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """left_pad's output [B, L, D], [B, L], [P, B, L] padded further on the LEFT to width W >= L: embeddings 0,
    attention mask 0, positions 1 (as left_pad fills them), so the real tokens stay right-aligned."""
    extra = width - embeds.shape[1]
    if extra < 0:
        raise ValueError(f"cannot pad length {embeds.shape[1]} down to {width}")
    if extra == 0:
        return embeds, mask, positions
    F = torch.nn.functional
    return (
        F.pad(embeds, (0, 0, extra, 0)),  # [B, W, D]
        F.pad(mask, (extra, 0)),  # [B, W]
        F.pad(positions, (extra, 0), value=1),
    )  # [P, B, W]


def target_logprobs(seqs: list[Sequence], last_logits, with_greedy: bool = False) -> list:
    """Each sequence's target tokens scored: last_logits(need) gives logits [need[i], V] at sequence i's last
    need[i] positions -> log-prob [t_i] of each target token (with_greedy: and whether it is the argmax)."""
    for i, s in enumerate(seqs):
        if s.target.numel() == 0:
            raise EnvError(f"request {i} has an empty target; score needs the answer text to score")
    # target token j is predicted by the logits one position earlier: the last t+1 columns minus the last
    logits = last_logits([s.target.numel() + 1 for s in seqs])
    out = []
    for s, lg in zip(seqs, logits):
        logp = torch.log_softmax(lg[:-1].float(), dim=-1)  # [t, V]
        chosen = logp.gather(1, s.target[:, None]).squeeze(1)
        out.append((chosen, logp.argmax(-1) == s.target) if with_greedy else chosen)
    return out


def choice_scores(logits: torch.Tensor, ids: torch.Tensor, normalize: bool) -> torch.Tensor:
    """Answer-position logits [R, V] -> [R, C] log-probs of the choice tokens `ids`: normalised over the choices
    only (they sum to 1), or full-vocabulary log-probs."""
    if normalize:
        return torch.log_softmax(logits[:, ids], dim=-1).cpu()
    return torch.log_softmax(logits, dim=-1)[:, ids].cpu()


def _ones_mask(seq: Sequence) -> torch.Tensor:
    """attention_mask [1, L'] of ones. Always pass one: without it transformers 5 reads position-id jumps (our
    dropped tokens) as packed-sequence boundaries and blocks attention across them (1-D RoPE models)."""
    return torch.ones(1, len(seq), dtype=torch.long, device=seq.embeds.device)


def check_frames(frames, min_frames: int = 1) -> torch.Tensor:
    """Frames uint8 [F, H, W, 3] (numpy or torch) -> torch uint8 tensor, or EnvError naming what is wrong."""
    if isinstance(frames, np.ndarray):
        frames = torch.from_numpy(np.ascontiguousarray(frames))
    if not isinstance(frames, torch.Tensor):
        raise EnvError(f"frames must be a numpy array or torch tensor, got {type(frames).__name__}")
    if frames.dtype != torch.uint8:
        raise EnvError(f"frames must be uint8 RGB in [0, 255], got dtype {frames.dtype}")
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise EnvError(f"frames must have shape [F, H, W, 3], got {list(frames.shape)}")
    if frames.shape[0] < min_frames:
        raise EnvError(f"too few frames: got {frames.shape[0]}, this model needs at least {min_frames}")
    return frames


def normalize_frames(frames: torch.Tensor, mean, std, device, dtype=torch.float32) -> torch.Tensor:
    """uint8 [F, H, W, 3] -> normalised float [F, 3, H, W], (x/255 - mean) / std: settings["pixels"] "float", the
    order the built-in world's environment was fitted with (processor_pixels is the transformers order)."""
    x = frames.to(device).permute(0, 3, 1, 2).to(torch.float32) / 255.0
    mean = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(std, device=device).view(1, 3, 1, 1)
    return ((x - mean) / std).to(dtype)


def resize_frames(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Float [F, 3, H, W] -> [F, 3, height, width], bicubic with antialias, on normalised floats (settings["pixels"]
    "float"; processor_pixels resizes the uint8 frames first, as transformers does)."""
    if tuple(x.shape[-2:]) == (height, width):
        return x
    return torch.nn.functional.interpolate(x, size=(height, width), mode="bicubic", align_corners=False, antialias=True)


def resize_uint8_bicubic(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """uint8 [F, 3, H, W] -> uint8 [F, 3, height, width], as torchvision.transforms.v2.functional.resize does it for
    the video processors (bicubic, antialias): on a CPU torch's native uint8 kernel, elsewhere in float32 then
    clamped to 0..255, rounded and cast back. Same size: returned as is (torchvision's shortcut)."""
    if tuple(x.shape[-2:]) == (height, width):
        return x
    F = torch.nn.functional
    if x.device.type == "cpu":
        return F.interpolate(x, size=(height, width), mode="bicubic", align_corners=False, antialias=True)
    y = F.interpolate(x.to(torch.float32), size=(height, width), mode="bicubic", align_corners=False, antialias=True)
    return y.clamp_(0, 255).round_().to(torch.uint8)


def own_video_processor(path: Path):
    """transformers' own video processor of a model folder, where torchvision works (users' GPU machines): the
    environment then prepares pixels with it, and scorerl's reproduction (processor_pixels, the arch's preprocess)
    is the fallback that tests/core/test_frame_rule.py compares with it bit for bit. None where torchvision is
    missing or cannot load its ops (this project's CPU machines), or with SCORERL_OWN_PIXELS=1."""
    import logging
    import os

    if os.environ.get("SCORERL_OWN_PIXELS") == "1":
        return None
    try:
        import torchvision  # noqa: F401  (a CPU torch beside a CUDA torchvision fails here: "torchvision::nms")
        from transformers import AutoVideoProcessor
    except Exception:
        return None
    try:
        return AutoVideoProcessor.from_pretrained(str(path), local_files_only=True)
    except Exception as e:  # an old or custom folder: scorerl's own path reads the same files
        logging.getLogger(__name__).warning(
            "%s: transformers' video processor did not load (%s: %s); using scorerl's reproduction of it",
            path,
            type(e).__name__,
            e,
        )
        return None


def pixel_order(settings: dict) -> str:
    """settings["pixels"]: "processor" (transformers' order: resize uint8, then rescale + normalise) or "float"
    (normalise, then resize in float: the built-in world's environment); anything else names the key."""
    order = settings.get("pixels", "float")
    if order not in ("processor", "float"):
        raise EnvError(f"processor setting pixels = {order!r} (scorerl_env.json): must be 'processor' or 'float'")
    return order


def processor_pixels(
    frames: torch.Tensor, height: int, width: int, mean, std, device, rescale_factor: float = 1 / 255
) -> torch.Tensor:
    """uint8 [F, H, W, 3] -> float32 [F, 3, height, width] in the order and arithmetic of transformers' video
    processors (BaseVideoProcessor._preprocess, TorchvisionBackend): the uint8 frames are resized first
    (resize_uint8_bicubic), then rescaled and normalised in one step, (x - mean / r) / (std / r) in float32 with
    r = rescale_factor, as `_fuse_mean_std_and_rescale_factor` and `tvF.normalize` compute it."""
    x = frames.to(device).permute(0, 3, 1, 2).contiguous()  # [F, 3, H, W] uint8, as _prepare_input_videos
    x = resize_uint8_bicubic(x, height, width)
    mean = torch.tensor(mean, device=device) * (1.0 / rescale_factor)  # float32 [3], as transformers fuses them
    std = torch.tensor(std, device=device) * (1.0 / rescale_factor)
    return x.to(torch.float32).sub_(mean.view(-1, 1, 1)).div_(std.view(-1, 1, 1))


# --------------------------------------------------------------------------------------------- base class


class HFVideoEnv(VideoEnv):
    """A frozen transformers video MLLM behind the VideoEnv interface. Subclasses fill in the arch hooks."""

    arch: str = ""
    model_type: str = ""  # config.json `model_type` a checkpoint folder of this arch must have
    static_shapes: StaticShapes | None = None  # set by use_static_shapes; None = eager, exact-length forwards
    _compiled = None  # the torch.compile'd model (CUDA graphs) while static_shapes.compile is in effect
    _compile_cache = None  # kept once built: a later run reuses its graphs instead of compiling again
    position_rows = 1  # P: rows of position ids (3 for M-RoPE)
    text_embedding = None  # a whole copy of the embedding table when the LLM's own is partitioned (zero3)

    def __init__(self, model, tokenizer, token_budget: int = 32768, settings: dict | None = None):
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.token_budget = int(token_budget)
        self.settings = {**self.default_settings(), **(settings or {})}
        # Set True (and unfreeze the model) to train through encode/token_logprobs, e.g. the world's env fit.
        self.grad = False
        # transformers' own video processor (own_video_processor), set by from_pretrained where torchvision works;
        # None: scorerl's reproduction of it prepares the pixels
        self.video_processor: Callable[..., Any] | None = None
        self._layouts: dict = {}  # memo of _layout
        self._check_tokenizer()

    # ---------------------------------------------------------------- arch hooks

    @classmethod
    def model_class(cls):
        """The transformers *ForConditionalGeneration class of this arch."""
        raise NotImplementedError

    def default_settings(self) -> dict:
        """Processor settings (image mean/std, ...) used where the folder has no processor file at all (the built-in
        world's and the tests' environments). system_prompt None leaves the system turn to the chat template (its
        default, or none). pixels "float": normalise, then resize in float (how the world's environment was fitted);
        a folder with a transformers processor file gets "processor", transformers' own order (processor_pixels)."""
        return {"image_mean": OPENAI_CLIP_MEAN, "image_std": OPENAI_CLIP_STD, "system_prompt": None, "pixels": "float"}

    @classmethod
    def processor_defaults(cls) -> dict:
        """What transformers' video processor class of this arch takes for a key its folder's file leaves out."""
        return {"image_mean": OPENAI_CLIP_MEAN, "image_std": OPENAI_CLIP_STD}

    def text_around_video(self, prompt: str) -> tuple[str, str]:
        """(text before the video placeholder, text after it up to the answer cue), rendered by the model's own
        chat template: a system turn (settings["system_prompt"], or the template's default when None), then a user
        turn holding the video and the prompt, then the generation prompt."""
        messages = (
            []
            if self.settings.get("system_prompt") is None
            else [
                # list content: the LLaVA-OneVision release's template renders only that (a plain string comes out
                # empty, silently); Qwen's renders both
                {"role": "system", "content": [{"type": "text", "text": self.settings["system_prompt"]}]}
            ]
        )
        messages.append({"role": "user", "content": [{"type": "video"}, {"type": "text", "text": prompt}]})
        if not self.tokenizer.chat_template:
            raise EnvError(
                "the tokenizer has no chat template (the folder gives neither chat_template.json, "
                "chat_template.jinja nor a chat_template in tokenizer_config.json)"
            )
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        placeholder = self.tokenizer.convert_ids_to_tokens(self.video_token_id)
        if text.count(placeholder) != 1:
            raise EnvError(
                f"the chat template renders the video placeholder {placeholder!r} {text.count(placeholder)} "
                "times for one video; expected once"
            )
        before, after = text.split(placeholder)
        return before, after

    def full_positions(self, input_ids: torch.Tensor, visual: VisualTokens) -> torch.Tensor:
        """Position ids [P, L] of the full (nothing dropped) sequence input_ids [L]."""
        raise NotImplementedError

    def model_positions(self, positions: torch.Tensor) -> torch.Tensor:
        """Our [P, B, L] position ids in the shape the model's forward takes."""
        raise NotImplementedError

    # ---------------------------------------------------------------- properties

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def hidden_size(self) -> int:
        """D: the LLM width, which projected visual tokens must have."""
        return self.model.config.text_config.hidden_size

    @property
    def video_token_id(self) -> int:
        return self.model.config.video_token_id

    def _decoder_layers(self):
        return self.model.model.language_model.layers

    def _check_tokenizer(self):
        vocab = self.model.config.text_config.vocab_size
        if len(self.tokenizer) > vocab:
            raise EnvError(f"tokenizer has {len(self.tokenizer)} tokens but the model's vocabulary has {vocab}")
        if self.tokenizer.convert_ids_to_tokens(self.video_token_id) is None:
            raise EnvError(f"the tokenizer has no token with the model's video_token_id {self.video_token_id}")

    # ---------------------------------------------------------------- loading and saving

    @classmethod
    def from_pretrained(
        cls,
        path,
        dtype: str = "float32",
        device: str = "auto",
        attn_implementation: str = "sdpa",
        token_budget: int = 32768,
        device_map: str | None = None,
    ) -> "HFVideoEnv":
        """device_map: None = the whole model on `device`; "auto" = split over this node's GPUs by accelerate."""
        from transformers import AutoConfig, AutoTokenizer

        path = Path(path)
        _check_folder(path)
        config = AutoConfig.from_pretrained(path, local_files_only=True)
        if config.model_type != cls.model_type:
            raise EnvError(
                f"{path}: holds a {config.model_type!r} model, but env.arch {cls.arch!r} needs {cls.model_type!r}"
            )
        if dtype not in DTYPES:
            raise EnvError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            tokenizer.chat_template = _folder_chat_template(path) or tokenizer.chat_template
            model = cls.model_class().from_pretrained(
                path,
                dtype=DTYPES[dtype],
                attn_implementation=attn_implementation,
                use_safetensors=True,
                local_files_only=True,
                device_map=device_map or str(resolve_device(device)),
            )
        except (OSError, ValueError, ImportError) as e:
            raise EnvError(f"{path}: cannot load the {cls.arch} environment: {e}") from None
        env = cls(model, tokenizer, token_budget=token_budget, settings=_read_settings(path, cls.processor_defaults()))
        if pixel_order(env.settings) == "processor":  # the folder has a transformers processor file
            env.video_processor = own_video_processor(path)
        return env

    def own_processor_inputs(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """preprocess by transformers' own video processor (self.video_processor): frames uint8 [F, H, W, 3],
        already sampled, so the processor samples none."""
        if self.video_processor is None:
            raise EnvError(f"{self.arch}: own_processor_inputs needs transformers' own video processor, none is set")
        out = self.video_processor(videos=[frames.cpu().numpy()], do_sample_frames=False, return_tensors="pt")
        return {
            k: v.to(self.device, self.dtype if v.is_floating_point() else v.dtype)
            for k, v in out.items()
            if k in ("pixel_values_videos", "video_grid_thw")
        }

    def save_pretrained(self, path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(path)  # safetensors
        self.tokenizer.save_pretrained(path)
        # Our settings file holds only what the folder's own processor files do not say (a copied folder keeps
        # its processor config authoritative: _read_settings refuses a disagreement).
        own = _processor_settings(path, self.processor_defaults())
        ours = {k: v for k, v in self.settings.items() if k not in own}
        (path / SETTINGS_FILE).write_text(json.dumps({"arch": self.arch, **ours}, indent=2) + "\n")

    # ---------------------------------------------------------------- request checks

    def check_visual(self, visual: VisualTokens) -> None:
        """EnvError unless the visual tokens fit this model (3-D features of width D, suffix of width D)."""
        f = visual.features
        if not isinstance(f, torch.Tensor) or f.ndim != 3:
            raise EnvError(
                f"visual features must be a tensor [T, N, D], got "
                f"{list(f.shape) if isinstance(f, torch.Tensor) else type(f).__name__}"
            )
        if f.shape[-1] != self.hidden_size:
            raise EnvError(
                f"visual features have width D={f.shape[-1]}, but this {self.arch} model's LLM width "
                f"is {self.hidden_size}; were they encoded by a different environment?"
            )
        rows, cols = visual.grid
        if rows * cols != f.shape[1]:
            raise EnvError(f"visual grid {visual.grid} does not match N={f.shape[1]} tokens per temporal unit")
        if visual.suffix is not None and (visual.suffix.ndim != 2 or visual.suffix.shape[-1] != self.hidden_size):
            raise EnvError(f"visual suffix must be [S, {self.hidden_size}], got {list(visual.suffix.shape)}")

    @staticmethod
    def keep_indices(request: ScoreRequest) -> torch.Tensor:
        """Flat indices [K] (t * N + n) of the visual tokens the request keeps; EnvError for a bad or empty mask."""
        T, N = request.visual.features.shape[:2]
        if request.keep is None:
            return torch.arange(T * N)
        keep = torch.as_tensor(request.keep)
        if keep.is_floating_point():  # probabilities passed by mistake would silently keep everything
            raise EnvError(f"keep mask must be bool [T, N], got dtype {keep.dtype}")
        if tuple(keep.shape) != (T, N):
            raise EnvError(f"keep mask has shape {list(keep.shape)}, but the visual tokens are [T, N] = [{T}, {N}]")
        kept = keep.reshape(-1).to("cpu").nonzero().squeeze(1)
        if kept.numel() == 0:
            raise EnvError("keep mask is empty: no visual token kept (a request must keep at least one)")
        return kept

    # ---------------------------------------------------------------- sequence layout

    def embed_text(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids [...] -> input embeddings [..., D] (the model's table, or its whole copy under zero3)."""
        table = self.text_embedding if self.text_embedding is not None else self.model.get_input_embeddings()
        return table(ids.to(self.device))

    def _ids(self, text: str) -> torch.Tensor:
        return torch.tensor(self.tokenizer(text, add_special_tokens=False).input_ids, dtype=torch.long)

    def _layout(self, request: ScoreRequest, with_target: bool) -> tuple[torch.Tensor, torch.Tensor, int, int]:
        """(input_ids [L], positions [P, L], start of the visual block, target length) of the FULL sequence.

        Memoised: the K masks of one sample share their text and grid, and get_rope_index is a Python loop.
        """
        v = request.visual
        key = (
            request.prompt,
            request.target if with_target else None,
            tuple(v.features.shape[:2]),
            v.grid,
            0 if v.suffix is None else v.suffix.shape[0],
            v.meta.get("second_per_grid_t"),
        )
        if key not in self._layouts:
            before, after = self.text_around_video(request.prompt)
            before_ids, after_ids = self._ids(before), self._ids(after)
            target_ids = self._ids(request.target) if with_target else torch.zeros(0, dtype=torch.long)
            placeholders = torch.full((key[2][0] * key[2][1] + key[4],), self.video_token_id, dtype=torch.long)
            input_ids = torch.cat([before_ids, placeholders, after_ids, target_ids])  # [L]
            if len(self._layouts) >= 4096:
                self._layouts.clear()
            self._layouts[key] = (input_ids, self.full_positions(input_ids, v), len(before_ids), len(target_ids))
        return self._layouts[key]

    def build_input_ids(self, request: ScoreRequest, with_target: bool = True) -> torch.Tensor:
        """input_ids [L] of the FULL sequence with video placeholders (what an ordinary HF forward takes)."""
        return self._layout(request, with_target)[0]

    def build_sequence(self, request: ScoreRequest, with_target: bool = True) -> Sequence:
        """Lay out one request (see the module doc) and drop the visual tokens it does not keep."""
        visual = request.visual
        self.check_visual(visual)
        kept = self.keep_indices(request)  # [K]
        T, N, D = visual.features.shape
        input_ids, positions, start, n_target = self._layout(request, with_target)
        end = start + T * N + (0 if visual.suffix is None else visual.suffix.shape[0])

        device, dtype = self.device, self.dtype
        # embed only the text: the placeholders' embeddings would be replaced by visual tokens anyway
        text_ids = torch.cat([input_ids[:start], input_ids[end:]]).to(device)
        text = self.embed_text(text_ids)  # [L - T*N - S, D]
        pieces = [text[:start], visual.features.reshape(T * N, D).to(device, dtype)[kept.to(device)]]
        if visual.suffix is not None:
            pieces.append(visual.suffix.to(device, dtype))
        pieces.append(text[start:])
        seq_keep = torch.ones(len(input_ids), dtype=torch.bool)
        seq_keep[start : start + T * N] = False
        seq_keep[start + kept] = True
        return Sequence(
            embeds=torch.cat(pieces),
            positions=positions[:, seq_keep].to(device),
            target=text_ids[len(text_ids) - n_target :],
            visual_start=start,
            kept=kept,
        )

    # ---------------------------------------------------------------- forwards

    def _forward(self, seqs: list[Sequence], logits_to_keep: int) -> torch.Tensor:
        """One left-padded forward -> logits [B, logits_to_keep, V] of the last columns."""
        if self.static_shapes is not None:
            return self._static_forward(seqs, logits_to_keep)
        embeds, mask, positions = left_pad(seqs)
        out = self.model(
            inputs_embeds=embeds,
            attention_mask=mask,
            position_ids=self.model_positions(positions),
            use_cache=False,
            logits_to_keep=logits_to_keep,
        )
        return out.logits

    # ---------------------------------------------------------------- static-shape prefill

    def use_static_shapes(self, settings: StaticShapes | None) -> dict:
        """Turn the static-shape forward on (settings) or off (None); returns what took effect, for the record.

        compile wraps the model in torch.compile(mode="reduce-overhead", dynamic=False): one CUDA graph per
        bucket length. It is applied on CUDA only (on a CPU there is no graph to replay), else recorded as skipped.
        """
        self.static_shapes, self._compiled = settings, None
        if settings is None:
            return {"static_shapes": False, "compile": "off"}
        compiled = "off"
        if settings.compile and self.device.type != "cuda":
            compiled = f"skipped: CUDA graphs need a CUDA device, the model is on {self.device.type}"
        elif settings.compile:
            self._compiled = self._compiled_model()
            compiled = "reduce-overhead"
        return {
            "static_shapes": True,
            "bucket": settings.bucket,
            "max_tokens": settings.max_tokens,
            "compile": compiled,
        }

    def _compiled_model(self):
        """torch.compile(model, mode="reduce-overhead", dynamic=False), built once per environment."""
        if self._compile_cache is None:
            import torch._dynamo

            # one compiled graph per bucket: raise the recompile limit above the few buckets a run sees
            for name in ("recompile_limit", "cache_size_limit"):
                if hasattr(torch._dynamo.config, name):
                    setattr(torch._dynamo.config, name, max(64, getattr(torch._dynamo.config, name)))
            self._compile_cache = torch.compile(self.model, mode="reduce-overhead", dynamic=False)
        return self._compile_cache

    def _static_forward(self, seqs: list[Sequence], logits_to_keep: int) -> torch.Tensor:
        """_forward with the padded length rounded up to its bucket (LEFT padding, mask 0): repeated calls see a
        few shapes, so a compiled model replays one CUDA graph per bucket. Forwards over max_tokens keep their
        exact length and run eager. -> logits [B, logits_to_keep, V]."""
        settings = self.static_shapes
        if settings is None:
            raise EnvError("_static_forward needs static shapes: call use_static_shapes first")
        embeds, mask, positions = left_pad(seqs)  # [B, L, D], [B, L], [P, B, L]
        B, L = mask.shape
        width = bucket_length(L, settings.bucket)
        static = B * width <= settings.max_tokens
        embeds, mask, positions = pad_left_to(embeds, mask, positions, width if static else L)  # [B, W, ...]
        model = self._compiled if static and self._compiled is not None else self.model  # CUDA graphs or eager
        if model is not self.model:
            torch.compiler.cudagraph_mark_step_begin()  # a new replay: earlier graph outputs may be overwritten
        out = model(
            inputs_embeds=embeds,
            attention_mask=mask,
            position_ids=self.model_positions(positions),
            use_cache=False,
            logits_to_keep=logits_to_keep,
        )
        # a CUDA graph's output buffer is reused by the next replay: copy what the caller keeps
        return out.logits if model is self.model else out.logits.clone()

    def _last_logits(self, seqs: list[Sequence], need: list[int]) -> list[torch.Tensor]:
        """For each sequence i, logits [need[i], V] at its last need[i] positions; chunked by token_budget."""
        result: list[torch.Tensor | None] = [None] * len(seqs)
        chunks = chunk_by_budget([len(s) for s in seqs], self.token_budget)
        # Partitioned weights: agree first (a collective of its own) to run as many forwards as the busiest process.
        fillers = 0 if self.lockstep is None else self.lockstep(len(chunks)) - len(chunks)
        for chunk in chunks:
            k = max(need[i] for i in chunk)
            logits = self._forward([seqs[i] for i in chunk], logits_to_keep=k)  # [B, k, V]
            for row, i in enumerate(chunk):
                result[i] = logits[row, k - need[i] :]
        for _ in range(fillers):
            self._forward([self._filler_sequence()], logits_to_keep=1)
        out: list[torch.Tensor] = []
        for i, row_logits in enumerate(result):
            if row_logits is None:
                raise EnvError(f"_last_logits: sequence {i} was in no forward chunk")
            out.append(row_logits)
        return out

    def _filler_sequence(self) -> Sequence:
        """A one-token sequence whose forward only keeps a partitioned LLM's weight gathers in step."""
        return Sequence(
            embeds=torch.zeros(1, self.hidden_size, device=self.device, dtype=self.dtype),
            positions=torch.zeros(self.position_rows, 1, dtype=torch.long, device=self.device),
            target=torch.zeros(0, dtype=torch.long),
            visual_start=0,
            kept=torch.zeros(0, dtype=torch.long),
        )

    def token_logprobs(self, requests: list[ScoreRequest], with_greedy: bool = False) -> list:
        """Log-probability of each target token given everything before it -> one float32 [t_r] per request;
        with_greedy: (log-probs [t_r], bool [t_r] whether each target token is the argmax) per request, as
        log-likelihood harnesses report."""
        with torch.set_grad_enabled(self.grad):
            seqs = [self.build_sequence(r) for r in requests]
            return target_logprobs(seqs, lambda need: self._last_logits(seqs, need), with_greedy)

    def score(self, requests: list[ScoreRequest]) -> torch.Tensor:
        if not requests:
            if self.lockstep is not None:
                self._last_logits([], [])  # the other processes' forwards need this one's gathers
            return torch.zeros(0)
        return torch.stack([-lp.mean() for lp in self.token_logprobs(requests)]).cpu()

    def choice_ids(self, choices: list[str]) -> list[int]:
        ids = []
        for c in choices:
            toks = self.tokenizer(c, add_special_tokens=False).input_ids
            if len(toks) != 1:
                raise EnvError(f"choice {c!r} is {len(toks)} tokens; choice_logprobs needs single-token choices")
            ids.append(toks[0])
        return ids

    def choice_logprobs(self, requests: list[ScoreRequest], choices: list[str], normalize: bool = True) -> torch.Tensor:
        """[R, C] log-probs of each choice token at the answer position (request.target is ignored).

        normalize=True: log-softmax over the choices only (they sum to 1); False: full-vocabulary log-probs.
        """
        ids = torch.tensor(self.choice_ids(choices), device=self.device)
        if not requests:
            return torch.zeros(0, len(choices))
        with torch.no_grad():
            seqs = [self.build_sequence(r, with_target=False) for r in requests]
            logits = torch.stack([lg[-1] for lg in self._last_logits(seqs, [1] * len(seqs))]).float()  # [R, V]
            return choice_scores(logits, ids, normalize)

    def _stop_ids(self) -> set[int]:
        ids = {self.tokenizer.eos_token_id, self.tokenizer.convert_tokens_to_ids("<|endoftext|>")}
        eos = self.model.generation_config.eos_token_id if self.model.generation_config else None
        ids.update(eos if isinstance(eos, list) else [eos])
        return {i for i in ids if isinstance(i, int) and i >= 0}

    def generate(self, request: ScoreRequest, max_new_tokens: int = 16) -> str:
        return self.tokenizer.decode(self.generate_ids(request, max_new_tokens), skip_special_tokens=True)

    @torch.no_grad()
    def generate_ids(self, request: ScoreRequest, max_new_tokens: int = 16) -> list[int]:
        """Greedy decoding with a KV cache -> new token ids (stop token excluded).

        New tokens continue the text positions (last prompt position + 1), as the target tokens do in `score`.
        The cache goes back in under the name this transformers uses: `cache` (`past_key_values` is deprecated
        there and warns), `past_key_values` in older 5.x releases that do not know `cache`.
        """
        import inspect

        cache_arg = "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"
        seq = self.build_sequence(request, with_target=False)
        stop = self._stop_ids()
        positions = seq.positions[:, None, :]  # [P, 1, L]
        out = self.model(
            inputs_embeds=seq.embeds[None],
            attention_mask=_ones_mask(seq),
            position_ids=self.model_positions(positions),
            use_cache=True,
            logits_to_keep=1,
        )
        new: list[int] = []
        last = positions[:, :, -1:]  # [P, 1, 1]
        for _ in range(max_new_tokens):
            token = int(out.logits[0, -1].argmax())
            if token in stop:
                break
            new.append(token)
            if len(new) == max_new_tokens:
                break
            last = last + 1
            out = self.model(
                inputs_embeds=self.embed_text(torch.tensor([[token]])),
                position_ids=self.model_positions(last),
                use_cache=True,
                logits_to_keep=1,
                **{cache_arg: getattr(out, cache_arg)},
            )
        return new

    @torch.no_grad()
    def last_token_attention(self, request: ScoreRequest, layer: int) -> torch.Tensor:
        """Attention [T, N] (float32, mean over heads) of the last prompt token to each visual token at LLM layer
        `layer` (0-based). Dropped tokens (request.keep) get 0. Runs eager attention only up to that layer."""
        layers = self._decoder_layers()
        if not 0 <= layer < len(layers):
            raise EnvError(f"layer {layer} is out of range: the LLM has {len(layers)} layers")
        seq = self.build_sequence(request, with_target=False)
        captured = {}

        def grab(module, args, output):
            captured["w"] = output[1][0, :, -1, :].float().mean(0)  # [L'] last query row, mean over heads
            raise _StopForward

        text_config = self.model.config.text_config
        previous = text_config._attn_implementation
        handle = layers[layer].self_attn.register_forward_hook(grab)
        self.model.set_attn_implementation({"text_config": "eager"})  # only eager returns attention weights
        try:
            self.model(
                inputs_embeds=seq.embeds[None],
                attention_mask=_ones_mask(seq),
                position_ids=self.model_positions(seq.positions[:, None]),
                use_cache=False,
                logits_to_keep=1,
            )
        except _StopForward:
            pass
        finally:
            handle.remove()
            self.model.set_attn_implementation({"text_config": previous})
        T, N = request.visual.features.shape[:2]
        weights = captured["w"][seq.visual_start : seq.visual_start + seq.kept.numel()]
        out = torch.zeros(T * N)
        out[seq.kept] = weights.cpu()
        return out.view(T, N)


# --------------------------------------------------------------------------------------------- folders


def _check_folder(path: Path) -> None:
    """EnvError naming what a checkpoint folder lacks (config, safetensors weights, tokenizer)."""
    if not path.is_dir():
        raise EnvError(f"{path}: environment folder not found")
    if not (path / "config.json").is_file():
        raise EnvError(f"{path}: no config.json; not a transformers checkpoint folder")
    if not any(path.glob("*.safetensors")):
        raise EnvError(f"{path}: no *.safetensors weights (only safetensors checkpoints are loaded)")
    if not any((path / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")):
        raise EnvError(f"{path}: no tokenizer (tokenizer.json or tokenizer_config.json)")


PROCESSOR_FILE = "processor_config.json"  # transformers 5 nests every processor's config here
VIDEO_PROCESSOR_FILES = ("video_preprocessor_config.json", "preprocessor_config.json")


def _video_processor_dict(path: Path) -> tuple[str, dict] | None:
    """(file, dict) that transformers' video processor loads from a folder, or None where it finds none: as
    `BaseVideoProcessor.get_video_processor_dict` (video_processing_utils.py) picks it, a nested `video_processor`
    in processor_config.json, else video_preprocessor_config.json, else preprocessor_config.json (the IMAGE
    processor's file: a folder without a video file, e.g. Qwen2.5-VL-7B-Instruct, gives its video processor the
    image limits). One file, whole: keys it lacks take the class defaults, never another file's values."""
    nested = path / PROCESSOR_FILE
    if nested.is_file():
        found = json.loads(nested.read_text()).get("video_processor")
        if isinstance(found, dict):
            return f"{PROCESSOR_FILE}:video_processor", found
    for name in VIDEO_PROCESSOR_FILES:
        if (path / name).is_file():
            return name, json.loads((path / name).read_text())
    return None


def _processor_settings(path: Path, defaults: dict | None = None) -> dict:
    """The folder's video processor settings as transformers loads them ({} where the folder has no processor
    file): image mean/std; Qwen's per-frame pixel limits from size.shortest_edge / size.longest_edge, the legacy
    min_pixels / max_pixels overriding them (as Qwen2VLVideoProcessor.__init__ does); a fixed size.height x
    size.width (LLaVA-OneVision); the total-pixel budget (cap_pixels_per_frame, max_video_tokens); rescale_factor.
    `defaults` (the arch's class defaults) fill what the file leaves out; `processor_file` names the file."""
    found = _video_processor_dict(path)
    if found is None:
        return {}
    name, cfg = found
    raw_size = cfg.get("size")
    size: dict = raw_size if isinstance(raw_size, dict) else {}
    values = {
        "image_mean": cfg.get("image_mean"),
        "image_std": cfg.get("image_std"),
        "min_pixels": cfg.get("min_pixels", size.get("shortest_edge")),
        "max_pixels": cfg.get("max_pixels", size.get("longest_edge")),
        "size": [size["height"], size["width"]] if size.get("height") and size.get("width") else None,
        "cap_pixels_per_frame": cfg.get("cap_pixels_per_frame"),
        "max_video_tokens": cfg.get("max_video_tokens"),
        "rescale_factor": cfg.get("rescale_factor"),
    }
    settings = {**(defaults or {}), **{k: v for k, v in values.items() if v is not None}}
    settings["processor_file"] = name
    return settings


def _read_settings(path: Path, defaults: dict | None = None) -> dict:
    """The folder's processor settings, plus what scorerl_env.json adds (e.g. the answer format a fit declares).
    scorerl's file never overrides the model's own: a value that disagrees with the processor config is an error
    naming both files. A folder with a processor file has its pixels prepared in transformers' order
    (pixels: processor) unless scorerl_env.json says otherwise (a folder scorerl saved)."""
    settings = _processor_settings(path, defaults)
    ours = path / SETTINGS_FILE
    if ours.is_file():
        extra = json.loads(ours.read_text())
        extra.pop("arch", None)
        for key, value in extra.items():
            if key in settings and settings[key] != value:
                raise EnvError(
                    f"{ours}: {key} = {value!r} disagrees with the folder's processor config "
                    f"({settings[key]!r}); the model's own file wins: remove {key} from {ours.name}"
                )
            settings.setdefault(key, value)
    if "processor_file" in settings:
        settings.setdefault("pixels", "processor")
    return settings


def _folder_chat_template(path: Path) -> str | None:
    """The chat template a multimodal folder ships for its processor (chat_template.json, or chat_template.jinja);
    None where it leaves the template to the tokenizer's config."""
    if (path / "chat_template.json").is_file():
        template = json.loads((path / "chat_template.json").read_text()).get("chat_template")
        if template:
            return template
    if (path / "chat_template.jinja").is_file():
        return (path / "chat_template.jinja").read_text()
    return None
