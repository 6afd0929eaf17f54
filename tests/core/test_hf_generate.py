"""compressed_generate against the UNMODIFIED transformers models: the model's own generate when nothing is dropped,
a cache-free greedy loop of plain forwards when 75% of the visual tokens are dropped.

Tiny random models (fp32, CPU) of both real architectures; initializer_range 0.1 makes the output depend visibly on
the visual tokens and their positions, so a wrong position or a misplaced token changes the logits. Logits are
compared at every step besides the tokens (random models often repeat one token).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from scorerl.compress.select import topk_mask
from scorerl.envs import ARCHS
from scorerl.envs.base import ScoreRequest
from scorerl.envs.build import build_tiny_env
from scorerl.envs.hf import left_pad
from scorerl.integrations.hf_generate import compress_inputs, compressed_generate, processor_like_inputs

pytestmark = pytest.mark.usefixtures("one_thread")

FRAMES = (2, 3, 4)  # three videos of different lengths -> different placeholder counts and left padding
SIZE = 64  # 64x64 frames -> N = 16 tokens per frame in both tiny archs
NEW = 8
PROMPTS = [
    "Which way does the ball move? A. left B. right",
    "What color is it?",
    "Describe the video. A. red B. blue C. green D. yellow",
]
GREEDY = dict(max_new_tokens=NEW, do_sample=False, return_dict_in_generate=True, output_logits=True)
TOL = 1e-4


@pytest.fixture(scope="module", params=ARCHS)
def env(request):
    return build_tiny_env(request.param, seed=0, initializer_range=0.1)


@pytest.fixture(scope="module")
def videos():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (f, SIZE, SIZE, 3), dtype=np.uint8) for f in FRAMES]


@pytest.fixture(scope="module")
def inputs(env, videos):
    return processor_like_inputs(env, videos, PROMPTS)


def keep_all(v: torch.Tensor, grid) -> torch.Tensor:
    return torch.ones(v.shape[:2], dtype=torch.bool)


class TopQuarter:
    """Keep the 25% of tokens scoring highest on a fixed random direction; records what it was called with."""

    def __init__(self, dim: int):
        self.direction = torch.randn(dim, generator=torch.Generator().manual_seed(7))
        self.calls: list[tuple[torch.Tensor, tuple[int, int]]] = []

    def __call__(self, v: torch.Tensor, grid) -> torch.Tensor:
        self.calls.append((v.clone(), tuple(grid)))
        return topk_mask(v.float() @ self.direction, 0.25)  # bool [T, N]


def stacked(logits) -> torch.Tensor:
    """generate's per-step logits (tuple of [B, V]) -> [B, steps, V]."""
    return torch.stack(logits, dim=1).float()


def stop_len(tokens: torch.Tensor, stop: int) -> int:
    """Tokens up to and including the first stop token (generate pads a finished row after it)."""
    hits = (tokens == stop).nonzero()
    return int(hits[0]) + 1 if len(hits) else len(tokens)


def assert_rows_match(ours, ref_tokens: list[torch.Tensor], ref_logits: list[torch.Tensor], pad: int):
    """Row i of `ours` (a GenerateOutput) equals reference row i token for token (then only padding) and its
    logits match at every step the reference generated."""
    logits = stacked(ours.logits)  # [B, steps, V]
    for i, (tokens, lg) in enumerate(zip(ref_tokens, ref_logits)):
        n = len(tokens)
        assert ours.sequences[i, :n].tolist() == tokens.tolist(), f"row {i}"
        assert (ours.sequences[i, n:] == pad).all(), f"row {i} continues after its stop token"
        assert (logits[i, :n] - lg[:n].float()).abs().max() <= TOL, f"row {i}"


# --------------------------------------------------------------------------------------------- references


def model_generate_rows(env, videos, prompts):
    """Per-row new tokens and logits from the UNMODIFIED model's generate on processor-like inputs: one batched
    call when the model can take the batch, else one call per video (LLaVA-OneVision's forward needs one frame
    count for all videos of a call)."""
    batch = processor_like_inputs(env, videos, prompts)
    if isinstance(batch["pixel_values_videos"], torch.Tensor):
        groups = [(list(range(len(videos))), batch)]
    else:
        groups = [([i], processor_like_inputs(env, videos[i : i + 1], prompts[i : i + 1])) for i in range(len(videos))]
    tokens, logits = [None] * len(videos), [None] * len(videos)
    stop = env.model.generation_config.eos_token_id
    for rows, group in groups:
        out = env.model.generate(**group, **GREEDY)
        new = out.sequences[:, group["input_ids"].shape[1] :]  # generate on input_ids returns the prompt too
        for j, i in enumerate(rows):
            n = stop_len(new[j], stop)
            tokens[i], logits[i] = new[j, :n], stacked(out.logits)[j, :n]
    return tokens, logits


