"""`import scorerl.world` plugs the world into the core: `world:` manifests, `env.path: world`, its sections."""

import pytest

import scorerl.world  # noqa: F401
from scorerl.config import load_config
from scorerl.data.manifest import resolve_manifest
from scorerl.envs import resolve_env_path
from scorerl.errors import ConfigError, DataError, EnvError
from scorerl.world.paths import world_dir, world_env_dir


def test_world_manifests_resolve_once_built():
    with pytest.raises(DataError) as e:
        resolve_manifest("world:train")
    assert "scorerl data synthetic --out" in str(e.value) and str(world_dir()) in str(e.value)
    world_dir().mkdir(parents=True)
    (world_dir() / "train.jsonl").write_text("")
    assert resolve_manifest("world:train") == world_dir() / "train.jsonl"


def test_world_env_resolves_once_fitted():
    with pytest.raises(EnvError, match="scorerl env fit configs/world/env.yaml"):
        resolve_env_path("world")
    world_env_dir().mkdir(parents=True)
    (world_env_dir() / "config.json").write_text("{}")
    assert resolve_env_path("world") == world_env_dir()


def test_world_sections_are_config_sections():
    cfg = load_config(None, ["fit.steps=7", "world.train=12"])
    assert cfg.fit.steps == 7 and cfg.world.train == 12 and "fit" in cfg.to_dict()


def test_projector_warmup_keys_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="fit.projector_warmup_families"):
        load_config(None, ["fit.projector_warmup_steps=10"])
    with pytest.raises(ConfigError, match="fit.projector_lr_scale"):
        load_config(None, ["fit.projector_lr_scale=-1"])
    cfg = load_config(None, ["fit.projector_warmup_steps=10", "fit.projector_warmup_families=[direction]"])
    assert cfg.fit.projector_warmup_families == ["direction"]


def test_data_synthetic_renders_a_version_4_test_split_alone(tmp_path, capsys):
    import json

    from scorerl.cli import main

    out = tmp_path / "v4"
    assert (
        main(
            [
                "data",
                "synthetic",
                "--out",
                str(out),
                "--version",
                "4",
                "--train",
                "0",
                "--test",
                "3",
                "--static",
                "0",
                "--static-test",
                "0",
                "--frames",
                "8",
                "--size",
                "32",
                "--seed",
                "2",  # a separate split needs a seed of its own (tests/world/test_split_streams.py)
            ]
        )
        == 0
    )
    lines = [json.loads(x) for x in (out / "test.jsonl").read_text().splitlines()]
    assert len(lines) == 3 and all(x["scene"]["version"] == 4 and "nuisances" in x["scene"] for x in lines)
    assert (out / "train.jsonl").read_text() == "" and (out / "static_test.jsonl").read_text() == ""
    assert "world in" in capsys.readouterr().out
