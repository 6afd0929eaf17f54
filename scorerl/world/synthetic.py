"""The built-in synthetic video-QA world: coloured shapes on a mildly textured grey background.

Why it exists: a benchmark for token compression that runs anywhere (no hub, no downloads) and where we *know* which
tokens matter. Each video holds only the coloured object(s) its question is about:
  - `moving_color`, `direction`: one object crossing part of the view along one axis during 8 of 16 frames,
  - `static_attr`:               one object that stays in place, on screen during 8 of 16 frames,
  - `event`:                     one object visible for 2 of 16 frames (one frame pair), never the first or last pair,
  - `count`:                     1-4 objects of different colours, each visible during its own frame pair.
The three wrong colour options are colours that are nowhere in the video, so answering needs no *binding* (which
colour goes with which shape or motion), which a 2-core, 15-minute fit of a model trained from scratch does not
learn (docs/world.md has the measurements). What makes the world a test of compression is *where* the evidence
lies: in a few frames for `event` and `count` and in half of them for the moving object (evenly spaced frames miss
them), in a few % of the tokens for all of them, and in static tokens for `static_attr` (frame differences miss it
after the first frame).

The static pseudo-video split (curriculum stage 1) is single images with image QA: `static_attr`, `count`.

Versions: 3 (`WORLD_VERSION`, the default, unchanged and pinned bit for bit by tests/world/test_world_v4.py) and 4
(`version=4`): the same families and objects plus a random subset of nuisances per sample, salient things no
question is about (flicker, camera motion, a logo and a ticking timestamp, grey movers; nuisances.py says why and
how). A v4 world lives in its own folder (paths.world_dir(4), manifests `world_v4:<split>`).

Public entry point: `build_world`. The pieces live beside it: scenes.py (what a sample holds), questions.py (what
is asked about it), render.py (its pixels, a pure function of the scene); tests check answers against the scene.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from scorerl.data.manifest import LETTERS
from scorerl.data.video_io import write_mp4, write_png
from scorerl.errors import DataError
from scorerl.io import atomic
from scorerl.world.config import WorldSection
from scorerl.world.nuisances import check_probs
from scorerl.world.questions import make_question
from scorerl.world.render import render_image, render_video
from scorerl.world.scenes import (
    BRIEF,
    COLORS,
    IMAGE_FAMILIES,
    NOISE_STD,
    SHAPES,
    VIDEO_FAMILIES,
    sample_image_scene,
    sample_video_scene,
)
from scorerl.world.scenes_v4 import MIN_SIZE as V4_MIN_SIZE
from scorerl.world.scenes_v4 import VERSION as V4
from scorerl.world.scenes_v4 import sample_image_scene_v4, sample_video_scene_v4

log = logging.getLogger(__name__)

WORLD_VERSION = 3  # bump when rendering, sampling or question text changes: invalidates cached worlds
VERSIONS = (WORLD_VERSION, V4)  # what world.version may be; 4 adds the nuisances (nuisances.py)

FPS = 8
CRF = 18

# Split name -> (media kind, code mixed into the seed so splits never share scenes)
SPLITS = {"train": ("video", 1), "test": ("video", 2), "static_train": ("image", 3), "static_test": ("image", 4)}


# --------------------------------------------------------------------------------------------- splits


def _plan(split: str, n: int, seed: int) -> list[tuple[str, int]]:
    """(family, answer letter index) per sample: families balanced, letters balanced within each family."""
    kind, code = SPLITS[split]
    families = VIDEO_FAMILIES if kind == "video" else IMAGE_FAMILIES
    rng = np.random.default_rng([seed, code, 0, 0])
    fams = [families[i % len(families)] for i in range(n)]
    fams = [fams[i] for i in rng.permutation(n)]
    # Walk the samples family by family and deal letters from shuffled blocks of ABCD: each family gets every
    # letter floor(count/4) times, and the split as a whole is balanced too (blocks run across families).
    order = [i for fam in families for i, f in enumerate(fams) if f == fam]
    blocks: Any = np.concatenate([rng.permutation(4) for _ in range(-(-n // 4))]) if n else []
    letters = [0] * n
    for i, letter in zip(order, blocks):
        letters[i] = int(letter)
    return list(zip(fams, letters))


def make_sample(
    split: str,
    index: int,
    family: str,
    letter: int,
    seed: int,
    frames: int,
    size: int,
    version: int = WORLD_VERSION,
    nuisances: dict[str, float] | None = None,
):
    """(manifest record without the media key, pixels) for one sample; deterministic in its arguments.
    version 4: `nuisances` are the probabilities of each nuisance (nuisances.TOGGLES; None: the defaults)."""
    kind, code = SPLITS[split]
    rng = np.random.default_rng([seed, code, 1, index])  # per-sample stream: independent of other samples
    if version == WORLD_VERSION:
        scene = (
            sample_video_scene(rng, family, frames, size) if kind == "video" else sample_image_scene(rng, family, size)
        )
    elif version == V4:
        scene = _scene_v4(rng, kind, code, index, family, seed, frames, size, nuisances)
    else:
        raise DataError(f"world: version must be one of {', '.join(map(str, VERSIONS))}, got {version!r}")
    question, options, variant = make_question(rng, scene, family, letter)
    if variant:
        scene["variant"] = variant
    pixels = render_video(scene) if kind == "video" else render_image(scene)
    record = {
        "id": f"{split}_{index:05d}",
        "question": question,
        "options": options,
        "answer": LETTERS[letter],
        "family": family,
        "scene": scene,
    }
    return record, pixels


def _scene_v4(
    rng,
    kind: str,
    code: int,
    index: int,
    family: str,
    seed: int,
    frames: int,
    size: int,
    nuisances: dict[str, float] | None,
) -> dict:
    """A v4 scene: the nuisances come from a stream of their own ([seed, split, 4, index]), so a video's subset
    does not depend on its family's draws."""
    probs = check_probs(nuisances or {})
    nrng = np.random.default_rng([seed, code, 4, index])
    if kind == "video":
        return sample_video_scene_v4(rng, nrng, probs, family, frames, size)
    return sample_image_scene_v4(rng, nrng, probs, family, size)


