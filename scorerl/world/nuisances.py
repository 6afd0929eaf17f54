"""World v4's nuisances: salient things real footage is full of that are NEVER what a question is about.

Version 3 videos hold only what their question asks about, on a calm background, so "keep the tokens that differ
from the rest" (frame differencing, VidCom2-style uniqueness) is already the answer. Version 4 adds, per video, a
random subset of (each with its own probability, `world.nuisance_*`):
  - `flicker`    a textured patch (a "screen" of changing blocks, or "foliage") whose texture and brightness
                 change every frame;
  - `camera`     a pan and/or shake of the background (the scenery texture moves, the objects do not; why: below);
  - `overlay`    a static high-contrast logo in one corner (`logo`) and a timestamp that ticks every few frames
                 in another (`timestamp`): two regions;
  - `movers`     1-2 grey shapes crossing the scene.
Every nuisance is achromatic (grey levels only), so "colored object" in the questions never means one of them:
a count counts only the six saturated colours, and every v4 question names "the colored object".

Camera motion moves the BACKGROUND only, the objects stay in screen (camera) coordinates, and every answer is
in those coordinates. The pan is at most 1.5 px per frame at 64 px (shake +-2 px), under the slowest object's
4 px per frame, so a moving object travels the answered direction both on screen and relative to the scenery:
a `direction` answer stays valid whichever frame of reference a viewer picks. (Panning everything would make the
still object drift and the direction answers depend on the pan.)

The flicker patch and the overlay are fixed on screen, and the coloured objects are placed around them (their
boxes are reserved in the scene layout), so no nuisance ever hides an object. Movers are drawn UNDER the
coloured objects for the same reason. Where each nuisance is goes into the scene dict, hence into the sample's
`meta["scene"]["nuisances"]`: pixel boxes, per-frame positions, per-frame camera offsets (regions.py turns them
into token masks).

A nuisance dict is plain JSON: {"kind": ..., ...}, kinds in REGIONS order. Each one carries its own texture
seed, so removing one from a scene re-renders the others exactly (the tests rely on that).
"""

from __future__ import annotations

import math

import numpy as np

from scorerl.errors import DataError
from scorerl.world.scenes import SHAPES, _free_spot, _gap, _scale

TOGGLES = ("flicker", "camera", "overlay", "movers")  # what world.nuisance_* switch on, drawn in this order
REGIONS = ("flicker", "camera", "logo", "timestamp", "movers")  # what a scene's meta records (overlay -> 2)
DEFAULT_PROBS = {k: 0.5 for k in TOGGLES}

PAN_MAX = 1.5  # px per frame at 64 px: under the slowest object's 4, so directions hold relative to the scenery
PAN_MIN = 0.5
SHAKE = 2  # px at 64 px
MOVER_GREYS = ((50, 80), (175, 205))  # dark or light grey: contrast with the ~125 background, no chroma
FONT_PX = 1  # timestamp font pixel at 64 px (3 x 5 digits)


# --------------------------------------------------------------------------------------------- the subset


def draw_toggles(rng: np.random.Generator, probs: dict[str, float], kind: str = "video") -> list[str]:
    """Which nuisances this sample has: one uniform per toggle, ALWAYS drawn (so the stream stays aligned
    whatever the probabilities); an image never has camera motion."""
    u = rng.random(len(TOGGLES))
    on = [k for k, x in zip(TOGGLES, u) if x < float(probs.get(k, 0.0))]
    return [k for k in on if not (kind == "image" and k == "camera")]


def check_probs(probs: dict) -> dict[str, float]:
    """The nuisance probabilities as a full dict (missing toggles: DEFAULT_PROBS), each in [0, 1]."""
    unknown = sorted(set(probs) - set(TOGGLES))
    if unknown:
        raise DataError(f"world: unknown nuisance(s) {unknown}; known: {', '.join(TOGGLES)}")
    out = {k: float(probs.get(k, DEFAULT_PROBS[k])) for k in TOGGLES}
    for k, p in out.items():
        if not 0.0 <= p <= 1.0:
            raise DataError(f"world: nuisance probability {k} must be in [0, 1], got {p}")
    return out


# --------------------------------------------------------------------------------------------- placement


def place_nuisances(rng: np.random.Generator, toggles: list[str], frames: int, size: int) -> list[dict]:
    """One layout of the chosen nuisances (regions in REGIONS order); called again with the same generator when
    the scene's objects find no room around it."""
    out: list[dict] = []
    fixed: list[tuple[int, int, int, int]] = []  # boxes fixed on screen: the overlay's, then the flicker's
    if "overlay" in toggles:
        logo, stamp = _overlay(rng, frames, size)
        fixed += [tuple(logo["box"]), tuple(stamp["box"])]
    if "flicker" in toggles:
        out.append(_flicker(rng, size, fixed))
    if "camera" in toggles:
        out.append(_camera(rng, frames, size))
    if "overlay" in toggles:
        out += [logo, stamp]
    if "movers" in toggles:
        out.append(_movers(rng, frames, size))
    return out


def reserved_boxes(nuisances: list[dict]) -> list[tuple[int, int, int, int]]:
    """(x, y, w, h) boxes, fixed on screen in every frame, that the coloured objects must keep clear of."""
    return [tuple(n["box"]) for n in nuisances if n["kind"] in ("flicker", "logo", "timestamp")]


def _corner(size: int, w: int, h: int, corner: int, inset: int) -> list[int]:
    x = inset if corner in (0, 2) else size - inset - w
    y = inset if corner in (0, 1) else size - inset - h
    return [x, y, w, h]


