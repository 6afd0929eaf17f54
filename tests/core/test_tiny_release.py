"""`scorerl env tiny`: a tiny random folder laid out like the real release loads through transformers (every
weight under the release's old names, no key missing), through scorerl's loader (encode + score), and what the
folder says (tokenizer, chat template, processor and generation settings) is what is used."""

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

from scorerl.cli import main
from scorerl.config import EnvSection
from scorerl.envs import load_env
from scorerl.envs.release_folder import (
    LLAVA_ONEVISION_CHAT_TEMPLATE,
    MARKER,
    QWEN2_5_VL_CHAT_TEMPLATE,
    describe_tiny_release,
    write_tiny_release,
)
from scorerl.envs.tokenizer import QWEN2_PRETOKENIZE_REGEX
from scorerl.errors import EnvError
from scorerl.types import ScoreRequest

pytestmark = pytest.mark.usefixtures("one_thread")

ARCHS = ["qwen2_5_vl", "llava_onevision"]
SHARDS = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json"]
RELEASE_FILES = {  # the release's own file names (README.md and .gitattributes aside)
    "qwen2_5_vl": {
        "config.json",
        "generation_config.json",
        "preprocessor_config.json",
        "chat_template.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.json",
        "merges.txt",
        *SHARDS,
    },
    "llava_onevision": {
        "config.json",
        "generation_config.json",
        "preprocessor_config.json",
        "video_preprocessor_config.json",
        "processor_config.json",
        "chat_template.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.json",
        "merges.txt",
        "added_tokens.json",
        "special_tokens_map.json",
        *SHARDS,
    },
}
# Prefixes of the release's weight names (transformers 5 keeps model.language_model.* / model.visual.* inside).
RELEASE_PREFIXES = {
    "qwen2_5_vl": ("model.layers.", "model.embed_tokens.", "model.norm.", "visual.", "lm_head."),
    "llava_onevision": (
        "language_model.model.",
        "language_model.lm_head.",
        "vision_tower.vision_model.",
        "multi_modal_projector.",
        "image_newline",
    ),
}


@pytest.fixture(scope="module", params=ARCHS)
def release(request, tmp_path_factory):
    arch = request.param
    return arch, write_tiny_release(arch, tmp_path_factory.mktemp(arch) / "model")


def model_class(arch):
    from transformers import LlavaOnevisionForConditionalGeneration, Qwen2_5_VLForConditionalGeneration

    return {
        "qwen2_5_vl": Qwen2_5_VLForConditionalGeneration,
        "llava_onevision": LlavaOnevisionForConditionalGeneration,
    }[arch]