# --------------------------------------------------------------------------------------------- build


def world_params(
    train: int,
    test: int,
    static_train: int,
    frames: int,
    size: int,
    seed: int,
    static_test: int | None = None,
    version: int = WORLD_VERSION,
    nuisances: dict[str, float] | None = None,
) -> dict:
    """Everything the rendered world depends on; world.json stores it and the cache compares it. A version-3
    world's params are exactly what they were before version 4 existed (so its cache stays valid)."""
    if static_test is None:
        static_test = min(200, static_train // 5)
    if version not in VERSIONS:
        raise DataError(f"world: version must be one of {', '.join(map(str, VERSIONS))}, got {version!r}")
    params: dict[str, Any] = {
        "version": version,
        "train": train,
        "test": test,
        "static_train": static_train,
        "static_test": static_test,
        "frames": frames,
        "size": size,
        "seed": seed,
        "fps": FPS,
        "crf": CRF,
        "noise_std": NOISE_STD,
    }
    if version == V4:
        params["nuisances"] = check_probs(nuisances or {})
    _check_params(params)
    return params


def _check_params(p: dict):
    for key in ("train", "test", "static_train", "static_test", "seed"):
        if not isinstance(p[key], int) or p[key] < 0:
            raise DataError(f"world: {key} must be an integer >= 0, got {p[key]!r}")
    if p["frames"] < 6 or p["frames"] % BRIEF:
        raise DataError(
            f"world: frames must be even and >= 6 (frame pairs; a brief event inside the clip), got {p['frames']}"
        )
    if p["size"] < 16 or p["size"] % 2:
        raise DataError(f"world: size must be even (yuv420p) and >= 16, got {p['size']}")
    if p["version"] == V4 and p["size"] < V4_MIN_SIZE:
        raise DataError(
            f"world v4: size must be >= {V4_MIN_SIZE} (room for the overlay and the flicker patch "
            f"beside the objects), got {p['size']}"
        )


def _is_built(out: Path, params: dict) -> bool:
    try:
        info = json.loads((out / "world.json").read_text())
    except (OSError, ValueError):
        return False
    return info.get("params") == params and all((out / f"{s}.jsonl").is_file() for s in SPLITS)


def _remove_stale(out: Path):
    """Delete media of a previous world in `out` (only files this module names, and only if world.json says so)."""
    if not (out / "world.json").is_file():
        return
    (out / "world.json").unlink()
    pattern = re.compile(r"^(train|test|static_train|static_test)_\d+\.(mp4|png)$")
    for sub in ("videos", "images"):
        folder = out / sub
        if folder.is_dir():
            for f in folder.iterdir():
                if pattern.match(f.name):
                    f.unlink()


def _build_split(out: Path, split: str, n: int, params: dict, bar) -> None:

    kind, _ = SPLITS[split]
    lines = []
    for index, (family, letter) in enumerate(_plan(split, n, params["seed"])):
        record, pixels = make_sample(
            split,
            index,
            family,
            letter,
            params["seed"],
            params["frames"],
            params["size"],
            params["version"],
            params.get("nuisances"),
        )
        if kind == "video":
            rel = f"videos/{record['id']}.mp4"
            write_mp4(out / rel, pixels, fps=params["fps"], crf=params["crf"])
        else:
            rel = f"images/{record['id']}.png"
            write_png(out / rel, pixels)
        record = {"id": record.pop("id"), kind: rel, **record}
        lines.append(json.dumps(record))
        bar.update(1)
    atomic.write_text(out / f"{split}.jsonl", "".join(line + "\n" for line in lines))


def build_world(
    out: str | Path,
    train: int = 3000,
    test: int = 500,
    static_train: int = 1000,
    frames: int = 16,
    size: int = 64,
    seed: int = 0,
    progress: bool = True,
    static_test: int | None = None,
    version: int = WORLD_VERSION,
    nuisances: dict[str, float] | None = None,
) -> Path:
    """Render the world into `out`: videos/*.mp4, images/*.png, {train,test,static_train,static_test}.jsonl.

    A no-op when out/world.json already records the same parameters (the world is a cache). world.json is written
    last, so an interrupted build is never mistaken for a finished one. version 4 adds nuisances, each with its
    probability in `nuisances` (nuisances.TOGGLES; None: 0.5 each).
    """
    from tqdm.auto import tqdm

    params = world_params(train, test, static_train, frames, size, seed, static_test, version, nuisances)
    check_separate_split(train, static_train, seed)
    out = Path(out).expanduser()
    if _is_built(out, params):
        log.info("world in %s is up to date", out)
        return out
    out.mkdir(parents=True, exist_ok=True)
    _remove_stale(out)
    counts = {s: params[s] for s in SPLITS}
    with tqdm(total=sum(counts.values()), desc="world", unit="sample", disable=not progress) as bar:
        for split, n in counts.items():
            _build_split(out, split, n, params, bar)
    info = {
        "params": params,
        "splits": counts,
        "families": {s: list(VIDEO_FAMILIES if SPLITS[s][0] == "video" else IMAGE_FAMILIES) for s in SPLITS},
        "colors": {k: list(v) for k, v in COLORS.items()},
        "shapes": list(SHAPES),
    }
    atomic.write_text(out / "world.json", json.dumps(info, indent=2) + "\n")
    return out


def build_from_section(world, progress: bool = True) -> Path:
    """Render the world a `world` config section describes into its version's folder (paths.world_dir)."""
    from scorerl.world.paths import world_dir

    return build_world(
        world_dir(world.version),
        train=world.train,
        test=world.test,
        static_train=world.static_train,
        frames=world.frames,
        size=world.size,
        seed=world.seed,
        progress=progress,
        version=world.version,
        nuisances=nuisance_probs(world),
    )


def check_separate_split(train: int, static_train: int, seed: int) -> None:
    """DataError (from build_world, before anything is written) when a render meant as a separate split (no train
    and no static samples: an extra test or validation split) uses the built-in world's seed. Every sample draws
    from [seed, split, ..., index], so such a split would repeat the world's own test questions wherever index,
    family and letter coincide (20 of the first 500 did, when the 10,000-question v4 test split was rendered with
    seed 0)."""
    builtin_seed = WorldSection().seed
    if train == 0 and static_train == 0 and seed == builtin_seed:
        raise DataError(
            f"--seed {seed} is the built-in world's seed: a separately rendered split with it shares the world's "
            "random streams and repeats some of its test questions; pick a seed no other split uses "
            "(the documented splits use 1: validation, 2: the 10,000-question test, 3: the 2000-question test)"
        )


def nuisance_probs(world) -> dict[str, float]:
    """The nuisance probabilities of a `world` config section (world.nuisance_<toggle>)."""
    from scorerl.world.nuisances import TOGGLES

    return {k: getattr(world, f"nuisance_{k}") for k in TOGGLES}
