"""Frame decoding: videos (decord, PyAV fallback), images (Pillow), and static pseudo-videos.

Everything returns uint8 RGB arrays [F, H, W, 3] (an image [H, W, 3]). A video is sampled as `FrameSampling`
says, the way the model's own processor samples (docs/data.md): a fixed number of frames spread evenly over the
clip, or a rate in frames per second with a floor and a cap (Qwen2.5-VL's processor: 2 fps, 4 to 768 frames),
the count rounded to the model's temporal unit as its own `sample_frames` rounds it; the clip window [start, end)
of a sample is honoured; a video shorter than a count asks for is sampled with repeats.

Frame size, before the model's own resize rule (Qwen2.5-VL's smart_resize, LLaVA-OneVision's 384 x 384) runs:
size 0 (or None) = native, nothing done here; size > 0 with keep_aspect = a cap, frames whose longer side exceeds
it are scaled down to it (never up); size > 0 without keep_aspect = squashed to size x size, the built-in world's
fixed square grid. Problems with a file raise DataError naming the file.
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
    clip, at least min_frames and at most max_frames. size: 0 or None = native; with keep_aspect the cap on the
    longer side; else the square side. frame_factor: frames per temporal unit of the model (Qwen2.5-VL's
    temporal_patch_size, 2): frame counts are rounded to it as the model's own sample_frames rounds them."""

    num_frames: int = 8
    size: int | None = 64
    fps: float = 0.0
    min_frames: int = 4
    max_frames: int = 768
    keep_aspect: bool = False
    jitter: float = 0.0  # pixel noise std of static pseudo-videos (images)
    timed: bool = False  # give the model the real seconds between frames (data.temporal_positions: time)
    frame_factor: int = 1

    @classmethod
    def of(cls, data, jitter: float | None = None, frame_factor: int = 1) -> "FrameSampling":
        """From a DataSection (jitter: another pseudo-video jitter, e.g. evaluation's 0; frame_factor: the
        environment's frames per temporal unit, `frame_factor_of(env)`)."""
        return cls(
            num_frames=data.num_frames,
            size=data.frame_size,
            fps=data.sample_fps,
            min_frames=data.min_frames,
            max_frames=data.max_frames,
            keep_aspect=data.keep_aspect,
            jitter=data.pseudo_video_jitter if jitter is None else jitter,
            timed=data.temporal_positions == "time",
            frame_factor=int(frame_factor),
        )

    @property
    def native(self) -> bool:
        """No resize here: the model's own rule alone sizes the frames."""
        return not self.size


def frame_factor_of(env) -> int:
    """Frames per temporal unit of an environment (Qwen2.5-VL: its temporal_patch_size; others 1)."""
    return int(getattr(env, "frame_factor", 1) or 1)


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
        return Clip(
            pseudo_video(image, sampling.num_frames, jitter_std=sampling.jitter, rng=np.random.default_rng(seed)), None
        )
    return read_clip(
        sample.media,
        sampling,
        getattr(sample, "start", None),
        getattr(sample, "end", None),
        getattr(sample, "fps", None),
    )


def frame_indices(
    total: int,
    video_fps: float,
    sampling: FrameSampling,
    start: float | None = None,
    end: float | None = None,
    fps: float | None = None,
) -> tuple[np.ndarray, float]:
    """(indices into the video's total frames, seconds between sampled frames) for a clip window [start, end)
    in seconds, frame_count frames at the centres of equal segments of the window: by count (sampling.fps 0 and no
    per-sample fps) num_frames, repeating frames when the window has fewer; by rate seconds x fps within the floor,
    the cap and the window's own frames."""
    first = 0 if start is None else min(total - 1, max(0, math.floor(start * video_fps)))
    stop = total if end is None else min(total, max(first + 1, math.ceil(end * video_fps)))
    span = stop - first  # frames in the window
    rate = fps if fps is not None else sampling.fps
    n = frame_count(span, video_fps, sampling, rate)
    indices = first + uniform_indices(span, n)
    return indices, span / video_fps / n


