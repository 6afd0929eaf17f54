"""Infrastructure every layer above may use: the one atomic writer, checkpoints and their state codec, progress."""
