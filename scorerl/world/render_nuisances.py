"""World v4's nuisance pixels (what they are and why: nuisances.py). Everything here is grey (one value for all
three channels), seeded by the nuisance's own seed and the frame index, and drawn into float frames in place.

Frames are float32 [F, H, W, 3] before noise; boxes are (x, y, w, h) in pixels.
"""

from __future__ import annotations

import numpy as np

from scorerl.world.nuisances import timestamp_text
from scorerl.world.textures import render_background, shape_mask

SCENERY = 8.0  # +- grey levels of v4's scenery tiles: enough edges that a 1 px pan changes every token
SCENERY_CELL = 6  # px at 64 px: tiles smaller than a 16 px token, so each token holds several edges
_FONT = {  # 3 x 5 digits, rows top to bottom
    "0": ("111", "101", "101", "101", "111"),
    "1": ("010", "110", "010", "010", "111"),
    "2": ("111", "001", "111", "100", "111"),
    "3": ("111", "001", "111", "001", "111"),
    "4": ("101", "101", "111", "001", "001"),
    "5": ("111", "100", "111", "001", "111"),
    "6": ("111", "100", "111", "101", "111"),
    "7": ("111", "001", "010", "010", "010"),
    "8": ("111", "101", "111", "101", "111"),
    "9": ("111", "101", "111", "001", "111"),
    ":": ("0", "1", "0", "1", "0"),
}


def find(nuisances: list[dict], kind: str) -> dict | None:
    return next((n for n in nuisances if n["kind"] == kind), None)


# --------------------------------------------------------------------------------------------- background


def scenery(seed: int, canvas: int, size: int) -> np.ndarray:
    """float32 [canvas, canvas, 3]: version 3's calm background plus grey tiles of +-SCENERY levels (real
    backgrounds have texture; without it a camera pan would hardly change a token)."""
    cell = max(2, round(SCENERY_CELL * size / 64))
    rng = np.random.default_rng([seed, 2])  # a stream of its own: the calm background's draws stay as in v3
    tiles = rng.uniform(-SCENERY, SCENERY, (-(-canvas // cell),) * 2).astype(np.float32)
    tiles = np.kron(tiles, np.ones((cell, cell), np.float32))[:canvas, :canvas]
    return render_background(seed, canvas) + tiles[..., None]


def background_frames(scene: dict, frames: int) -> np.ndarray:
    """float32 [F, H, W, 3]: the scenery, each frame the view at that frame's camera offset into a canvas larger
    by the camera's margin on every side (no camera: the same view in every frame)."""
    size = scene["size"]
    camera = find(scene["nuisances"], "camera")
    margin = camera["margin"] if camera else 0
    canvas = scenery(scene["background_seed"], size + 2 * margin, size)
    if camera is None:
        return np.broadcast_to(canvas, (frames, size, size, 3)).copy()
    return np.stack([canvas[oy : oy + size, ox : ox + size] for ox, oy in camera["offsets"][:frames]])


# --------------------------------------------------------------------------------------------- under the objects


def draw_under(out: np.ndarray, nuisances: list[dict]) -> None:
    """The nuisances the coloured objects are drawn over: the flicker patch, then the grey movers."""
    flicker = find(nuisances, "flicker")
    if flicker is not None:
        for t in range(out.shape[0]):
            _paste(out[t], flicker["box"], flicker_texture(flicker, t, out.shape[1]))
    movers = find(nuisances, "movers")
    for item in movers["items"] if movers else []:
        mask = shape_mask(item["shape"], item["size"])
        for k, (x, y) in enumerate(item["positions"]):
            out[item["first"] + k, y : y + item["size"], x : x + item["size"]][mask] = item["grey"]


def _paste(frame: np.ndarray, box, grey: np.ndarray) -> None:
    """frame [H, W, 3] <- grey [h, w] at box (x, y, w, h), the same value in all three channels."""
    x, y, w, h = box
    frame[y : y + h, x : x + w] = grey[..., None]


def flicker_texture(flicker: dict, t: int, size: int) -> np.ndarray:
    """float32 [h, w] grey levels of the patch at frame t: new every frame (screen: new blocks and brightness;
    foliage: a fixed leaf texture that sways, with new leaf glints and a new gust brightness)."""
    _, _, w, h = flicker["box"]
    rng = np.random.default_rng([flicker["seed"], t])
    if flicker["style"] == "screen":
        cell = max(2, round(4 * size / 64))
        blocks = rng.uniform(30, 225, (-(-h // cell), -(-w // cell))).astype(np.float32)
        tex = np.kron(blocks, np.ones((cell, cell), np.float32))[:h, :w] * np.float32(rng.uniform(0.6, 1.2))
        tex[[0, -1], :] = 25.0  # the screen's dark bezel
        tex[:, [0, -1]] = 25.0
        return np.clip(tex, 0, 255)
    leaves = np.random.default_rng([flicker["seed"]]).uniform(60, 190, (h + 4, w + 4)).astype(np.float32)
    sway = int(rng.integers(0, 5))  # the branch moves by up to 4 px
    glint = rng.uniform(-35, 35, (h, w)).astype(np.float32)
    return np.clip((leaves[2 : 2 + h, sway : sway + w] + glint) * np.float32(rng.uniform(0.75, 1.15)), 0, 255)


# --------------------------------------------------------------------------------------------- over the objects


def draw_over(out: np.ndarray, nuisances: list[dict]) -> None:
    """The overlay, above everything (the layout keeps the coloured objects clear of its boxes)."""
    logo = find(nuisances, "logo")
    if logo is not None:
        tex = logo_texture(logo)
        for t in range(out.shape[0]):
            _paste(out[t], logo["box"], tex)
    stamp = find(nuisances, "timestamp")
    if stamp is not None:
        for t in range(out.shape[0]):
            _paste(out[t], stamp["box"], timestamp_texture(stamp, t))


def logo_texture(logo: dict) -> np.ndarray:
    """float32 [h, w]: a white plate with a black border and a fixed black glyph pattern (high contrast)."""
    _, _, w, h = logo["box"]
    bits = np.random.default_rng([logo["seed"]]).random((-(-h // 2), -(-w // 2))) < 0.5
    tex = np.where(np.kron(bits, np.ones((2, 2), bool))[:h, :w], 20.0, 235.0).astype(np.float32)
    tex[[0, -1], :] = 20.0
    tex[:, [0, -1]] = 20.0
    return tex


def timestamp_texture(stamp: dict, t: int) -> np.ndarray:
    """float32 [h, w]: white M:SS digits on a black plate, the time shown at frame t (nuisances.timestamp_text)."""
    _, _, w, h = stamp["box"]
    p = stamp["px"]
    glyphs = np.kron(text_bitmap(timestamp_text(stamp, t)), np.ones((p, p), bool))  # [5p, 13p]
    tex = np.full((h, w), 15.0, np.float32)
    tex[p : p + glyphs.shape[0], p : p + glyphs.shape[1]][glyphs] = 240.0
    return tex


def text_bitmap(text: str) -> np.ndarray:
    """bool [5, width] of `text` in the 3 x 5 font, one blank column between characters."""
    cols = []
    for i, ch in enumerate(text):
        if i:
            cols.append(np.zeros((5, 1), bool))
        cols.append(np.array([[c == "1" for c in row] for row in _FONT[ch]], bool))
    return np.concatenate(cols, axis=1)
