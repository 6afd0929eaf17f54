"""The world's questions: each asks about what a scene holds, with three wrong colour options that are nowhere in
the video (so answering needs no binding of colour to shape or motion; docs/world.md)."""

from __future__ import annotations

import numpy as np

from scorerl.errors import DataError
from scorerl.world.scenes import COLORS, COUNT_RANGE, DIRECTIONS, coloured, half_window
from scorerl.world.scenes_v4 import scene_version

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
# World v4 (nuisances.py) has grey movers that also move, cross the view briefly, and a static logo: every question
# names "the colored object", which no nuisance is (all are grey), so each answer stays about one object.
QUESTIONS_V4 = {
    **QUESTIONS,
    "moving_color": ("What color is the colored object that moves?", None),
    "direction": ("In which direction does the colored object travel?", None),
    "event": ("What color is the colored object that appears only briefly?", None),
}


def make_question(rng: np.random.Generator, scene: dict, family: str, letter: int) -> tuple[str, list[str], str]:
    """(question, options, variant) for `family` with the correct option at index `letter`.

    Colour questions offer three colours that are nowhere in the scene (it has one coloured object), count questions
    the numbers 1-4, direction questions the four directions.
    """
    if family not in QUESTIONS:
        raise DataError(f"world: unknown question family {family!r}")
    video = scene["kind"] == "video"
    texts = QUESTIONS_V4 if scene_version(scene) >= 4 else QUESTIONS
    question = texts[family][0 if video else 1]
    if question is None:
        raise DataError(f"world: family {family!r} needs a video scene")
    keys = coloured(scene)
    if family == "count":
        numbers = [str(k) for k in range(COUNT_RANGE[0], COUNT_RANGE[1] + 1)]
        return question, _options(rng, str(len(keys)), numbers, letter), ""
    if len(keys) != 1 or _kind_of(scene, keys[0]) != _ASKS_ABOUT[family]:
        raise DataError(
            f"world: a {family!r} question needs one coloured {_ASKS_ABOUT[family]} object; the scene has "
            f"{[_kind_of(scene, k) for k in keys]}"
        )
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
    long = o["last"] - o["first"] + 1 >= min(frames, half_window(frames))
    if o["role"] == "static" and long:
        return "still"
    return "brief" if o["role"] == "event" else "other"
