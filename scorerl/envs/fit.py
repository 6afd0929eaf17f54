"""`scorerl env fit`: train the built-in world's small MLLM, which is then frozen and serves as the reward environment.

Why a fit at all: there is no hub here, so the world's environment is a small model of a REAL architecture
(Qwen2.5-VL by default, LLaVA-OneVision via env.arch) built from config and trained from scratch on the world's
train split (+ its image split as static pseudo-videos). ALL weights are trained: vision tower, merger, LLM.

Why random token dropout (SCORE_METHOD.md section 9): a small model fitted only on complete videos fails on any
sparse input, whichever tokens are kept, and then no policy can look good. Each fit question therefore keeps a
random subset of the visual tokens (keep ratio ~ U[keep_min, 1], or all of them with probability full_prob), and
the kept tokens keep their ORIGINAL position ids, exactly as the environment scores a subset (env.build_sequence).
At inference a wrong answer then means the needed tokens were dropped, not that the input looked unfamiliar.

Why auxiliary probes: the answer is a letter, so a from-scratch model must learn a chain of hops at once (which
visual tokens show the object asked about -> which option names it -> that option's letter) from 2 bits per
question; it sits at chance for hundreds of steps. Two linear probes, used only during the fit and never saved,
supervise the intermediate hops directly:
  token probe  (visual positions, an early LLM layer): role (static / brief event / moving + its direction),
               colour and shape of the object under each kept token, read from the world's scene description;
  option probe (the newline that ends each option line, a late layer): which option is the correct one.
The saved environment is the unmodified transformers model; the letter loss is exactly env.score's target CE.

Recipe (fit_env):
  1. no-op if out/fit.json records the same identity (fit-relevant config + manifest hashes)
  2. read the manifests; decode every sample's frames ONCE into uint8 memory (decord via data.cache.load_frames)
  3. tokenizer trained in code on the world's prompts; model built from tiny.py's config builders + fit.model
  4. loop: videos -> (mirror / time reversal) -> vision tower on the batch -> questions per video (the manifest's
     + ones derived from its scene) -> random keep masks -> one left-padded LLM forward in the env's own sequence
     layout -> letter CE + probe losses -> AdamW (warm-up + cosine) -> checkpoint every N steps
  5. save_pretrained(out), score the eval manifest with all tokens, write fit.json LAST (the done marker)

Exact resume: batch order, augmentation, derived questions and keep masks are pure functions of (seed, step) and
the learning rate a function of step, so a checkpoint holds only model + probes + optimizer + step (atomic
safetensors/JSON via rl/checkpoint.py) and a resumed fit ends at the same weights as an uninterrupted one.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from scorerl.config import Config
from scorerl.data.manifest import LETTERS, Sample, format_prompt, manifest_hash, read_manifest, resolve_manifest
from scorerl.envs.base import ScoreRequest, VisualTokens
from scorerl.errors import CheckpointError, ConfigError, DataError

log = logging.getLogger(__name__)

FIT_FILE = "fit.json"
FIT_FORMAT = "scorerl-env-fit/1"
# Fit keys that do not change the fitted weights (how often to save, threads, eval batching).
_NOT_IDENTITY = ("checkpoint_every", "keep_last", "threads", "eval_batch_size")
IGNORE = -1  # label of a token without scene information (cross_entropy ignore_index)


# --------------------------------------------------------------------------------------------- data


@dataclass
class FitData:
    """A split held in memory: frames decoded once, plus per-token scene labels for the token probe."""

    frames: np.ndarray  # uint8 [S, F, H, W, 3]
    samples: list[Sample]
    is_video: np.ndarray  # bool [S]; images are static pseudo-videos (time reversal means nothing for them)
    labels: np.ndarray | None = None  # int8 [S, 3, F, rows, cols]: role, colour, shape (IGNORE without a scene)

    def __len__(self) -> int:
        return len(self.samples)


def load_split(spec: str, num_frames: int, frame_size: int, desc: str) -> FitData:
    """Read a manifest and decode all its frames once (uint8: 4000 x 16 x 64 x 64 x 3 is ~0.8 GB)."""
    from tqdm.auto import tqdm

    from scorerl.data.cache import load_frames

    samples, _ = read_manifest(resolve_manifest(spec))
    frames = np.empty((len(samples), num_frames, frame_size, frame_size, 3), dtype=np.uint8)
    for i, s in enumerate(tqdm(samples, desc=f"decoding {desc}", unit="sample", leave=False)):
        frames[i] = load_frames(s, num_frames, frame_size)
    return FitData(frames, samples, np.array([s.kind == "video" for s in samples]))


def concat_data(parts: list[FitData]) -> FitData:
    parts = [p for p in parts if len(p)]
    labels = None
    if all(p.labels is not None for p in parts):
        labels = np.concatenate([p.labels for p in parts])
    return FitData(np.concatenate([p.frames for p in parts]), [s for p in parts for s in p.samples],
                   np.concatenate([p.is_video for p in parts]), labels)


def prompt_corpus(samples: list[Sample]) -> list[str]:
    """The text the tokenizer is trained on: every prompt the environment will be asked."""
    return [format_prompt(s) for s in samples]


# --------------------------------------------------------------------------------------------- scene labels

# Role of the object under a visual token. A moving object's role is its direction, so the token probe teaches the
# LLM's early layers to compare frames (motion, direction, brief appearance), not only to see colours.
ROLES = ("none", "static", "event", "left", "right", "up", "down")
_MIN_PIXELS = 10  # an object covering fewer pixels of a token's area does not label it (a sliver is ambiguous)


def scene_token_labels(scene: dict | None, num_frames: int, rows: int, cols: int) -> np.ndarray:
    """int8 [3, num_frames, rows, cols]: role (ROLES index), colour (1 + COLORS index), shape (1 + SHAPES index)
    of the object covering most of each token's area (0 = none); IGNORE everywhere without a usable scene."""
    from scorerl.data.frames import uniform_indices
    from scorerl.data.synthetic import COLORS, SHAPES, shape_mask

    out = np.full((3, num_frames, rows, cols), IGNORE, dtype=np.int8)
    size = (scene or {}).get("size", 0)
    if not scene or not size or size % rows or size % cols:
        return out
    total = int(scene.get("frames", 1))
    objects = scene.get("objects", [])
    cover = np.zeros((len(objects), total, rows, cols), dtype=np.int32)  # pixels of object k in each token
    canvas = np.zeros((size, size), dtype=np.int32)
    for k, o in enumerate(objects):
        mask = shape_mask(o["shape"], o["size"])
        for j, (x, y) in enumerate(o["positions"]):
            canvas[:] = 0
            canvas[y:y + o["size"], x:x + o["size"]] = mask[:size - y, :size - x]
            cover[k, o["first"] + j] = canvas.reshape(rows, size // rows, cols, size // cols).sum(axis=(1, 3))
    frame_ids = uniform_indices(total, num_frames) if scene.get("kind") == "video" else np.zeros(num_frames, int)
    cover = cover[:, frame_ids]  # [K, F, rows, cols] the frames the fit actually decodes
    best = cover.argmax(0)
    present = cover.max(0) >= _MIN_PIXELS
    colors, shapes = list(COLORS), list(SHAPES)
    role = np.array([ROLES.index(o.get("direction", "static") if o["role"] == "moving" else o["role"])
                     for o in objects] or [0])
    color = np.array([1 + colors.index(o["color"]) for o in objects] or [0])
    shape = np.array([1 + shapes.index(o["shape"]) for o in objects] or [0])
    for channel, table in enumerate((role, color, shape)):
        out[channel] = np.where(present, table[best], 0)
    return out


def add_scene_labels(data: FitData, rows: int, cols: int) -> FitData:
    F = data.frames.shape[1]
    labels = np.stack([scene_token_labels(s.scene, F, rows, cols) for s in data.samples]) if len(data) else None
    return dataclasses.replace(data, labels=labels)


# --------------------------------------------------------------------------------------------- augmentation

# Mirror images and time reversal are symmetries of the world (every shape is left-right symmetric, an event sits
# strictly inside the clip, paths are straight at constant speed), so they add samples without leaving it. Words
# that name a side or a direction change with them; the answer letter stays, since option texts change in place.
_HFLIP = {"left": "right", "right": "left"}
_REVERSE = {"left": "right", "right": "left", "up": "down", "down": "up"}


def word_swaps(hflip: bool, reverse: bool) -> dict[str, str]:
    """The word substitution of a mirror and/or time reversal (both: left/right cancel, up/down swap)."""
    words = ("left", "right", "up", "down")
    out = {}
    for w in words:
        v = _HFLIP.get(w, w) if hflip else w
        v = _REVERSE.get(v, v) if reverse else v
        if v != w:
            out[w] = v
    return out


def swap_words(text: str, pairs: dict[str, str]) -> str:
    """Swap whole words simultaneously (left <-> right in one pass, so they do not cancel)."""
    if not pairs:
        return text
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, pairs)) + r")\b")
    return pattern.sub(lambda m: pairs[m.group(1)], text)


