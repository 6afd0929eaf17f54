"""Converters (scorerl/data/convert/, scorerl/data/convert_cli.py): small files in each public layout -> manifest v2
lines, checked field by field and read back by read_manifest."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from scorerl.data.convert import (
    Columns,
    Conversion,
    ConvertReport,
    choice,
    convert,
    parse_lettered_question,
    read_llava_video,
    read_nextqa,
    summary_lines,
    write_manifest,
)
from scorerl.data.manifest import read_manifest
from scorerl.data.video_io import write_mp4
from scorerl.errors import DataError, ScoreRLError

ROOT = Path(__file__).resolve().parents[2]


def tiny_mp4(path: Path, shade: int = 0) -> Path:
    """A real 2-frame H.264 clip (16x16), enough for read_manifest's file check and the converters' own."""
    frames = np.full((2, 16, 16, 3), shade, dtype=np.uint8)
    frames[1, 4:12, 4:12] = 255
    return write_mp4(path, frames)


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def assert_reads_back(report: ConvertReport) -> None:
    """Every written line is a line the manifest reader takes, none skipped."""
    samples, skipped = read_manifest(report.out, skip_bad=True)
    assert skipped == []
    assert len(samples) == report.written


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


# ------------------------------------------------------------------------------------------------ NExT-QA


def nextqa_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    """val.csv (3 rows: answers 3 and 0 on existing videos, one row whose video file is missing), the id map and the
    video root, laid out as NExT-QA ships them (NExTVideo/<folder>/<vidorid>.mp4)."""
    root = tmp_path / "NExTVideo"
    tiny_mp4(root / "1101" / "4010069381.mp4")
    tiny_mp4(root / "0000" / "2440175990.mp4", shade=40)
    vmap = tmp_path / "map_vid_vidorID.json"
    vmap.write_text(json.dumps({"4010069381": "1101/4010069381", "2440175990": "0000/2440175990", "5555": "0000/5555"}))
    header = [
        "video",
        "frame_count",
        "width",
        "height",
        "question",
        "answer",
        "qid",
        "type",
        "a0",
        "a1",
        "a2",
        "a3",
        "a4",
    ]
    rows = [
        [
            4010069381,
            1200,
            640,
            480,
            "why did the boy pick up the ball",
            3,
            6,
            "CW",
            "to play",
            "to eat",
            "to hide",
            "to throw it to the dog",
            "to sleep",
        ],
        [
            2440175990,
            900,
            640,
            360,
            "what is the man doing at the start",
            0,
            2,
            "TP",
            "cooking",
            "running",
            "reading",
            "singing",
            "sitting",
        ],
        [5555, 100, 320, 240, "how many people are there", 1, 0, "DC", "one", "two", "three", "four", "five"],
    ]
    csv_path = write_csv(tmp_path / "val.csv", header, rows)
    return csv_path, vmap, root


def test_nextqa_index_answer_becomes_letter_and_missing_video_is_skipped(tmp_path):
    csv_path, vmap, root = nextqa_files(tmp_path)
    report = convert("nextqa", csv_path, tmp_path / "nextqa.jsonl", map_json=vmap, media_root=root)

    assert report.written == 2
    [(where, reason)] = report.skipped
    assert where == f"{csv_path}:4"
    assert reason == f"video file not found: {root / '0000' / '5555.mp4'}"
    first, second = read_lines(report.out)
    assert first["id"] == "4010069381_6"
    assert first["video"] == "NExTVideo/1101/4010069381.mp4"  # under the manifest's folder: relative
    assert first["options"] == ["to play", "to eat", "to hide", "to throw it to the dog", "to sleep"]
    assert first["answer"] == "D"  # answer 3 of 5
    assert first["family"] == "CW"
    assert first["meta"] == {"source": "nextqa", "source_answer": 3, "video_id": "4010069381", "qid": 6}
    assert second["answer"] == "A" and second["family"] == "TP"
    assert_reads_back(report)


def test_nextqa_reports_missing_columns_and_unmapped_videos(tmp_path):
    csv_path, vmap, root = nextqa_files(tmp_path)
    vmap.write_text(json.dumps({"4010069381": "1101/4010069381"}))
    conv = read_nextqa(csv_path, map_json=vmap, media_root=root)
    assert [line["id"] for line in conv.lines] == ["4010069381_6"]
    assert [reason for _, reason in conv.skipped] == [
        "video 2440175990 is not in the video map",
        "video 5555 is not in the video map",
    ]

    bad = write_csv(tmp_path / "bad.csv", ["video", "question", "answer"], [[1, "q", 0]])
    with pytest.raises(DataError, match=r"bad\.csv: missing column\(s\) qid, type, a0"):
        read_nextqa(bad, map_json=vmap, media_root=root)


# ------------------------------------------------------------------------------------------------ MVBench


def test_mvbench_text_answer_window_and_task_folders(tmp_path):
    video_root = tmp_path / "MVBench" / "video"
    tiny_mp4(video_root / "star" / "Charades_v1_480" / "ZS9XR.mp4")  # action_sequence's own folder
    tiny_mp4(video_root / "clip_7.mp4")  # a task MVBench does not list: joined to the root directly
    json_dir = tmp_path / "MVBench" / "json"
    json_dir.mkdir(parents=True)
    (json_dir / "action_sequence.json").write_text(
        json.dumps(
            [
                {
                    "video": "ZS9XR.mp4",
                    "question": "What happened after the person took the food?",
                    "candidates": [
                        "Ate the medicine.",
                        "Tidied up the blanket.",
                        "Put down the cup/glass/bottle.",
                        "Took the box.",
                    ],
                    "answer": "Tidied up the blanket.",
                    "start": 11.1,
                    "end": 19.6,
                },
                {
                    "video": "ZS9XR.mp4",
                    "question": "What did the person do first?",
                    "candidates": ["Sat down.", "Stood up."],
                    "answer": "Jumped.",
                    "start": 0.0,
                    "end": 5.0,
                },
                {"video": "GONE1.mp4", "question": "What happened?", "candidates": ["a", "b"], "answer": "a"},
            ]
        )
    )
    (json_dir / "my_task.json").write_text(
        json.dumps(
            [
                {"video": "clip_7.mp4", "question": "How many times?", "candidates": [3, 4, 5], "answer": 4},
            ]
        )
    )

    report = convert("mvbench", json_dir, tmp_path / "mvbench.jsonl", media_root=video_root)

    lines = read_lines(report.out)
    assert [line["id"] for line in lines] == ["action_sequence_0", "my_task_0"]
    seq, count = lines
    assert seq["answer"] == "B" and seq["family"] == "action_sequence"
    assert (seq["start"], seq["end"]) == (11.1, 19.6)
    assert seq["video"] == "MVBench/video/star/Charades_v1_480/ZS9XR.mp4"
    assert seq["meta"]["source_answer"] == "Tidied up the blanket."
    assert count["options"] == ["3", "4", "5"] and count["answer"] == "B" and "start" not in count
    reasons = dict(report.skipped)
    assert reasons[f"{json_dir / 'action_sequence.json'}[1]"] == ("answer 'Jumped.' is not one of the 2 options' texts")
    assert reasons[f"{json_dir / 'action_sequence.json'}[2]"].startswith("video file not found: ")
    assert_reads_back(report)


# ------------------------------------------------------------------------------------------------ Video-MME


def test_videomme_parquet_strips_letter_prefixes(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    tiny_mp4(tmp_path / "data" / "fFjv93ACGo8.mp4")
    rows = [
        {
            "video_id": "001",
            "duration": "short",
            "domain": "Knowledge",
            "sub_category": "Humanity & History",
            "url": "https://www.youtube.com/watch?v=fFjv93ACGo8",
            "videoID": "fFjv93ACGo8",
            "question_id": "001-1",
            "task_type": "Counting Problem",
            "question": "How many red socks are above the fireplace?",
            "options": ["A. 0.", "B. 1.", "C. 2.", "D. 3."],
            "answer": "C",
        },
        {
            "video_id": "001",
            "duration": "short",
            "domain": "Knowledge",
            "sub_category": "Humanity & History",
            "url": "https://www.youtube.com/watch?v=fFjv93ACGo8",
            "videoID": "fFjv93ACGo8",
            "question_id": "001-2",
            "task_type": "Object Recognition",
            "question": "Which item is on the table?",
            "options": ["A. cup", "C. pen", "B. book", "D. lamp"],
            "answer": "A",
        },
    ]
    src = tmp_path / "test-00000-of-00001.parquet"
    pq.write_table(pa.Table.from_pylist(rows), src)

    report = convert("videomme", src, tmp_path / "videomme.jsonl", media_root=tmp_path / "data")

    [line] = read_lines(report.out)
    assert line["id"] == "001-1" and line["video"] == "data/fFjv93ACGo8.mp4"
    assert line["options"] == ["0.", "1.", "2.", "3."] and line["answer"] == "C"
    assert line["family"] == "Counting Problem"
    assert line["meta"]["duration"] == "short" and line["meta"]["video_id"] == "001"
    assert report.skipped == [(f"{src}[1]", "option 'C. pen' does not start with 'B.'")]
    assert_reads_back(report)


# ------------------------------------------------------------------------------------------------ LLaVA-Video


def test_llava_video_turns_multiple_choice_and_open_ended(tmp_path):
    tiny_mp4(tmp_path / "academic_source" / "youcook2" / "v_abc.mp4")
    src = tmp_path / "0_30_s_academic_mc_v0_1_qa_processed.json"
    src.write_text(
        json.dumps(
            [
                {
                    "id": "v_abc",
                    "video": "academic_source/youcook2/v_abc.mp4",
                    "data_source": "0_30_s_academic_v0_1",
                    "conversations": [
                        {
                            "from": "human",
                            "value": "<image>\nWhat does the cook add first?\nA. Salt\nB. Oil\nC. Garlic\n"
                            "D. Water\nAnswer with the option's letter from the given choices "
                            "directly.",
                        },
                        {"from": "gpt", "value": "B."},
                        {"from": "human", "value": "Why does the cook stir the pan?"},
                        {"from": "gpt", "value": "To keep the garlic from burning."},
                        {"from": "human", "value": "Which tool is used?\nOptions:\n(A) A spoon\n(B) A whisk"},
                        {"from": "gpt", "value": "(A) A spoon"},
                    ],
                },
                {
                    "id": "v_bad",
                    "video": "academic_source/youcook2/v_abc.mp4",
                    "conversations": [{"from": "human", "value": "<video>\nhello"}],
                },
            ]
        )
    )

    report = convert("llava_video", src, tmp_path / "llava.jsonl")

    mc, oe, mc2 = read_lines(report.out)
    assert mc["id"] == "v_abc_0" and mc["question"] == "What does the cook add first?"
    assert mc["options"] == ["Salt", "Oil", "Garlic", "Water"] and mc["answer"] == "B"
    assert mc["meta"]["instruction"] == "Answer with the option's letter from the given choices directly."
    assert mc["meta"]["source_answer"] == "B."
    assert oe["id"] == "v_abc_1" and "options" not in oe
    assert oe["question"] == "Why does the cook stir the pan?"
    assert oe["answer"] == "To keep the garlic from burning."
    assert mc2["question"] == "Which tool is used?"
    assert mc2["options"] == ["A spoon", "A whisk"] and mc2["answer"] == "A"
    assert report.skipped == [(f"{src}[1]", "conversations has 1 messages; expected human/gpt pairs")]
    assert_reads_back(report)
    samples, _ = read_manifest(report.out)
    assert [s.open_ended for s in samples] == [False, True, False]


def test_llava_video_letter_that_names_no_option_is_open_ended(tmp_path):
    tiny_mp4(tmp_path / "v.mp4")
    src = tmp_path / "oe.json"
    src.write_text(
        json.dumps(
            [
                {
                    "id": "x",
                    "video": "v.mp4",
                    "conversations": [
                        {"from": "human", "value": "<image>\nPick one.\nA. red\nB. blue"},
                        {"from": "gpt", "value": "A man in a red coat."},
                    ],
                }
            ]
        )
    )
    [line] = read_llava_video(src).lines
    assert "options" not in line
    assert line["question"] == "Pick one.\nA. red\nB. blue" and line["answer"] == "A man in a red coat."


# ------------------------------------------------------------------------------------------------ generic


def test_generic_csv_columns_open_ended_rows_and_skips(tmp_path):
    tiny_mp4(tmp_path / "clips" / "a.mp4")
    tiny_mp4(tmp_path / "clips" / "b.mp4")
    src = write_csv(
        tmp_path / "qa.csv",
        ["qid", "clip", "q", "o1", "o2", "o3", "label", "t0", "t1", "kind", "src"],
        [
            ["q1", "clips/a.mp4", "Which way does it move?", "left", "right", "up", "2", "1.5", "4", "direction", "x"],
            ["q2", "clips/b.mp4", "What colour is it?", "", "", "", "a bright red", "", "", "", "y"],  # open-ended
            ["q3", "clips/missing.mp4", "Where?", "here", "there", "", "0", "", "", "place", "z"],
            ["q4", "clips/b.mp4", "Is it?", "yes", "", "no", "0", "", "", "", "w"],
        ],
    )
    columns = Columns(
        id="qid",
        video="clip",
        question="q",
        option_cols=("o1", "o2", "o3"),
        answer="label",
        start="t0",
        end="t1",
        family="kind",
        meta=("src",),
    )

    report = convert("generic", src, tmp_path / "generic.jsonl", columns=columns, answer_format="index")

    mc, oe = read_lines(report.out)
    assert mc == {
        "id": "q1",
        "video": "clips/a.mp4",
        "question": "Which way does it move?",
        "options": ["left", "right", "up"],
        "answer": "C",
        "start": 1.5,
        "end": 4.0,
        "family": "direction",
        "meta": {"source": "generic", "source_answer": "2", "src": "x"},
    }
    assert "options" not in oe and oe["answer"] == "a bright red" and "family" not in oe
    assert report.skipped == [
        (f"{src}:4", f"video file not found: {tmp_path / 'clips' / 'missing.mp4'}"),
        (f"{src}:5", "option column o2 is empty"),
    ]
    assert_reads_back(report)


def test_generic_jsonl_options_list_text_answer_and_bad_lines(tmp_path):
    tiny_mp4(tmp_path / "a.mp4")
    src = tmp_path / "qa.jsonl"
    src.write_text(
        "\n".join(
            [
                json.dumps(
                    {
                        "vid": "a.mp4",
                        "question": "Which?",
                        "choices": ["cat", "dog"],
                        "answer": "dog",
                        "start": 3,
                        "end": 1,
                    }
                ),
                json.dumps(
                    {"vid": "a.mp4", "question": "Which?", "choices": json.dumps(["cat", "dog"]), "answer": "dog"}
                ),
                "{not json",
                json.dumps({"vid": "a.mp4", "question": "Which?", "choices": ["cat", "cat"], "answer": 0}),
            ]
        )
        + "\n"
    )
    columns = Columns(video="vid", options="choices", start="start", end="end")

    report = convert("generic", src, tmp_path / "out.jsonl", columns=columns)

    [line] = read_lines(report.out)
    assert line["id"] == "qa_1" and line["options"] == ["cat", "dog"] and line["answer"] == "B"
    assert [(w.rsplit(":", 1)[1], r) for w, r in report.skipped] == [
        ("1", "start 3 must be before end 1"),
        ("3", "invalid JSON (Expecting property name enclosed in double quotes at column 2)"),
        ("4", "options are not distinct ('cat' appears twice)"),
    ]
    assert_reads_back(report)


def test_generic_names_a_missing_column(tmp_path):
    src = write_csv(tmp_path / "qa.csv", ["video", "question", "answer"], [["a.mp4", "q", "x"]])
    with pytest.raises(DataError, match=r"qa\.csv: missing column\(s\) questoin \(it has: video, question, answer\)"):
        convert("generic", src, tmp_path / "out.jsonl", columns=Columns(video="video", question="questoin"))
    assert not (tmp_path / "out.jsonl").exists()


def test_nothing_converted_writes_nothing(tmp_path):
    src = write_csv(tmp_path / "qa.csv", ["video", "question", "answer"], [["gone.mp4", "q", "x"]])
    with pytest.raises(
        DataError,
        match=r"nothing to write: no row converted \(1 skipped; first: .*qa\.csv:2: "
        r"video file not found",
    ):
        convert("generic", src, tmp_path / "out.jsonl", columns=Columns(video="video"))
    assert not (tmp_path / "out.jsonl").exists()


# ------------------------------------------------------------------------------------------------ image QA


def test_imageqa_saved_dataset_writes_pngs_next_to_the_manifest(tmp_path):
    import datasets
    from PIL import Image
    from skimage import data as photos

    pictures = {"astronaut": photos.astronaut(), "coffee": photos.coffee(), "chelsea": photos.chelsea()}
    ds = datasets.Dataset.from_dict(
        {
            "image": [Image.fromarray(a) for a in pictures.values()],
            "name": list(pictures),
            "question": ["What is the person wearing?", "What is in the cup?", "What animal is this?"],
            "choices": [["a spacesuit", "a suit", "a dress"], ["tea", "coffee"], ["a dog", "a cat", "a fox", "an owl"]],
            "answer": [0, 1, 1],
        },
        features=datasets.Features(
            {
                "image": datasets.Image(),
                "name": datasets.Value("string"),
                "question": datasets.Value("string"),
                "choices": datasets.List(datasets.Value("string")),
                "answer": datasets.Value("int64"),
            }
        ),
    )
    datasets.DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "photos_qa"))
    out = tmp_path / "stage1" / "static_train.jsonl"

    report = convert(
        "imageqa",
        tmp_path / "photos_qa",
        out,
        columns=Columns(image="image", id="name", options="choices"),
        split="train",
    )

    lines = read_lines(out)
    assert [(line["id"], line["image"], line["answer"]) for line in lines] == [
        ("astronaut", "images/astronaut.png", "A"),
        ("coffee", "images/coffee.png", "B"),
        ("chelsea", "images/chelsea.png", "B"),
    ]
    for line in lines:
        with Image.open(out.parent / line["image"]) as im:
            assert im.format == "PNG"
            np.testing.assert_array_equal(np.asarray(im), pictures[line["id"]])  # lossless, same pixels
    assert report.skipped == []
    # Stage 1: each photograph becomes a static pseudo-video, its frames identical copies.
    from scorerl.data.frames import FrameSampling, load_clip

    samples, _ = read_manifest(out)
    clip = load_clip(samples[0], FrameSampling(num_frames=4, size=64))
    assert clip.frames.shape == (4, 64, 64, 3) and clip.seconds_per_frame is None
    assert all((clip.frames[t] == clip.frames[0]).all() for t in range(4)) and clip.frames.std() > 10
    assert_reads_back(report)


def test_imageqa_imagefolder_points_at_its_files(tmp_path):
    from scorerl.data.video_io import write_png

    folder = tmp_path / "folder" / "train"
    write_png(folder / "a.png", np.zeros((8, 8, 3), np.uint8))
    (folder / "metadata.jsonl").write_text(
        json.dumps({"file_name": "a.png", "question": "What colour?", "answer": "black"})
        + "\n"
        + json.dumps({"file_name": "b.png", "question": "What colour?", "answer": "white"})
        + "\n"
    )

    report = convert("imageqa", tmp_path / "folder", tmp_path / "img.jsonl", split="train")

    [line] = read_lines(report.out)
    assert line == {
        "id": "train_0",
        "image": "folder/train/a.png",
        "question": "What colour?",
        "answer": "black",
        "meta": {"source": "imageqa", "source_answer": "black"},
    }
    assert report.skipped == [(f"{folder / 'metadata.jsonl'}:2", f"image file not found: {folder / 'b.png'}")]
    assert_reads_back(report)
    with pytest.raises(DataError, match="its splits train have one: pass --split"):
        convert("imageqa", tmp_path / "folder", tmp_path / "img2.jsonl")


# ------------------------------------------------------------------------------------------------ answer rules


@pytest.mark.parametrize(
    "answer, how, letter",
    [
        ("C", "auto", "C"),
        (2, "auto", "C"),
        ("up", "auto", "C"),
        ("2", "auto", "C"),
        (2.0, "index", "C"),
        ("c", "letter", "C"),
        ("(C)", "letter", "C"),
        ("C.", "letter", "C"),
        (" up ", "text", "C"),
    ],
)
def test_choice_reads_every_answer_form(answer, how, letter):
    assert choice(["left", "right", "up"], answer, how) == (["left", "right", "up"], letter)


def test_choice_letter_wins_over_option_text_in_auto_like_read_manifest():
    assert choice(["B", "A"], "A")[1] == "A"  # read_manifest reads "A" as the letter A too
    assert choice(["B", "A"], "A", "text")[1] == "B"
    with pytest.raises(ValueError, match="answer 3 is not an index 0-2"):
        choice(["x", "y", "z"], 3, "index")
    with pytest.raises(ValueError, match="11 options; the manifest takes 2-10"):
        choice([str(i) for i in range(11)], 0)


def test_parse_lettered_question_forms():
    assert parse_lettered_question("Q?\nA. x\nB. y") == ("Q?", ["x", "y"], "")
    assert parse_lettered_question("Q?\nOptions:\n(A) x\n(B) y\n(C) z\nPick one.") == (
        "Q?",
        ["x", "y", "z"],
        "Pick one.",
    )
    assert parse_lettered_question("A. x\nB. y") is None  # no question before the options
    assert parse_lettered_question("Q?\nA. x\nC. y") is None  # one option only (letters out of order)
    assert parse_lettered_question("A man walks in.\nWhy?") is None


def test_write_manifest_atomic_and_summary(tmp_path):
    tiny_mp4(tmp_path / "v.mp4")
    conv = Conversion(
        [{"id": "a", "video": str(tmp_path / "v.mp4"), "question": "q?", "answer": "yes"}],
        [(f"src.csv:{i}", "bad") for i in range(12)],
    )
    out = tmp_path / "m.jsonl"
    out.write_text("old\n")
    report = write_manifest(conv, out)
    assert read_lines(out) == [{"id": "a", "video": "v.mp4", "question": "q?", "answer": "yes"}]
    assert not list(tmp_path.glob(".m.jsonl.tmp*"))
    text = summary_lines(report)
    assert text[0] == f"wrote 1 line(s) to {out}; skipped 12"
    assert len(text) == 12 and text[1] == "  src.csv:0: bad" and text[-1] == "  ... and 2 more"


# ------------------------------------------------------------------------------------------------ CLI


def load_cli():
    """The converters' command line (scorerl/data/convert_cli.py, behind data_pipelines/convert.py)."""
    from scorerl.data import convert_cli

    return convert_cli


