"""The environments against the UNMODIFIED transformers models: same log-probs, exact token dropping, batching.

Tiny random models (fp32, CPU) of both real architectures. initializer_range 0.1 makes the random model's output
depend visibly on its visual input, so "dropping tokens changes nothing" could not pass by accident.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scorerl.config import EnvSection
from scorerl.envs import ARCHS, env_class, load_env
from scorerl.envs.base import ScoreRequest, VisualTokens
from scorerl.envs.build import build_tiny_env
from scorerl.envs.hf import chunk_by_budget
from scorerl.envs.qwen2_5_vl import patchify
from scorerl.envs.tokenizer import build_tokenizer
from scorerl.errors import EnvError

TOL = 1e-5
F, SIZE = 4, 64  # 4 frames of 64x64 -> [T, N] = [4, 16] in both tiny archs
PROMPT = "What color is the ball? A. red B. blue C. green D. yellow"


@pytest.fixture(scope="module", params=ARCHS)
def env(request):
    return build_tiny_env(request.param, seed=0, initializer_range=0.1)


@pytest.fixture(scope="module")
def frames():
    return np.random.default_rng(0).integers(0, 256, (F, SIZE, SIZE, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def visual(env, frames):
    return env.encode(frames)


def random_keep(shape, ratio, seed) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    keep = torch.rand(shape, generator=g) < ratio
    keep.view(-1)[seed % keep.numel()] = True  # never empty
    return keep


# --------------------------------------------------------------------------------------------- references


def hf_target_logprobs(env, frames, request, attention_mask=None, position_ids=None) -> torch.Tensor:
    """Target-token log-probs [t] from the ordinary HF forward (input_ids + pixels; the model places features)."""
    ids = env.build_input_ids(request)[None]  # [1, L]
    inputs = env.preprocess(frames)
    extra = {}
    if env.arch == "qwen2_5_vl":
        extra["mm_token_type_ids"] = (ids == env.video_token_id).int() * 2
    mask = torch.ones_like(ids) if attention_mask is None else attention_mask[None]
    with torch.no_grad():
        logits = env.model(input_ids=ids, attention_mask=mask, position_ids=position_ids, **inputs, **extra).logits[0]
    target = env.tokenizer(request.target, add_special_tokens=False).input_ids
    logp = torch.log_softmax(logits[-len(target) - 1 : -1].float(), dim=-1)
    return logp.gather(1, torch.tensor(target)[:, None]).squeeze(1)


def hf_full_positions(env, ids: torch.Tensor, frames) -> torch.Tensor:
    """Position ids of the full sequence, from the HF model's own code (independent of the env's layout)."""
    if env.arch == "qwen2_5_vl":
        grid = env.preprocess(frames)["video_grid_thw"]
        mm_types = (ids[None] == env.video_token_id).int() * 2
        pos, _ = env.model.model.get_rope_index(ids[None], mm_token_type_ids=mm_types, video_grid_thw=grid)
        return pos  # (3, 1, L)
    return torch.arange(len(ids))[None]  # (1, L)


# --------------------------------------------------------------------------------------------- exactness


def test_all_kept_matches_unmodified_model(env, frames, visual):
    req = ScoreRequest(visual, PROMPT, target="B. blue")
    ours = env.token_logprobs([req])[0]
    ref = hf_target_logprobs(env, frames, req)
    assert ours.shape == ref.shape and ours.numel() > 1
    assert (ours - ref).abs().max() <= TOL
    assert torch.allclose(env.score([req]), -ref.mean(), atol=TOL)


def test_kept_subset_equals_masked_full_forward(env, frames, visual):
    T, N = visual.features.shape[:2]
    keep = random_keep((T, N), 0.3, seed=1)
    req = ScoreRequest(visual, PROMPT, target="B. blue", keep=keep)
    ours = env.token_logprobs([req])[0]

    ids = env.build_input_ids(req)
    start = int((ids == env.video_token_id).nonzero()[0])
    mask = torch.ones_like(ids)
    mask[start : start + T * N] = keep.view(-1).long()  # dropped tokens masked out, positions unchanged
    ref = hf_target_logprobs(env, frames, req, attention_mask=mask, position_ids=hf_full_positions(env, ids, frames))
    assert (ours - ref).abs().max() <= TOL
    # and dropping really changes the answer's likelihood (the comparison above is not vacuous)
    full = env.token_logprobs([ScoreRequest(visual, PROMPT, target="B. blue")])[0]
    assert (ours - full).abs().max() > 1e-3


def test_batch_of_masks_equals_single_forwards_and_chunking(env, visual):
    T, N = visual.features.shape[:2]
    targets = ["B", "B. blue", "A", "D. yellow", "C. green", "B"]
    reqs = [
        ScoreRequest(visual, PROMPT, target=t, keep=random_keep((T, N), r, seed=k))
        for k, (t, r) in enumerate(zip(targets, [0.05, 0.2, 0.5, 0.9, 1.0, 0.3]))
    ]
    reqs.append(ScoreRequest(visual, "Is it moving? A. yes B. no", target="A. yes", keep=random_keep((T, N), 0.4, 9)))
    singles = torch.cat([env.score([r]) for r in reqs])
    batched = env.score(reqs)
    assert batched.shape == (len(reqs),)
    assert (batched - singles).abs().max() <= TOL
    small = env_class(env.arch)(env.model, env.tokenizer, token_budget=150)  # forces several chunks
    assert (small.score(reqs) - singles).abs().max() <= TOL
    assert len(set(torch.round(singles, decimals=4).tolist())) > 1  # different masks give different scores


def test_chunk_by_budget():
    assert chunk_by_budget([10, 30, 20, 5], budget=60) == [[1, 2], [0, 3]]  # 2x30, then 2x10
    assert chunk_by_budget([100, 5], budget=50) == [[0], [1]]  # an over-long row goes alone
    assert sorted(i for c in chunk_by_budget([3] * 7, 9) for i in c) == list(range(7))
    assert all(len(c) * 3 <= 9 for c in chunk_by_budget([3] * 7, 9))


def test_choice_logprobs(env, visual):
    keep = random_keep(visual.features.shape[:2], 0.2, 3)
    reqs = [ScoreRequest(visual, PROMPT), ScoreRequest(visual, PROMPT, keep=keep)]
    lp = env.choice_logprobs(reqs, ["A", "B", "C", "D"])
    assert lp.shape == (2, 4)
    assert torch.allclose(lp.exp().sum(1), torch.ones(2), atol=1e-5)
    full_vocab = env.choice_logprobs(reqs, ["A", "B"], normalize=False)
    for i, letter in enumerate(["A", "B"]):
        scored = env.token_logprobs([ScoreRequest(r.visual, r.prompt, letter, r.keep) for r in reqs])
        assert torch.allclose(full_vocab[:, i], torch.stack([s[0] for s in scored]), atol=TOL)
    with pytest.raises(EnvError, match="single-token"):
        env.choice_logprobs(reqs, ["A", "yellow submarine"])


def test_generate_matches_greedy_full_forwards(env, visual):
    req = ScoreRequest(visual, PROMPT, keep=random_keep(visual.features.shape[:2], 0.5, 4))
    ids = env.generate_ids(req, max_new_tokens=4)
    seq = env.build_sequence(req, with_target=False)
    embed = env.model.get_input_embeddings()
    for k, token in enumerate(ids):  # each token is the argmax of a full (cache-free) forward
        prefix = torch.tensor(ids[:k], dtype=torch.long)
        seq_k = type(seq)(
            torch.cat([seq.embeds, embed(prefix)]),
            torch.cat([seq.positions, seq.positions[:, -1:] + torch.arange(1, k + 1)], dim=1),
            prefix,
            seq.visual_start,
            seq.kept,
        )
        assert int(env._last_logits([seq_k], [1])[0][-1].argmax()) == token
    assert isinstance(env.generate(req, max_new_tokens=2), str)


def test_last_token_attention_matches_eager_attentions(env, visual):
    T, N = visual.features.shape[:2]
    req = ScoreRequest(visual, PROMPT, keep=random_keep((T, N), 0.5, 5))
    att = env.last_token_attention(req, layer=1)
    assert att.shape == (T, N) and (att >= 0).all()
    assert (att[~req.keep] == 0).all() and (att[req.keep] > 0).all()
    assert env.model.config.text_config._attn_implementation == "sdpa"  # switched back

    seq = env.build_sequence(req, with_target=False)
    env.model.set_attn_implementation({"text_config": "eager"})
    try:
        with torch.no_grad():
            out = env.model(
                inputs_embeds=seq.embeds[None],
                attention_mask=torch.ones(1, len(seq), dtype=torch.long),
                position_ids=env.model_positions(seq.positions[:, None]),
                output_attentions=True,
            )
    finally:
        env.model.set_attn_implementation({"text_config": "sdpa"})
    ref = out.attentions[1][0, :, -1].mean(0)[seq.visual_start : seq.visual_start + seq.kept.numel()]
    assert torch.allclose(att.view(-1)[seq.kept], ref, atol=1e-6)
    with pytest.raises(EnvError, match="out of range"):
        env.last_token_attention(req, layer=99)


# --------------------------------------------------------------------------------------------- encode


def test_encode_shapes(env, visual):
    T, N, D = visual.shape
    assert (T, N, D) == (F, 16, env.hidden_size) and visual.grid == (4, 4)
    if env.arch == "llava_onevision":
        assert visual.suffix.shape == (1, D)  # the newline token the model appends after the video
    else:
        assert visual.suffix is None and visual.meta["grid_thw"] == [F, 8, 8]


def test_qwen_patchify_layout():
    B, Fr, C, H, W, p, m, tp = 1, 4, 3, 32, 48, 4, 2, 2
    videos = torch.randn(B, Fr, C, H, W)
    patches, t, h, w = patchify(videos, p, m, tp)
    assert (t, h, w) == (2, 8, 12) and patches.shape == (1, t * h * w, C * tp * p * p)
    k = 0
    for ti in range(t):
        for bh in range(h // m):
            for bw in range(w // m):
                for i in range(m):
                    for j in range(m):  # patch k covers rows (bh*m+i)*p.., cols (bw*m+j)*p.., frames ti*tp..
                        r, c = (bh * m + i) * p, (bw * m + j) * p
                        block = videos[0, ti * tp : (ti + 1) * tp, :, r : r + p, c : c + p]  # [tp, C, p, p]
                        assert torch.equal(patches[0, k], block.permute(1, 0, 2, 3).reshape(-1))
                        k += 1


def test_qwen_patchify_matches_hf_processor():
    proc = pytest.importorskip("transformers.models.qwen2_vl.video_processing_qwen2_vl")  # needs torchvision
    videos = torch.randn(2, 3, 3, 16, 32)
    ours = patchify(videos, 4, 2, 2)
    ref = proc.Qwen2VLVideoProcessor.patchify(None, videos, patch_size=4, merge_size=2, temporal_patch_size=2)
    assert torch.equal(ours[0], ref[0]) and ours[1:] == ref[1:]


def test_qwen_temporal_patch_pads_last_frame():
    env = build_tiny_env("qwen2_5_vl", temporal_patch_size=2)
    frames = np.random.default_rng(1).integers(0, 256, (3, 44, 60, 3), dtype=np.uint8)  # resized to 48x64
    v = env.encode(frames)
    assert v.shape[:2] == (2, 3 * 4) and v.grid == (3, 4)
    padded = np.concatenate([frames, frames[-1:]])
    assert torch.allclose(env.encode(padded).features, v.features)
    assert env.score([ScoreRequest(v, "q", "A")]).isfinite().all()


# --------------------------------------------------------------------------------------------- saving and loading


def test_save_and_load_scores_identically(env, visual, tmp_path):
    keep = random_keep(visual.features.shape[:2], 0.4, 6)
    reqs = [ScoreRequest(visual, PROMPT, "B. blue"), ScoreRequest(visual, PROMPT, "C", keep)]
    env.save_pretrained(tmp_path / "env")
    assert (tmp_path / "env" / "model.safetensors").is_file()
    loaded = env_class(env.arch).from_pretrained(tmp_path / "env", device="cpu")
    assert not any(p.requires_grad for p in loaded.model.parameters()) and not loaded.model.training
    assert torch.equal(loaded.score(reqs), env.score(reqs))
    assert loaded.settings == env.settings

    section = EnvSection(arch=env.arch, path=str(tmp_path / "env"), device="cpu", token_budget=100)
    via_config = load_env(section)
    assert via_config.token_budget == 100
    assert torch.allclose(via_config.score(reqs), env.score(reqs), atol=TOL)


def test_tokenizer_saves_reloads_and_encodes_anything(tmp_path):
    from transformers import AutoTokenizer

    for arch, video in [("qwen2_5_vl", "<|video_pad|>"), ("llava_onevision", "<video>")]:
        tok = build_tokenizer(["the red ball moves left"], vocab_size=400, arch=arch)
        tok.save_pretrained(tmp_path / arch)
        again = AutoTokenizer.from_pretrained(tmp_path / arch, local_files_only=True)
        text = "Ünïcödé ✓ 😀 <|im_start|>" + video
        assert again(text).input_ids == tok(text).input_ids
        assert again.decode(again("héllo 😀 wörld").input_ids) == "héllo 😀 wörld"
        assert again.video_token == video and again.pad_token == "<|endoftext|>"
        for letter in ["A", "B", "C", "D", " A", " B", " C", " D"]:
            assert len(again(letter, add_special_tokens=False).input_ids) == 1
        message = {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "hi"}]}
        chat = again.apply_chat_template([message], tokenize=False, add_generation_prompt=True)
        assert video in chat and chat.endswith("<|im_start|>assistant\n")


# --------------------------------------------------------------------------------------------- errors


def test_clear_errors(env, visual):
    T, N, D = visual.shape
    wrong = VisualTokens(torch.zeros(T, N, D + 8), visual.grid, visual.suffix)
    with pytest.raises(EnvError, match=rf"width D={D + 8}.*LLM width is {D}"):
        env.score([ScoreRequest(wrong, PROMPT, "A")])
    with pytest.raises(EnvError, match="keep mask is empty"):
        env.score([ScoreRequest(visual, PROMPT, "A", keep=torch.zeros(T, N, dtype=torch.bool))])
    with pytest.raises(EnvError, match="keep mask must be bool"):
        env.score([ScoreRequest(visual, PROMPT, "A", keep=torch.full((T, N), 0.5))])
    with pytest.raises(EnvError, match=r"keep mask has shape \[2, 3\]"):
        env.score([ScoreRequest(visual, PROMPT, "A", keep=torch.ones(2, 3, dtype=torch.bool))])
    with pytest.raises(EnvError, match="empty target"):
        env.score([ScoreRequest(visual, PROMPT, "")])
    with pytest.raises(EnvError, match="uint8"):
        env.encode(np.zeros((4, 64, 64, 3), dtype=np.float32))
    with pytest.raises(EnvError, match=r"shape \[F, H, W, 3\]"):
        env.encode(np.zeros((64, 64, 3), dtype=np.uint8))
    with pytest.raises(EnvError, match="too few frames"):
        env.encode(np.zeros((0, 64, 64, 3), dtype=np.uint8))


def test_loading_errors(tmp_path):
    cls = env_class("qwen2_5_vl")
    with pytest.raises(EnvError, match="environment folder not found"):
        cls.from_pretrained(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EnvError, match="no config.json"):
        cls.from_pretrained(tmp_path / "empty")
    with pytest.raises(EnvError, match=r"no_such_name: environment folder not found"):  # not registered: a path
        load_env(EnvSection(arch="qwen2_5_vl", path="no_such_name"))
    with pytest.raises(EnvError, match="unknown architecture"):
        env_class("gpt2")
    with pytest.raises(EnvError, match=r"unknown qwen2_5_vl size key\(s\) \['hiden_size'\]; valid keys: hidden_size"):
        build_tiny_env("qwen2_5_vl", hiden_size=32)
    llava = build_tiny_env("llava_onevision")
    llava.save_pretrained(tmp_path / "llava")
    with pytest.raises(EnvError, match="holds a 'llava_onevision' model"):
        cls.from_pretrained(tmp_path / "llava")
    (tmp_path / "llava" / "model.safetensors").unlink()
    with pytest.raises(EnvError, match="no \\*.safetensors weights"):
        env_class("llava_onevision").from_pretrained(tmp_path / "llava")
