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

Public entry point: `build_world`; the pieces (`sample_video_scene`, `make_question`, `render_video`, ...) are
public so tests can check answers against the scene description. Rendering is a pure function of the scene dict.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
from pathlib import Path

import numpy as np

from scorerl.data.manifest import LETTERS
from scorerl.errors import DataError
from scorerl.io import atomic

log = logging.getLogger(__name__)

WORLD_VERSION = 3  # bump when rendering, sampling or question text changes: invalidates cached worlds

COLORS: dict[str, tuple[int, int, int]] = {  # saturated, far apart in RGB and in YUV chroma, all unlike the grey bg
    "red": (225, 35, 35),
    "green": (35, 175, 55),
    "blue": (40, 75, 235),
    "yellow": (245, 215, 30),
    "magenta": (215, 45, 205),
    "cyan": (35, 205, 225),
}
SHAPES = ("circle", "square", "triangle", "cross")
DIRECTIONS = ("left", "right", "up", "down")
VIDEO_FAMILIES = ("moving_color", "direction", "event", "count", "static_attr")
IMAGE_FAMILIES = ("static_attr", "count")
COUNT_RANGE = (1, 4)  # coloured objects in a `count` scene; the options are always these four numbers

FPS = 8
CRF = 18
NOISE_STD = 2.0  # per-frame luma noise: real cameras never give exactly zero residual on a static background

# Split name -> (media kind, code mixed into the seed so splits never share scenes)
SPLITS = {"train": ("video", 1), "test": ("video", 2), "static_train": ("image", 3), "static_test": ("image", 4)}


# --------------------------------------------------------------------------------------------- geometry


def _scale(size: int) -> float:
    return size / 64.0  # every length below is designed at 64 px and scaled


def _object_side_range(size: int) -> tuple[int, int]:
    # 14-20 px at 64 px: it touches 4-9 of the 16 px tokens (8 px patches, 2 x 2 merge). At 10-15 px the fit
    # learned only one or two of the six colours in its budget (docs/world.md)
    u = _scale(size)
    return max(3, round(14 * u)), max(3, round(20 * u))


def _gap(size: int) -> int:
    return max(1, round(2 * _scale(size)))


def _overlaps(a, b, gap: int) -> bool:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    return ax < bx + bw + gap and bx < ax + aw + gap and ay < by + bh + gap and by < ay + ah + gap


def _free_spot(rng, w: int, h: int, area, boxes, gap: int, tries: int = 40):
    """Top-left (x, y) of a w x h box inside area=(x0, y0, x1, y1) that keeps `gap` px from every box, or None."""
    x0, y0, x1, y1 = area
    if x1 - x0 < w or y1 - y0 < h:
        return None
    for _ in range(tries):
        x = int(rng.integers(x0, x1 - w + 1))
        y = int(rng.integers(y0, y1 - h + 1))
        if not any(_overlaps((x, y, w, h), b, gap) for b in boxes):
            return x, y
    return None


# Brief objects (`event`, each counted object) are on screen for one frame PAIR (2t, 2t + 1): the two frames one
# temporal token of Qwen2.5-VL covers (temporal patch 2), so their evidence lies in one temporal unit of the video.
BRIEF = 2


def _pair_start(rng, frames: int, lo: int = 0, hi: int | None = None) -> int:
    """First frame of a random frame pair whose index is in [lo, hi] (default: any pair)."""
    hi = frames // BRIEF - 1 if hi is None else hi
    return BRIEF * int(rng.integers(lo, hi + 1))


# --------------------------------------------------------------------------------------------- scenes


def _obj(role, color, shape, side, first, positions, **extra) -> dict:
    return {"role": role, "color": str(color), "shape": str(shape), "size": int(side), "first": int(first),
            "last": int(first + len(positions) - 1), "positions": [[int(x), int(y)] for x, y in positions], **extra}