def frame_count(span: int, video_fps: float, sampling: FrameSampling, rate: float | None = None) -> int:
    """How many frames a clip of `span` decoded frames gives, by Qwen2VLVideoProcessor.sample_frames' rule
    (f = sampling.frame_factor, the temporal patch size):

      by count (rate 0): round(num_frames / f) * f (at least f; a short clip repeats frames);
      by rate: span / video_fps * rate clamped to [min_frames, floor(min(max_frames, span) / f) * f] and to the
      clip's own frames (never repeats), then floored to a multiple of f (at least 1: a clip shorter than one
      unit is padded by the model, as its processor pads).
    """
    f = max(1, int(sampling.frame_factor))
    if not rate or rate <= 0:
        return max(f, round(sampling.num_frames / f) * f)
    cap = math.floor(min(sampling.max_frames, span) / f) * f
    n = min(max(span / video_fps * rate, sampling.min_frames), cap, span)
    return max(1, math.floor(n / f) * f)


def target_size(height: int, width: int, size: int | None, keep_aspect: bool) -> tuple[int, int]:
    """(height, width) a frame is resized to here: native (size 0/None) and a cap that the frame already fits
    keep it; keep_aspect scales the longer side down to size; else size x size (the built-in world's square)."""
    if not size:
        return height, width
    if not keep_aspect:
        return size, size
    if max(height, width) <= size:  # a cap, never an upscale
        return height, width
    scale = size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_uint8(frames: np.ndarray, size: int | None, keep_aspect: bool = False) -> np.ndarray:
    """uint8 [F, H, W, 3] -> uint8 [F, h, w, 3] with (h, w) = target_size: unchanged when native (size 0) or
    within the cap, else bilinear with antialias (the world's square frames were made so)."""
    H, W = frames.shape[1:3]
    height, width = target_size(H, W, size, keep_aspect)
    if (H, W) == (height, width):
        return frames
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    x = torch.nn.functional.interpolate(x, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def uniform_indices(total: int, num: int) -> np.ndarray:
    """Indices of num frames spread evenly over total: the centre of each of num equal segments."""
    return ((np.arange(num) + 0.5) * total / num).astype(np.int64)


def read_video(path: str | Path, num_frames: int, size: int | None) -> np.ndarray:
    """num_frames frames spread evenly over a video file -> uint8 [num_frames, size, size, 3] (size 0: native)."""
    return read_clip(path, FrameSampling(num_frames=num_frames, size=size)).frames


def read_clip(
    path: str | Path,
    sampling: FrameSampling,
    start: float | None = None,
    end: float | None = None,
    fps: float | None = None,
) -> Clip:
    """A video file sampled as `sampling` says (the window [start, end) seconds; fps overrides sampling.fps)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: video file not found")
    if sampling.num_frames < 1:
        raise DataError(f"{path}: num_frames must be >= 1, got {sampling.num_frames}")
    frames, spf = _decode(path, sampling, start, end, fps)
    return Clip(resize_uint8(frames, sampling.size, sampling.keep_aspect), spf)


def _decode(path: Path, sampling: FrameSampling, start, end, fps) -> tuple[np.ndarray, float]:
    """decord; PyAV when decord cannot open the file (some codecs and containers) or cannot hand its frames over
    (decord 0.6 fails to copy some frame sizes, e.g. 48 x 32 H.264: "from_size == to_size")."""
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
    except Exception as e:  # decord's DECORDError
        reason = f"decord: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
        return _decode_av(path, sampling, start, end, fps, reason)


def _decode_av(path: Path, sampling: FrameSampling, start, end, fps, decord_reason: str) -> tuple[np.ndarray, float]:
    try:
        import av

        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            all_frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
            video_fps = float(stream.average_rate or 0) or 1.0
    except Exception as e:
        raise DataError(
            f"{path}: not a readable video ({decord_reason}; PyAV: {type(e).__name__}: "
            f"{str(e).splitlines()[0][:120] if str(e) else ''})"
        ) from None
    if not all_frames:
        raise DataError(f"{path}: not a readable video ({decord_reason}; PyAV decoded no frame)")
    indices, spf = frame_indices(len(all_frames), video_fps, sampling, start, end, fps)
    return np.stack([all_frames[i] for i in indices]), spf


def read_image(path: str | Path, size: int | None, keep_aspect: bool = False) -> np.ndarray:
    """An image file -> uint8 RGB [h, w, 3], (h, w) = target_size: size x size, or keep_aspect a cap on the longer
    side, or (size 0 / None) its own resolution. Resized with Pillow's bicubic."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: image file not found")
    try:
        with Image.open(path) as opened:
            im = opened.convert("RGB")
            height, width = target_size(im.size[1], im.size[0], size, keep_aspect)
            if im.size != (width, height):
                im = im.resize((width, height), Image.Resampling.BICUBIC)
            return np.asarray(im, dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"{path}: not a readable image ({e})") from None


def pseudo_video(
    image: np.ndarray, num_frames: int, jitter_std: float = 0.0, rng: np.random.Generator | None = None
) -> np.ndarray:
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


# --------------------------------------------------------------------------------------------- what reports record


def describe_sampling(data) -> dict:
    """The frame rule of a data section (a DataSection, or its dict as a config file or export.json holds it), for
    reports: rate or count, frame floor and cap, size (native, capped or square), aspect, temporal positions.
    Pure: the trainer's data report, the eval meta and the model card all record the same dict. A key a dict
    leaves out takes DataSection's default."""
    from scorerl.config.schema import DataSection

    defaults = DataSection()

    def get(key, default=None):
        fallback = getattr(defaults, key, default)
        return data.get(key, fallback) if isinstance(data, dict) else getattr(data, key, fallback)

    fps, size, keep = float(get("sample_fps", 0.0) or 0.0), int(get("frame_size", 0) or 0), bool(get("keep_aspect"))
    by_rate = fps > 0
    return {
        "by": "rate" if by_rate else "count",
        "sample_fps": fps if by_rate else None,
        "min_frames": get("min_frames") if by_rate else None,
        "max_frames": get("max_frames") if by_rate else None,
        "num_frames": None if by_rate else get("num_frames"),
        "frame_size": size,
        "size": "native" if size == 0 else ("capped" if keep else "square"),
        "keep_aspect": keep,
        "temporal_positions": get("temporal_positions"),
    }


def token_count_summary(counts) -> dict:
    """Per-sample visual-token counts -> {n, min, median, max} (median of an even count: the mean of the middle
    two); all None for no samples."""
    values = sorted(int(c) for c in counts)
    if not values:
        return {"n": 0, "min": None, "median": None, "max": None}
    mid = len(values) // 2
    median = values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2
    return {"n": len(values), "min": values[0], "median": median, "max": values[-1]}


def sampling_text(sampling: dict, tokens: dict | None = None) -> str:
    """One line for a report header: e.g. `2 fps (4-64 frames), native size (aspect kept), time positions; visual
    tokens per sample 1012 / 2300 / 5760 (min / median / max)` or `8 frames at 64 px (square), unit positions`."""
    if sampling.get("by") == "rate":
        frames = f"{sampling['sample_fps']:g} fps ({sampling.get('min_frames')}-{sampling.get('max_frames')} frames)"
    else:
        frames = f"{sampling.get('num_frames')} frames"
    size = sampling.get("frame_size")
    if sampling.get("size") == "native":
        where = "at native size (the model's own resize rule)"
    elif sampling.get("size") == "capped":
        where = f"with the longer side capped at {size} px (aspect kept)"
    else:
        where = f"at {size} px (square)"
    text = f"{frames} {where}, {sampling.get('temporal_positions') or '?'} positions"
    if tokens and tokens.get("n"):
        text += (
            f"; visual tokens per sample {tokens['min']} / {tokens['median']:g} / {tokens['max']} (min / median / max)"
        )
    return text