def encoded(env, videos):
    """VisualTokens of each video through scorerl's own environment (tested against transformers in
    test_envs.py): an independent path to the same projected tokens."""
    return env.encode_batch(videos)


def manual_greedy(env, seqs, steps: int):
    """Greedy decoding by plain cache-free forwards of the whole left-padded batch: the first new token from the
    prefill's last logits, then each new token's embedding appended at position max(prompt) + k on every axis."""
    embed = env.model.get_input_embeddings()
    embeds, mask, positions = left_pad(seqs)  # [B, L, D], [B, L], [P, B, L]
    top = torch.stack([s.positions.amax() for s in seqs])  # [B] the largest position of each prompt
    tokens, logits = [], []
    for k in range(1, steps + 1):
        with torch.no_grad():
            out = env.model(
                inputs_embeds=embeds, attention_mask=mask, position_ids=env.model_positions(positions), use_cache=False
            ).logits[:, -1]  # [B, V]
        token = out.argmax(-1)  # [B]
        tokens.append(token)
        logits.append(out)
        with torch.no_grad():
            embeds = torch.cat([embeds, embed(token)[:, None]], dim=1)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        step = (top + k).view(1, -1, 1).expand(positions.shape[0], -1, 1)  # [P, B, 1]
        positions = torch.cat([positions, step], dim=2)
    return torch.stack(tokens, 1), torch.stack(logits, 1)  # [B, steps], [B, steps, V]


# --------------------------------------------------------------------------------------------- ratio 1


def test_ratio_one_equals_model_generate(env, videos, inputs):
    ours = compressed_generate(env.model, inputs, keep_all, **GREEDY)
    assert ours.sequences.shape[1] <= NEW  # only the new tokens: generate on inputs_embeds has no prompt ids
    tokens, logits = model_generate_rows(env, videos, PROMPTS)
    assert_rows_match(ours, tokens, logits, env.model.generation_config.pad_token_id)
    assert max(len(t) for t in tokens) > 1  # at least one row decodes several tokens: the decode path is tested


def test_llava_equal_frame_batch_equals_model_generate():
    """LLaVA-OneVision with a [V, F, C, H, W] tensor (the only batch its own generate takes), one batched call."""
    env = build_tiny_env("llava_onevision", seed=1, initializer_range=0.1)
    rng = np.random.default_rng(1)
    videos = [rng.integers(0, 256, (3, SIZE, SIZE, 3), dtype=np.uint8) for _ in range(3)]
    inputs = processor_like_inputs(env, videos, PROMPTS)
    assert isinstance(inputs["pixel_values_videos"], torch.Tensor)
    ours = compressed_generate(env.model, inputs, keep_all, **GREEDY)
    tokens, logits = model_generate_rows(env, videos, PROMPTS)
    assert_rows_match(ours, tokens, logits, env.model.generation_config.pad_token_id)


@pytest.mark.parametrize("seconds", [2.0, 20.0])
def test_qwen_second_per_grid_ts_reaches_the_positions(videos, seconds):
    """second_per_grid_ts spaces the temporal M-RoPE ids; it must reach our positions as it reaches generate's.
    At 20 s per unit the video's temporal ids pass the prompt's last text id (transformers 5.x continues text
    after a video at its spatial extent), so the last token is not the max: decoding then follows the model's own
    generate, last + 1, which is also what get_rope_index gives text appended to the full sequence."""
    env = build_tiny_env("qwen2_5_vl", seed=0, initializer_range=0.1)
    plain = processor_like_inputs(env, videos, PROMPTS)
    inputs = dict(plain, second_per_grid_ts=torch.full((len(videos),), seconds))
    ours = compressed_generate(env.model, inputs, keep_all, **GREEDY)
    ref = env.model.generate(**inputs, **GREEDY)
    assert torch.equal(ours.sequences, ref.sequences[:, inputs["input_ids"].shape[1] :])
    assert (stacked(ours.logits) - stacked(ref.logits)).abs().max() <= TOL
    spaced = compress_inputs(env.model, inputs, keep_all)
    assert not torch.equal(spaced.position_ids, compress_inputs(env.model, plain, keep_all).position_ids)
    assert spaced.ends_at_max == [seconds == 2.0] * len(videos)


# --------------------------------------------------------------------------------------------- ratio 0.25


