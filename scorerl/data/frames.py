"""Frame decoding: videos (decord, uniform sampling), images (Pillow), and static pseudo-videos.

Everything returns uint8 RGB arrays [F, H, W, 3] (an image [H, W, 3]), resized to size x size (aspect ratio is
not kept: the frozen models take square frames). Problems with a file raise DataError naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from scorerl.errors import DataError


def resize_uint8(frames: np.ndarray, size: int) -> np.ndarray:
    """uint8 [F, H, W, 3] -> uint8 [F, size, size, 3], bilinear with antialias (no-op when already that size)."""
    if frames.shape[1] == size and frames.shape[2] == size:
        return frames
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def uniform_indices(total: int, num: int) -> np.ndarray:
    """Indices of num frames spread evenly over total: the centre of each of num equal segments."""
    return ((np.arange(num) + 0.5) * total / num).astype(np.int64)


def read_video(path: str | Path, num_frames: int, size: int | None) -> np.ndarray:
    """num_frames frames sampled uniformly from a video file -> uint8 [num_frames, size, size, 3].

    size None keeps the decoded resolution. A video with fewer than num_frames frames is an error (repeating
    frames would fake temporal redundancy, which is exactly what the policy learns to detect).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: video file not found")
    if num_frames < 1:
        raise DataError(f"{path}: num_frames must be >= 1, got {num_frames}")
    try:
        import decord

        reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
        total = len(reader)
    except Exception as e:  # decord raises its own DECORDError (and RuntimeError) for unreadable files
        raise DataError(f"{path}: not a readable video ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    if total < num_frames:
        raise DataError(f"{path}: has {total} frames, need >= {num_frames}")
    try:
        frames = reader.get_batch(uniform_indices(total, num_frames).tolist()).asnumpy()
    except Exception as e:
        raise DataError(f"{path}: frames could not be decoded ({type(e).__name__}: {e})") from None
    return frames if size is None else resize_uint8(frames, size)


def read_image(path: str | Path, size: int | None) -> np.ndarray:
    """An image file -> uint8 RGB [size, size, 3] (size None keeps its resolution)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: image file not found")
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if size is not None and im.size != (size, size):
                im = im.resize((size, size), Image.Resampling.BICUBIC)
            return np.asarray(im, dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"{path}: not a readable image ({e})") from None


def pseudo_video(image: np.ndarray, num_frames: int, jitter_std: float = 0.0,
                 rng: np.random.Generator | None = None) -> np.ndarray:
    """A static pseudo-video: the image [H, W, 3] repeated num_frames times -> uint8 [num_frames, H, W, 3].

    jitter_std > 0 adds independent Gaussian pixel noise (in 0..255 units) to every frame, so residuals between
    frames are small but not exactly zero. rng None uses a fixed seed (reproducible); pass one for varied noise.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise DataError(f"pseudo_video needs a uint8 image [H, W, 3], got {image.dtype} {list(image.shape)}")
    if num_frames < 1:
        raise DataError(f"pseudo_video needs num_frames >= 1, got {num_frames}")
    video = np.repeat(image[None], num_frames, axis=0)
    if jitter_std > 0:
        rng = rng if rng is not None else np.random.default_rng(0)
        noise = rng.normal(0.0, jitter_std, size=video.shape)
        video = np.clip(np.rint(video.astype(np.float64) + noise), 0, 255).astype(np.uint8)
    return video
