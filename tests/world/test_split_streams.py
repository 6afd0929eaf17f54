"""Test splits never share a random stream with any other split.

Every world sample draws from numpy streams keyed [seed, split code, purpose, index] (scorerl/world/synthetic.py),
so two renders with the same seed give the same draws to the same (split, index). The documented renders (every
`scorerl data synthetic` command in README.md and docs/, plus the worlds the packaged configs render) are parsed
with the real command-line parser and their keys compared; `data synthetic` itself refuses a separate split with
the world's seed.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from scorerl.cli import build_parser, main
from scorerl.config import load_config
from scorerl.paths import packaged_configs
from scorerl.world.config import WorldSection
from scorerl.world.synthetic import SPLITS, world_params

ROOT = Path(__file__).resolve().parents[2]
INLINE = re.compile(r"`(scorerl data synthetic[^`]*)`")
IN_BLOCK = re.compile(r"^\s*(scorerl data synthetic.*?)(\s+#.*)?$", re.MULTILINE)


def documented_commands() -> list[tuple[str, str]]:
    """(where, command) for every `scorerl data synthetic` command in README.md and docs/**/*.md (a mention
    without --out is a name, not a command)."""
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        text = path.read_text()
        for m in INLINE.finditer(text):
            found.append((path.name, " ".join(m.group(1).split())))
        for m in IN_BLOCK.finditer(text):
            if "`" not in m.group(1):
                found.append((path.name, m.group(1).strip()))
    return [(where, command) for where, command in found if "--out" in command]


def params_of(command: str) -> dict:
    args = build_parser().parse_args(shlex.split(command)[1:])
    return world_params(
        args.train, args.test, args.static, args.frames, args.size, args.seed, args.static_test, args.version
    )


def packaged_worlds() -> list[tuple[str, dict]]:
    """The worlds the packaged world configs render (world.* sections; build_from_section)."""
    worlds = []
    for path in [packaged_configs() / "quickstart.yaml", *sorted((packaged_configs() / "world").glob("*.yaml"))]:
        cfg = load_config(path)
        w = getattr(cfg, "world", None)
        if isinstance(w, WorldSection):
            worlds.append(
                (path.name, world_params(w.train, w.test, w.static_train, w.frames, w.size, w.seed, None, w.version))
            )
    return worlds


def stream_keys(params: dict, splits=tuple(SPLITS)) -> set[tuple[int, int, int, int]]:
    """(version, seed, split code, index) of every sample of `splits` in a world with these params."""
    return {(params["version"], params["seed"], SPLITS[s][1], i) for s in splits for i in range(params[s])}


def test_documented_renders_are_found():
    commands = [c for _, c in documented_commands()]
    assert any("world_v4_test10k" in c for c in commands)
    assert any("world_v4_val2000" in c for c in commands)
    assert any("world_v4_test2000" in c for c in commands)
    assert packaged_worlds(), "no packaged config renders a world"


def test_no_test_split_shares_a_stream_with_another_split():
    renders: dict[str, tuple[str, dict]] = {}
    for where, command in documented_commands():
        params = params_of(command)
        renders.setdefault(repr(sorted(params.items())), (f"{where}: {command}", params))
    for where, params in packaged_worlds():
        renders.setdefault(repr(sorted(params.items())), (where, params))
    worlds = list(renders.values())
    assert len(worlds) >= 4  # the v3 world, the v4 world, the 10k and 2000 test splits, the validation split
    for a, (name_a, pa) in enumerate(worlds):
        tests_a = stream_keys(pa, ("test", "static_test"))
        for b, (name_b, pb) in enumerate(worlds):
            if a != b:
                shared = tests_a & stream_keys(pb)
                assert not shared, f"{name_a} shares {len(shared)} streams with {name_b}"


def test_a_separate_split_with_the_world_seed_is_refused(tmp_path, capsys):
    code = main(
        ["data", "synthetic", "--out", str(tmp_path / "w"), "--version", "4", "--train", "0"]
        + ["--test", "4", "--static", "0", "--static-test", "0"]
    )
    assert code != 0
    assert "--seed 0 is the built-in world's seed" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("seed", [0, 2])
def test_separate_split_keys_differ_only_by_seed(seed):
    world = world_params(3000, 500, 1000, 16, 64, 0, None, 4)
    split = world_params(0, 10000, 0, 16, 64, seed, 0, 4)
    shared = stream_keys(split, ("test",)) & stream_keys(world)
    assert bool(shared) == (seed == 0)
