"""The built-in synthetic video-QA world: coloured shapes on a mildly textured background.

Why it exists: a benchmark for token compression that runs anywhere (no hub, no downloads) and where we *know* which
tokens matter. Each video has
  - 1-4 static objects      (needed by `count` and `static_attr`: spatial saliency, zero residual after frame 0),
  - one moving object        (needed by `moving_color`, `moving_shape`, `direction`: at least two frames of it),
  - one brief event object   (visible 2-3 of 16 frames, never the first or last: needed by `event`),
over a static background with light per-frame sensor noise. Objects never overlap (the moving one's whole path is
kept clear), and every object has its own colour, so each one is named unambiguously by its colour.
Every video holds all three kinds whatever the question, because the SCORE policy never sees the question: it has
to keep the few tokens each kind needs (a few % of all tokens) and drop the rest. No single trick covers all
families: frame differences find the moving and event objects but not the static ones, one frame finds the
static ones but not which object moves or what flashed, and distractors are chosen so that guessing from what is
visible in one frame does not work (e.g. `event` options are never objects that are on screen the whole time, and
form a colour x shape grid so the text alone does not give the answer away).

The static pseudo-video split (curriculum stage 1) is single images with image QA: `static_attr`, `count`,
`color_at` (objects sit in distinct quadrants).

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

log = logging.getLogger(__name__)

WORLD_VERSION = 1  # bump when rendering, sampling or question text changes: invalidates cached worlds

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
QUADRANTS = ("top-left", "top-right", "bottom-left", "bottom-right")
VIDEO_FAMILIES = ("moving_color", "moving_shape", "direction", "event", "count", "static_attr")
IMAGE_FAMILIES = ("static_attr", "count", "color_at")
COUNT_RANGE = (1, 4)  # static objects in a `count` scene; the options are always these four numbers

FPS = 8
CRF = 18
NOISE_STD = 2.0  # per-frame luma noise: real cameras never give exactly zero residual on a static background

# Split name -> (media kind, code mixed into the seed so splits never share scenes)
SPLITS = {"train": ("video", 1), "test": ("video", 2), "static_train": ("image", 3), "static_test": ("image", 4)}


# --------------------------------------------------------------------------------------------- geometry


def _scale(size: int) -> float:
    return size / 64.0  # every length below is designed at 64 px and scaled


def _object_side_range(size: int) -> tuple[int, int]:
    # 10-15 px at 64 px: 2x2 to 3x3 patches of 8 px, large enough to keep shape after patching
    u = _scale(size)
    return max(3, round(10 * u)), max(3, round(15 * u))


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


def _event_length_range(frames: int) -> tuple[int, int]:
    # 2-3 frames of 16; at least one frame, and short enough to sit strictly inside the video
    lo = max(1, round(frames * 2 / 16))
    hi = max(lo, round(frames * 3 / 16))
    return lo, min(hi, frames - 2)


# --------------------------------------------------------------------------------------------- scenes


def _obj(role, color, shape, side, first, positions, **extra) -> dict:
    return {"role": role, "color": str(color), "shape": str(shape), "size": int(side), "first": int(first),
            "last": int(first + len(positions) - 1), "positions": [[int(x), int(y)] for x, y in positions], **extra}


def _try_video_scene(rng, n_static: int, frames: int, size: int) -> dict | None:
    lo, hi = _object_side_range(size)
    gap = _gap(size)
    n = n_static + 2
    colors = rng.permutation(list(COLORS))[:n]  # unique colour per object: each object is named by its colour
    shapes = rng.choice(SHAPES, n)
    sides = rng.integers(lo, hi + 1, n)
    frame_area = (gap, gap, size - gap, size - gap)
    boxes, objects = [], []

    for i in range(n_static):
        spot = _free_spot(rng, sides[i], sides[i], frame_area, boxes, gap)
        if spot is None:
            return None
        boxes.append((*spot, sides[i], sides[i]))
        objects.append(_obj("static", colors[i], shapes[i], sides[i], 0, [spot] * frames))

    # Moving object: a straight constant-speed path whose whole swept box is clear of everything else.
    i = n_static
    side = int(sides[i])
    direction = str(rng.choice(DIRECTIONS))
    dist = int(round(rng.uniform(0.28, 0.42) * size))
    dx, dy = {"left": (-dist, 0), "right": (dist, 0), "up": (0, -dist), "down": (0, dist)}[direction]
    sweep = (side + abs(dx), side + abs(dy))
    spot = _free_spot(rng, *sweep, frame_area, boxes, gap)
    if spot is None:
        return None
    boxes.append((*spot, *sweep))
    x0 = spot[0] + (abs(dx) if dx < 0 else 0)
    y0 = spot[1] + (abs(dy) if dy < 0 else 0)
    path = [(x0 + round(dx * t / (frames - 1)), y0 + round(dy * t / (frames - 1))) for t in range(frames)]
    moving = _obj("moving", colors[i], shapes[i], side, 0, path, direction=direction)

    # Event object: appears for a few frames, never in the first or last one (first/last-frame tricks miss it).
    i = n_static + 1
    lo_len, hi_len = _event_length_range(frames)
    length = int(rng.integers(lo_len, hi_len + 1))
    first = int(rng.integers(1, frames - length))  # last visible frame <= frames - 2
    spot = _free_spot(rng, sides[i], sides[i], frame_area, boxes, gap)
    if spot is None:
        return None
    event = _obj("event", colors[i], shapes[i], sides[i], first, [spot] * length)

    # Drawing order = list order; the moving object last so it would be on top (no overlaps are allowed anyway).
    return {"kind": "video", "frames": frames, "size": size, "background_seed": int(rng.integers(2**31)),
            "noise_std": NOISE_STD, "objects": objects + [event, moving]}


def sample_video_scene(rng: np.random.Generator, family: str, frames: int, size: int) -> dict:
    """A video scene for `family`: 1-4 static objects (count: 1-4, event: 2-3, others: 2-4), one moving, one brief
    event object."""
    if family == "count":
        n_static = int(rng.integers(COUNT_RANGE[0], COUNT_RANGE[1] + 1))
    else:  # `event` needs a colour absent from the video for its distractors (see _event_options)
        n_static = int(rng.integers(2, 4 if family == "event" else 5))
    for _ in range(500):  # n_static stays fixed across retries so the count answer stays uniform
        scene = _try_video_scene(rng, n_static, frames, size)
        if scene is not None:
            return scene
    raise DataError(f"world: could not place {n_static} static objects and a moving path in {size}x{size} px")


def sample_image_scene(rng: np.random.Generator, family: str, size: int) -> dict:
    """An image scene: 1-4 objects (2-4 unless `count`), each in its own quadrant, unique colours."""
    n = int(rng.integers(COUNT_RANGE[0], COUNT_RANGE[1] + 1)) if family == "count" else int(rng.integers(2, 5))
    lo, hi = _object_side_range(size)
    gap = _gap(size)
    half = size // 2
    colors = rng.permutation(list(COLORS))[:n]
    shapes = rng.choice(SHAPES, n)
    quads = rng.permutation(len(QUADRANTS))[:n]
    objects = []
    for k in range(n):
        q = int(quads[k])
        qx, qy = (q % 2) * half, (q // 2) * half
        side = int(min(rng.integers(lo, hi + 1), half - 2 * gap))
        area = (qx + gap, qy + gap, qx + half - gap, qy + half - gap)
        spot = _free_spot(rng, side, side, area, [], gap)
        objects.append(_obj("static", colors[k], shapes[k], side, 0, [spot], quadrant=QUADRANTS[q]))
    return {"kind": "image", "frames": 1, "size": size, "background_seed": int(rng.integers(2**31)),
            "noise_std": 0.0, "objects": objects}


def _role(scene: dict, role: str) -> list[dict]:
    return [o for o in scene["objects"] if o["role"] == role]


# --------------------------------------------------------------------------------------------- questions


def _options(rng, answer: str, tiers: list[list[str]], letter: int) -> list[str]:
    """Four distinct options with `answer` at index `letter`; distractors from the first tiers first.

    Tiers order distractors from hardest (e.g. colours that are on screen) to filler, so guessing "the option I
    can see somewhere" does not work.
    """
    chosen: list[str] = []
    for tier in tiers:
        for item in rng.permutation(sorted(set(tier))).tolist():
            if len(chosen) == 3:
                break
            if item != answer and item not in chosen:
                chosen.append(str(item))
    if len(chosen) < 3:
        raise DataError(f"world: not enough distractors for {answer!r}")
    chosen.insert(letter, answer)
    return chosen


def _make_shape_unique(rng, scene: dict, target: dict):
    """Re-draw the shape of every other object that shares the target's shape, so "the <shape>" names one object."""
    others = [s for s in SHAPES if s != target["shape"]]
    for o in scene["objects"]:
        if o is not target and o["shape"] == target["shape"]:
            o["shape"] = str(rng.choice(others))


