"""User-facing errors: the CLI prints these as one clear line instead of a stack trace."""


class ScoreRLError(Exception):
    """A problem with the user's input (file, config, data) that the user can fix."""


class ConfigError(ScoreRLError):
    """A config key, type or value is wrong; the message names the file, line and dotted key."""


class DataError(ScoreRLError):
    """A manifest line, video or image cannot be used; the message names the file (and line)."""


class EnvError(ScoreRLError):
    """The frozen MLLM cannot take this input (shape, width, empty mask, missing checkpoint)."""


class CheckpointError(ScoreRLError):
    """A checkpoint is missing, incomplete, or belongs to a different run."""


class DivergedError(ScoreRLError):
    """Training produced a non-finite loss, gradient or weight; the run stopped before it reached a checkpoint."""


class WriteError(ScoreRLError):
    """A file or folder could not be written (disk full, read-only, no permission), or writing it would touch
    files scorerl did not write; the message names the path. Nothing half written is left behind."""
