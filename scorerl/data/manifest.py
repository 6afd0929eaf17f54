"""JSONL manifests, version 2 (docs/data.md): one question per line, multiple choice or open-ended.

    {"id": "train_00000", "video": "videos/train_00000.mp4",   # or "image": "images/x.png"; relative to the file
     "question": "...",
     "options": ["..", "..", ".."],                              # 2-10; absent = an open-ended question
     "answer": "B",                                              # the letter, the 0-based index, or the option's
                                                                 # text; open-ended: the free-text answer
     "start": 3.5, "end": 12.0, "fps": 2,                        # optional: clip window (s), sampling rate
     "family": "direction",                                      # optional: question family, for per-family metrics
     "meta": {...}}                                              # optional: passed through in Sample.meta
Version-1 files (2-4 options, a letter answer, extra top-level fields) read unchanged: extra fields go to meta.

A bad line stops the run with `DataError("FILE:LINE: reason")`, or with skip_bad=True is skipped, logged and
returned in `skipped`, so a long evaluation can report exactly what it left out.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Callable

from scorerl.errors import DataError
from scorerl.types import Sample

log = logging.getLogger(__name__)

LETTERS = ("A", "B", "C", "D", "E", "F", "G", "H", "I", "J")  # up to 10 options
PROMPT_SUFFIX = "Answer with the option's letter from the given choices directly."
# answer_format=option: the model answers with the option's text, and an option is chosen by its likelihood.
# A small model fitted from scratch learns "what colour is it" long before it learns the indirection
# "which letter names that colour", so the built-in world uses this format.
PROMPT_SUFFIX_OPTION = "Answer with the option's text."
REQUIRED = ("id", "question", "answer")
_FIELDS = (*REQUIRED, "options", "video", "image", "family", "meta", "start", "end", "fps", "format_version")


def _parse_line(text: str, base: Path) -> Sample:
    """One manifest line -> Sample; raises ValueError with the reason (the caller adds FILE:LINE)."""
    try:
        rec = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"invalid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(rec, dict):
        raise ValueError(f"expected a JSON object, got {type(rec).__name__}")
    missing = [k for k in REQUIRED if k not in rec]
    kinds = [k for k in ("video", "image") if k in rec]
    if not kinds:
        missing.append("video or image")
    if missing:
        raise ValueError(f"missing field(s): {', '.join(missing)}")
    if len(kinds) > 1:
        raise ValueError("has both video and image; give one")
    kind = kinds[0]
    for key in ("id", "question", kind):
        if not isinstance(rec[key], str) or not rec[key]:
            raise ValueError(f"{key} must be a non-empty string")
    options, answer, index = _answer(rec)
    start, end, fps = _clip(rec, kind)
    media = Path(rec[kind]).expanduser()
    media = (media if media.is_absolute() else base / media).resolve()
    if not media.is_file():
        raise ValueError(f"{kind} file not found: {media}")
    meta = rec.get("meta", {})
    if not isinstance(meta, dict):
        raise ValueError("meta must be a JSON object")
    meta = {**{k: v for k, v in rec.items() if k not in _FIELDS}, **meta}  # v1's extra fields, then v2's meta
    return Sample(
        id=rec["id"],
        media=media,
        kind=kind,
        question=rec["question"],
        options=options,
        answer=answer,
        answer_index=index,
        family=str(rec.get("family", "")),
        meta=meta,
        start=start,
        end=end,
        fps=fps,
    )


def _answer(rec: dict) -> tuple[list[str], str, int]:
    """(options, answer, index): multiple choice with the answer as letter, index or option text -> its letter
    and index (a letter wins over an option whose text is a letter); open-ended (no options) -> text, -1."""
    answer = rec["answer"]
    if "options" not in rec or rec["options"] is None:
        if not isinstance(answer, str) or not answer.strip():
            raise ValueError("an open-ended answer must be a non-empty string")
        return [], answer, -1
    options = rec["options"]
    if (
        not isinstance(options, list)
        or not 2 <= len(options) <= len(LETTERS)
        or not all(isinstance(o, str) and o for o in options)
    ):
        raise ValueError(f"options must be a list of 2-{len(LETTERS)} non-empty strings")
    if len(set(options)) != len(options):
        raise ValueError("options must be distinct")
    letters = LETTERS[: len(options)]
    index = answer_index(options, answer)
    if index is None:
        raise ValueError(
            f"answer {answer!r} is neither a letter {letters[0]}-{letters[-1]}, an index "
            f"0-{len(options) - 1} nor one of the {len(options)} options' texts"
        )
    return list(options), letters[index], index


def answer_index(options: list[str], answer) -> int | None:
    """The option an answer names, in this order: its letter ("C"), its 0-based int index, its exact text; None
    when it names none. The one rule manifests are read by (and converters follow)."""
    if isinstance(answer, str) and answer in LETTERS[: len(options)]:
        return LETTERS.index(answer)
    if isinstance(answer, int) and not isinstance(answer, bool):
        return answer if 0 <= answer < len(options) else None
    if isinstance(answer, str) and answer in options:
        return options.index(answer)
    return None


def _clip(rec: dict, kind: str) -> tuple[float | None, float | None, float | None]:
    """(start, end, fps), each None when absent; a window only for a video, start < end, fps > 0."""

    def number(key):
        value = rec.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value < 0:
            raise ValueError(f"{key} must be a number >= 0, got {value!r}")
        return float(value)

    start, end, fps = number("start"), number("end"), number("fps")
    if (start is not None or end is not None) and kind != "video":
        raise ValueError("start/end (a clip window) need a video, not an image")
    if start is not None and end is not None and start >= end:
        raise ValueError(f"start {start} must be before end {end}")
    if fps is not None and fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    return start, end, fps


def read_manifest(
    path: str | Path, skip_bad: bool = False, allow_empty: bool = False
) -> tuple[list[Sample], list[tuple[int, str]]]:
    """(samples, skipped [(line, reason)]) of a JSONL manifest; blank lines are ignored.

    Raises DataError "FILE:LINE: reason" on the first bad line unless skip_bad, and always when the file is
    missing or (unless allow_empty: a caller that reports the skipped lines first) yields no sample at all.
    """
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: manifest not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read manifest: {e}") from None
    base = path.resolve().parent
    samples: list[Sample] = []
    skipped: list[tuple[int, str]] = []
    first_line: dict[str, int] = {}  # id -> line; ids key feature caches, so they must be unique
    for lineno, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            sample = _parse_line(raw, base)
            if sample.id in first_line:
                raise ValueError(f"duplicate id {sample.id!r} (first on line {first_line[sample.id]})")
        except ValueError as e:
            if not skip_bad:
                raise DataError(f"{path}:{lineno}: {e}") from None
            log.warning("%s:%d: skipped: %s", path, lineno, e)
            skipped.append((lineno, str(e)))
            continue
        sample.line, sample.manifest = lineno, str(path)
        first_line[sample.id] = lineno
        samples.append(sample)
    if skipped:
        log.warning("%s: skipped %d bad line(s)", path, len(skipped))
    if not samples and not allow_empty:
        raise DataError(f"{path}: no usable samples" + (f" ({len(skipped)} bad lines skipped)" if skipped else ""))
    return samples, skipped


# `scheme:name` manifest specs, e.g. `world:test`: a client registers a resolver (the built-in world does, in
# scorerl.world); the core knows no scheme itself.
_SCHEMES: dict[str, Callable[[str], Path]] = {}


def register_manifest_scheme(scheme: str, resolve: Callable[[str], Path]) -> None:
    """Let `scheme:NAME` manifest specs resolve to resolve(NAME), a path (or DataError naming what is missing)."""
    _SCHEMES[scheme] = resolve


def resolve_manifest(spec: str | Path) -> Path:
    """A manifest spec as a path: `scheme:NAME` through its registered resolver, anything else is a path.
    Raises DataError if the file is missing."""
    spec = str(spec)
    scheme, sep, name = spec.partition(":")
    if sep and scheme in _SCHEMES:
        path = _SCHEMES[scheme](name)
    else:
        path = Path(spec).expanduser()
    if not path.is_file():
        raise DataError(f"{spec}: manifest not found" + (f" at {path}" if str(path) != spec else ""))
    return path


def format_prompt(sample: Sample, answer_format: str = "letter") -> str:
    """Question, lettered options and the instruction for the answer format (letter: LLaVA-Video style); an
    open-ended question as it is."""
    if sample.open_ended:
        return sample.question
    lines = [sample.question]
    lines += [f"{letter}. {option}" for letter, option in zip(LETTERS, sample.options)]
    lines.append(PROMPT_SUFFIX if answer_format == "letter" else PROMPT_SUFFIX_OPTION)
    return "\n".join(lines)


def answer_choices(sample: Sample, answer_format: str = "letter") -> list[str]:
    """The texts an answer is chosen among (the letters, or the options' texts), in option order; an open-ended
    question has only its answer."""
    if sample.open_ended:
        return [sample.answer]
    if answer_format == "letter":
        return list(LETTERS[: len(sample.options)])
    return list(sample.options)


def answer_target(sample: Sample, answer_format: str = "letter") -> str:
    """The ground-truth answer text whose cross-entropy is the reward signal (open-ended: the answer itself)."""
    if sample.open_ended:
        return sample.answer
    return answer_choices(sample, answer_format)[sample.answer_index]


def manifest_hash(path: str | Path) -> str:
    """sha256 hex of the manifest's bytes, recorded with results so a number names the exact data it came from."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def where(sample: Sample) -> str:
    """`FILE:LINE (id 'x')` of a sample, for messages about it."""
    return f"{sample.manifest or '<manifest>'}:{sample.line} (id {sample.id!r})"


def usable_media(samples: list[Sample], load, skip_bad: bool) -> tuple[list[Sample], list[dict]]:
    """(samples whose media `load(sample)` reads, skipped [{id, media, line, reason}]). A video or image that cannot
    be read (corrupt, truncated, not a video) stops the run naming its manifest line unless skip_bad, which skips it,
    logs it with its id, file and reason, and counts it."""
    good, bad = [], []
    for sample in samples:
        try:
            load(sample)
        except DataError as e:
            if not skip_bad:
                raise DataError(f"{where(sample)}: {e} (set data.skip_bad=true to skip unreadable media)") from None
            log.warning("%s: skipped: %s", where(sample), e)
            bad.append({"id": sample.id, "media": str(sample.media), "line": sample.line, "reason": str(e)})
            continue
        good.append(sample)
    if bad:
        log.warning("skipped %d sample(s) whose media could not be read", len(bad))
    return good, bad
