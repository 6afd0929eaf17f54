"""World v4: nuisances that are never the answer (scorerl/world/nuisances.py), and version 3 unchanged bit for bit."""

import copy
import hashlib
import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest

from scorerl.world import nuisances as nz
from scorerl.world import regions, render, scenes
from scorerl.world import render_nuisances as rn
from scorerl.world import synthetic as syn
from scorerl.world.questions import make_question

ALL = {k: 1.0 for k in nz.TOGGLES}  # every nuisance in every sample
NONE = {k: 0.0 for k in nz.TOGGLES}

# --------------------------------------------------------------------------------------------- version 3: bit-identical

# Computed with the code as it was BEFORE world v4 was written (same functions as below, run on that checkout).
V3_SAMPLES_SHA256 = "3e9bd33390820ab12ba13be24ea80702170127cda366a17abdf19aab93426edb"
V3_MANIFESTS_SHA256 = "0e81adb1ff1fdea35099d53621fd721e555582aa09b3903afe9f8db116293e2e"


def _v3_samples_digest() -> str:
    """Records and pixel bytes of 10 samples per split, for 3 seeds at 16 x 64 px and 8 x 32 px."""
    h = hashlib.sha256()
    for seed in (0, 1, 7):
        for frames, size in ((16, 64), (8, 32)):
            for split in syn.SPLITS:
                for index, (family, letter) in enumerate(syn._plan(split, 10, seed)):
                    rec, px = syn.make_sample(split, index, family, letter, seed, frames, size)
                    h.update(json.dumps(rec, sort_keys=True).encode())
                    h.update(str(px.shape).encode())
                    h.update(np.ascontiguousarray(px).tobytes())
    return h.hexdigest()


def _v3_manifests_digest() -> str:
    """Manifests and world.json of a tiny built world (not the mp4s: their bytes depend on the x264 build)."""
    with tempfile.TemporaryDirectory() as d:
        out = syn.build_world(
            Path(d) / "w", train=10, test=5, static_train=5, frames=8, size=32, seed=3, progress=False
        )
        h = hashlib.sha256()
        for name in sorted(p.name for p in out.glob("*.json*")):
            h.update(name.encode())
            h.update((out / name).read_bytes())
        return h.hexdigest()


def test_version_3_is_bit_identical_to_before_version_4():
    assert _v3_samples_digest() == V3_SAMPLES_SHA256
    assert _v3_manifests_digest() == V3_MANIFESTS_SHA256


# --------------------------------------------------------------------------------------------- helpers


def _v4(
    index: int, family: str = "count", probs=ALL, split: str = "train", frames: int = 16, size: int = 64, seed: int = 0
):
    """(record, pixels uint8 [F, H, W, 3]) of one v4 sample."""
    return syn.make_sample(split, index, family, index % 4, seed, frames, size, version=4, nuisances=probs)


def _without(scene: dict, kind: str) -> dict:
    out = copy.deepcopy(scene)
    out["nuisances"] = [n for n in out["nuisances"] if n["kind"] != kind]
    return out


def _noiseless(scene: dict) -> dict:
    out = copy.deepcopy(scene)
    out["noise_std"] = 0.0
    return out


def _kinds(scene: dict) -> list[str]:
    return [n["kind"] for n in scene["nuisances"]]


def _ghosts(scene: dict) -> np.ndarray:
    """bool [F, H, W]: pixels where only a moving object's translucent ghost is on top."""
    opaque = copy.deepcopy(scene)
    opaque["objects"] = [{**o, "role": "static"} for o in opaque["objects"]]  # the same objects, no ghosts
    is_object = regions.LAYERS["object"]
    return (regions.label_map(scene) == is_object) & (regions.label_map(opaque) != is_object)


def _box_pixels(frame: np.ndarray, box) -> np.ndarray:
    x, y, w, h = box
    return frame[y : y + h, x : x + w]


# ------------------------------------------------------------------------------------------- where, and how it changes


@pytest.mark.parametrize("kind", ["flicker", "logo", "timestamp", "movers"])
def test_each_nuisance_renders_where_its_meta_says(kind):
    for i in range(6):
        rec, pixels = _v4(i, scenes.VIDEO_FAMILIES[i % 5])
        scene = rec["scene"]
        assert kind in _kinds(scene)
        changed = np.any(pixels != render.render_video(_without(scene, kind)), axis=-1)  # [F, H, W]
        where = regions.pixel_regions(scene)[kind]
        # A moving object's motion-blur ghosts are translucent (render.py): a nuisance under them shows through
        ghosts = _ghosts(scene)
        assert not np.any(changed & ~where & ~ghosts), (rec["id"], kind)  # nothing else changed
        assert changed[where].mean() > 0.9, (rec["id"], kind)  # and it is visible where recorded


