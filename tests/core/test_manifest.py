"""Manifest reading: good lines become Samples; every kind of bad line names FILE:LINE or is skipped and counted."""

import hashlib
import json
import logging

import numpy as np
import pytest

from scorerl.data.manifest import (
    LETTERS,
    PROMPT_SUFFIX,
    Sample,
    format_prompt,
    manifest_hash,
    read_manifest,
    resolve_manifest,
)
from scorerl.data.video_io import write_png
from scorerl.errors import DataError


def _line(**over) -> dict:
    rec = {
        "id": "s0",
        "image": "img.png",
        "question": "What color?",
        "options": ["red", "blue", "green", "cyan"],
        "answer": "C",
        "family": "static_attr",
    }
    rec.update(over)
    return {k: v for k, v in rec.items() if v is not None}


@pytest.fixture
def folder(tmp_path):
    write_png(tmp_path / "img.png", np.zeros((16, 16, 3), np.uint8))
    (tmp_path / "clip.mp4").write_bytes(b"not decoded here")  # reading a manifest only checks the file exists
    return tmp_path


def _write(folder, lines) -> str:
    path = folder / "m.jsonl"
    path.write_text("".join((ln if isinstance(ln, str) else json.dumps(ln)) + "\n" for ln in lines))
    return path


def test_good_manifest(folder):
    path = _write(
        folder,
        [
            _line(),
            "",
            _line(
                id="s1",
                image=None,
                video="clip.mp4",
                answer="A",
                options=["x", "y"],
                family=None,
                scene={"kind": "video"},
            ),
        ],
    )
    samples, skipped = read_manifest(path)
    assert skipped == [] and len(samples) == 2
    a, b = samples
    assert isinstance(a, Sample) and a.kind == "image" and a.media == (folder / "img.png").resolve()
    assert a.answer == "C" and a.answer_index == 2 and a.options[a.answer_index] == "green"
    assert a.line == 1 and a.family == "static_attr" and a.meta == {}
    assert (
        b.kind == "video"
        and b.line == 3
        and b.answer_index == 0
        and b.family == ""
        and b.meta == {"scene": {"kind": "video"}}
    )


@pytest.mark.parametrize(
    "bad, reason",
    [
        ('{"id": "s1", "image": ', "invalid JSON"),
        ('["a list"]', "expected a JSON object"),
        (_line(id="s1", image="nope.png"), "image file not found"),
        (_line(id="s1", answer=None), "missing field(s): answer"),
        (_line(id="s1", image=None), "missing field(s): video or image"),
        (
            _line(id="s1", answer="E"),
            "answer 'E' is neither a letter A-D, an index 0-3 nor one of the 4 options' texts",
        ),
        (_line(id="s1", answer="D", options=["a", "b", "c"]), "answer 'D' is neither a letter A-C"),
        (_line(id="s1", answer=4), "an index 0-3"),
        (_line(id="s1", options=[str(i) for i in range(11)], answer="A"), "options must be a list of 2-10"),
        (_line(id="s1", options=None, answer=""), "an open-ended answer must be a non-empty string"),
        (_line(id="s1", image=None, video="clip.mp4", start=5, end=2), "must be before end"),
        (_line(id="s1", fps=-1), "fps must be a number >= 0"),
        (_line(id="s1", meta=[1]), "meta must be a JSON object"),
        (_line(id="s1", options=["a", "a", "b", "c"]), "distinct"),
        (_line(id="s1", options="abcd"), "options must be a list"),
        (_line(id="s0"), "duplicate id 's0' (first on line 1)"),
    ],
)
def test_bad_line_names_file_and_line(folder, bad, reason):
    path = _write(folder, [_line(), bad])
    with pytest.raises(DataError) as e:
        read_manifest(path)
    assert str(e.value).startswith(f"{path}:2: ") and reason in str(e.value)


