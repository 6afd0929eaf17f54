"""The config files ship inside the package: any command finds a packaged run file by name from any folder (what
an installed wheel relies on; scripts/check_wheel.sh checks the wheel itself in CI)."""

import os

import pytest

from scorerl.cli import main as scorerl
from scorerl.paths import list_packaged_configs, packaged_configs, resolve_config


def test_every_run_file_and_launch_config_is_packaged():
    names = list_packaged_configs()
    for expected in (
        "qwen2_5_vl_7b/stage2_video.yaml",
        "qwen2_5_vl_72b/stage2_video.yaml",
        "llava_onevision_7b/stage1_pseudo.yaml",
        "accelerate/multi_gpu.yaml",
        "world/score_v4.yaml",
    ):
        assert expected in names


def test_a_packaged_name_resolves_from_any_folder_and_a_real_path_wins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    target = packaged_configs() / "qwen2_5_vl_7b" / "stage2_video.yaml"
    for name in (
        "qwen2_5_vl_7b/stage2_video.yaml",
        "qwen2_5_vl_7b/stage2_video",
        "configs/qwen2_5_vl_7b/stage2_video.yaml",
    ):
        assert resolve_config(name) == target
    (tmp_path / "qwen2_5_vl_7b").mkdir()
    (tmp_path / "qwen2_5_vl_7b" / "stage2_video.yaml").write_text("run: {name: mine}\n")
    assert (
        resolve_config("qwen2_5_vl_7b/stage2_video.yaml").resolve() == tmp_path / "qwen2_5_vl_7b" / "stage2_video.yaml"
    )
    assert resolve_config("nothing/like/this.yaml").name == "this.yaml"  # left for the loader to report


def test_config_path_and_show_by_name(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert scorerl(["config", "path", "accelerate/multi_gpu.yaml"]) == 0
    assert capsys.readouterr().out.strip() == str(packaged_configs().resolve() / "accelerate" / "multi_gpu.yaml")
    assert scorerl(["config", "show", "llava_onevision_7b/stage2_video"]) == 0
    assert "arch: llava_onevision" in capsys.readouterr().out
    assert scorerl(["config", "path", "no/such.yaml"]) != 0
    assert "scorerl config list" in capsys.readouterr().err


@pytest.mark.skipif(os.name == "nt", reason="the repository's configs/ is a symbolic link")
def test_the_repositorys_configs_folder_is_the_packaged_one():
    from pathlib import Path

    repo_configs = Path(__file__).resolve().parents[2] / "configs"
    assert repo_configs.resolve() == packaged_configs()
