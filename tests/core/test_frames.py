"""Frame decoding: decord reads what PyAV wrote, uniform sampling, clear DataErrors, pseudo-videos."""

from __future__ import annotations

import numpy as np
import pytest

from scorerl.data.frames import pseudo_video, read_image, read_video, uniform_indices
from scorerl.errors import DataError

LEVELS = [30 + 25 * i for i in range(8)]  # frame i is a flat grey of level LEVELS[i]: sampling is visible


def write_clip(path, levels=LEVELS, size=32):
    import av

    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=8)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "0"}
        for level in levels:
            frame = np.full((size, size, 3), level, dtype=np.uint8)
            frame[: size // 4, : size // 4] = (255, 0, 0)  # a red corner to check channel order
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("video") / "clip.mp4")


def test_read_video_samples_uniformly(clip):
    frames = read_video(clip, num_frames=4, size=None)
    assert frames.shape == (4, 32, 32, 3) and frames.dtype == np.uint8
    assert uniform_indices(8, 4).tolist() == [1, 3, 5, 7]
    grey = frames[:, 16:, 16:].astype(float).mean(axis=(1, 2, 3))
    assert np.abs(grey - np.array(LEVELS)[[1, 3, 5, 7]]).max() < 4
    red = frames[0, 2, 2]
    assert red[0] > 200 and red[1] < 60 and red[2] < 60  # RGB, not BGR


def test_read_video_resizes_and_reads_all(clip):
    frames = read_video(clip, num_frames=8, size=16)
    assert frames.shape == (8, 16, 16, 3)
    assert np.abs(frames[:, 8:, 8:].astype(float).mean(axis=(1, 2, 3)) - LEVELS).max() < 4


def test_read_video_errors(clip, tmp_path):
    with pytest.raises(DataError, match=r"missing\.mp4: video file not found"):
        read_video(tmp_path / "missing.mp4", 4, 32)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 10)
    with pytest.raises(DataError, match=r"junk\.mp4: not a readable video"):
        read_video(junk, 4, 32)
    # Shorter than asked for: sampled with repeats (each of the 8 frames twice), not refused.
    short, every = read_video(clip, 16, 32), read_video(clip, 8, 32)
    assert short.shape[0] == 16 and (short[0::2] == every).all() and (short[1::2] == every).all()


def test_read_image_and_errors(tmp_path):
    from PIL import Image

    img = np.zeros((20, 30, 3), dtype=np.uint8)
    img[..., 1] = 200
    Image.fromarray(img).save(tmp_path / "g.png")
    out = read_image(tmp_path / "g.png", 16)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8 and (out[..., 1] == 200).all()
    assert read_image(tmp_path / "g.png", None).shape == (20, 30, 3)
    with pytest.raises(DataError, match="image file not found"):
        read_image(tmp_path / "none.png", 16)
    (tmp_path / "bad.png").write_bytes(b"nope")
    with pytest.raises(DataError, match=r"bad\.png: not a readable image"):
        read_image(tmp_path / "bad.png", 16)


def test_pseudo_video():
    image = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    still = pseudo_video(image, 5)
    assert still.shape == (5, 8, 8, 3) and (still == image).all()
    a = pseudo_video(image, 5, jitter_std=3.0, rng=np.random.default_rng(1))
    b = pseudo_video(image, 5, jitter_std=3.0, rng=np.random.default_rng(1))
    assert a.dtype == np.uint8 and np.array_equal(a, b)  # reproducible with the same rng
    assert not np.array_equal(a[0], a[1])  # each frame gets its own noise
    assert np.abs(a.astype(float) - image).mean() < 4
    with pytest.raises(DataError, match="uint8 image"):
        pseudo_video(image.astype(np.float32), 5)


def test_a_frame_size_decord_cannot_copy_is_read_by_pyav(tmp_path):
    """decord 0.6 opens a 48 x 32 H.264 clip but fails to hand its frames over; the clip is then read by PyAV:
    exactly PyAV's own decoded frames at the sampled indices."""
    import av

    from scorerl.data.frames import FrameSampling, read_clip
    from scorerl.data.video_io import write_mp4

    frames = np.random.default_rng(0).integers(0, 255, (6, 32, 48, 3), dtype=np.uint8)
    path = write_mp4(tmp_path / "narrow.mp4", frames, fps=4)
    clip = read_clip(path, FrameSampling(num_frames=3, size=0))
    with av.open(str(path)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(container.streams.video[0])]
    assert clip.frames.shape == (3, 32, 48, 3)
    assert all(np.array_equal(clip.frames[j], decoded[i]) for j, i in enumerate([1, 3, 5]))  # segment centres
