"""The world's pixels: a scene dict -> uint8 frames, a pure function of the scene (the background is seeded by it).

Draw order (world v4, render_nuisances.py): background (v4: scenery, moved by the camera) -> flicker patch -> grey
movers -> the coloured objects -> logo and timestamp. The coloured objects are above every nuisance but the
overlay, and the scene layout keeps them clear of the overlay, so no nuisance ever hides one.
"""

from __future__ import annotations

import numpy as np

from scorerl.world import render_nuisances as rn
from scorerl.world.scenes import COLORS, TRAIL
from scorerl.world.scenes_v4 import scene_version
from scorerl.world.textures import render_background, shape_mask  # noqa: F401  (shape_mask: part of this API)

# --------------------------------------------------------------------------------------------- rendering


def _render(scene: dict, frames: int) -> np.ndarray:
    size = scene["size"]
    if scene_version(scene) >= 4:
        out = rn.background_frames(scene, frames)  # float32 [F, H, W, 3]: scenery, moved by the camera
        rn.draw_under(out, scene["nuisances"])  # flicker patch, grey movers
    else:  # version 3: one static background (this branch must stay bit-identical: tests/world/test_world_v4.py)
        bg = render_background(scene["background_seed"], size)
        out = np.broadcast_to(bg, (frames, size, size, 3)).copy()
    _draw_objects(out, scene)
    if scene_version(scene) >= 4:
        rn.draw_over(out, scene["nuisances"])  # logo, timestamp: on top, as broadcast graphics are
    if scene.get("noise_std", 0) > 0:
        # Seeded from the scene too (a stream independent of the background's), so rendering stays pure.
        rng = np.random.default_rng([scene["background_seed"], 1])
        out += rng.standard_normal((frames, size, size, 1), dtype=np.float32) * np.float32(scene["noise_std"])
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _draw_objects(out: np.ndarray, scene: dict) -> None:
    """Paint the scene's objects into float frames out [F, H, W, 3], in place."""
    for o in scene["objects"]:
        mask, color = shape_mask(o["shape"], o["size"]), np.asarray(COLORS[o["color"]], np.float32)
        side = o["size"]
        for k, (x, y) in enumerate(o["positions"]):
            frame = out[o["first"] + k]
            if o["role"] == "moving":  # motion blur: fading ghosts where it just was, under the object itself
                for back in range(len(TRAIL), 0, -1):
                    if k - back >= 0:
                        gx, gy = o["positions"][k - back]
                        ghost = frame[gy : gy + side, gx : gx + side]
                        ghost[mask] = (1 - TRAIL[back - 1]) * ghost[mask] + TRAIL[back - 1] * color
            frame[y : y + side, x : x + side][mask] = color


def render_video(scene: dict) -> np.ndarray:
    """uint8 [T, H, W, 3] frames of a video scene (a pure function of the scene dict)."""
    return _render(scene, scene["frames"])


def render_image(scene: dict) -> np.ndarray:
    """uint8 [H, W, 3] image of an image scene."""
    return _render(scene, 1)[0]