def augmented_prompt(sample: Sample, pairs: dict[str, str]) -> str:
    if not pairs:
        return format_prompt(sample)
    return format_prompt(dataclasses.replace(sample, question=swap_words(sample.question, pairs),
                                             options=[swap_words(o, pairs) for o in sample.options]))


def augment_frames(frames: np.ndarray, hflip: bool, reverse: bool) -> np.ndarray:
    """uint8 [F, H, W, 3] -> the same video mirrored left-right and/or played backwards."""
    if hflip:
        frames = frames[:, :, ::-1]
    if reverse:
        frames = frames[::-1]
    return np.ascontiguousarray(frames)


def augment_labels(labels: np.ndarray, pairs: dict[str, str], hflip: bool, reverse: bool) -> np.ndarray:
    """int8 [3, F, rows, cols] labels moved with the frames; moving roles renamed like the words."""
    if hflip:
        labels = labels[:, :, :, ::-1]
    if reverse:
        labels = labels[:, ::-1]
    labels = labels.copy()
    if pairs:
        lut = np.arange(len(ROLES))
        for a, b in pairs.items():
            lut[ROLES.index(a)] = ROLES.index(b)
        role = labels[0]
        labels[0] = np.where(role >= 0, lut[np.maximum(role, 0)], role)
    return labels


