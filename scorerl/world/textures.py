"""The world's pixel primitives: shape footprints and the background texture (render.py and render_nuisances.py
draw with them)."""

from __future__ import annotations

import functools

import numpy as np


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