def test_quarter_equals_manual_greedy_loop_on_kept_tokens(env, videos, inputs):
    select = TopQuarter(env.hidden_size)
    ours = compressed_generate(env.model, inputs, select, **GREEDY)

    # the selector saw each video's projected tokens [T, N, D] and grid, as scorerl's environment encodes them
    visuals = encoded(env, videos)
    assert len(select.calls) == len(videos)
    for (v, grid), visual in zip(select.calls, visuals):
        assert v.shape == visual.features.shape and grid == tuple(visual.grid)
        assert (v - visual.features).abs().max() <= 1e-5

    # reference: the same kept tokens laid out by scorerl's environment (original positions), decoded by hand
    seqs = [
        env.build_sequence(ScoreRequest(visual, prompt, keep=select(visual.features, visual.grid)), with_target=False)
        for visual, prompt in zip(visuals, PROMPTS)
    ]
    for s in seqs:  # the prompt ends with text holding its largest position, so max + k == last + k
        assert (s.positions[:, -1] == s.positions.amax()).all()
    ref_tokens, ref_logits = manual_greedy(env, seqs, NEW)
    stop = env.model.generation_config.eos_token_id
    lengths = [stop_len(row, stop) for row in ref_tokens]
    assert_rows_match(
        ours, [t[:n] for t, n in zip(ref_tokens, lengths)], list(ref_logits), env.model.generation_config.pad_token_id
    )
    assert max(lengths) > 1

    # the pruned run really used fewer visual tokens, and that changed what the model computed
    compressed = compress_inputs(env.model, inputs, select)
    suffix = 1 if env.arch == "llava_onevision" else 0
    T_N = [v.features.shape[0] * v.features.shape[1] for v in visuals]
    assert compressed.visual_total == [n + suffix for n in T_N]
    assert compressed.visual_kept == [math.ceil(0.25 * n) + suffix for n in T_N]
    assert compressed.attention_mask.sum(1).tolist() == [len(s) for s in seqs]
    full = compressed_generate(env.model, inputs, keep_all, **GREEDY)
    assert (stacked(full.logits)[:, 0] - stacked(ours.logits)[:, 0]).abs().max() > 1e-3


def test_decode_positions_continue_the_full_sequence(env, inputs):
    """Positions the LLM receives: the kept tokens' original ids at prefill, then for the k-th new token the id
    the model's own position rule gives it in the FULL sequence extended by the generated tokens (= max + k)."""
    steps = 4
    seen = []
    hook = env.model.model.language_model.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["position_ids"].clone()), with_kwargs=True
    )
    try:
        select = TopQuarter(env.hidden_size)
        out = compressed_generate(
            env.model, inputs, select, max_new_tokens=steps, min_new_tokens=steps, do_sample=False
        )
    finally:
        hook.remove()
    compressed = compress_inputs(env.model, inputs, select)
    assert len(seen) == steps and torch.equal(seen[0], compressed.position_ids)
    assert compressed.ends_at_max == [True] * len(PROMPTS)
    decoded = torch.cat(seen[1:], dim=-1)  # [3, B, steps - 1] or [B, steps - 1]: new tokens 1.. fed back

    # the model's own rule on the unpruned prompt + the generated tokens (the last one never fed back)
    ids = torch.cat([inputs["input_ids"], out[:, : steps - 1]], dim=1)  # [B, L + steps - 1]
    mask = torch.cat([inputs["attention_mask"], torch.ones_like(out[:, : steps - 1])], dim=1)
    if env.arch == "qwen2_5_vl":
        mm_types = torch.cat([inputs["mm_token_type_ids"], torch.zeros_like(out[:, : steps - 1])], dim=1)  # new: text
        full, _ = env.model.model.get_rope_index(
            ids, mm_token_type_ids=mm_types, video_grid_thw=inputs["video_grid_thw"], attention_mask=mask
        )
    else:
        full = mask.cumsum(-1) - 1
    assert torch.equal(decoded, full[..., -(steps - 1) :])
    prompt_max = compressed.position_ids.amax(dim=-1)  # [3, B] / [B]: the last token holds the max (checked above)
    assert torch.equal(decoded, prompt_max[..., None] + torch.arange(1, steps))


# --------------------------------------------------------------------------------------------- options, warnings