# --------------------------------------------------------------------------------------------- derived questions


def scene_question(sample: Sample, family: str, letter: int, rng: np.random.Generator) -> Sample | None:
    """Another question about the same video, asked by the world's own generator from the sample's scene
    description; None when the scene cannot carry it unchanged (the generator would have to re-draw a shape)."""
    from scorerl.data.synthetic import COLORS, make_question

    if sample.scene is None or letter >= len(LETTERS):
        return None
    scene = copy.deepcopy(sample.scene)
    if family == "event" and len({o["color"] for o in scene.get("objects", [])}) >= len(COLORS):
        return None  # its distractors need a colour absent from the video
    try:
        question, options, _ = make_question(rng, scene, family, letter)
    except (DataError, KeyError, ValueError, IndexError):
        return None
    if scene["objects"] != sample.scene["objects"]:
        return None  # the question needed a different video
    return dataclasses.replace(sample, question=question, options=list(options), answer=LETTERS[letter],
                               answer_index=letter, family=family)


def questions_for(sample: Sample, extra: int, rng: np.random.Generator) -> list[Sample]:
    """The manifest's question plus up to `extra` derived from the scene (families drawn uniformly)."""
    from scorerl.data.synthetic import IMAGE_FAMILIES, VIDEO_FAMILIES

    out = [sample]
    families = VIDEO_FAMILIES if sample.kind == "video" else IMAGE_FAMILIES
    for _ in range(extra):
        family = families[int(rng.integers(len(families)))]
        letter = int(rng.integers(len(sample.options)))
        q = scene_question(sample, family, letter, rng)
        if q is not None:
            out.append(q)
    return out


# --------------------------------------------------------------------------------------------- deterministic draws


def step_rng(seed: int, step: int, stream: int) -> tuple[torch.Generator, np.random.Generator]:
    """Generators for one step's draws: resume needs no RNG state, and streams never share numbers."""
    digest = hashlib.sha256(f"fit|{seed}|{step}|{stream}".encode()).digest()
    value = int.from_bytes(digest[:8], "little") & (2**63 - 1)
    return torch.Generator().manual_seed(value), np.random.default_rng(value)


def batch_indices(n: int, batch_size: int, step: int, seed: int) -> np.ndarray:
    """Sample indices of batch `step` (0-based) in an endless stream of per-epoch permutations of range(n)."""
    out: list[int] = []
    pos = step * batch_size
    while len(out) < batch_size:
        epoch, offset = divmod(pos, n)
        perm = np.random.default_rng([seed, epoch]).permutation(n)
        take = perm[offset:offset + batch_size - len(out)]
        out.extend(take.tolist())
        pos += len(take)
    return np.asarray(out)


def random_keep_masks(count: int, T: int, N: int, keep_min: float, full_prob: float,
                      generator: torch.Generator) -> list[torch.Tensor | None]:
    """One keep mask bool [T, N] per request (None = all tokens): ratio ~ U[keep_min, 1], or 1 with probability
    full_prob; exactly ceil(ratio * T * N) >= 1 tokens at uniformly random places."""
    masks: list[torch.Tensor | None] = []
    full = torch.rand(count, generator=generator) < full_prob
    ratios = keep_min + (1 - keep_min) * torch.rand(count, generator=generator)
    for b in range(count):
        order = torch.randperm(T * N, generator=generator)  # drawn for every request: the stream stays aligned
        if full[b]:
            masks.append(None)
            continue
        k = min(T * N, max(1, math.ceil(float(ratios[b]) * T * N)))
        keep = torch.zeros(T * N, dtype=torch.bool)
        keep[order[:k]] = True
        masks.append(keep.view(T, N))
    return masks


def lr_at(step: int, total: int, base: float, warmup: int, min_ratio: float) -> float:
    """Linear warm-up over `warmup` steps, then cosine from base down to base * min_ratio at step `total`."""
    if warmup and step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


# --------------------------------------------------------------------------------------------- model


def build_fit_env(cfg: Config, corpus: list[str]):
    """Tokenizer (trained on `corpus`) + randomly initialised model of env.arch sized by fit.model, wrapped as a
    VideoEnv whose model is trainable."""
    from scorerl.envs import env_class
    from scorerl.envs.tiny import tiny_config
    from scorerl.envs.tokenizer import build_tokenizer

    arch = cfg.env.arch
    tokenizer = build_tokenizer(corpus, vocab_size=cfg.fit.vocab_size, arch=arch)
    config = tiny_config(arch, tokenizer, **cfg.fit.model)
    cls = env_class(arch)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.run.seed)
        model = cls.model_class()(config)
    model.set_attn_implementation(cfg.env.attn_implementation)
    env = cls(model, tokenizer, token_budget=10**9)  # one forward per batch: the fit sets the batch size
    set_trainable(env, True)
    return env