def timestamp_px(size: int) -> int:
    return max(1, round(FONT_PX * _scale(size)))


def timestamp_box_size(size: int) -> tuple[int, int]:
    """(w, h) of the timestamp plate: "M:SS" in 3 x 5 digits (13 x 5 font pixels) and a 1-pixel margin."""
    p = timestamp_px(size)
    return 13 * p + 2 * p, 5 * p + 2 * p


def _overlay(rng, frames: int, size: int) -> tuple[dict, dict]:
    """A logo in one corner and a ticking timestamp in another (as broadcast graphics are)."""
    u, inset = _scale(size), _gap(size)
    corners = rng.permutation(4)[:2]
    lw = int(rng.integers(max(6, round(12 * u)), max(7, round(16 * u)) + 1))
    lh = int(rng.integers(max(4, round(8 * u)), max(5, round(10 * u)) + 1))
    logo = {"kind": "logo", "box": _corner(size, lw, lh, int(corners[0]), inset), "seed": int(rng.integers(2**31))}
    tw, th = timestamp_box_size(size)
    stamp = {
        "kind": "timestamp",
        "box": _corner(size, tw, th, int(corners[1]), inset),
        "px": timestamp_px(size),
        "start": int(rng.integers(0, 600)),
        "tick": int(rng.integers(2, 5)),
    }
    return logo, stamp


def timestamp_text(stamp: dict, frame: int) -> str:
    """What the timestamp shows at `frame`: M:SS, one second more every `tick` frames."""
    seconds = stamp["start"] + frame // stamp["tick"]
    return f"{seconds // 60 % 10}:{seconds % 60:02d}"


def _flicker(rng, size: int, fixed) -> dict:
    u, gap = _scale(size), _gap(size)
    lo, hi = max(4, round(16 * u)), max(5, round(24 * u))
    w, h = int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1))
    spot = _free_spot(rng, w, h, (gap, gap, size - gap, size - gap), list(fixed), gap)
    if spot is None:  # no room beside the overlay (tiny frames): a smaller patch at the frame's centre
        w = h = lo
        spot = ((size - w) // 2, (size - h) // 2)
    style = str(rng.choice(["screen", "foliage"]))
    return {
        "kind": "flicker",
        "style": style,
        "box": [int(spot[0]), int(spot[1]), w, h],
        "seed": int(rng.integers(2**31)),
    }


def camera_margin(frames: int, size: int) -> int:
    """Extra background on each side so that every crop of a pan and shake stays inside the canvas."""
    u = _scale(size)
    return int(math.ceil(PAN_MAX * u * (frames - 1) / 2)) + max(1, round(SHAKE * u)) + 1


def _camera(rng, frames: int, size: int) -> dict:
    """Per-frame top-left offsets [[ox, oy]] of the view into a (size + 2 margin)^2 background canvas."""
    u, m = _scale(size), camera_margin(frames, size)
    mode = str(rng.choice(["pan", "shake", "pan+shake"]))
    speed = rng.uniform(PAN_MIN, PAN_MAX) * u if "pan" in mode else 0.0
    angle = rng.uniform(0, 2 * math.pi)
    amp = max(1, round(SHAKE * u)) if "shake" in mode else 0
    shake = rng.integers(-amp, amp + 1, size=(frames, 2)) if amp else np.zeros((frames, 2), int)
    mid = (frames - 1) / 2
    offsets = [
        [
            m + round(speed * math.cos(angle) * (t - mid)) + int(shake[t, 0]),
            m + round(speed * math.sin(angle) * (t - mid)) + int(shake[t, 1]),
        ]
        for t in range(frames)
    ]
    return {
        "kind": "camera",
        "mode": mode,
        "margin": m,
        "velocity": [round(speed * math.cos(angle), 4), round(speed * math.sin(angle), 4)],
        "offsets": offsets,
    }


def _movers(rng, frames: int, size: int) -> dict:
    """1-2 grey shapes on straight paths at 2-4 px per frame, on screen for half the clip or more."""
    items = [_mover(rng, frames, size) for _ in range(int(rng.integers(1, 3)))]
    return {"kind": "movers", "items": items}


def _mover(rng, frames: int, size: int) -> dict:
    u = _scale(size)
    side = int(rng.integers(max(3, round(10 * u)), max(4, round(14 * u)) + 1))
    length = int(rng.integers(max(1, frames // 2), frames + 1))
    first = int(rng.integers(0, frames - length + 1))
    speed, angle = rng.uniform(2.0, 4.0) * u, rng.uniform(0, 2 * math.pi)
    room = size - side  # a path stays inside the frame: shorten it if it is longer than the room
    dx, dy = speed * (length - 1) * math.cos(angle), speed * (length - 1) * math.sin(angle)
    shrink = min(1.0, room / max(1e-9, abs(dx)), room / max(1e-9, abs(dy)))
    dx, dy = dx * shrink, dy * shrink
    x0 = rng.uniform(max(0, -dx), min(room, room - dx))
    y0 = rng.uniform(max(0, -dy), min(room, room - dy))
    steps = max(1, length - 1)
    path = [[int(round(x0 + dx * t / steps)), int(round(y0 + dy * t / steps))] for t in range(length)]
    lo, hi = MOVER_GREYS[int(rng.integers(2))]
    return {
        "shape": str(rng.choice(SHAPES)),
        "grey": int(rng.integers(lo, hi + 1)),
        "size": side,
        "first": first,
        "last": first + length - 1,
        "positions": path,
    }