def test_skip_bad_counts_and_logs(folder, caplog):
    lines = [_line(), "{oops", _line(id="s2"), _line(id="s3", image="missing.png"), _line(id="s4", question=None)]
    path = _write(folder, lines)
    with caplog.at_level(logging.WARNING, logger="scorerl.data.manifest"):
        samples, skipped = read_manifest(path, skip_bad=True)
    assert [s.id for s in samples] == ["s0", "s2"] and [s.line for s in samples] == [1, 3]
    assert [line for line, _ in skipped] == [2, 4, 5]
    assert "invalid JSON" in skipped[0][1] and "not found" in skipped[1][1] and "question" in skipped[2][1]
    assert f"{path}:4: skipped" in caplog.text and "skipped 3 bad line(s)" in caplog.text


def test_missing_or_empty_manifest(folder):
    with pytest.raises(DataError, match="manifest not found"):
        read_manifest(folder / "absent.jsonl")
    with pytest.raises(DataError, match=r"no usable samples \(1 bad lines skipped\)"):
        read_manifest(_write(folder, ["{bad"]), skip_bad=True)


def test_resolve_manifest(folder, monkeypatch):
    from scorerl.data import manifest

    monkeypatch.setattr(manifest, "_SCHEMES", {})
    with pytest.raises(DataError, match="mine:train: manifest not found"):  # an unregistered scheme is a path
        resolve_manifest("mine:train")
    manifest.register_manifest_scheme("mine", lambda name: folder / f"{name}.jsonl")
    with pytest.raises(DataError, match=f"mine:train: manifest not found at {folder / 'train.jsonl'}"):
        resolve_manifest("mine:train")
    (folder / "train.jsonl").write_text("")
    assert resolve_manifest("mine:train") == folder / "train.jsonl"
    path = _write(folder, [_line()])
    assert resolve_manifest(str(path)) == path
    with pytest.raises(DataError, match="manifest not found"):
        resolve_manifest(folder / "absent.jsonl")


def test_format_prompt(folder):
    (sample,), _ = read_manifest(_write(folder, [_line()]))
    assert format_prompt(sample) == (
        "What color?\nA. red\nB. blue\nC. green\nD. cyan\n"
        "Answer with the option's letter from the given choices directly."
    )
    assert PROMPT_SUFFIX in format_prompt(sample) and LETTERS[:4] == ("A", "B", "C", "D") and len(LETTERS) == 10


def test_manifest_hash(folder):
    path = _write(folder, [_line()])
    h = manifest_hash(path)
    assert h == hashlib.sha256(path.read_bytes()).hexdigest()
    path.write_text(path.read_text() + "\n")
    assert manifest_hash(path) != h


def test_manifest_v2_answers_open_ended_window_and_meta(folder):
    from scorerl.data.manifest import answer_target

    lines = [
        _line(id="next", options=["a", "b", "c", "d", "e"], answer=3),  # NExT-QA: 5, an index
        _line(id="text", options=["cat", "dog", "A", "B"], answer="dog"),  # the option's text
        _line(id="letter", options=["cat", "dog", "A", "B"], answer="A"),  # a letter wins
        {
            "id": "open",
            "video": "clip.mp4",
            "question": "What happens?",
            "answer": "a dog runs",
            "start": 1.5,
            "end": 4,
            "fps": 2,
            "meta": {"source": "llava_video"},
            "conversation_turn": 2,
        },  # open-ended, window
    ]
    (folder / "m.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (nxt, text, letter, open_), _ = read_manifest(folder / "m.jsonl")
    assert (nxt.answer, nxt.answer_index, len(nxt.options)) == ("D", 3, 5)
    assert (text.answer, text.answer_index) == ("B", 1) and (letter.answer, letter.answer_index) == ("A", 0)
    assert open_.open_ended and open_.answer == "a dog runs" and open_.answer_index == -1
    assert (open_.start, open_.end, open_.fps) == (1.5, 4.0, 2.0)
    assert open_.meta == {"source": "llava_video", "conversation_turn": 2}
    assert format_prompt(open_) == "What happens?" and answer_target(open_) == "a dog runs"
    assert format_prompt(nxt).splitlines()[5] == "E. e" and answer_target(nxt) == "D"
    with pytest.raises(DataError, match="need a video, not an image"):
        (folder / "bad.jsonl").write_text(json.dumps(_line(id="x", start=1)) + "\n")
        read_manifest(folder / "bad.jsonl")
