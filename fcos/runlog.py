"""Send a step's logging, warnings, tqdm bars and prints to a log file (used by pipeline steps)."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def logging_to(path: str | Path | None, level: int = logging.INFO) -> Iterator[None]:
    """Within the block, stdout, stderr and the ``fcos`` loggers write to ``path`` (appending).

    With ``path=None`` nothing is redirected. Exceptions still propagate (and are logged first),
    so the caller's exit status reports the failure.
    """
    if path is None:
        yield
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8", buffering=1) as handle:
        handler = logging.StreamHandler(handle)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
        root = logging.getLogger()
        old_level = root.level
        root.addHandler(handler)
        root.setLevel(level)
        logging.captureWarnings(True)
        try:
            with contextlib.redirect_stdout(handle), contextlib.redirect_stderr(handle):
                try:
                    yield
                except Exception:
                    logging.getLogger("fcos").exception("step failed")
                    raise
        finally:
            logging.captureWarnings(False)
            root.removeHandler(handler)
            root.setLevel(old_level)
