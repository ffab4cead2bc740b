"""User-facing errors.

Every error a user can cause (bad file, bad shape, unknown name, out-of-range value) is raised as
an ``FcosError`` whose message is one line naming the file or key and what was expected. The CLI
prints it and exits with code 2; a traceback is a bug.
"""


class FcosError(Exception):
    """An error caused by user input; ``str(err)`` is one self-explaining line."""


class DataError(FcosError):
    """A dataset file is missing, malformed or inconsistent with its specification."""


class ConfigError(FcosError):
    """A configuration key or command-line value is unknown or out of range."""


class CheckpointError(FcosError):
    """A checkpoint is missing, unreadable or does not match what was asked of it."""


class ExportError(FcosError):
    """An exported model cannot be written, or does not reproduce the PyTorch model's outputs."""


class OutputError(FcosError):
    """An output path cannot be written: it names an input, a directory, an unwritable place,
    or the write failed (disk full)."""
