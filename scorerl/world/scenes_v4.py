"""World v4 scenes: a version-3 scene's coloured objects (same families, same rules) placed around a random subset
of nuisances (nuisances.py), which the scene dict records under "nuisances" and marks with "version": 4.

Two generators per sample: `rng` draws the objects as version 3 does, `nuisance_rng` the subset and its layout,
so which nuisances a video has does not depend on its family's draws. When the objects find no room around a
nuisance layout, the layout is drawn again (the subset stays).
"""

from __future__ import annotations

import numpy as np

from scorerl.errors import DataError
from scorerl.world.nuisances import draw_toggles, place_nuisances, reserved_boxes
from scorerl.world.scenes import IMAGE_FAMILIES, NOISE_STD, _image_objects, _NoRoom, _video_objects, image_object_count

VERSION = 4
MIN_SIZE = 32  # the overlay's corners and the flicker patch leave the objects too little room below this


def scene_version(scene: dict) -> int:
    """3 for a scene without a version key (every version-3 scene), else its version."""
    return int(scene.get("version", 3))


def sample_video_scene_v4(
    rng: np.random.Generator,
    nuisance_rng: np.random.Generator,
    probs: dict[str, float],
    family: str,
    frames: int,
    size: int,
) -> dict:
    """A v4 video scene for `family`: its coloured object(s) around this sample's nuisances."""
    toggles = draw_toggles(nuisance_rng, probs, "video")
    for _ in range(500):
        nuisances = place_nuisances(nuisance_rng, toggles, frames, size)
        try:
            objects = _video_objects(rng, family, frames, size, reserved_boxes(nuisances))
        except _NoRoom:
            continue
        return {
            "kind": "video",
            "version": VERSION,
            "frames": frames,
            "size": size,
            "background_seed": int(rng.integers(2**31)),
            "noise_std": NOISE_STD,
            "objects": objects,
            "nuisances": nuisances,
        }
    raise DataError(f"world v4: could not place a {family!r} scene with {toggles} in {size}x{size} px")


def sample_image_scene_v4(
    rng: np.random.Generator, nuisance_rng: np.random.Generator, probs: dict[str, float], family: str, size: int
) -> dict:
    """A v4 image scene: one coloured object or 1-4 of different colours, around the image's nuisances (a
    flicker patch is one texture, movers are still grey shapes, no camera motion)."""
    if family not in IMAGE_FAMILIES:
        raise DataError(f"world: family {family!r} needs a video scene")
    n = image_object_count(rng, family)
    toggles = draw_toggles(nuisance_rng, probs, "image")
    for _ in range(500):
        nuisances = place_nuisances(nuisance_rng, toggles, 1, size)
        try:
            objects = _image_objects(rng, n, size, reserved_boxes(nuisances))
        except _NoRoom:
            continue
        return {
            "kind": "image",
            "version": VERSION,
            "frames": 1,
            "size": size,
            "background_seed": int(rng.integers(2**31)),
            "noise_std": 0.0,
            "objects": objects,
            "nuisances": nuisances,
        }
    raise DataError(f"world v4: could not place a {family!r} image with {toggles} in {size}x{size} px")