def _static_attr(rng, scene: dict, letter: int) -> tuple[str, list[str], str]:
    statics = _role(scene, "static")
    target = statics[int(rng.integers(len(statics)))]
    if rng.random() < 0.5:
        _make_shape_unique(rng, scene, target)
        others = [o["color"] for o in scene["objects"] if o is not target]
        question = f"What color is the {target['shape']}?"
        return question, _options(rng, target["color"], [others, list(COLORS)], letter), "color_of_shape"
    question = f"What shape is the {target['color']} object?"
    return question, _options(rng, target["shape"], [list(SHAPES)], letter), "shape_of_color"


def _event_options(rng, scene: dict, letter: int) -> list[str]:
    """A 2 x 2 grid {event colour, c2} x {event shape, s2}: every option shares one attribute with two others, so
    the text alone does not single out the answer, and none of them is on screen outside the event's frames.

    c2 is a colour absent from the video (the event family keeps 2-3 static objects so one exists): a colour seen
    on an always-visible object would be ruled out by the world's one-colour-per-object rule without the event.
    """
    event = _role(scene, "event")[0]
    ce, se = event["color"], event["shape"]
    used = {o["color"] for o in scene["objects"]}
    grid = [(c2, s2) for c2 in COLORS if c2 not in used for s2 in SHAPES if s2 != se]
    c2, s2 = grid[int(rng.integers(len(grid)))]
    distractors = [f"{ce} {s2}", f"{c2} {se}", f"{c2} {s2}"]
    options = [distractors[i] for i in rng.permutation(3)]
    options.insert(letter, f"{ce} {se}")
    return options