class _Layout:
    """Places non-overlapping boxes in a size x size frame (a box is reserved for all frames)."""

    def __init__(self, rng, size: int):
        self.rng, self.size, self.gap, self.boxes = rng, size, _gap(size), []
        self.area = (self.gap, self.gap, size - self.gap, size - self.gap)

    def place(self, w: int, h: int):
        spot = _free_spot(self.rng, w, h, self.area, self.boxes, self.gap)
        if spot is None:
            raise _NoRoom
        self.boxes.append((*spot, w, h))
        return spot


class _NoRoom(Exception):
    pass


TRAIL = (0.5, 0.25)  # opacity of the motion-blur ghosts at the previous one and two positions of a moving object


def _half_window(frames: int) -> int:
    # the moving object and the still one are on screen for half the clip: 8 of 16 frames, from a frame pair on
    return max(BRIEF, frames // 2 // BRIEF * BRIEF)


def _mover(rng, layout: _Layout, color: str, frames: int) -> dict:
    """An object crossing part of the view during half the clip: a straight path at 4-5 px per frame (at 64 px),
    drawn with a fading motion-blur trail. At 2-3 px per frame, visible throughout and without a trail, the fit
    never learned the direction in its budget (docs/world.md)."""
    lo, hi = _object_side_range(layout.size)
    side = int(rng.integers(lo, hi + 1))
    direction = str(rng.choice(DIRECTIONS))
    length = _half_window(frames)
    speed = rng.uniform(4.0, 5.0) * _scale(layout.size)
    dist = min(int(round(speed * (length - 1))), layout.area[2] - layout.area[0] - side)
    dx, dy = {"left": (-dist, 0), "right": (dist, 0), "up": (0, -dist), "down": (0, dist)}[direction]
    spot = layout.place(side + abs(dx), side + abs(dy))
    x0 = spot[0] + (abs(dx) if dx < 0 else 0)
    y0 = spot[1] + (abs(dy) if dy < 0 else 0)
    path = [(x0 + round(dx * t / (length - 1)), y0 + round(dy * t / (length - 1))) for t in range(length)]
    first = _pair_start(rng, frames, hi=(frames - length) // BRIEF)
    return _obj("moving", color, rng.choice(SHAPES), side, first, path, direction=direction)


def _still(rng, layout: _Layout, color: str, role: str, first: int, length: int, side: int | None = None) -> dict:
    lo, hi = _object_side_range(layout.size)
    side = int(rng.integers(lo, hi + 1)) if side is None else side
    spot = layout.place(side, side)
    return _obj(role, color, rng.choice(SHAPES), side, first, [spot] * length)


def _count_starts(rng, n: int, frames: int) -> list[int]:
    """First frames of n different frame pairs: no frame shows two of the counted objects."""
    return [BRIEF * int(k) for k in rng.choice(frames // BRIEF, size=n, replace=False)]


def _video_objects(rng, family: str, frames: int, size: int) -> list[dict]:
    layout = _Layout(rng, size)
    if family == "count":
        n = int(rng.integers(COUNT_RANGE[0], COUNT_RANGE[1] + 1))
        colors = rng.permutation(list(COLORS))[:n]
        lo, hi = _object_side_range(size)
        side = int(rng.integers(lo, hi + 1))  # one size for all: the count is not read off how much colour there is
        keys = [_still(rng, layout, c, "static", first, BRIEF, side)
                for c, first in zip(colors, _count_starts(rng, n, frames))]
    else:
        color = str(rng.choice(list(COLORS)))
        if family in ("moving_color", "direction"):
            keys = [_mover(rng, layout, color, frames)]
        elif family == "static_attr":
            # half the clip, not all of it: a still object in every frame is found by any 10% of the tokens
            length = _half_window(frames)
            first = _pair_start(rng, frames, hi=(frames - length) // BRIEF)
            keys = [_still(rng, layout, color, "static", first, length)]
        elif family == "event":
            first = _pair_start(rng, frames, lo=1, hi=frames // BRIEF - 2)  # never in the first or last pair
            keys = [_still(rng, layout, color, "event", first, BRIEF)]
        else:
            raise DataError(f"world: unknown question family {family!r}")
    return keys


def sample_video_scene(rng: np.random.Generator, family: str, frames: int, size: int) -> dict:
    """A video scene for `family`: the coloured object(s) the family asks about (module docstring)."""
    for _ in range(500):
        try:
            objects = _video_objects(rng, family, frames, size)
        except _NoRoom:
            continue
        return {"kind": "video", "frames": frames, "size": size, "background_seed": int(rng.integers(2**31)),
                "noise_std": NOISE_STD, "objects": objects}
    raise DataError(f"world: could not place a {family!r} scene in {size}x{size} px")


def sample_image_scene(rng: np.random.Generator, family: str, size: int) -> dict:
    """An image scene: one coloured object (`static_attr`) or 1-4 of different colours (`count`)."""
    if family not in IMAGE_FAMILIES:
        raise DataError(f"world: family {family!r} needs a video scene")
    n = int(rng.integers(COUNT_RANGE[0], COUNT_RANGE[1] + 1)) if family == "count" else 1
    for _ in range(500):
        layout = _Layout(rng, size)
        try:
            objects = [_still(rng, layout, c, "static", 0, 1) for c in rng.permutation(list(COLORS))[:n]]
        except _NoRoom:
            continue
        return {"kind": "image", "frames": 1, "size": size, "background_seed": int(rng.integers(2**31)),
                "noise_std": 0.0, "objects": objects}
    raise DataError(f"world: could not place a {family!r} image in {size}x{size} px")


def coloured(scene: dict) -> list[dict]:
    """The scene's coloured objects (every question is about these)."""
    return [o for o in scene["objects"] if o["color"] in COLORS]


# --------------------------------------------------------------------------------------------- questions


def _options(rng, answer: str, pool, letter: int) -> list[str]:
    """Four distinct options with `answer` at index `letter`, the other three drawn from `pool`."""
    others = [str(x) for x in rng.permutation(sorted(set(pool) - {answer}))[:3]]
    if len(others) < 3:
        raise DataError(f"world: not enough distractors for {answer!r}")
    others.insert(letter, answer)
    return others


QUESTIONS = {  # family -> (video question, image question)
    "moving_color": ("What color is the object that moves?", None),
    "direction": ("In which direction does the moving object travel?", None),
    "event": ("What color is the object that appears only briefly?", None),
    "count": ("How many colored objects appear during the video?", "How many colored objects are in the image?"),
    "static_attr": ("What color is the colored object that stays in place?", "What color is the colored object?"),
}


def make_question(rng: np.random.Generator, scene: dict, family: str, letter: int) -> tuple[str, list[str], str]:
    """(question, options, variant) for `family` with the correct option at index `letter`.

    Colour questions offer three colours that are nowhere in the scene (it has one coloured object), count questions
    the numbers 1-4, direction questions the four directions.
    """
    if family not in QUESTIONS:
        raise DataError(f"world: unknown question family {family!r}")
    video = scene["kind"] == "video"
    question = QUESTIONS[family][0 if video else 1]
    if question is None:
        raise DataError(f"world: family {family!r} needs a video scene")
    keys = coloured(scene)
    if family == "count":
        numbers = [str(k) for k in range(COUNT_RANGE[0], COUNT_RANGE[1] + 1)]
        return question, _options(rng, str(len(keys)), numbers, letter), ""
    if len(keys) != 1 or _kind_of(scene, keys[0]) != _ASKS_ABOUT[family]:
        raise DataError(f"world: a {family!r} question needs one coloured {_ASKS_ABOUT[family]} object; the scene has "
                        f"{[_kind_of(scene, k) for k in keys]}")
    (key,) = keys
    if family == "direction":
        return question, _options(rng, key["direction"], DIRECTIONS, letter), ""
    return question, _options(rng, key["color"], COLORS, letter), ""


_ASKS_ABOUT = {"moving_color": "moving", "direction": "moving", "event": "brief", "static_attr": "still"}


def _kind_of(scene: dict, o: dict) -> str:
    """moving / still (in place for half the clip or more) / brief (in place for one frame pair) / other."""
    if o["role"] == "moving":
        return "moving"
    frames = scene["frames"]
    long = o["last"] - o["first"] + 1 >= min(frames, _half_window(frames))
    if o["role"] == "static" and long:
        return "still"
    return "brief" if o["role"] == "event" else "other"


# --------------------------------------------------------------------------------------------- rendering


@functools.lru_cache(maxsize=256)
def shape_mask(shape: str, side: int) -> np.ndarray:
    """Boolean [side, side] footprint of a shape."""
    c = (side - 1) / 2
    y, x = np.mgrid[0:side, 0:side].astype(np.float32)
    if shape == "circle":
        mask = (x - c) ** 2 + (y - c) ** 2 <= (side / 2) ** 2
    elif shape == "square":
        mask = np.ones((side, side), bool)
    elif shape == "triangle":  # apex up; half-width grows linearly to side/2 at the base row
        mask = np.abs(x - c) <= (y + 1) / side * side / 2
    elif shape == "cross":
        arm = max(1.0, side / 3) / 2
        mask = (np.abs(x - c) <= arm) | (np.abs(y - c) <= arm)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    mask.setflags(write=False)
    return mask


def _upsample(coarse: np.ndarray, size: int) -> np.ndarray:
    """Bilinear upsampling of a small 2-D grid to size x size (smooth, low-frequency texture)."""
    g = coarse.shape[0] - 1
    pos = np.linspace(0, g, size, dtype=np.float32)
    i0 = np.minimum(pos.astype(int), g - 1)
    f = pos - i0
    rows = coarse[i0] * (1 - f)[:, None] + coarse[i0 + 1] * f[:, None]
    return rows[:, i0] * (1 - f)[None, :] + rows[:, i0 + 1] * f[None, :]


def render_background(seed: int, size: int) -> np.ndarray:
    """Float32 [size, size, 3]: mid grey with a faint tint, soft blotches and fine static grain. Kept calm on
    purpose: with strong per-video tints and blotches (+-8 and +-12 grey levels) the fit separated only two or
    three of the six colours in its budget (docs/world.md)."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(115, 135) + rng.uniform(-2, 2, 3)
    grid = max(2, size // 16)
    blotches = _upsample(rng.uniform(-5, 5, (grid + 1, grid + 1)).astype(np.float32), size)
    grain = rng.uniform(-2, 2, (size, size)).astype(np.float32)
    return (base.astype(np.float32)[None, None, :] + (blotches + grain)[..., None]).astype(np.float32)


def _render(scene: dict, frames: int) -> np.ndarray:
    size = scene["size"]
    bg = render_background(scene["background_seed"], size)
    out = np.broadcast_to(bg, (frames, size, size, 3)).copy()
    for o in scene["objects"]:
        mask, color = shape_mask(o["shape"], o["size"]), np.asarray(COLORS[o["color"]], np.float32)
        side = o["size"]
        for k, (x, y) in enumerate(o["positions"]):
            frame = out[o["first"] + k]
            if o["role"] == "moving":  # motion blur: fading ghosts where it just was, under the object itself
                for back in range(len(TRAIL), 0, -1):
                    if k - back >= 0:
                        gx, gy = o["positions"][k - back]
                        ghost = frame[gy:gy + side, gx:gx + side]
                        ghost[mask] = (1 - TRAIL[back - 1]) * ghost[mask] + TRAIL[back - 1] * color
            frame[y:y + side, x:x + side][mask] = color
    if scene.get("noise_std", 0) > 0:
        # Seeded from the scene too (a stream independent of the background's), so rendering stays pure.
        rng = np.random.default_rng([scene["background_seed"], 1])
        out += rng.standard_normal((frames, size, size, 1), dtype=np.float32) * np.float32(scene["noise_std"])
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def render_video(scene: dict) -> np.ndarray:
    """uint8 [T, H, W, 3] frames of a video scene (a pure function of the scene dict)."""
    return _render(scene, scene["frames"])


def render_image(scene: dict) -> np.ndarray:
    """uint8 [H, W, 3] image of an image scene."""
    return _render(scene, 1)[0]


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
    blocks = np.concatenate([rng.permutation(4) for _ in range(-(-n // 4))]) if n else []
    letters = [0] * n
    for i, letter in zip(order, blocks):
        letters[i] = int(letter)
    return list(zip(fams, letters))


def make_sample(split: str, index: int, family: str, letter: int, seed: int, frames: int, size: int):
    """(manifest record without the media key, pixels) for one sample; deterministic in its arguments."""
    kind, code = SPLITS[split]
    rng = np.random.default_rng([seed, code, 1, index])  # per-sample stream: independent of other samples
    scene = (sample_video_scene(rng, family, frames, size) if kind == "video"
             else sample_image_scene(rng, family, size))
    question, options, variant = make_question(rng, scene, family, letter)
    if variant:
        scene["variant"] = variant
    pixels = render_video(scene) if kind == "video" else render_image(scene)
    record = {"id": f"{split}_{index:05d}", "question": question, "options": options,
              "answer": LETTERS[letter], "family": family, "scene": scene}
    return record, pixels


# --------------------------------------------------------------------------------------------- build


def world_params(train: int, test: int, static_train: int, frames: int, size: int, seed: int,
                 static_test: int | None = None) -> dict:
    """Everything the rendered world depends on; world.json stores it and the cache compares it."""
    if static_test is None:
        static_test = min(200, static_train // 5)
    params = {"version": WORLD_VERSION, "train": train, "test": test, "static_train": static_train,
              "static_test": static_test, "frames": frames, "size": size, "seed": seed, "fps": FPS, "crf": CRF,
              "noise_std": NOISE_STD}
    _check_params(params)
    return params


def _check_params(p: dict):
    for key in ("train", "test", "static_train", "static_test", "seed"):
        if not isinstance(p[key], int) or p[key] < 0:
            raise DataError(f"world: {key} must be an integer >= 0, got {p[key]!r}")
    if p["frames"] < 6 or p["frames"] % BRIEF:
        raise DataError(f"world: frames must be even and >= 6 (frame pairs; a brief event inside the clip), "
                        f"got {p['frames']}")
    if p["size"] < 16 or p["size"] % 2:
        raise DataError(f"world: size must be even (yuv420p) and >= 16, got {p['size']}")


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
    from scorerl.data.video_io import write_mp4, write_png

    kind, _ = SPLITS[split]
    lines = []
    for index, (family, letter) in enumerate(_plan(split, n, params["seed"])):
        record, pixels = make_sample(split, index, family, letter, params["seed"], params["frames"], params["size"])
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


def build_world(out: str | Path, train: int = 3000, test: int = 500, static_train: int = 1000, frames: int = 16,
                size: int = 64, seed: int = 0, progress: bool = True, static_test: int | None = None) -> Path:
    """Render the world into `out`: videos/*.mp4, images/*.png, {train,test,static_train,static_test}.jsonl.

    A no-op when out/world.json already records the same parameters (the world is a cache). world.json is written
    last, so an interrupted build is never mistaken for a finished one.
    """
    from tqdm.auto import tqdm

    params = world_params(train, test, static_train, frames, size, seed, static_test)
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
    info = {"params": params, "splits": counts,
            "families": {s: list(VIDEO_FAMILIES if SPLITS[s][0] == "video" else IMAGE_FAMILIES) for s in SPLITS},
            "colors": {k: list(v) for k, v in COLORS.items()},
            "shapes": list(SHAPES)}
    atomic.write_text(out / "world.json", json.dumps(info, indent=2) + "\n")
    return out
