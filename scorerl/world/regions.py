"""Where things are in a rendered world video: per pixel, which layer is on top (the same order render.py draws
in), and per visual token, which regions it covers. A report uses this to measure where a compressor's kept tokens
land: on the answer's coloured objects or on world v4's nuisances (nuisances.py).

    labels = label_map(scene)                       # uint8 [F, H, W], codes in LAYERS
    masks = token_regions(scene, T=8, grid=(4, 4))  # {"object": bool [T, 4, 4], "flicker": ..., ...}

Regions: `object` (the coloured objects and their motion-blur ghosts: the evidence every answer needs),
`flicker`, `movers`, `logo`, `timestamp` (where those are visible), and `camera`: in a video with camera motion,
the visible background, which changes in every frame only because the camera moves.
"""

from __future__ import annotations

import numpy as np

from scorerl.world.render_nuisances import find
from scorerl.world.scenes import TRAIL
from scorerl.world.scenes_v4 import scene_version
from scorerl.world.textures import shape_mask

LAYERS = {"background": 0, "flicker": 1, "movers": 2, "object": 3, "logo": 4, "timestamp": 5}  # draw order
REGION_NAMES = ("object", "flicker", "camera", "logo", "timestamp", "movers")
# exclusive=True gives each token to the first region here it covers: answer evidence first (a token that shows an
# object is needed whatever else it shows), the moving background (`camera`) last, i.e. only tokens showing nothing
# else; tokens of a video without camera motion that show nothing else are `background`.
PRIORITY = ("object", "timestamp", "logo", "flicker", "movers", "camera")
MIN_COVER = 0.1  # a token covers a region when it does in >= 10% of its pixels, in any frame of its unit


def label_map(scene: dict) -> np.ndarray:
    """uint8 [F, H, W]: the top layer at each pixel (LAYERS codes), painted in render.py's order."""
    frames, size = scene["frames"], scene["size"]
    labels = np.zeros((frames, size, size), np.uint8)
    nuisances = scene.get("nuisances", []) if scene_version(scene) >= 4 else []
    flicker = find(nuisances, "flicker")
    if flicker is not None:
        _fill(labels, flicker["box"], LAYERS["flicker"])
    movers = find(nuisances, "movers")
    for item in movers["items"] if movers else []:
        _paint(labels, item, LAYERS["movers"])
    for o in scene["objects"]:
        _paint(labels, o, LAYERS["object"], ghosts=len(TRAIL) if o["role"] == "moving" else 0)
    for kind in ("logo", "timestamp"):
        n = find(nuisances, kind)
        if n is not None:
            _fill(labels, n["box"], LAYERS[kind])
    return labels


def _fill(labels: np.ndarray, box, code: int) -> None:
    x, y, w, h = box
    labels[:, y : y + h, x : x + w] = code


def _paint(labels: np.ndarray, thing: dict, code: int, ghosts: int = 0) -> None:
    """A shape at its per-frame positions (and, for a moving object, at its `ghosts` previous positions)."""
    side = thing["size"]
    mask = shape_mask(thing["shape"], side)
    for k, (x, y) in enumerate(thing["positions"]):
        frame = labels[thing["first"] + k]
        for gx, gy in [thing["positions"][k - b] for b in range(1, ghosts + 1) if k - b >= 0] + [(x, y)]:
            frame[gy : gy + side, gx : gx + side][mask] = code


def pixel_regions(scene: dict) -> dict[str, np.ndarray]:
    """bool [F, H, W] per region present in the scene (REGION_NAMES; `camera` only with camera motion)."""
    labels = label_map(scene)
    present = {n["kind"] for n in scene.get("nuisances", [])} if scene_version(scene) >= 4 else set()
    out = {"object": labels == LAYERS["object"]}
    for kind in ("flicker", "logo", "timestamp", "movers"):
        if kind in present:
            out[kind] = labels == LAYERS[kind]
    if "camera" in present:
        out["camera"] = labels == LAYERS["background"]
    return out


def token_regions(
    scene: dict, T: int, grid: tuple[int, int], min_cover: float = MIN_COVER, exclusive: bool = False
) -> dict[str, np.ndarray]:
    """bool [T, rows, cols] per region present: a token covers a region when at least `min_cover` of its pixels
    are that region's in any frame of its temporal unit (F / T frames; a 16-frame video with two frames per
    token has T = 8). Pixels per token: H / rows x W / cols. exclusive: every token in exactly one region
    (PRIORITY; tokens in none of them under `background`)."""
    frames, size = scene["frames"], scene["size"]
    rows, cols = grid
    if frames % T or size % rows or size % cols:
        raise ValueError(f"a {frames} x {size} x {size} scene does not split into a [{T}, {rows}, {cols}] token grid")
    out = {}
    for name, pix in pixel_regions(scene).items():
        if exclusive and name == "camera":
            continue  # below: what is left once every other region has taken its tokens
        per = pix.reshape(T, frames // T, rows, size // rows, cols, size // cols).mean(axis=(3, 5))  # [T, f, r, c]
        out[name] = per.max(axis=1) >= min_cover
    if exclusive:
        out = _exclusive(
            out, camera=any(n["kind"] == "camera" for n in scene.get("nuisances", [])), shape=(T, rows, cols)
        )
    return out


def _exclusive(masks: dict[str, np.ndarray], camera: bool, shape) -> dict[str, np.ndarray]:
    """Each token to the first region of PRIORITY it covers; the rest to `camera` (when the camera moves) or
    `background`."""
    taken = np.zeros(shape, bool)
    out = {}
    for name in PRIORITY:
        if name in masks:
            out[name] = masks[name] & ~taken
            taken |= masks[name]
    out["camera" if camera else "background"] = ~taken
    return out


def evidence_tokens(scene: dict, T: int, grid: tuple[int, int], mirrored: bool = False) -> np.ndarray:
    """bool [T, rows * cols]: the visual tokens that show the scene's coloured objects (the `object` region,
    non-exclusive), for a video of T temporal units or an image repeated into one (every unit the same);
    `mirrored`: of the left-right mirrored frames (the environment fit's augmentation)."""
    rows, cols = grid
    units = T if scene["frames"] > 1 else 1  # an image is one frame; its pseudo-video repeats it in every unit
    obj = token_regions(scene, units, grid)["object"]  # [units, rows, cols]
    if mirrored:
        obj = obj[:, :, ::-1]
    return np.broadcast_to(obj, (T, rows, cols)).reshape(T, rows * cols).copy()
