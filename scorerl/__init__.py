"""scorerl: learn which visual tokens of a video a frozen multimodal LLM needs (SCORE, arXiv 2603.26365)."""

__version__ = "0.1.0"
