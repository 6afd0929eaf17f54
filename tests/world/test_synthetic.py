"""The built-in world: deterministic, answers consistent with the scene description, files that decode."""

import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from scorerl.errors import DataError
from scorerl.world import questions, scenes
from scorerl.world import synthetic as syn

TINY = dict(train=20, test=5, static_train=12, frames=8, size=32, seed=0)


def _build(root: Path, **overrides) -> Path:
    return syn.build_world(root, progress=False, **{**TINY, **overrides})


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return _build(tmp_path_factory.mktemp("world"))


def _records(root: Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (root / f"{split}.jsonl").read_text().splitlines()]


def _all_records(root: Path):
    for split in syn.SPLITS:
        for rec in _records(root, split):
            yield split, rec


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(f.relative_to(root).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()


# --------------------------------------------------------------------------------------------- answers from scenes
# These derive the answer from object positions and visibility only (not from the `role` labels the generator
# wrote), so they check the generator rather than repeat it.


def _frames_on_screen(o) -> int:
    return o["last"] - o["first"] + 1


def _in_one_place(o) -> bool:
    return all(p == o["positions"][0] for p in o["positions"])


def _is_static(scene, o) -> bool:
    # in one place for at least half the clip (an image's single frame counts as all of it)
    return _in_one_place(o) and _frames_on_screen(o) >= min(scene["frames"], max(2, scene["frames"] // 2))


def _coloured(scene) -> list[dict]:
    return [o for o in scene["objects"] if o["color"] in scenes.COLORS]


def _the_coloured(scene) -> dict:
    (key,) = _coloured(scene)
    return key


def _direction(o) -> str:
    (x0, y0), (x1, y1) = o["positions"][0], o["positions"][-1]
    dx, dy = x1 - x0, y1 - y0
    assert (dx == 0) != (dy == 0), "motion must be along one axis"
    return ("right" if dx > 0 else "left") if dx else ("down" if dy > 0 else "up")


def _expected(rec) -> str:
    scene, fam = rec["scene"], rec["family"]
    if fam == "count":
        return str(len(_coloured(scene)))
    key = _the_coloured(scene)
    if fam in ("moving_color", "direction"):
        assert len({tuple(p) for p in key["positions"]}) == len(key["positions"])  # a new place every frame
        return key["color"] if fam == "moving_color" else _direction(key)
    if fam == "event":
        assert _frames_on_screen(key) == 2 and _in_one_place(key)  # one frame pair
        return key["color"]
    if fam == "static_attr":
        assert _is_static(scene, key)
        return key["color"]
    raise AssertionError(f"unknown family {fam}")


def test_answers_match_scene_description(world):
    for _split, rec in _all_records(world):
        opts = rec["options"]
        assert len(opts) == 4 and len(set(opts)) == 4
        expected = _expected(rec)
        assert [o == expected for o in opts].count(True) == 1, rec["id"]
        assert opts["ABCD".index(rec["answer"])] == expected, rec["id"]


def test_scene_invariants(world):
    for _split, rec in _all_records(world):
        scene = rec["scene"]
        objs = scene["objects"]
        t = scene["frames"]
        keys = _coloured(scene)
        assert keys == objs  # only what the question is about
        assert len({o["color"] for o in keys}) == len(keys)  # a count is a count of distinct colours
        for o in objs:  # inside the frame, one position per visible frame
            assert len(o["positions"]) == o["last"] - o["first"] + 1
            for x, y in o["positions"]:
                assert 0 <= x and x + o["size"] <= scene["size"] and 0 <= y and y + o["size"] <= scene["size"]
        for f in range(t):  # no two objects overlap in any frame
            boxes = [
                (x, y, o["size"])
                for o in objs
                if o["first"] <= f <= o["last"]
                for x, y in [o["positions"][f - o["first"]]]
            ]
            for i, (ax, ay, a) in enumerate(boxes):
                for bx, by, b in boxes[i + 1 :]:
                    assert ax + a <= bx or bx + b <= ax or ay + a <= by or by + b <= ay
        if scene["kind"] == "video" and rec["family"] == "event":
            (event,) = keys
            assert 2 <= event["first"] and event["last"] <= t - 3  # not in the first or last frame pair
            assert event["first"] % 2 == 0 and event["last"] == event["first"] + 1  # one frame pair
        if scene["kind"] == "video" and rec["family"] == "static_attr":
            (still,) = keys  # half the clip from a frame pair on: no 10% of the tokens finds it by luck
            assert still["first"] % 2 == 0 and _frames_on_screen(still) == t // 2
        if scene["kind"] == "video" and rec["family"] == "count":
            assert 1 <= len(keys) <= 4 and len({o["size"] for o in keys}) == 1  # same size: count, not area
            assert all(o["first"] % 2 == 0 and o["last"] == o["first"] + 1 for o in keys)  # one frame pair each


def test_colour_distractors_are_nowhere_in_the_scene(world):
    # The coloured object is the only one in the scene, so a colour question needs no binding of attributes
    for _split, rec in _all_records(world):
        if rec["family"] in ("moving_color", "event", "static_attr"):
            in_scene = {o["color"] for o in rec["scene"]["objects"]}
            wrong = set(rec["options"]) - {_expected(rec)}
            assert wrong <= set(scenes.COLORS) and not wrong & in_scene


def test_counted_objects_are_spread_over_time():
    # no frame shows two counted objects: evenly spaced frames cannot count them
    for i in range(50):
        rng = np.random.default_rng([7, i])
        scene = scenes.sample_video_scene(rng, "count", frames=16, size=64)
        keys = _coloured(scene)
        on_screen = [sum(o["first"] <= f <= o["last"] for o in keys) for f in range(16)]
        assert max(on_screen) == 1 and sum(on_screen) == 2 * len(keys)


def test_questions_refuse_scenes_that_cannot_carry_them():
    rng = np.random.default_rng(0)
    still = scenes.sample_video_scene(rng, "static_attr", frames=8, size=32)
    with pytest.raises(DataError, match="direction"):
        questions.make_question(rng, still, "direction", 0)
    assert questions.make_question(rng, still, "count", 0)[1][0] == "1"


def _nearest_color(rgb) -> str:
    return min(scenes.COLORS, key=lambda c: np.abs(np.subtract(scenes.COLORS[c], rgb, dtype=float)).sum())


def test_decoded_pixels_show_the_described_objects(world):
    import decord

    for rec in _records(world, "train") + _records(world, "test"):
        scene = rec["scene"]
        frames = decord.VideoReader(str(world / rec["video"])).get_batch(list(range(scene["frames"]))).asnumpy()
        for o in scene["objects"]:
            c = o["size"] // 2  # the centre pixel is inside every shape
            for k, (x, y) in enumerate(o["positions"]):
                assert _nearest_color(frames[o["first"] + k, y + c, x + c]) == o["color"], (rec["id"], o)
            x, y = o["positions"][0]
            for f in range(scene["frames"]):  # absent outside its frames (where nothing else is drawn)
                if not o["first"] <= f <= o["last"] and o["role"] != "moving":
                    pixel = frames[f, y + c, x + c].astype(float)
                    assert np.abs(pixel - scenes.COLORS[o["color"]]).sum() > 150, (rec["id"], o, f)


def test_every_file_decodes_with_right_shape(world):
    import decord
    from PIL import Image

    n_video = n_image = 0
    for _split, rec in _all_records(world):
        if "video" in rec:
            vr = decord.VideoReader(str(world / rec["video"]))
            assert len(vr) == TINY["frames"]
            assert vr[0].shape == (TINY["size"], TINY["size"], 3)
            n_video += 1
        else:
            with Image.open(world / rec["image"]) as im:
                assert im.size == (TINY["size"], TINY["size"]) and im.mode == "RGB"
            n_image += 1
    assert n_video == TINY["train"] + TINY["test"]
    assert n_image == TINY["static_train"] + TINY["static_train"] // 5


def test_families_and_letters_balanced(world):
    plan = syn._plan("train", 240, seed=3)
    fams = Counter(f for f, _ in plan)
    assert set(fams) == set(scenes.VIDEO_FAMILIES) and set(fams.values()) == {48}
    for fam in scenes.VIDEO_FAMILIES:
        assert set(Counter(letter for f, letter in plan if f == fam).values()) == {12}
    static_plan = syn._plan("static_train", 64, seed=3)
    assert set(Counter(f for f, _ in static_plan).values()) == {32}
    # The tiny world itself: 20 train samples over 5 families, all four letters used
    recs = _records(world, "train")
    assert set(Counter(r["family"] for r in recs).values()) == {4}
    assert set(Counter(r["answer"] for r in recs).values()) == {5}


def test_answer_values_are_spread():
    # The correct option's value must not be guessable from the question alone: sample many scenes (no rendering).
    counts = Counter()
    for i in range(240):
        rng = np.random.default_rng([5, i])
        fam = ("count", "direction", "moving_color")[i % 3]
        scene = scenes.sample_video_scene(rng, fam, frames=8, size=32)
        q, opts, _ = questions.make_question(rng, scene, fam, letter=0)
        counts[(fam, opts[0])] += 1
    for fam, n_values in (("count", 4), ("direction", 4), ("moving_color", len(scenes.COLORS))):
        values = [n for (f, _), n in counts.items() if f == fam]
        assert len(values) == n_values and min(values) >= 80 / n_values / 3


def test_deterministic_for_a_seed_and_different_for_another(world, tmp_path):
    again = _build(tmp_path / "again")
    assert _digest(again) == _digest(world)  # manifests, mp4 and png bytes
    other = _build(tmp_path / "other", seed=1)
    assert (other / "train.jsonl").read_bytes() != (world / "train.jsonl").read_bytes()
    assert (other / "videos/train_00000.mp4").read_bytes() != (world / "videos/train_00000.mp4").read_bytes()


def test_cache_is_a_noop_and_rebuilds_on_change(tmp_path):
    root = _build(tmp_path / "w", train=6, test=2, static_train=3)
    info = json.loads((root / "world.json").read_text())
    assert info["params"]["version"] == syn.WORLD_VERSION and info["params"]["frames"] == TINY["frames"]
    mtimes = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    _build(root, train=6, test=2, static_train=3)
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()} == mtimes
    _build(root, train=3, test=2, static_train=3)  # smaller: stale videos of the old world are removed
    assert len(list((root / "videos").glob("*.mp4"))) == 5
    assert json.loads((root / "world.json").read_text())["params"]["train"] == 3


def test_bad_parameters_raise_data_error(tmp_path):
    with pytest.raises(DataError, match="even"):
        _build(tmp_path / "x", size=33)
    with pytest.raises(DataError, match="frames"):
        _build(tmp_path / "x", frames=4)
    with pytest.raises(DataError, match="even"):
        _build(tmp_path / "x", frames=9)


def test_world_manifests_read_back(world):
    from scorerl.data.manifest import read_manifest

    samples, skipped = read_manifest(world / "static_train.jsonl")
    assert not skipped and len(samples) == TINY["static_train"]
    assert all(s.kind == "image" and s.media.is_absolute() and s.media.is_file() for s in samples)
    samples, _ = read_manifest(world / "test.jsonl")
    assert {s.kind for s in samples} == {"video"} and samples[0].meta["scene"]["kind"] == "video"


def test_pipeline_script(tmp_path, capsys):
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "data_pipelines" / "build_synthetic.py"
    spec = importlib.util.spec_from_file_location("build_synthetic", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "cli"
    args = [
        "--out",
        str(out),
        "--train",
        "2",
        "--test",
        "1",
        "--static",
        "2",
        "--frames",
        "6",
        "--size",
        "16",
        "--quiet",
    ]
    assert mod.main(args) == 0
    assert len(_records(out, "train")) == 2 and (out / "world.json").is_file()
    assert mod.main(args[:-2] + ["15", "--quiet"]) == 2  # odd size: one clear error line
    assert "even" in capsys.readouterr().err
