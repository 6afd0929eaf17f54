"""The feature store: built once (in shards, by several processes, resumable), read lazily, keyed by content; and
training from it, from the per-sample cache and online gives the same policy."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from scorerl.config import load_config
from scorerl.data import store as st
from scorerl.envs.features import build_features, store_fingerprint
from scorerl.errors import DataError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    from conftest import write_tiny_dataset

    from scorerl.envs.build import build_tiny_env

    root = tmp_path_factory.mktemp("store_assets")
    data = write_tiny_dataset(root / "data", videos=7, images=6, frames=6, size=32, seed=1)
    build_tiny_env("qwen2_5_vl", seed=0).save_pretrained(root / "env")
    return {"data": data, "env": root / "env", "root": root}


def make_cfg(assets, *overrides):
    return load_config(
        None,
        [
            f"env.path={assets['env']}",
            "env.device=cpu",
            "data.num_frames=4",
            "data.frame_size=32",
            f"data.stage1_manifest={assets['data'] / 'static_train.jsonl'}",
            f"data.stage2_manifest={assets['data'] / 'train.jsonl'}",
            f"data.eval_manifest={assets['data'] / 'train.jsonl'}",
            *overrides,
        ],
    )


def build(assets, out, **kw):
    return build_features(make_cfg(assets), out=out, shard_size=3, progress=False, **kw)


def files(store: Path) -> dict[str, bytes]:
    return {p.relative_to(store).as_posix(): p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def reference(assets, tmp_path_factory):
    """An uninterrupted single-process build: 13 samples (6 images first: stage 1 is listed first) in 5 shards."""
    out = tmp_path_factory.mktemp("reference") / "store"
    report = build(assets, out)
    assert (report.samples, report.built_shards, report.reused_shards, report.skipped) == (13, 5, 0, [])
    return out


def test_store_layout_dtype_and_static_images_at_one_unit(assets, reference):
    index = json.loads((reference / "store.json").read_text())
    assert index["format"] == st.STORE_FORMAT and index["shards"] == 5 and len(index["samples"]) == 13
    repeats = sorted(e["repeat"] for e in index["samples"].values())
    assert repeats == [1] * 7 + [4] * 6  # 7 clips whole; 6 images folded to one of their 4 units
    with safe_open(str(reference / "shards" / "shard-00000.safetensors"), "pt") as f:  # images come first
        assert f.get_tensor("0.features").shape == (1, 4, 64) and f.get_tensor("0.features").dtype == torch.float32
    # Read back, every sample is the very tensor the per-sample cache holds (the folded image expanded again).
    from scorerl.data.cache import FeatureCache
    from scorerl.data.frames import FrameSampling
    from scorerl.data.manifest import read_manifest
    from scorerl.envs import load_env

    cfg = make_cfg(assets)
    env = load_env(cfg.env)
    store = st.FeatureStore(reference, store_fingerprint(env, assets["env"], cfg.data))
    cache = FeatureCache(env, "x", FrameSampling.of(cfg.data), cache_dir=assets["root"] / "cache")
    for manifest in ("static_train.jsonl", "train.jsonl"):
        for sample in read_manifest(assets["data"] / manifest)[0]:
            a, b = store.get(sample), cache.get(sample)
            assert torch.equal(a.features, b.features) and a.grid == b.grid  # the same tensors as the cache


def test_interrupted_build_resumes_to_byte_identical_shards(assets, reference, tmp_path, monkeypatch):
    real, calls = st.build_shard, []

    def dies_on_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt("killed mid-build")
        return real(*args, **kwargs)

    monkeypatch.setattr(st, "build_shard", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        build(assets, tmp_path / "store")
    monkeypatch.setattr(st, "build_shard", real)
    assert not (tmp_path / "store" / "store.json").exists()  # no index until the build is whole
    report = build(assets, tmp_path / "store")
    assert (report.built_shards, report.reused_shards) == (3, 2)
    assert files(tmp_path / "store") == files(reference)
    again = build(assets, tmp_path / "store")  # a finished store: nothing to do
    assert (again.built_shards, again.reused_shards) == (0, 5)


def two_ranks(cfg, out: Path, env, env_dir: Path, shard_size: int) -> list[BaseException]:
    """build_features as 2 ranks (threads sharing one model, inference only, a real barrier); their errors."""
    barrier, errors = threading.Barrier(2), []

    def rank(r):
        try:
            build_features(
                cfg,
                out=out,
                shard_size=shard_size,
                progress=False,
                env=env,
                env_dir=env_dir,
                rank=r,
                world_size=2,
                barrier=barrier.wait,
            )
        except BaseException as e:  # noqa: BLE001  (returned to the test)
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=rank, args=(r,)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_two_processes_build_the_same_bytes(assets, reference, tmp_path):
    from scorerl.envs import load_env

    env = load_env(make_cfg(assets).env)
    assert two_ranks(make_cfg(assets), tmp_path / "store", env, assets["env"], 3) == []
    assert files(tmp_path / "store") == files(reference)


def test_a_few_hundred_samples_two_ranks_killed_and_resumed(tmp_path, monkeypatch):
    """300 samples (60 clips, 240 images) in 19 shards: rank 1 dies on its third shard, rank 0 stops at the
    barrier; the resumed 2-rank build equals an uninterrupted 1-process build byte for byte."""
    from conftest import write_tiny_dataset

    from scorerl.envs import load_env
    from scorerl.envs.build import build_tiny_env

    data = write_tiny_dataset(tmp_path / "data", videos=60, images=240, frames=4, size=32, seed=2)
    build_tiny_env("llava_onevision", seed=0).save_pretrained(tmp_path / "env")
    cfg = load_config(
        None,
        [
            f"env.path={tmp_path / 'env'}",
            "env.arch=llava_onevision",
            "env.device=cpu",
            "data.num_frames=4",
            "data.frame_size=32",
            f"data.stage1_manifest={data / 'static_train.jsonl'}",
            f"data.stage2_manifest={data / 'train.jsonl'}",
            f"data.eval_manifest={data / 'train.jsonl'}",
        ],
    )
    env = load_env(cfg.env)
    whole = build_features(
        cfg,
        out=tmp_path / "whole",
        shard_size=16,
        progress=False,
        env=env,
        env_dir=tmp_path / "env",
        rank=0,
        world_size=1,
    )
    assert whole.samples == 300 and whole.built_shards == 19

    real, calls = st.build_shard, []

    def rank1_dies(store, j, *args, **kwargs):
        if j % 2 == 1:
            calls.append(j)
            if len(calls) == 3:
                raise KeyboardInterrupt(f"rank 1 killed at shard {j}")
        return real(store, j, *args, **kwargs)

    monkeypatch.setattr(st, "build_shard", rank1_dies)
    errors = two_ranks(cfg, tmp_path / "split", env, tmp_path / "env", 16)
    assert any(isinstance(e, KeyboardInterrupt) for e in errors)
    monkeypatch.setattr(st, "build_shard", real)
    assert two_ranks(cfg, tmp_path / "split", env, tmp_path / "env", 16) == []
    assert files(tmp_path / "split") == files(tmp_path / "whole")


def test_a_copied_model_folder_opens_the_store_and_another_processor_setting_is_refused(assets, reference, tmp_path):
    from scorerl.envs import load_env

    copied = tmp_path / "elsewhere" / "env"
    shutil.copytree(assets["env"], copied)
    cfg = make_cfg(assets, f"env.path={copied}")
    env = load_env(cfg.env)
    st.FeatureStore(reference, store_fingerprint(env, copied, cfg.data))  # same content: opens
    settings = json.loads((copied / "scorerl_env.json").read_text())
    settings["image_mean"] = [0.5, 0.5, 0.5]
    (copied / "scorerl_env.json").write_text(json.dumps(settings))
    env = load_env(cfg.env)
    with pytest.raises(DataError, match=r"other settings: processor.image_mean"):
        st.FeatureStore(reference, store_fingerprint(env, copied, cfg.data))
    with pytest.raises(DataError, match=r"frames.size \(32 in the store, 48 now\)"):
        st.FeatureStore(
            reference, store_fingerprint(load_env(cfg.env), copied, make_cfg(assets, "data.frame_size=48").data)
        )


def test_bad_media_are_skipped_and_counted_or_named(assets, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(assets["data"], data)
    (data / "videos" / "v2.mp4").write_text("not a video")
    cfg_args = [
        f"data.stage2_manifest={data / 'train.jsonl'}",
        f"data.eval_manifest={data / 'train.jsonl'}",
        "curriculum.stage1_steps=0",
    ]
    with pytest.raises(DataError, match=r"train.jsonl:3 \(id 'v2'\): .*v2.mp4: not a readable video"):
        build_features(make_cfg(assets, *cfg_args), out=tmp_path / "a", shard_size=3, progress=False)
    assert not (tmp_path / "a").exists()  # the failed build leaves no empty store behind
    report = build_features(
        make_cfg(assets, *cfg_args, "data.skip_bad=true"), out=tmp_path / "b", shard_size=3, progress=False
    )
    assert report.samples == 6 and [s["id"] for s in report.skipped] == ["v2"]
    assert "not a readable video" in report.skipped[0]["reason"]


def test_training_from_cache_store_and_online_ends_at_the_same_policy(assets, reference, tmp_path):
    from safetensors.torch import load_file

    from scorerl.rl.trainer import train

    def run(name, *extra):
        cfg = make_cfg(
            assets,
            f"run.output_dir={tmp_path}",
            f"run.name={name}",
            "rl.group_size=4",
            "policy.hidden=16",
            "curriculum.stage1_steps=2",
            "train.max_steps=4",
            "train.batch_size=2",
            "train.lr=0.05",
            f"data.cache_dir={tmp_path / 'cache'}",
            *extra,
        )
        return load_file(str(train(cfg) / "policy" / "policy.safetensors"))

    cache = run("cache")
    store = run("store", "data.features=store", f"data.store_dir={reference}")
    online = run("online", "data.features=online")
    for other in (store, online):
        assert all(torch.equal(cache[k], other[k]) for k in cache)
    line = json.loads((assets["data"] / "train.jsonl").read_text().splitlines()[0])
    (tmp_path / "other.jsonl").write_text(
        json.dumps({**line, "id": "new0", "video": str(assets["data"] / line["video"])})
    )
    with pytest.raises(DataError, match=r"not in the feature store .*scorerl data features"):
        run(
            "missing",
            "data.features=store",
            f"data.store_dir={reference}",
            f"data.stage2_manifest={tmp_path / 'other.jsonl'}",
        )