def make_question(rng: np.random.Generator, scene: dict, family: str, letter: int) -> tuple[str, list[str], str]:
    """(question, options, variant) for `family` with the correct option at index `letter`.

    May re-draw object shapes in `scene` (static_attr needs a unique shape), so call it before rendering.
    """
    video = scene["kind"] == "video"
    if family == "static_attr":
        return _static_attr(rng, scene, letter)
    if family == "count":
        n = len(_role(scene, "static"))
        numbers = [str(k) for k in range(COUNT_RANGE[0], COUNT_RANGE[1] + 1)]
        q = ("How many objects stay in the same place for the whole video?" if video
             else "How many objects are in the image?")
        return q, _options(rng, str(n), [numbers], letter), ""
    if family == "color_at":
        statics = _role(scene, "static")
        target = statics[int(rng.integers(len(statics)))]
        others = [o["color"] for o in statics if o is not target]
        q = f"What color is the object in the {target['quadrant']} quarter of the image?"
        return q, _options(rng, target["color"], [others, list(COLORS)], letter), ""
    if not video:
        raise DataError(f"world: family {family!r} needs a video scene")
    moving = _role(scene, "moving")[0]
    if family == "moving_color":
        seen = [o["color"] for o in scene["objects"] if o is not moving]  # statics and the event: all visible
        return "What color is the object that moves?", _options(rng, moving["color"], [seen, list(COLORS)],
                                                                letter), ""
    if family == "moving_shape":
        return "What shape is the object that moves?", _options(rng, moving["shape"], [list(SHAPES)], letter), ""
    if family == "direction":
        return ("In which direction does the moving object travel?",
                _options(rng, moving["direction"], [list(DIRECTIONS)], letter), "")
    if family == "event":
        return "Which object appears only briefly in the video?", _event_options(rng, scene, letter), ""
    raise DataError(f"world: unknown question family {family!r}")


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
    """Float32 [size, size, 3]: grey with a mild tint, soft blotches and fine static grain (mild, on purpose)."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(95, 150) + rng.uniform(-8, 8, 3)
    grid = max(2, size // 16)
    blotches = _upsample(rng.uniform(-12, 12, (grid + 1, grid + 1)).astype(np.float32), size)
    grain = rng.uniform(-3, 3, (size, size)).astype(np.float32)
    return (base.astype(np.float32)[None, None, :] + (blotches + grain)[..., None]).astype(np.float32)


def _render(scene: dict, frames: int) -> np.ndarray:
    size = scene["size"]
    bg = render_background(scene["background_seed"], size)
    out = np.broadcast_to(bg, (frames, size, size, 3)).copy()
    for o in scene["objects"]:
        mask, color = shape_mask(o["shape"], o["size"]), np.asarray(COLORS[o["color"]], np.float32)
        side = o["size"]
        for k, (x, y) in enumerate(o["positions"]):
            out[o["first"] + k, y:y + side, x:x + side][mask] = color
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
    if p["frames"] < 4:
        raise DataError(f"world: frames must be >= 4 (motion and a brief event inside the clip), got {p['frames']}")
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


def _write_atomic(path: Path, text: str):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


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
    _write_atomic(out / f"{split}.jsonl", "".join(line + "\n" for line in lines))


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
            "colors": {k: list(v) for k, v in COLORS.items()}, "shapes": list(SHAPES)}
    _write_atomic(out / "world.json", json.dumps(info, indent=2) + "\n")
    return out