def test_meta_boxes_are_inside_the_frame_and_clear_of_the_coloured_objects():
    for i in range(40):
        rec, _ = _v4(i, scenes.VIDEO_FAMILIES[i % 5])
        scene = rec["scene"]
        for x, y, w, h in nz.reserved_boxes(scene["nuisances"]):
            assert 0 <= x and x + w <= 64 and 0 <= y and y + h <= 64
        labels = regions.label_map(scene)
        for o in scenes.coloured(scene):  # every coloured object is fully visible at each of its positions
            mask = render.shape_mask(o["shape"], o["size"])
            for k, (x, y) in enumerate(o["positions"]):
                drawn = labels[o["first"] + k, y : y + o["size"], x : x + o["size"]][mask]
                assert np.all(drawn == regions.LAYERS["object"]), rec["id"]


def test_flicker_changes_every_frame():
    styles = set()
    for i in range(8):
        rec, pixels = _v4(i)
        flicker = rn.find(rec["scene"]["nuisances"], "flicker")
        styles.add(flicker["style"])
        patch = np.stack([_box_pixels(f, flicker["box"]) for f in pixels]).astype(float)  # [F, h, w, 3]
        step = np.abs(np.diff(patch, axis=0)).mean(axis=(1, 2, 3))  # [F-1]
        assert step.min() > 10, (flicker["style"], step)  # far above the sensor noise (std 2)
    assert styles == {"screen", "foliage"}


