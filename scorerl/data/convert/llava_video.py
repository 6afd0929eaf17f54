"""LLaVA-Video-178K: conversation JSON whose human turns hold the question with lettered options, the gpt turns
the answer; open-ended turns become open-ended questions."""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path

from scorerl.data.convert.core import (
    Conversion,
    Row,
    _collect,
    _existing,
    _field,
    _media,
    _record,
    _root,
    _text,
    choice,
    make_line,
)
from scorerl.data.convert.tables import _json_list_rows
from scorerl.data.manifest import LETTERS


def read_llava_video(src: str | Path, media_root: str | Path | None = None, check_files: bool = True) -> Conversion:
    """LLaVA-Video-178K conversations (lmms-lab/LLaVA-Video-178K */*_qa_processed.json, *_mc_*.json, ...).

    A JSON list of {id, video (relative to the data root), conversations: [{from: "human", value: "<image>\\n
    question"}, {from: "gpt", value: answer}, ... more turns], data_source}. Each human/gpt pair is one line,
    id "{id}_{turn}" (turn = 0, 1, ...). The <image>/<video> tag and its newline are removed. A question that lists
    lettered options ("A. ..." or "(A) ..." lines, possibly after an "Options:" line and before an instruction line
    such as "Answer with the option's letter from the given choices directly.") whose answer is a letter ("B",
    "B.", "(B)", "B. text") or one option's exact text is multiple choice; anything else is open-ended with the
    gpt text as the answer. The instruction line goes to meta.instruction.
    """
    src = _existing(src)
    root = _root(src, media_root)
    turns: list[Row] = []
    skipped: list[tuple[str, str]] = []
    for entry in _json_list_rows(src):
        try:
            turns += _llava_turns(entry)
        except ValueError as e:
            skipped.append((entry.where, str(e)))
    conv = _collect(turns, partial(_llava_line, root=root, check_files=check_files))
    return Conversion(conv.lines, skipped + conv.skipped)


def _llava_turns(entry: Row) -> list[Row]:
    """An entry's conversation -> one row per human/gpt pair; ValueError when the turns do not alternate."""
    rec = _record(entry.rec)
    convs = _field(rec, "conversations")
    if not isinstance(convs, list):
        raise ValueError("conversations must be a list")
    if len(convs) % 2 or not convs:
        raise ValueError(f"conversations has {len(convs)} messages; expected human/gpt pairs")
    rows = []
    for t in range(len(convs) // 2):
        human, gpt = convs[2 * t], convs[2 * t + 1]
        if not (
            isinstance(human, dict)
            and isinstance(gpt, dict)
            and human.get("from") == "human"
            and gpt.get("from") == "gpt"
        ):
            raise ValueError(f"turn {t}: expected a human message then a gpt message")
        rows.append(Row(f"{entry.where} turn {t}", t, (rec, t, human.get("value"), gpt.get("value"))))
    return rows


def _llava_line(row: Row, root: Path, check_files: bool) -> dict:
    """One human/gpt pair -> a multiple-choice line when the question lists options and the answer names one,
    an open-ended line otherwise."""
    rec, turn, asked, said = row.rec
    question = _TAG.sub("", _text(asked, "human value")).strip()
    answer = _text(said, "gpt value").strip()
    video = _media(root / _text(_field(rec, "video"), "video"), "video", check_files)
    entry_id = _text(_field(rec, "id"), "id")
    meta = {"source": "llava_video", "source_answer": said, "source_id": entry_id, "turn": turn}
    if rec.get("data_source") is not None:
        meta["data_source"] = rec["data_source"]
    parsed = parse_lettered_question(question)
    letter = _llava_letter(answer, parsed[1]) if parsed else None
    if parsed and letter:
        stem, options, instruction = parsed
        if instruction:
            meta["instruction"] = instruction
        options, letter = choice(options, letter, "letter")  # checks them: 2-10, distinct
        return make_line(f"{entry_id}_{turn}", "video", video, stem, options, letter, meta=meta)
    return make_line(f"{entry_id}_{turn}", "video", video, question, None, answer, meta=meta)


_TAG = re.compile(r"<(?:image|video)>\n?")


_OPTION_LINE = re.compile(r"\s*(?:\(([A-J])\)|([A-J])[.)])\s*(.*\S)?\s*$")


def parse_lettered_question(text: str) -> tuple[str, list[str], str] | None:
    """ "question\\nA. x\\nB. y\\ninstruction" -> (question, [x, y], instruction); None unless it lists at least
    two options lettered A, B, ... in order on their own lines after a non-empty question."""
    lines = text.split("\n")
    first = next((i for i, line in enumerate(lines) if _option_letter(line) == "A"), None)
    if first is None:
        return None
    options: list[str] = []
    for line in lines[first:]:
        m = _OPTION_LINE.fullmatch(line)
        if not m or (m.group(1) or m.group(2)) != LETTERS[len(options)] or not m.group(3):
            break
        options.append(m.group(3))
        if len(options) == len(LETTERS):
            break
    stem_lines = lines[:first]
    if stem_lines and re.fullmatch(r"\s*(options|choices)\s*:?\s*", stem_lines[-1], re.I):
        stem_lines = stem_lines[:-1]
    stem = "\n".join(stem_lines).strip()
    if len(options) < 2 or not stem:
        return None
    instruction = "\n".join(lines[first + len(options) :]).strip()
    return stem, options, instruction


def _option_letter(line: str) -> str | None:
    m = _OPTION_LINE.fullmatch(line)
    return (m.group(1) or m.group(2)) if m and m.group(3) else None


def _llava_letter(answer: str, options: list[str]) -> str | None:
    """The letter a gpt answer names ("B", "B.", "(B)", "B) x", "B. x", or an option's exact text), or None."""
    letters = LETTERS[: len(options)]
    for pattern in (r"\(([A-J])\)\.?(?:\s+.*)?", r"([A-J])[.):]?", r"([A-J])[.):]\s+.*"):
        m = re.fullmatch(pattern, answer, re.S)
        if m:
            return m.group(1) if m.group(1) in letters else None
    return letters[options.index(answer)] if answer in options else None
