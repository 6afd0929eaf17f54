"""Frame decoding: videos (decord, PyAV fallback), images (Pillow), and static pseudo-videos.

Everything returns uint8 RGB arrays [F, H, W, 3] (an image [H, W, 3]). A video is sampled as `FrameSampling`
says, the way the model's own processor samples (docs/data.md): a fixed number of frames spread evenly over the
clip, or a rate in frames per second with a floor and a cap (Qwen2.5-VL's processor: 2 fps, 4 to 768 frames);
the clip window [start, end) of a sample is honoured; a video shorter than asked for is sampled with repeats.
Frames are resized to size x size, or with keep_aspect to a longer side of `size` (the model's own resize rule,
e.g. Qwen2.5-VL's smart_resize, then applies to that). Problems with a file raise DataError naming the file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from scorerl.errors import DataError


@dataclass(frozen=True)
class FrameSampling:
    """How a sample becomes frames. fps 0: num_frames spread evenly; fps > 0: that many frames per second of the
    clip, at least min_frames and at most max_frames. size: the square side, or with keep_aspect the longer side
    (None: as decoded)."""

    num_frames: int = 8
    size: int | None = 64
    fps: float = 0.0
    min_frames: int = 4
    max_frames: int = 768
    keep_aspect: bool = False
    jitter: float = 0.0  # pixel noise std of static pseudo-videos (images)
    timed: bool = False  # give the model the real seconds between frames (data.temporal_positions: time)

    @classmethod
    def of(cls, data, jitter: float | None = None) -> "FrameSampling":
        """From a DataSection (jitter: another pseudo-video jitter, e.g. evaluation's 0)."""
        return cls(num_frames=data.num_frames, size=data.frame_size, fps=data.sample_fps, min_frames=data.min_frames,
                   max_frames=data.max_frames, keep_aspect=data.keep_aspect,
                   jitter=data.pseudo_video_jitter if jitter is None else jitter,
                   timed=data.temporal_positions == "time")


@dataclass
class Clip:
    frames: np.ndarray  # uint8 [F, H, W, 3]
    seconds_per_frame: float | None  # real time between sampled frames; None for an image's pseudo-video


def load_clip(sample, sampling: FrameSampling) -> Clip:
    """A manifest sample's frames: its video sampled as `sampling` and its own window/fps say, or its image as a
    static pseudo-video of num_frames copies (jitter noise seeded by the sample id, so it is reproducible)."""
    import hashlib

    if sample.kind == "image":
        seed = int(hashlib.sha256(str(sample.id).encode()).hexdigest()[:8], 16)
        image = read_image(sample.media, sampling.size, sampling.keep_aspect)
        return Clip(pseudo_video(image, sampling.num_frames, jitter_std=sampling.jitter,
                                 rng=np.random.default_rng(seed)), None)
    return read_clip(sample.media, sampling, getattr(sample, "start", None), getattr(sample, "end", None),
                     getattr(sample, "fps", None))


def frame_indices(total: int, video_fps: float, sampling: FrameSampling, start: float | None = None,
                  end: float | None = None, fps: float | None = None) -> tuple[np.ndarray, float]:
    """(indices into the video's total frames, seconds between sampled frames) for a clip window [start, end)
    in seconds. By count (sampling.fps 0 and no per-sample fps): num_frames evenly spread; by rate: round(seconds x
    fps) frames clamped to [min_frames, max_frames]. Fewer frames in the window than asked for repeat frames."""
    first = 0 if start is None else min(total - 1, max(0, math.floor(start * video_fps)))
    stop = total if end is None else min(total, max(first + 1, math.ceil(end * video_fps)))
    span = stop - first  # frames in the window
    rate = fps if fps is not None else sampling.fps
    if rate and rate > 0:
        n = int(round(span / video_fps * rate))
        n = max(sampling.min_frames, min(sampling.max_frames, n))
    else:
        n = sampling.num_frames
    indices = first + uniform_indices(span, n)
    return indices, span / video_fps / n


def resize_uint8(frames: np.ndarray, size: int, keep_aspect: bool = False) -> np.ndarray:
    """uint8 [F, H, W, 3] -> uint8 [F, size, size, 3] (or, keep_aspect, the longer side = size), bilinear with
    antialias (no-op when already that size)."""
    H, W = frames.shape[1:3]
    if keep_aspect:
        scale = size / max(H, W)
        height, width = max(1, round(H * scale)), max(1, round(W * scale))
    else:
        height, width = size, size
    if (H, W) == (height, width):
        return frames
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    x = torch.nn.functional.interpolate(x, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def uniform_indices(total: int, num: int) -> np.ndarray:
    """Indices of num frames spread evenly over total: the centre of each of num equal segments."""
    return ((np.arange(num) + 0.5) * total / num).astype(np.int64)


def read_video(path: str | Path, num_frames: int, size: int | None) -> np.ndarray:
    """num_frames frames spread evenly over a video file -> uint8 [num_frames, size, size, 3]."""
    return read_clip(path, FrameSampling(num_frames=num_frames, size=size)).frames


def read_clip(path: str | Path, sampling: FrameSampling, start: float | None = None, end: float | None = None,
              fps: float | None = None) -> Clip:
    """A video file sampled as `sampling` says (the window [start, end) seconds; fps overrides sampling.fps)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: video file not found")
    if sampling.num_frames < 1:
        raise DataError(f"{path}: num_frames must be >= 1, got {sampling.num_frames}")
    frames, spf = _decode(path, sampling, start, end, fps)
    if sampling.size is not None:
        frames = resize_uint8(frames, sampling.size, sampling.keep_aspect)
    return Clip(frames, spf)


def _decode(path: Path, sampling: FrameSampling, start, end, fps) -> tuple[np.ndarray, float]:
    """decord; PyAV when decord cannot open the file (some codecs and containers)."""
    try:
        import decord

        reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
        total, video_fps = len(reader), float(reader.get_avg_fps() or 0)
    except Exception as e:  # decord raises its own DECORDError (and RuntimeError) for unreadable files
        reason = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
        return _decode_av(path, sampling, start, end, fps, reason)
    if total < 1:
        raise DataError(f"{path}: has no frames")
    indices, spf = frame_indices(total, video_fps if video_fps > 0 else 1.0, sampling, start, end, fps)
    try:
        return reader.get_batch(indices.tolist()).asnumpy(), spf
    except Exception as e:
        raise DataError(f"{path}: frames could not be decoded ({type(e).__name__}: {e})") from None


def _decode_av(path: Path, sampling: FrameSampling, start, end, fps, decord_reason: str) -> tuple[np.ndarray, float]:
    try:
        import av

        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            all_frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
            video_fps = float(stream.average_rate or 0) or 1.0
    except Exception as e:
        raise DataError(f"{path}: not a readable video ({decord_reason}; PyAV: {type(e).__name__}: "
                        f"{str(e).splitlines()[0][:120] if str(e) else ''})") from None
    if not all_frames:
        raise DataError(f"{path}: not a readable video ({decord_reason}; PyAV decoded no frame)")
    indices, spf = frame_indices(len(all_frames), video_fps, sampling, start, end, fps)
    return np.stack([all_frames[i] for i in indices]), spf


def read_image(path: str | Path, size: int | None, keep_aspect: bool = False) -> np.ndarray:
    """An image file -> uint8 RGB [size, size, 3] (keep_aspect: longer side = size; None keeps its resolution)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: image file not found")
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if size is not None:
                scale = size / max(im.size) if keep_aspect else None
                target = (max(1, round(im.size[0] * scale)), max(1, round(im.size[1] * scale))) if scale else (size, size)
                if im.size != target:
                    im = im.resize(target, Image.Resampling.BICUBIC)
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