def video_messages(prompt="What happens?"):
    return [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": prompt}]}]


def frames(n=4, height=48, width=64):
    return np.random.default_rng(0).integers(0, 256, (n, height, width, 3), dtype=np.uint8)


# ----------------------------------------------------------------------------------------------- the layout


def test_the_folder_has_the_release_files_and_weight_names(release):
    arch, path = release
    assert {p.name for p in path.iterdir()} == RELEASE_FILES[arch] | {MARKER}
    index = json.loads((path / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == set(SHARDS[:2])  # both shards hold weights
    names = set()
    for shard in SHARDS[:2]:
        with safe_open(str(path / shard), "pt") as f:
            names |= set(f.keys())
            assert f.metadata() == {"format": "pt"}
    assert names == set(index["weight_map"])
    assert all(n.startswith(RELEASE_PREFIXES[arch]) for n in names), sorted(names)[:5]
    info = describe_tiny_release(path)
    assert (info["arch"], info["seed"]) == (arch, 0) and 100_000 < info["parameters"] < 1_000_000


def test_qwen_config_is_the_releases_flat_layout(tmp_path):
    path = write_tiny_release("qwen2_5_vl", tmp_path / "q")
    cfg = json.loads((path / "config.json").read_text())
    assert "text_config" not in cfg and cfg["model_type"] == "qwen2_5_vl"
    assert cfg["rope_scaling"]["type"] == "mrope" and sum(cfg["rope_scaling"]["mrope_section"]) == 64 // 4 // 2
    vision = cfg["vision_config"]
    assert {
        k: vision[k]
        for k in ("patch_size", "spatial_merge_size", "temporal_patch_size", "window_size", "tokens_per_second")
    } == {
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "window_size": 112,
        "tokens_per_second": 2,
    }
    vocab = json.loads((path / "tokenizer.json").read_text())
    ids = {t["content"]: t["id"] for t in vocab["added_tokens"]}
    assert [cfg[k] for k in ("vision_start_token_id", "vision_end_token_id", "image_token_id", "video_token_id")] == [
        ids[t] for t in ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")
    ]
    assert min(ids.values()) == len(vocab["model"]["vocab"])  # added tokens follow the learned vocabulary
    assert ids["<tool_call>"] not in [t["id"] for t in vocab["added_tokens"] if t["special"]]
    pre = json.loads((path / "preprocessor_config.json").read_text())
    assert (pre["min_pixels"], pre["max_pixels"], pre["image_processor_type"]) == (
        3136,
        12845056,
        "Qwen2VLImageProcessor",
    )
    gen = json.loads((path / "generation_config.json").read_text())
    assert (gen["temperature"], gen["top_p"], gen["top_k"], gen["repetition_penalty"]) == (0.1, 0.001, 1, 1.05)
    assert gen["eos_token_id"] == [ids["<|im_end|>"], ids["<|endoftext|>"]]


def test_the_tokenizer_is_qwen2s_layout(release):
    arch, path = release
    spec = json.loads((path / "tokenizer.json").read_text())
    split, byte_level = spec["pre_tokenizer"]["pretokenizers"]
    assert split["pattern"]["Regex"] == QWEN2_PRETOKENIZE_REGEX and byte_level["type"] == "ByteLevel"
    assert spec["normalizer"]["type"] == "NFC"
    learned = len(spec["model"]["merges"])
    assert 200 <= learned <= 600  # a few hundred merges: small, but a trained BPE
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    assert QWEN2_PRETOKENIZE_REGEX == PRETOKENIZE_REGEX  # the split transformers rebuilds from vocab/merges


def test_same_seed_same_weights_other_seed_other_weights(tmp_path):
    a = write_tiny_release("llava_onevision", tmp_path / "a", seed=1)
    b = write_tiny_release("llava_onevision", tmp_path / "b", seed=1)
    c = write_tiny_release("llava_onevision", tmp_path / "c", seed=2)
    for name in SHARDS + ["tokenizer.json", "config.json"]:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / SHARDS[0]).read_bytes() != (c / SHARDS[0]).read_bytes()


# ----------------------------------------------------------------------------------------------- transformers


def test_transformers_loads_every_weight_and_runs_a_video_forward(release):
    from transformers import AutoConfig, AutoTokenizer

    arch, path = release
    config = AutoConfig.from_pretrained(path, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model, info = model_class(arch).from_pretrained(
        path, dtype=torch.float32, local_files_only=True, output_loading_info=True
    )
    assert not any(info.values()), info  # no missing, unexpected or mismatched key
    assert len(tokenizer) <= config.text_config.vocab_size
    assert model.generation_config.eos_token_id is not None

    video = config.video_token_id
    if arch == "qwen2_5_vl":  # 2 temporal units of 4 x 4 patches -> 2 x 2 x 2 merged tokens
        grid = torch.tensor([[2, 4, 4]])
        inputs = {"pixel_values_videos": torch.randn(2 * 4 * 4, 3 * 2 * 14 * 14), "video_grid_thw": grid}
        n_video = 2 * 4 * 4 // 4
    else:  # 2 frames of 8 x 8 patches, pooled to 4 x 4, then one newline token
        size = config.vision_config.image_size
        inputs = {"pixel_values_videos": torch.randn(1, 2, 3, size, size)}
        n_video = 2 * 16 + 1
    text = tokenizer("<|im_start|>user\n", add_special_tokens=False).input_ids
    ids = torch.tensor([text + [video] * n_video + tokenizer("Why?<|im_end|>").input_ids])
    with torch.no_grad():
        logits = model(input_ids=ids, **inputs).logits
    assert logits.shape == (1, ids.shape[1], config.text_config.vocab_size) and torch.isfinite(logits).all()


def test_weights_under_release_names_are_the_ones_loaded(release):
    """Each part of the model (vision tower, projector, LM, head) gets the tensor stored under its release name."""
    arch, path = release
    model = model_class(arch).from_pretrained(path, dtype=torch.float32, local_files_only=True).model
    if arch == "qwen2_5_vl":
        pairs = {
            "visual.patch_embed.proj.weight": model.visual.patch_embed.proj.weight,
            "visual.merger.mlp.0.weight": model.visual.merger.mlp[0].weight,
            "model.layers.1.self_attn.q_proj.weight": model.language_model.layers[1].self_attn.q_proj.weight,
        }
    else:
        tower = model.vision_tower
        tower = getattr(tower, "vision_model", tower)  # transformers 5.25 drops SigLIP's inner vision_model
        pairs = {
            "vision_tower.vision_model.embeddings.patch_embedding.weight": tower.embeddings.patch_embedding.weight,
            "multi_modal_projector.linear_1.weight": model.multi_modal_projector.linear_1.weight,
            "image_newline": model.image_newline,
            "language_model.model.layers.1.self_attn.q_proj.weight": model.language_model.layers[
                1
            ].self_attn.q_proj.weight,
        }
    index = json.loads((path / "model.safetensors.index.json").read_text())
    for name, loaded in pairs.items():
        with safe_open(str(path / index["weight_map"][name]), "pt") as f:
            assert torch.equal(loaded, f.get_tensor(name).float()), name


def test_the_folders_chat_template_renders_a_video(release):
    from transformers import AutoTokenizer

    arch, path = release
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    template = json.loads((path / "chat_template.json").read_text())["chat_template"]
    assert template == {"qwen2_5_vl": QWEN2_5_VL_CHAT_TEMPLATE, "llava_onevision": LLAVA_ONEVISION_CHAT_TEMPLATE}[arch]
    text = tokenizer.apply_chat_template(
        video_messages(), chat_template=template, tokenize=False, add_generation_prompt=True
    )
    expected = {
        "qwen2_5_vl": "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "<|vision_start|><|video_pad|><|vision_end|>What happens?<|im_end|>\n"
        "<|im_start|>assistant\n",
        "llava_onevision": "<|im_start|>user\n<video>\nWhat happens?<|im_end|>\n<|im_start|>assistant\n",
    }
    assert text == expected[arch]
    placeholder = {"qwen2_5_vl": "<|video_pad|>", "llava_onevision": "<video>"}[arch]
    ids = tokenizer(text, add_special_tokens=False).input_ids
    assert ids.count(tokenizer.convert_tokens_to_ids(placeholder)) == 1  # one token, never split


# ----------------------------------------------------------------------------------------------- scorerl's loader


def test_load_env_encodes_and_scores_with_the_folders_settings(release):
    arch, path = release
    env = load_env(EnvSection(arch=arch, path=str(path), device="cpu"))
    pre = json.loads((path / "preprocessor_config.json").read_text())
    assert env.settings["image_mean"] == pre["image_mean"]  # LLaVA: SigLIP's 0.5, not the CLIP default
    if arch == "qwen2_5_vl":
        assert (env.settings["min_pixels"], env.settings["max_pixels"]) == (3136, 12845056)
    visual = env.encode(frames())
    T, N, D = visual.features.shape
    assert D == 64 and T == {"qwen2_5_vl": 2, "llava_onevision": 4}[arch]  # Qwen: 2 frames per temporal unit
    keep = torch.zeros(T, N, dtype=torch.bool)
    keep[:, 0] = True
    scores = env.score(
        [
            ScoreRequest(visual, "What happens? A. up B. down", target="A"),
            ScoreRequest(visual, "What happens? A. up B. down", target="A", keep=keep),
        ]
    )
    assert scores.shape == (2,) and torch.isfinite(scores).all() and scores[0] != scores[1]


def test_load_env_takes_the_chat_template_from_chat_template_json(release):
    arch, path = release
    env = load_env(EnvSection(arch=arch, path=str(path), device="cpu"))
    folder_template = json.loads((path / "chat_template.json").read_text())["chat_template"]
    assert env.tokenizer.chat_template == folder_template
    if arch == "llava_onevision":  # the release's tokenizer_config.json holds Qwen2's text-only template
        own = json.loads((path / "tokenizer_config.json").read_text())["chat_template"]
        assert own != folder_template and "<video>" not in own
    before, after = env.text_around_video("Q?")
    assert after.endswith("<|im_start|>assistant\n") and "Q?" in after
    assert ("You are a helpful assistant." in before) == (arch == "qwen2_5_vl")  # LLaVA's has no system default
    briefed = load_env(EnvSection(arch=arch, path=str(path), device="cpu", system_prompt="Be brief."))
    before, _ = briefed.text_around_video("Q?")  # LLaVA's template renders list content only: it must arrive
    assert before.startswith("<|im_start|>system\nBe brief.<|im_end|>\n")


# ----------------------------------------------------------------------------------------------- refusing


def test_refuses_a_folder_it_did_not_write(tmp_path):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep me")
    for force in (False, True):
        with pytest.raises(EnvError, match=rf"{user}: folder is not empty and was not written by "):
            write_tiny_release("qwen2_5_vl", user, force=force)
    assert [p.name for p in user.iterdir()] == ["notes.txt"] and (user / "notes.txt").read_text() == "keep me"
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(EnvError, match="is a file, not a folder"):
        write_tiny_release("qwen2_5_vl", a_file)
    with pytest.raises(EnvError, match="unknown architecture 'llava'"):
        write_tiny_release("llava", tmp_path / "new")


def test_force_replaces_only_its_own_folder(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = write_tiny_release("llava_onevision", empty)  # an empty folder is fine
    with pytest.raises(EnvError, match="already holds a tiny model .* pass --force"):
        write_tiny_release("qwen2_5_vl", out)
    write_tiny_release("qwen2_5_vl", out, force=True)
    assert describe_tiny_release(out)["arch"] == "qwen2_5_vl" and not (out / "added_tokens.json").exists()
    (out / "policy.safetensors").write_bytes(b"user's work")
    with pytest.raises(EnvError, match=r"holds files `scorerl env tiny` did not write \(policy.safetensors\)"):
        write_tiny_release("qwen2_5_vl", out, force=True)
    assert (out / "policy.safetensors").read_bytes() == b"user's work"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]  # no temp or trash folder left beside it


# ----------------------------------------------------------------------------------------------- the command


def test_cli_env_tiny_writes_and_reports(tmp_path, capsys):
    out = tmp_path / "tiny"
    assert main(["env", "tiny", "llava_onevision", str(out), "--seed", "3"]) == 0
    printed = capsys.readouterr().out
    info = describe_tiny_release(out)
    assert info["seed"] == 3 and f"{info['parameters']:,} parameters" in printed
    assert "model-00001-of-00002.safetensors" in printed and f"env.path={out}" in printed
    env = load_env(EnvSection(arch="llava_onevision", path=str(out), device="cpu"))
    assert env.encode(frames(n=2)).features.shape[:2] == (2, 16)

    assert main(["env", "tiny", "llava_onevision", str(out)]) == 2  # exists: refused, named
    assert f"{out}: already holds a tiny model" in capsys.readouterr().err