def test_overlay_is_constant_except_the_ticking_timestamp():
    for i in range(6):
        rec, _ = _v4(i)
        scene = _noiseless(rec["scene"])
        pixels = render.render_video(scene)
        logo = rn.find(scene["nuisances"], "logo")
        stamp = rn.find(scene["nuisances"], "timestamp")
        logo_px = np.stack([_box_pixels(f, logo["box"]) for f in pixels])
        assert np.all(logo_px == logo_px[0])  # the logo never changes
        assert logo_px.max() - logo_px.min() > 150  # and it is high contrast
        stamp_px = np.stack([_box_pixels(f, stamp["box"]) for f in pixels])
        for t in range(1, scene["frames"]):
            ticked = (stamp["start"] + t // stamp["tick"]) != (stamp["start"] + (t - 1) // stamp["tick"])
            assert np.any(stamp_px[t] != stamp_px[t - 1]) == ticked, (t, stamp)
        assert 2 <= stamp["tick"] <= 4 and nz.timestamp_text(stamp, 0) != nz.timestamp_text(stamp, stamp["tick"])


def test_camera_pan_shifts_the_background():
    for i in range(8):
        rec, pixels = _v4(i, "direction")
        scene = rec["scene"]
        camera = rn.find(scene["nuisances"], "camera")
        offsets = np.array(camera["offsets"])  # [F, 2] view's top-left in the canvas
        assert offsets.min() >= 0 and offsets.max() <= 2 * camera["margin"]
        bg = rn.background_frames(scene, scene["frames"])  # [F, H, W, 3] before anything is drawn on it
        for t in range(1, scene["frames"]):  # frame t is frame 0 moved by the change of offset, exactly
            dx, dy = offsets[t] - offsets[0]
            a = bg[t, max(0, -dy) : 64 - max(0, dy), max(0, -dx) : 64 - max(0, dx)]
            b = bg[0, max(0, dy) : 64 + min(0, dy), max(0, dx) : 64 + min(0, dx)]
            assert np.array_equal(a, b), (i, t, dx, dy)
        if np.any(offsets != offsets[0]):
            assert np.any(bg != bg[0])  # and the background does move on screen


def test_pan_is_slower_than_any_object_so_directions_hold_relative_to_the_scenery():
    checked = 0
    for i in range(60):
        rec, _ = _v4(i, "direction")
        (obj,) = scenes.coloured(rec["scene"])
        camera = rn.find(rec["scene"]["nuisances"], "camera")
        assert math.hypot(*camera["velocity"]) <= nz.PAN_MAX + 1e-6
        # the scenery moves on screen by minus the view's offset change
        first, last = obj["first"], obj["last"]
        bg_move = -(np.array(camera["offsets"][last]) - camera["offsets"][first])
        relative = np.array(obj["positions"][-1]) - obj["positions"][0] - bg_move
        axis, sign = {"left": (0, -1), "right": (0, 1), "up": (1, -1), "down": (1, 1)}[obj["direction"]]
        assert np.sign(relative[axis]) == sign, (rec["id"], obj["direction"], relative)
        checked += 1
    assert checked == 60


# --------------------------------------------------------------------------------------------- answers


def _expected(rec) -> str:
    """The answer from the coloured objects alone."""
    keys = scenes.coloured(rec["scene"])
    if rec["family"] == "count":
        return str(len(keys))
    (key,) = keys
    return key["direction"] if rec["family"] == "direction" else key["color"]


def test_no_answer_depends_on_a_nuisance():
    for i in range(40):
        family = scenes.VIDEO_FAMILIES[i % 5]
        rec, _ = _v4(i, family)
        scene = rec["scene"]
        assert set(_kinds(scene)) == set(nz.REGIONS)
        assert rec["options"]["ABCD".index(rec["answer"])] == _expected(rec)
        assert "colored" in rec["question"]  # movers and the logo also move / appear / stay: never "the object"
        # The same question asked of the scene without any nuisance: the same options and answer
        bare = copy.deepcopy(scene)
        bare["nuisances"] = []
        rng = np.random.default_rng(i)
        assert make_question(rng, bare, family, i % 4) == make_question(np.random.default_rng(i), scene, family, i % 4)
        # Nothing but the coloured objects has colour: every nuisance pixel is grey, so "colored" never means one
        pixels = render.render_video(_noiseless(scene)).astype(int)
        spread = pixels.max(axis=-1) - pixels.min(axis=-1)  # [F, H, W]
        not_object = regions.label_map(scene) != regions.LAYERS["object"]
        assert spread[not_object].max() <= 6, rec["id"]


def test_count_answers_are_the_coloured_objects_whatever_the_movers():
    seen_movers = set()
    for i in range(60):
        rec, _ = _v4(i, "count")
        movers = rn.find(rec["scene"]["nuisances"], "movers")
        seen_movers.add(len(movers["items"]))
        assert all(o["color"] in scenes.COLORS for o in rec["scene"]["objects"])  # movers are not objects
        assert rec["options"]["ABCD".index(rec["answer"])] == str(len(rec["scene"]["objects"]))
        assert all(item["grey"] < 100 or item["grey"] > 150 for item in movers["items"])  # grey, unlike the bg
    assert seen_movers == {1, 2}


# --------------------------------------------------------------------------------------------- mixing by seed


def test_mixing_is_deterministic_by_seed_and_follows_the_probabilities():
    rec_a, px_a = _v4(3, "event", probs=None)
    rec_b, px_b = _v4(3, "event", probs=None)
    assert json.dumps(rec_a) == json.dumps(rec_b) and np.array_equal(px_a, px_b)
    # the subset is drawn from the sample's own nuisance stream: the same whatever its family
    assert _kinds(_v4(3, "direction", probs=None)[0]["scene"]) == _kinds(rec_a["scene"])
    counts = {k: 0 for k in nz.TOGGLES}
    subsets = set()
    for i in range(200):
        scene = syn.make_sample("train", i, "static_attr", 0, 5, 8, 32, version=4)[0]["scene"]
        kinds = set(_kinds(scene))
        subsets.add(frozenset(kinds))
        for k in nz.TOGGLES:
            counts[k] += ("logo" if k == "overlay" else k) in kinds
        assert ("logo" in kinds) == ("timestamp" in kinds)  # the overlay is both or neither
    assert all(0.35 < c / 200 < 0.65 for c in counts.values()), counts  # 0.5 each by default
    assert len(subsets) >= 12  # of the 16 possible mixes
    assert _kinds(_v4(0, probs=NONE)[0]["scene"]) == []
    assert _kinds(_v4(0, probs={**NONE, "movers": 1.0})[0]["scene"]) == ["movers"]
    image = syn.make_sample("static_train", 0, "count", 0, 0, 16, 64, version=4, nuisances=ALL)[0]["scene"]
    assert set(_kinds(image)) == set(nz.REGIONS) - {"camera"}  # an image has no camera motion


def test_a_different_seed_mixes_differently():
    a = [_kinds(_v4(i, probs=None, seed=0)[0]["scene"]) for i in range(30)]
    b = [_kinds(_v4(i, probs=None, seed=1)[0]["scene"]) for i in range(30)]
    assert a != b


# --------------------------------------------------------------------------------------------- token masks


def test_token_regions_on_the_world_token_grid():
    rec, _ = _v4(1, "static_attr")
    scene = rec["scene"]
    masks = regions.token_regions(scene, T=8, grid=(4, 4))  # 16 frames, 2 per token; 16 x 16 px tokens
    assert set(masks) == set(regions.REGION_NAMES)
    assert all(m.shape == (8, 4, 4) and m.dtype == bool for m in masks.values())
    logo = rn.find(scene["nuisances"], "logo")
    x, y, w, h = logo["box"]
    assert np.all(masks["logo"] == masks["logo"][0]) and masks["logo"][0, y // 16, x // 16]  # fixed corner
    (still,) = scenes.coloured(scene)
    units = {t // 2 for t in range(still["first"], still["last"] + 1)}
    assert {int(t) for t in np.flatnonzero(masks["object"].any(axis=(1, 2)))} == units  # only when it is shown
    assert masks["camera"].sum() > masks["object"].sum()  # the moving background is most of the video
    with pytest.raises(ValueError):
        regions.token_regions(scene, T=3, grid=(4, 4))
    # exclusive: a partition of the tokens, objects first, `camera` = tokens that show only the moving background
    parts = regions.token_regions(scene, T=8, grid=(4, 4), exclusive=True)
    assert np.all(sum(m.astype(int) for m in parts.values()) == 1)
    assert np.array_equal(parts["object"], masks["object"]) and not np.any(parts["camera"] & masks["logo"])
    bare = _without(scene, "camera")
    assert "background" in regions.token_regions(bare, T=8, grid=(4, 4), exclusive=True)


# --------------------------------------------------------------------------------------------- building


def test_a_v4_world_builds_into_its_own_folder_with_nuisances_in_meta(tmp_path):
    import scorerl.world  # noqa: F401  (the world_v4: scheme)
    from scorerl.config import load_config
    from scorerl.data.manifest import read_manifest, resolve_manifest
    from scorerl.world.paths import world_dir

    cfg = load_config(
        None,
        [
            "world.version=4",
            "world.train=5",
            "world.test=2",
            "world.static_train=2",
            "world.frames=8",
            "world.size=32",
            "world.nuisance_camera=1.0",
        ],
    )
    out = syn.build_from_section(cfg.world, progress=False)
    assert out == world_dir(4) != world_dir()
    info = json.loads((out / "world.json").read_text())
    assert info["params"]["version"] == 4 and info["params"]["nuisances"]["camera"] == 1.0
    samples, skipped = read_manifest(resolve_manifest("world_v4:train"))
    assert not skipped and len(samples) == 5
    assert all(s.meta["scene"]["version"] == 4 and "camera" in _kinds(s.meta["scene"]) for s in samples)
    with pytest.raises(Exception, match="size"):
        syn.build_world(tmp_path / "small", train=1, test=1, static_train=1, frames=8, size=16, version=4)


def test_derived_fit_questions_read_the_v4_scene():
    from scorerl.types import Sample
    from scorerl.world.fit_data import scene_question

    rec, _ = _v4(2, "event")
    sample = Sample(
        id="x",
        media=Path("/x.mp4"),
        kind="video",
        question=rec["question"],
        options=rec["options"],
        answer=rec["answer"],
        answer_index="ABCD".index(rec["answer"]),
        family="event",
        meta={"scene": rec["scene"]},
    )
    derived = scene_question(sample, "count", 1, np.random.default_rng(0))
    assert derived.question == "How many colored objects appear during the video?"
    assert derived.options[1] == str(len(scenes.coloured(rec["scene"])))


def test_ablations_reuse_an_evaluation_only_of_the_same_policies_written_after_them(tmp_path):
    import importlib.util
    import os

    spec = importlib.util.spec_from_file_location("ablations", Path(__file__).parents[2] / "scripts" / "ablations.py")
    ablations = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ablations)
    runs = []
    for name in ("a_s0", "a_s1"):
        (tmp_path / name / "policy").mkdir(parents=True)
        (tmp_path / name / "policy" / "model.safetensors").write_text("x")
        runs.append(tmp_path / name)
    manifest = tmp_path / "test.jsonl"
    manifest.write_text("")
    out = tmp_path / "a.json"
    out.write_text(json.dumps({"meta": {"policies": [str(r) for r in runs], "manifest": {"path": str(manifest)}}}))
    later = out.stat().st_mtime + 10
    os.utime(out, (later, later))
    assert ablations.reusable(out, runs, str(manifest))["meta"]["policies"] == [str(r) for r in runs]
    assert ablations.reusable(out, runs[:1], str(manifest)) is None  # other policies
    assert ablations.reusable(out, runs, str(tmp_path / "other.jsonl")) is None  # another manifest
    retrained = runs[1] / "policy" / "model.safetensors"
    os.utime(retrained, (later + 10, later + 10))
    assert ablations.reusable(out, runs, str(manifest)) is None  # a policy newer than the evaluation
    assert ablations.reusable(tmp_path / "missing.json", runs, str(manifest)) is None