def test_generation_options_pass_through(env, inputs):
    select = TopQuarter(env.hidden_size)
    fixed = dict(max_new_tokens=4, min_new_tokens=4)
    beams = compressed_generate(env.model, inputs, select, num_beams=2, do_sample=False, **fixed)
    assert beams.shape == (len(PROMPTS), 4) and beams.dtype == torch.long
    two = compressed_generate(env.model, inputs, select, num_beams=2, num_return_sequences=2, **fixed)
    assert two.shape == (2 * len(PROMPTS), 4)

    def sample(seed):
        torch.manual_seed(seed)
        return compressed_generate(env.model, inputs, select, do_sample=True, top_k=50, temperature=1.5, **fixed)

    first, again = sample(0), sample(0)
    assert first.shape == (len(PROMPTS), 4) and torch.equal(first, again)
    greedy = compressed_generate(env.model, inputs, select, do_sample=False, **fixed)
    assert any(not torch.equal(sample(s), greedy) for s in range(1, 4))  # sampling really sampled

    with pytest.raises(TypeError, match="attention_mask"):
        compressed_generate(env.model, inputs, select, attention_mask=inputs["attention_mask"])


def test_no_past_key_values_deprecation_warning(env, inputs, videos):
    """Neither compressed_generate (greedy, beams) nor the env's own KV-cache loop (generate_ids) passes the
    deprecated `past_key_values` (transformers 5.x: "... is deprecated ... Use `cache` instead")."""
    select = TopQuarter(env.hidden_size)
    visual = encoded(env, videos[:1])[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compressed_generate(env.model, inputs, select, max_new_tokens=3, do_sample=False)
        compressed_generate(env.model, inputs, select, max_new_tokens=3, num_beams=2)
        env.generate_ids(ScoreRequest(visual, PROMPTS[0], keep=select(visual.features, visual.grid)), max_new_tokens=3)
    bad = [
        str(w.message)
        for w in caught
        if issubclass(w.category, (FutureWarning, DeprecationWarning)) and "past_key_values" in str(w.message)
    ]
    assert bad == []


# --------------------------------------------------------------------------------------------- inputs, errors


def test_processor_like_inputs_layout(env, videos, inputs):
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    assert ids.shape == mask.shape and ids.shape[0] == len(videos)
    lengths = mask.sum(1)
    for b, (frames, prompt) in enumerate(zip(videos, PROMPTS)):
        pad = ids.shape[1] - int(lengths[b])
        assert (mask[b, :pad] == 0).all() and (mask[b, pad:] == 1).all()  # left padding
        assert (ids[b, :pad] == env.tokenizer.pad_token_id).all()
        visual = env.encode(frames)
        # the same sequence scorerl's environment lays out for this prompt and video
        assert torch.equal(ids[b, pad:], env.build_input_ids(ScoreRequest(visual, prompt), with_target=False))
        T, N = visual.features.shape[:2]
        if env.arch == "qwen2_5_vl":
            t, h, w = inputs["video_grid_thw"][b].tolist()
            expected = t * h * w // env.model.config.vision_config.spatial_merge_size**2
            assert expected == T * N
            row = ids[b, pad:].tolist()
            start = row.index(env.video_token_id)
            assert row[start - 1] == env.tokenizer.convert_tokens_to_ids("<|vision_start|>")
            assert row[start + expected] == env.tokenizer.convert_tokens_to_ids("<|vision_end|>")
            assert torch.equal(inputs["mm_token_type_ids"][b], (ids[b] == env.video_token_id).long() * 2)
        else:
            expected = frames.shape[0] * 16 + 1  # ceil((64 // 8) / 2)^2 tokens per frame + the newline
        assert int((ids[b] == env.video_token_id).sum()) == expected
    if env.arch == "llava_onevision":  # different frame counts: the list its processor cannot stack
        assert [p.shape[0] for p in inputs["pixel_values_videos"]] == list(FRAMES)


def test_clear_errors(env, inputs):
    with pytest.raises(TypeError, match="bool"):
        compress_inputs(env.model, inputs, lambda v, grid: torch.rand(v.shape[:2]))
    with pytest.raises(ValueError, match="shape"):
        compress_inputs(env.model, inputs, lambda v, grid: torch.ones(v.shape[0], 1, dtype=torch.bool))
    short = dict(inputs, input_ids=inputs["input_ids"][:, 1:], attention_mask=inputs["attention_mask"][:, 1:])
    short["input_ids"] = short["input_ids"].masked_fill(
        short["input_ids"] == env.video_token_id, env.tokenizer.pad_token_id
    )
    with pytest.raises(ValueError, match="placeholders"):
        compress_inputs(env.model, short, keep_all)
    with pytest.raises(ValueError, match="not"):
        compressed_generate(torch.nn.Linear(1, 1), inputs, keep_all)
