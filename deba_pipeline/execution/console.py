"""Where the package's log lines go when `deba` runs: progress (INFO: a finished run, a reused
one, a measured table) to stdout, notes that need a look (WARNING: a busy machine, a cache entry
set aside) to stderr, each line as it is. `-q` keeps only the warnings; `-v` adds DEBUG and the
libraries' own lines (Ray's, the elastic agent's). Used as a library, the package configures
nothing: Python's last-resort handler still shows its warnings."""

from __future__ import annotations

import logging
import sys

PACKAGE = "deba_pipeline"


class _Console(logging.StreamHandler):
    """A handler that writes to sys.stdout or sys.stderr as they are when a line is logged (a
    test's capture, a rank's redirected stream), not as they were when it was made."""

    def __init__(self, which: str):
        self.which = which
        super().__init__()

    @property
    def stream(self):
        return getattr(sys, self.which)

    @stream.setter
    def stream(self, _):  # StreamHandler.__init__ sets it; the property decides
        pass


def configure(level: int = logging.INFO) -> None:
    """Send the package's lines to the console at `level` (idempotent: replaces its handlers)."""
    out, err = _Console("stdout"), _Console("stderr")
    out.addFilter(lambda record: record.levelno < logging.WARNING)
    err.setLevel(logging.WARNING)
    for handler in (out, err):
        handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger(PACKAGE)
    logger.handlers[:] = [out, err]
    logger.setLevel(level)
    logger.propagate = False


def level() -> int:
    """The package's level now, for the processes a stage starts (torchrun's ranks)."""
    return logging.getLogger(PACKAGE).getEffectiveLevel()
