"""The command line of the converters: `scorerl data convert --from FORMAT SRC --out MANIFEST [options]`
(also `python data_pipelines/convert.py ...`), a video-QA data set's annotation file -> manifest v2.

Formats (each reader's docstring in scorerl/data/convert/<format>.py lists the columns it expects):
  nextqa       NExT-QA train/val/test.csv; --map map_vid_vidorID.json, --video-root NExTVideo/
  mvbench      MVBench json/<task>.json, or the json/ folder; --video-root MVBench/video/ (task folders added)
  videomme     Video-MME videomme/test-*.parquet; --video-root the folder of <videoID>.mp4
  llava_video  LLaVA-Video-178K conversation JSON; --video-root the folder its `video` paths start from
  generic      .json / .jsonl / .csv / .tsv / .parquet with the columns named by --*-col options
  imageqa      image QA: a `datasets` save_to_disk folder, an imagefolder (metadata.jsonl), or a table file;
               images held in the dataset are written as images/<id>.png next to the manifest

A row that cannot be used (missing video, bad answer, ...) is skipped; the summary says how many and why.
The argument definitions (add_arguments) and the run (run) are reused by `scorerl data convert`.
"""

from __future__ import annotations

import argparse
import sys

from scorerl.errors import ScoreRLError

FORMATS = ("nextqa", "mvbench", "videomme", "llava_video", "generic", "imageqa")

EXAMPLES = """examples:
  scorerl data convert --from nextqa NExT-QA/val.csv --map NExT-QA/map_vid_vidorID.json \\
      --video-root NExTVideo --out data/nextqa_val.jsonl
  scorerl data convert --from mvbench MVBench/json --video-root MVBench/video --out data/mvbench.jsonl
  scorerl data convert --from videomme videomme/test-00000-of-00001.parquet --video-root data \\
      --out data/videomme.jsonl
  scorerl data convert --from llava_video 0_30_s_academic_v0_1/0_30_s_academic_mc_v0_1_qa_processed.json \\
      --video-root LLaVA-Video-178K --out data/llava_mc.jsonl
  scorerl data convert --from generic qa.csv --video-col clip --question-col q --option-cols a,b,c,d \\
      --answer-col label --answer-format index --family-col kind --out data/qa.jsonl
  scorerl data convert --from imageqa my_dataset_dir --split train --options-col choices \\
      --out data/static_train.jsonl
"""