def test_cli_converts_and_prints_summary(tmp_path, capsys):
    cli = load_cli()
    csv_path, vmap, root = nextqa_files(tmp_path)
    out = tmp_path / "nextqa.jsonl"

    rc = cli.main(["--from", "nextqa", str(csv_path), "--map", str(vmap), "--video-root", str(root), "--out", str(out)])

    printed = capsys.readouterr().out.splitlines()
    assert rc == 0
    assert printed[0] == f"convert: nextqa: wrote 2 line(s) to {out}; skipped 1"
    assert printed[1].startswith(f"  {csv_path}:4: video file not found: ")
    assert [line["answer"] for line in read_lines(out)] == ["D", "A"]

    rc = cli.main(
        [
            "--from",
            "nextqa",
            str(csv_path),
            "--map",
            str(vmap),
            "--video-root",
            str(root),
            "--out",
            str(tmp_path / "all.jsonl"),
            "--no-check-files",
        ]
    )
    assert rc == 0 and len(read_lines(tmp_path / "all.jsonl")) == 3


def test_cli_rejects_options_of_another_format(tmp_path, capsys):
    cli = load_cli()
    csv_path, vmap, _ = nextqa_files(tmp_path)
    rc = cli.main(["--from", "mvbench", str(csv_path), "--map", str(vmap), "--out", str(tmp_path / "x.jsonl")])
    assert rc == 2
    assert "convert: error: --map does not apply to --from mvbench (only nextqa)" in capsys.readouterr().err
    with pytest.raises(ScoreRLError, match="--answer-col does not apply to --from videomme"):
        cli.reader_options(
            cli.build_parser().parse_args(["--from", "videomme", "x", "--out", "y", "--answer-col", "a"])
        )


def test_scorerl_data_convert_and_the_pipeline_script(tmp_path):
    import subprocess
    import sys

    from scorerl.cli import main

    csv_path, vmap, root = nextqa_files(tmp_path)
    assert (
        main(
            [
                "data",
                "convert",
                "--from",
                "nextqa",
                str(csv_path),
                "--map",
                str(vmap),
                "--video-root",
                str(root),
                "--out",
                str(tmp_path / "a.jsonl"),
            ]
        )
        == 0
    )
    script = subprocess.run(
        [
            sys.executable,
            str(ROOT / "data_pipelines" / "convert.py"),
            "--from",
            "nextqa",
            str(csv_path),
            "--map",
            str(vmap),
            "--video-root",
            str(root),
            "--out",
            str(tmp_path / "b.jsonl"),
        ],
        capture_output=True,
        text=True,
    )
    assert script.returncode == 0, script.stderr
    assert (tmp_path / "a.jsonl").read_text() == (tmp_path / "b.jsonl").read_text() != ""
