"""scorerl: learn which visual tokens of a video a frozen multimodal LLM needs (SCORE, arXiv 2603.26365).

    from scorerl import ScoreCompressor
    compressor = ScoreCompressor.from_pretrained("runs/quickstart")
    kept = compressor.select(visual_tokens, ratio=0.1, grid=(rows, cols))

    scorerl.patch(model, compressor, ratio=0.1)   # a transformers Qwen2.5-VL / LLaVA-OneVision: its own generate
    scorerl.unpatch(model)

The public names are imported on first use, so `import scorerl` stays light.
"""

from scorerl.version import __version__

__all__ = ["ScoreCompressor", "patch", "unpatch", "__version__"]


def __getattr__(name: str):
    if name == "ScoreCompressor":
        from scorerl.export import ScoreCompressor

        return ScoreCompressor
    if name in ("patch", "unpatch"):
        from scorerl.integrations import patch

        return getattr(patch, name)
    raise AttributeError(f"module 'scorerl' has no attribute {name!r}")
