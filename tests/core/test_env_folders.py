"""The model folder decides the prompt and the processor settings: its chat template (chat_template.json, as the
releases ship it), its preprocessor config (old and new keys); scorerl's own settings file only adds to them."""

import json

import pytest

from scorerl.config import EnvSection
from scorerl.envs import load_env
from scorerl.envs.build import build_tiny_env
from scorerl.errors import EnvError
from scorerl.types import ScoreRequest

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(params=["qwen2_5_vl", "llava_onevision"])
def folder(request, tmp_path):
    env = build_tiny_env(request.param, seed=0, corpus=["A careful assistant answers."])
    env.save_pretrained(tmp_path / "env")
    return request.param, tmp_path / "env"


def text_of(env, prompt="Q?") -> str:
    import torch

    visual = env.encode(torch.zeros(2, 32, 32, 3, dtype=torch.uint8).numpy())
    ids = env.build_input_ids(ScoreRequest(visual, prompt, target="A"))
    return env.tokenizer.decode(ids[ids != env.video_token_id])


def test_the_folders_chat_template_and_the_config_key_decide_the_prompt(folder):
    arch, path = folder
    before = text_of(load_env(EnvSection(arch=arch, path=str(path), device="cpu")))
    assert "You are a helpful assistant." in before
    template = load_env(EnvSection(arch=arch, path=str(path), device="cpu")).tokenizer.chat_template
    changed = template.replace("You are a helpful assistant.", "A careful assistant answers.")
    (path / "chat_template.json").write_text(json.dumps({"chat_template": changed}))
    after = text_of(load_env(EnvSection(arch=arch, path=str(path), device="cpu")))
    assert "A careful assistant answers." in after and "helpful" not in after
    assert after.replace("A careful assistant answers.", "You are a helpful assistant.") == before
    custom = text_of(load_env(EnvSection(arch=arch, path=str(path), device="cpu", system_prompt="Be brief.")))
    assert "Be brief." in custom and "careful" not in custom


def test_processor_config_new_keys_and_no_silent_override(folder):
    arch, path = folder
    (path / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "image_mean": [0.5, 0.5, 0.5],
                "image_std": [0.5, 0.5, 0.5],
                "size": {"shortest_edge": 3136, "longest_edge": 50176},
            }
        )
    )
    ours = json.loads((path / "scorerl_env.json").read_text())
    for key in ("image_mean", "image_std", "min_pixels", "max_pixels"):  # now the processor config says them
        ours.pop(key, None)
    ours["answer_format"] = "option"  # what scorerl adds: fine
    (path / "scorerl_env.json").write_text(json.dumps(ours))
    env = load_env(EnvSection(arch=arch, path=str(path), device="cpu"))
    assert env.settings["image_mean"] == [0.5, 0.5, 0.5] and env.settings["answer_format"] == "option"
    assert (env.settings["min_pixels"], env.settings["max_pixels"]) == (3136, 50176)
    ours["image_mean"] = [0.48145466, 0.4578275, 0.40821073]  # CLIP's, as an old scorerl_env.json held
    (path / "scorerl_env.json").write_text(json.dumps(ours))
    with pytest.raises(
        EnvError,
        match=r"scorerl_env.json: image_mean = .* disagrees with the folder's processor "
        r"config \(\[0.5, 0.5, 0.5\]\)",
    ):
        load_env(EnvSection(arch=arch, path=str(path), device="cpu"))
