"""The world's scenes: what each video or image holds, as a plain dict that rendering and questions both read.

A scene lists its objects (role, colour, shape, side, the frames it is on screen, its position per frame); for
`count` one object per counted colour. Sampling is a pure function of the generator.
"""

from __future__ import annotations

import numpy as np

from scorerl.errors import DataError

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
NOISE_STD = 2.0  # per-frame luma noise: real cameras never give exactly zero residual on a static background
COUNT_RANGE = (1, 4)  # coloured objects in a `count` scene; the options are always these four numbers


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
    return {
        "role": role,
        "color": str(color),
        "shape": str(shape),
        "size": int(side),
        "first": int(first),
        "last": int(first + len(positions) - 1),
        "positions": [[int(x), int(y)] for x, y in positions],
        **extra,
    }


class _Layout:
    """Places non-overlapping boxes in a size x size frame (a box is reserved for all frames). `reserved`: boxes
    already taken (world v4's overlay and flicker patch), which the placed boxes keep clear of too."""

    def __init__(self, rng, size: int, reserved=()):
        self.rng, self.size, self.gap, self.boxes = rng, size, _gap(size), list(reserved)
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


def half_window(frames: int) -> int:
    # the moving object and the still one are on screen for half the clip: 8 of 16 frames, from a frame pair on
    return max(BRIEF, frames // 2 // BRIEF * BRIEF)


def _mover(rng, layout: _Layout, color: str, frames: int) -> dict:
    """An object crossing part of the view during half the clip: a straight path at 4-5 px per frame (at 64 px),
    drawn with a fading motion-blur trail. At 2-3 px per frame, visible throughout and without a trail, the fit
    never learned the direction in its budget (docs/world.md)."""
    lo, hi = _object_side_range(layout.size)
    side = int(rng.integers(lo, hi + 1))
    direction = str(rng.choice(DIRECTIONS))
    length = half_window(frames)
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


def _video_objects(rng, family: str, frames: int, size: int, reserved=()) -> list[dict]:
    layout = _Layout(rng, size, reserved)
    if family == "count":
        n = int(rng.integers(COUNT_RANGE[0], COUNT_RANGE[1] + 1))
        colors = rng.permutation(list(COLORS))[:n]
        lo, hi = _object_side_range(size)
        side = int(rng.integers(lo, hi + 1))  # one size for all: the count is not read off how much colour there is
        keys = [
            _still(rng, layout, c, "static", first, BRIEF, side)
            for c, first in zip(colors, _count_starts(rng, n, frames))
        ]
    else:
        color = str(rng.choice(list(COLORS)))
        if family in ("moving_color", "direction"):
            keys = [_mover(rng, layout, color, frames)]
        elif family == "static_attr":
            # half the clip, not all of it: a still object in every frame is found by any 10% of the tokens
            length = half_window(frames)
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
        return {
            "kind": "video",
            "frames": frames,
            "size": size,
            "background_seed": int(rng.integers(2**31)),
            "noise_std": NOISE_STD,
            "objects": objects,
        }
    raise DataError(f"world: could not place a {family!r} scene in {size}x{size} px")


def sample_image_scene(rng: np.random.Generator, family: str, size: int) -> dict:
    """An image scene: one coloured object (`static_attr`) or 1-4 of different colours (`count`)."""
    if family not in IMAGE_FAMILIES:
        raise DataError(f"world: family {family!r} needs a video scene")
    n = image_object_count(rng, family)
    for _ in range(500):
        try:
            objects = _image_objects(rng, n, size)
        except _NoRoom:
            continue
        return {
            "kind": "image",
            "frames": 1,
            "size": size,
            "background_seed": int(rng.integers(2**31)),
            "noise_std": 0.0,
            "objects": objects,
        }
    raise DataError(f"world: could not place a {family!r} image in {size}x{size} px")


def image_object_count(rng: np.random.Generator, family: str) -> int:
    return int(rng.integers(COUNT_RANGE[0], COUNT_RANGE[1] + 1)) if family == "count" else 1


def _image_objects(rng, n: int, size: int, reserved=()) -> list[dict]:
    """n still objects of different colours in one image (raises _NoRoom when they do not fit)."""
    layout = _Layout(rng, size, reserved)
    return [_still(rng, layout, c, "static", 0, 1) for c in rng.permutation(list(COLORS))[:n]]


def coloured(scene: dict) -> list[dict]:
    """The scene's coloured objects (every question is about these)."""
    return [o for o in scene["objects"] if o["color"] in COLORS]
