"""Bad data in a run: a truncated mp4, a text file named .mp4, a missing file and a malformed line. With
data.skip_bad the run finishes and reports each with its reason; without, it stops at the first naming its line."""

from __future__ import annotations

import json

import pytest

from scorerl.config import load_config
from scorerl.errors import DataError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    from conftest import write_tiny_dataset

    from scorerl.envs.build import build_tiny_env

    root = tmp_path_factory.mktemp("tolerance")
    data = write_tiny_dataset(root / "data", videos=6, images=2, frames=6, size=32, seed=3)
    good = (data / "videos" / "v0.mp4").read_bytes()
    (data / "videos" / "truncated.mp4").write_bytes(good[: len(good) // 2])
    (data / "videos" / "text.mp4").write_text("this is not a video")
    line = json.loads((data / "train.jsonl").read_text().splitlines()[0])
    bad = [
        json.dumps({**line, "id": "truncated", "video": "videos/truncated.mp4"}),
        json.dumps({**line, "id": "text", "video": "videos/text.mp4"}),
        json.dumps({**line, "id": "missing", "video": "videos/nowhere.mp4"}),
        '{"id": "malformed", "video": ',
    ]
    (data / "mixed.jsonl").write_text((data / "train.jsonl").read_text() + "\n".join(bad) + "\n")
    build_tiny_env("qwen2_5_vl", seed=0).save_pretrained(root / "env")
    return root, data


def cfg_for(root, data, *extra):
    return load_config(
        None,
        [
            f"env.path={root / 'env'}",
            "env.device=cpu",
            "data.num_frames=4",
            "data.frame_size=32",
            f"data.stage2_manifest={data / 'mixed.jsonl'}",
            f"data.eval_manifest={data / 'mixed.jsonl'}",
            f"data.cache_dir={root / 'cache'}",
            "curriculum.stage1_steps=0",
            "rl.group_size=2",
            "policy.hidden=8",
            "train.max_steps=2",
            "train.batch_size=2",
            f"run.output_dir={root / 'runs'}",
            *extra,
        ],
    )


def test_train_and_eval_finish_and_count_each_bad_entry(mixed):
    from scorerl.eval.harness import run_eval
    from scorerl.rl.trainer import train

    root, data = mixed
    run = train(cfg_for(root, data, "data.skip_bad=true", "run.name=tolerant"))
    report = json.loads((run / "data_report.json").read_text())["2"]
    assert report["samples"] == 6 and (run / "policy").is_dir()
    assert [x["line"] for x in report["skipped_lines"]] == [9, 10]
    assert "video file not found" in report["skipped_lines"][0]["reason"]
    assert "invalid JSON" in report["skipped_lines"][1]["reason"]
    assert {x["id"]: x["line"] for x in report["skipped_media"]} == {"truncated": 7, "text": 8}
    assert all("not a readable video" in x["reason"] for x in report["skipped_media"])

    result = run_eval(
        cfg_for(root, data, "data.skip_bad=true", "eval.methods=[full,uniform]", "eval.ratios=[0.5]"),
        out=root / "eval" / "r.json",
    )
    meta = result["meta"]
    assert meta["skipped"] == 2 and [x["id"] for x in meta["skipped_media"]] == ["truncated", "text"]
    assert result["results"][0]["n"] == 6
    assert "skipped lines: 2, unreadable media: 2" in (root / "eval" / "r.md").read_text()


def test_without_skip_bad_the_first_bad_entry_stops_the_run_by_line(mixed):
    from scorerl.eval.harness import run_eval
    from scorerl.rl.trainer import train

    root, data = mixed
    with pytest.raises(DataError, match=r"mixed.jsonl:9: video file not found"):
        train(cfg_for(root, data, "run.name=strict"))
    only_media = data / "media.jsonl"
    only_media.write_text("".join(x + "\n" for x in (data / "mixed.jsonl").read_text().splitlines()[:8]))
    with pytest.raises(DataError, match=r"media.jsonl:7 \(id 'truncated'\): .*truncated.mp4: not a readable video"):
        run_eval(
            cfg_for(root, data, f"data.eval_manifest={only_media}", "eval.methods=[full]"),
            out=root / "eval2" / "r.json",
        )
    with pytest.raises(DataError, match=r"media.jsonl:7 \(id 'truncated'\).*data.skip_bad=true"):
        train(
            cfg_for(
                root,
                data,
                f"data.stage2_manifest={only_media}",
                "run.name=strict2",
                "train.max_steps=8",
                "train.batch_size=4",
            )
        )