def set_trainable(env, on: bool) -> None:
    """Switch the environment between fitting (gradients through encode and the LLM) and frozen scoring."""
    env.grad = on
    env.model.requires_grad_(on)
    env.model.train(on)


class FitProbes(nn.Module):
    """Linear read-outs used only while fitting (never saved with the environment); see the module doc."""

    def __init__(self, width: int, answer_values: int):
        from scorerl.data.synthetic import COLORS, SHAPES

        super().__init__()
        self.answer = nn.Linear(width, max(1, answer_values))
        self.option = nn.Linear(width, 1)
        self.role = nn.Linear(width, len(ROLES))
        self.color = nn.Linear(width, 1 + len(COLORS))
        self.shape = nn.Linear(width, 1 + len(SHAPES))


def build_probes(env, seed: int, answer_values: int) -> FitProbes:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        return FitProbes(env.hidden_size, answer_values).to(env.device)


def answer_vocab(samples: list[Sample]) -> dict[str, int]:
    """Class index of every answer value (option text) in the training data, for the answer probe."""
    return {v: i for i, v in enumerate(sorted({o for s in samples for o in s.options}))}


def encode_batch(env, frames: list[np.ndarray]) -> list[VisualTokens]:
    """Visual tokens of several videos (with gradients when env.grad). Qwen2.5-VL runs its vision tower once for
    the batch (its attention never crosses a frame, so batching changes nothing); other archs encode one by one."""
    if env.arch != "qwen2_5_vl":
        with torch.set_grad_enabled(env.grad):
            return [env.encode(f) for f in frames]
    inputs = [env.preprocess(f) for f in frames]
    pixels = torch.cat([x["pixel_values_videos"] for x in inputs])  # [sum t*h*w, C*tp*p*p]
    grid_thw = torch.cat([x["video_grid_thw"] for x in inputs])  # [B, 3]
    m = env.model.config.vision_config.spatial_merge_size
    with torch.set_grad_enabled(env.grad):
        pooled = env.model.model.get_video_features(pixel_values_videos=pixels, video_grid_thw=grid_thw).pooler_output
    out = []
    for tokens, (t, h, w) in zip(pooled, grid_thw.tolist()):  # tokens [t * (h/m) * (w/m), D]
        out.append(VisualTokens(features=tokens.reshape(t, (h // m) * (w // m), -1), grid=(h // m, w // m),
                                meta={"grid_thw": [t, h, w]}))
    return out


def token_grid(env, data: FitData) -> tuple[int, int]:
    """(rows, cols) of visual tokens per temporal unit for this data's frames."""
    with torch.no_grad():
        v = encode_batch(env, [data.frames[0]])[0]
    return v.grid


@dataclass
class Forward:
    logits: torch.Tensor  # [R, V] at the answer position
    hidden: tuple  # hidden states, each [R, W, D] (0 = embeddings, i = output of LLM layer i)
    seqs: list  # the env's Sequence of each request
    width: int  # W, the padded length (request r starts at column W - len(seqs[r]))


def forward_requests(env, requests: list[ScoreRequest], hidden: bool) -> Forward:
    """One left-padded LLM forward in the environment's own sequence layout (kept tokens at their original
    positions): the logits at the answer position and, when asked, every layer's hidden states."""
    from scorerl.envs.common import left_pad

    with torch.set_grad_enabled(env.grad):
        seqs = [env.build_sequence(r, with_target=False) for r in requests]
        embeds, mask, positions = left_pad(seqs)
        out = env.model(inputs_embeds=embeds, attention_mask=mask, position_ids=env.model_positions(positions),
                        use_cache=False, logits_to_keep=1, output_hidden_states=hidden)
    return Forward(out.logits[:, -1].float(), out.hidden_states if hidden else (), seqs, embeds.shape[1])


# --------------------------------------------------------------------------------------------- probe targets


class PromptPositions:
    """Positions, counted from the end of a request's sequence (so dropping and padding do not move them), of the
    token that ends the question line (it has seen the question and the video) and of the token that ends each
    option line (it has seen its letter and the whole option text). Memoised per prompt."""

    def __init__(self, env):
        self.env = env
        self.memo: dict[str, tuple[int, list[int]] | None] = {}

    def __call__(self, prompt: str, n_options: int) -> tuple[int, list[int]] | None:
        if prompt not in self.memo:
            if len(self.memo) > 50_000:
                self.memo.clear()
            self.memo[prompt] = self._find(prompt, n_options)
        return self.memo[prompt]

    def _find(self, prompt: str, n_options: int) -> tuple[int, list[int]] | None:
        after = self.env.text_around_video(prompt)[1]  # the sequence ends with exactly these tokens
        enc = self.env.tokenizer(after, add_special_tokens=False, return_offsets_mapping=True)

        def token_at(char: int) -> int | None:
            hits = [i for i, (a, b) in enumerate(enc.offset_mapping) if a <= char < b]
            return hits[0] - len(enc.input_ids) if hits else None

        lines = [after.find(f"\n{letter}. ") for letter in LETTERS[:n_options]]
        if min(lines) < 0:
            return None  # not the format_prompt layout
        ends = [token_at(after.find("\n", start + 1)) for start in lines]
        question_end = token_at(lines[0])
        if question_end is None or None in ends:
            return None
        return question_end, ends


def answer_probe_loss(probes: FitProbes, fwd: Forward, layer: int, question_ends: list[int | None],
                      values: list[int]) -> torch.Tensor:
    """CE of the answer value (the correct option's text as a class) read at the token ending the question."""
    rows = [r for r, (q, v) in enumerate(zip(question_ends, values)) if q is not None and v != IGNORE]
    if not rows:
        return fwd.logits.new_zeros(())
    cols = torch.tensor([fwd.width + question_ends[r] for r in rows], device=fwd.logits.device)
    h = fwd.hidden[layer][torch.tensor(rows, device=cols.device), cols]  # [R', D]
    target = torch.tensor([values[r] for r in rows], device=h.device)
    return nn.functional.cross_entropy(probes.answer(h).float(), target)


def option_probe_loss(probes: FitProbes, fwd: Forward, layer: int, ends: list[list[int] | None],
                      answers: list[int]) -> torch.Tensor:
    """CE over each request's options of the option probe at the token ending each option line."""
    rows = [r for r, e in enumerate(ends) if e is not None]
    if not rows:
        return fwd.logits.new_zeros(())
    width = max(len(ends[r]) for r in rows)
    cols = torch.zeros(len(rows), width, dtype=torch.long)
    valid = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, r in enumerate(rows):
        cols[i, :len(ends[r])] = fwd.width + torch.tensor(ends[r])
        valid[i, :len(ends[r])] = True
    h = fwd.hidden[layer][torch.tensor(rows)[:, None], cols.to(fwd.logits.device)]  # [R', width, D]
    scores = probes.option(h).squeeze(-1).float().masked_fill(~valid.to(h.device), float("-inf"))  # [R', width]
    target = torch.tensor([answers[r] for r in rows], device=scores.device)
    return nn.functional.cross_entropy(scores, target)


def token_probe_loss(probes: FitProbes, fwd: Forward, layer: int, labels: list[np.ndarray | None]) -> torch.Tensor:
    """Mean CE of role, colour and shape at every kept visual token that has a scene label."""
    picked, targets = [], []
    for r, (seq, lab) in enumerate(zip(fwd.seqs, labels)):
        if lab is None:
            continue
        start = fwd.width - len(seq) + seq.visual_start
        k = seq.kept.numel()
        picked.append(fwd.hidden[layer][r, start:start + k])  # [K, D] kept visual tokens in sequence order
        targets.append(torch.from_numpy(lab.reshape(3, -1)[:, seq.kept.numpy()].astype(np.int64)))  # [3, K]
    if not picked:
        return fwd.logits.new_zeros(())
    h = torch.cat(picked)
    y = torch.cat(targets, dim=1).to(h.device)
    losses = []
    for head, target in zip((probes.role, probes.color, probes.shape), y):
        if bool((target != IGNORE).any()):
            losses.append(nn.functional.cross_entropy(head(h).float(), target, ignore_index=IGNORE))
    return torch.stack(losses).mean() if losses else h.new_zeros(())


# --------------------------------------------------------------------------------------------- one step


@dataclass
class StepResult:
    loss: torch.Tensor  # scalar, with graph
    letter_loss: float
    answer_loss: float
    option_loss: float
    token_loss: float
    correct: int
    count: int


def fit_step_loss(env, probes: FitProbes, data: FitData, idx: np.ndarray, cfg: Config, step: int,
                  letter_ids: torch.Tensor, positions: PromptPositions, vocab: dict[str, int]) -> StepResult:
    """Loss of batch `step`: augment -> encode -> questions -> random keep masks -> one LLM forward -> letter CE
    (what env.score computes for a one-token target) + probe losses."""
    fit = cfg.fit
    tgen, nrng = step_rng(cfg.run.seed, step, 0)
    flips = torch.rand(len(idx), 2, generator=tgen) < 0.5  # [B, 2] (mirror, reverse)
    frames, requests_of = [], []
    for b, i in enumerate(idx):
        hflip = fit.augment and bool(flips[b, 0])
        reverse = fit.augment and bool(flips[b, 1]) and bool(data.is_video[i])
        pairs = word_swaps(hflip, reverse)
        frames.append(augment_frames(data.frames[i], hflip, reverse))
        labels = None
        if data.labels is not None and (data.labels[i] != IGNORE).any():
            labels = augment_labels(data.labels[i], pairs, hflip, reverse)
        questions = questions_for(data.samples[i], fit.extra_questions, nrng)
        requests_of.append([(q, augmented_prompt(q, pairs), labels, vocab.get(swap_words(q.options[q.answer_index],
                                                                                    pairs), IGNORE))
                            for q in questions])
    visuals = encode_batch(env, frames)

    flat = [(b, q, p, lab, value) for b, reqs in enumerate(requests_of) for q, p, lab, value in reqs]
    T, N = visuals[0].features.shape[:2]
    masks = random_keep_masks(len(flat), T, N, fit.keep_min, fit.full_prob, step_rng(cfg.run.seed, step, 1)[0])
    requests = [ScoreRequest(visuals[item[0]], item[2], keep=m) for item, m in zip(flat, masks)]
    need_hidden = fit.answer_weight > 0 or fit.option_weight > 0 or fit.token_weight > 0
    fwd = forward_requests(env, requests, hidden=need_hidden)

    answers = [item[1].answer_index for item in flat]
    target = letter_ids[answers]  # [R]
    letter_loss = nn.functional.cross_entropy(fwd.logits, target)
    loss = letter_loss
    zero = fwd.logits.new_zeros(())
    answer_loss = option_loss = token_loss = zero
    places = [positions(item[2], len(item[1].options)) for item in flat]
    if fit.answer_weight > 0:
        answer_loss = answer_probe_loss(probes, fwd, fit.answer_layer, [p and p[0] for p in places],
                                        [item[4] for item in flat])
        loss = loss + fit.answer_weight * answer_loss
    if fit.option_weight > 0:
        option_loss = option_probe_loss(probes, fwd, fit.option_layer, [p and p[1] for p in places], answers)
        loss = loss + fit.option_weight * option_loss
    if fit.token_weight > 0:
        token_loss = token_probe_loss(probes, fwd, fit.token_layer, [item[3] for item in flat])
        loss = loss + fit.token_weight * token_loss
    pred = fwd.logits[:, letter_ids].argmax(1)  # [R] option index
    correct = int((pred == torch.tensor(answers, device=pred.device)).sum())
    return StepResult(loss, letter_loss.item(), answer_loss.item(), option_loss.item(), token_loss.item(), correct,
                      len(flat))


# --------------------------------------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate(env, data: FitData, batch_size: int = 64, keep_fn=None, desc: str = "eval") -> dict:
    """Multiple-choice accuracy (answer = the most likely option letter, env.choice_logprobs) overall and per
    family. keep_fn(sample_index, visual) -> keep bool [T, N] or None (all tokens, the default)."""
    from tqdm.auto import tqdm

    was = env.grad
    set_trainable(env, False)
    correct: list[bool] = []
    try:
        for start in tqdm(range(0, len(data), batch_size), desc=desc, unit="batch", leave=False):
            idx = list(range(start, min(start + batch_size, len(data))))
            visuals = encode_batch(env, [data.frames[i] for i in idx])
            requests = [ScoreRequest(v, format_prompt(data.samples[i]),
                                     keep=None if keep_fn is None else keep_fn(i, v)) for i, v in zip(idx, visuals)]
            logp = env.choice_logprobs(requests, list(LETTERS))  # [R, 4]
            for i, row in zip(idx, logp):
                n = len(data.samples[i].options)
                correct.append(int(row[:n].argmax()) == data.samples[i].answer_index)
    finally:
        set_trainable(env, was)
    return accuracy_table(correct, [s.family for s in data.samples])


def accuracy_table(correct: list[bool], families: list[str]) -> dict:
    per: dict[str, list[bool]] = {}
    for ok, f in zip(correct, families):
        per.setdefault(f or "-", []).append(ok)
    return {"accuracy": sum(correct) / max(1, len(correct)), "n": len(correct),
            "families": {f: {"accuracy": sum(v) / len(v), "n": len(v)} for f, v in sorted(per.items())}}


# --------------------------------------------------------------------------------------------- identity


def fit_identity(cfg: Config) -> dict:
    """Everything the fitted weights depend on: the fit-relevant config and the exact data (manifest hashes)."""
    fit = {k: v for k, v in cfg.to_dict()["fit"].items() if k not in _NOT_IDENTITY}
    manifests = {"train": cfg.data.stage2_manifest, "eval": cfg.data.eval_manifest}
    if cfg.fit.image_data:
        manifests["images"] = cfg.data.stage1_manifest
    return {
        "format": FIT_FORMAT,
        "arch": cfg.env.arch,
        "attn_implementation": cfg.env.attn_implementation,
        "seed": cfg.run.seed,
        "num_frames": cfg.data.num_frames,
        "frame_size": cfg.data.frame_size,
        "fit": fit,
        "data": {k: {"spec": v, "sha256": manifest_hash(resolve_manifest(v))} for k, v in manifests.items()},
    }


def read_fit_json(out: Path) -> dict | None:
    try:
        return json.loads((out / FIT_FILE).read_text())
    except (OSError, ValueError):
        return None


def is_fitted(cfg: Config, out: str | Path) -> bool:
    """True when `out` holds a finished fit of exactly this config and data."""
    out = Path(out).expanduser()
    done = read_fit_json(out)
    return done is not None and done.get("identity") == fit_identity(cfg) and (out / "config.json").is_file()


def _write_json_atomic(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------- checkpoints


def save_fit_checkpoint(out: Path, step: int, env, probes: FitProbes, optimizer, identity: dict, stats: dict,
                        keep_last: int) -> Path:
    from scorerl.rl.checkpoint import flatten_optimizer_state, save_checkpoint

    opt_tensors, opt_layout = flatten_optimizer_state(optimizer.state_dict())
    state = {"kind": "env-fit", "identity": identity, "step": step, "optimizer": opt_layout, "stats": stats}
    tensors = {"model": env.model.state_dict(), "probes": probes.state_dict(), "optimizer": opt_tensors}
    return save_checkpoint(out, step, tensors=tensors, state=state, keep_last=keep_last)


def find_resume(out: Path, resume: str | None, identity: dict):
    """The checkpoint to continue from (loaded and verified), or None to start afresh."""
    from scorerl.config import diff_configs
    from scorerl.rl.checkpoint import latest_checkpoint, load_checkpoint

    if resume is None:
        return None
    if resume == "auto":
        path = latest_checkpoint(out, clean_stale=True)
        if path is None:
            return None
        ckpt = load_checkpoint(path)
        if ckpt.state.get("kind") != "env-fit" or ckpt.state.get("identity") != identity:
            log.warning("%s was written by a different fit (config or data changed); starting afresh", path)
            return None
        return ckpt
    ckpt = load_checkpoint(resume)
    if ckpt.state.get("kind") != "env-fit":
        raise CheckpointError(f"{resume}: not an environment-fit checkpoint")
    if ckpt.state.get("identity") != identity:
        diffs = diff_configs(ckpt.state.get("identity", {}), identity)
        raise CheckpointError(f"{resume}: written by a different fit (differs at {', '.join(diffs)}); "
                              f"restore those settings or start afresh without --resume")
    return ckpt


def restore(ckpt, env, probes: FitProbes, optimizer) -> int:
    from scorerl.rl.checkpoint import unflatten_optimizer_state

    for name, module in (("model", env.model), ("probes", probes)):
        if name not in ckpt.tensors:
            raise CheckpointError(f"{ckpt.path}: no {name}.safetensors")
        missing, unexpected = module.load_state_dict(ckpt.tensors[name], strict=False)
        if missing or unexpected:
            raise CheckpointError(f"{ckpt.path}: {name} weights do not match this model (missing {missing[:3]}, "
                                  f"unexpected {unexpected[:3]})")
    optimizer.load_state_dict(unflatten_optimizer_state(ckpt.tensors["optimizer"], ckpt.state["optimizer"]))
    return int(ckpt.state["step"])


# --------------------------------------------------------------------------------------------- entry point


def fit_env(cfg: Config, out: str | Path | None = None, resume: str | None = None) -> Path:
    """Fit the world's environment into `out` (default: scorerl.paths.world_env_dir()) and return `out`.

    A fast no-op when out/fit.json records the same identity. resume: None (start afresh), `auto` (the latest
    matching checkpoint under out/checkpoints, else afresh), or the PATH of a fit checkpoint folder.
    """
    from scorerl.paths import world_env_dir

    out = Path(out).expanduser() if out is not None else world_env_dir()
    _check_cfg(cfg)
    if is_fitted(cfg, out):
        log.info("environment in %s is already fitted with this config and data; nothing to do", out)
        return out
    identity = fit_identity(cfg)
    out.mkdir(parents=True, exist_ok=True)
    (out / FIT_FILE).unlink(missing_ok=True)  # a different fit's marker must not survive next to new weights

    if cfg.fit.threads:
        torch.set_num_threads(cfg.fit.threads)
    started = time.perf_counter()
    train = _load_train(cfg)
    test = load_split(cfg.data.eval_manifest, cfg.data.num_frames, cfg.data.frame_size, "eval")
    env = build_fit_env(cfg, prompt_corpus(train.samples))
    env.model.to(_device(cfg))
    if cfg.fit.token_weight > 0:
        train = add_scene_labels(train, *token_grid(env, train))
    decode_s = time.perf_counter() - started

    vocab = answer_vocab(train.samples)
    probes = build_probes(env, cfg.run.seed, len(vocab))
    params = list(env.model.parameters()) + list(probes.parameters())
    optimizer = torch.optim.AdamW(params, lr=cfg.fit.lr, weight_decay=cfg.fit.weight_decay, betas=(0.9, 0.98))
    ckpt = find_resume(out, resume, identity)
    step = restore(ckpt, env, probes, optimizer) if ckpt is not None else 0
    if ckpt is not None:
        log.info("resuming the fit from %s (step %d)", ckpt.path, step)
    stats = dict(ckpt.state.get("stats", {})) if ckpt is not None else {}

    train_s = _train_loop(cfg, env, probes, optimizer, params, train, vocab, out, identity, step, stats)

    set_trainable(env, False)
    env.model.to("cpu")
    env.save_pretrained(out)
    eval_started = time.perf_counter()
    result = evaluate(env, test, batch_size=cfg.fit.eval_batch_size, desc="test (all tokens)")
    record = {
        "identity": identity,
        "config": cfg.to_dict(),
        "steps": cfg.fit.steps,
        "train_items": len(train),
        "parameters": sum(p.numel() for p in env.model.parameters()),
        "visual_tokens": list(encode_batch(env, [test.frames[0]])[0].features.shape[:2]),
        "wall_time_s": {"decode": round(decode_s, 1), "train": round(train_s, 1),
                        "eval": round(time.perf_counter() - eval_started, 1),
                        "this_run": round(time.perf_counter() - started, 1)},
        "resumed_from_step": None if ckpt is None else int(ckpt.state["step"]),
        "threads": torch.get_num_threads(),
        "device": str(_device(cfg)),
        "test": result,
    }
    _write_json_atomic(out / FIT_FILE, record)  # last: its presence marks a finished fit
    families = ", ".join(f"{f} {v['accuracy']:.2f}" for f, v in result["families"].items())
    print(f"env fit: {cfg.fit.steps} steps, {train_s / 60:.1f} min of training; test accuracy with all tokens "
          f"{result['accuracy']:.3f} ({families}); saved to {out}", flush=True)
    return out


def _train_loop(cfg: Config, env, probes, optimizer, params, train: FitData, vocab: dict[str, int], out: Path,
                identity: dict, step: int, stats: dict) -> float:
    """Run steps `step`..fit.steps with a progress bar and checkpoints; returns the training wall time (s),
    including the time of the run this one resumed."""
    from scorerl.rl.logging import ProgressBar

    fit = cfg.fit
    letter_ids = torch.tensor(env.choice_ids(list(LETTERS)), device=env.device)
    positions = PromptPositions(env)
    prior_s = float(stats.get("train_s", 0.0))
    ema = dict(stats.get("ema", {}))
    bar = ProgressBar(total=fit.steps, initial=step, keys=("loss", "acc", "ans", "opt", "tok"), desc="env fit")
    started = time.perf_counter()
    try:
        while step < fit.steps:
            lr = lr_at(step, fit.steps, fit.lr, fit.warmup_steps, fit.min_lr_ratio)
            for group in optimizer.param_groups:
                group["lr"] = lr
            idx = batch_indices(len(train), fit.batch_size, step, cfg.run.seed)
            result = fit_step_loss(env, probes, train, idx, cfg, step, letter_ids, positions, vocab)
            optimizer.zero_grad(set_to_none=True)
            result.loss.backward()
            if fit.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, fit.max_grad_norm)
            optimizer.step()
            step += 1
            now = {"loss": result.letter_loss, "acc": result.correct / result.count, "ans": result.answer_loss,
                   "opt": result.option_loss, "tok": result.token_loss}
            ema = {k: v if k not in ema else 0.95 * ema[k] + 0.05 * v for k, v in now.items()}
            bar.update(step, ema)
            if step % fit.checkpoint_every == 0 or step == fit.steps:
                stats = {"ema": ema, "train_s": prior_s + time.perf_counter() - started}
                save_fit_checkpoint(out, step, env, probes, optimizer, identity, stats, fit.keep_last)
    finally:
        bar.close()
    return prior_s + time.perf_counter() - started


def _load_train(cfg: Config) -> FitData:
    parts = [load_split(cfg.data.stage2_manifest, cfg.data.num_frames, cfg.data.frame_size, "train")]
    if cfg.fit.image_data:
        parts.append(load_split(cfg.data.stage1_manifest, cfg.data.num_frames, cfg.data.frame_size, "images"))
    return concat_data(parts)


def _device(cfg: Config) -> torch.device:
    from scorerl.envs.common import resolve_device

    return resolve_device(cfg.env.device)


def _check_cfg(cfg: Config) -> None:
    if cfg.env.dtype != "float32":
        raise ConfigError("env.dtype: the environment fit trains in float32; set env.dtype=float32 for `env fit`")
    layers = int(cfg.fit.model.get("num_layers", 2))
    for key in ("answer_layer", "option_layer", "token_layer"):
        if getattr(cfg.fit, key.replace("layer", "weight")) > 0:
            index = getattr(cfg.fit, key)
            if not -(layers + 1) <= index <= layers:
                raise ConfigError(f"fit.{key}: {index} is out of range for an LLM of {layers} layers "
                                  f"(hidden states 0..{layers}, or negative from the end)")