# Options that only some formats read: naming one for another format is a mistake worth stopping at.
_COLUMN_DESTS = (
    "open_ended",
    "id_col",
    "video_col",
    "image_col",
    "question_col",
    "options_col",
    "option_cols",
    "answer_col",
    "answer_format",
    "start_col",
    "end_col",
    "fps_col",
    "family_col",
    "meta_cols",
)
_ONLY_FOR = {
    "map_json": ("nextqa",),
    "no_task_dirs": ("mvbench",),
    "split": ("imageqa",),
    "image_dir": ("generic", "imageqa"),
    **{dest: ("generic", "imageqa") for dest in _COLUMN_DESTS},
}


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Every option of the converter, onto `p` (a fresh parser or a `scorerl data convert` subparser)."""
    p.add_argument(
        "--from",
        dest="fmt",
        required=True,
        choices=FORMATS,
        metavar="FORMAT",
        help=f"source layout: {', '.join(FORMATS)}",
    )
    p.add_argument("src", metavar="SRC", help="the annotation file (or folder: mvbench json/, imageqa dataset)")
    p.add_argument("--out", required=True, metavar="MANIFEST", help="manifest to write (.jsonl); written atomically")
    p.add_argument(
        "--video-root",
        "--image-root",
        dest="media_root",
        default=None,
        metavar="DIR",
        help="folder relative media paths start from (default: the source's folder)",
    )
    p.add_argument(
        "--no-check-files",
        dest="check_files",
        action="store_false",
        help="write lines whose media file does not exist (default: skip them, with the reason)",
    )
    g = p.add_argument_group("nextqa / mvbench")
    g.add_argument(
        "--map",
        dest="map_json",
        default=None,
        metavar="FILE",
        help='nextqa: map_vid_vidorID.json ({video id: "folder/vidorid"}); without it the file is '
        "<video root>/<video id>.mp4",
    )
    g.add_argument(
        "--no-task-dirs",
        action="store_true",
        help="mvbench: join --video-root and `video` directly, not through each task's folder",
    )
    g = p.add_argument_group("generic / imageqa (column names)")
    g.add_argument("--id-col", default=None, metavar="COL", help="sample id (default: <source name>_<row number>)")
    g.add_argument("--video-col", default=None, metavar="COL", help="video path (generic: give this or --image-col)")
    g.add_argument(
        "--image-col", default=None, metavar="COL", help="image path or embedded image (imageqa default: image)"
    )
    g.add_argument("--question-col", default=None, metavar="COL", help="question (default: question)")
    g.add_argument("--options-col", default=None, metavar="COL", help="options as a list or a JSON-encoded list")
    g.add_argument(
        "--option-cols",
        type=_names,
        default=None,
        metavar="COL,COL,...",
        help="options one per column, e.g. a0,a1,a2,a3",
    )
    g.add_argument(
        "--open-ended",
        action="store_true",
        help="the questions have no options (needed when a column is named like options: choices, ...)",
    )
    g.add_argument("--answer-col", default=None, metavar="COL", help="answer (default: answer)")
    g.add_argument(
        "--answer-format",
        choices=("auto", "letter", "index", "text"),
        default=None,
        help="how the answer names its option (default auto: letter, index, then option text)",
    )
    g.add_argument("--start-col", default=None, metavar="COL", help="clip start (seconds)")
    g.add_argument("--end-col", default=None, metavar="COL", help="clip end (seconds)")
    g.add_argument("--fps-col", default=None, metavar="COL", help="per-sample frame sampling rate")
    g.add_argument("--family-col", default=None, metavar="COL", help="task / question type, for per-family metrics")
    g.add_argument(
        "--meta-cols",
        type=_names,
        default=None,
        metavar="COL,COL,...",
        help="columns copied into meta, e.g. duration,source",
    )
    g.add_argument("--split", default=None, help="imageqa: the split of a saved DatasetDict / imagefolder")
    g.add_argument(
        "--image-dir",
        default=None,
        metavar="DIR",
        help="where embedded images are written, relative to the manifest (default: images)",
    )
    return p


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="convert.py",
        description=__doc__.splitlines()[0],
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return add_arguments(p)


def reader_options(args: argparse.Namespace) -> dict:
    """The keyword arguments of the chosen reader (scorerl.data.convert.READERS); ScoreRLError for an option
    that does not apply to the format."""
    from scorerl.data.convert import Columns

    for dest, formats in _ONLY_FOR.items():
        value = getattr(args, dest, None)
        if value not in (None, False, []) and args.fmt not in formats:
            flag = "--map" if dest == "map_json" else "--" + dest.replace("_", "-")
            raise ScoreRLError(f"{flag} does not apply to --from {args.fmt} (only {', '.join(formats)})")
    options = {"media_root": args.media_root, "check_files": args.check_files}
    if args.fmt == "nextqa":
        options["map_json"] = args.map_json
    elif args.fmt == "mvbench":
        options["task_dirs"] = not args.no_task_dirs
    elif args.fmt in ("generic", "imageqa"):
        image = args.image_col or ("image" if args.fmt == "imageqa" else None)
        options["columns"] = Columns(
            question=args.question_col or "question",
            answer=args.answer_col or "answer",
            id=args.id_col,
            video=args.video_col,
            image=image,
            options=args.options_col,
            option_cols=tuple(args.option_cols or ()),
            start=args.start_col,
            end=args.end_col,
            fps=args.fps_col,
            family=args.family_col,
            meta=tuple(args.meta_cols or ()),
            open_ended=args.open_ended,
        )
        options["answer_format"] = args.answer_format or "auto"
        if args.fmt == "imageqa":
            options["split"] = args.split
    return options


def run(args: argparse.Namespace, prog: str = "convert"):
    """Convert as `args` say, print the summary (and up to 10 skipped rows with reasons), return the
    ConvertReport. Raises ScoreRLError (a bad option, an unreadable source, nothing converted)."""
    from scorerl.data.convert import convert, summary_lines

    report = convert(args.fmt, args.src, args.out, image_dir=args.image_dir or "images", **reader_options(args))
    lines = summary_lines(report)
    print(f"{prog}: {args.fmt}: {lines[0]}", flush=True)
    for line in lines[1:]:
        print(line, flush=True)
    return report


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except ScoreRLError as e:
        print(f"convert: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
