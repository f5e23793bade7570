"""physgen's messages: the ``logging`` module, under the ``physgen`` logger.

Library code logs (``logging.getLogger(__name__)``) and never configures logging at import. Two entry points
configure it:

* :func:`configure` (the command line: ``-q`` warnings only, the default progress and results, ``-v`` debug):
  one stderr handler on the ``physgen`` logger, plain lines (``physgen: warning: ...`` for warnings), and Python
  warnings routed through it, so they print as one line instead of two;
* :func:`ensure_handler` (a library call that was asked for progress, e.g. ``fit(progress=True)``): when nothing
  is configured at all (no handler on ``physgen`` or the root logger), the same stderr handler at INFO, so the
  progress lines a user asked for are seen; an application that configures logging keeps full control.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

__all__ = ["configure", "reset", "ensure_handler", "LOGGER"]

LOGGER = "physgen"
_MARK = "_physgen_handler"


class _Format(logging.Formatter):
    """INFO and DEBUG as the bare message; WARNING and above as ``physgen: warning: message`` (one line)."""

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.name == "py.warnings":  # "file:line: Category: message\n  source" -> "Category: message"
            first = msg.strip().splitlines()[0] if msg.strip() else msg
            parts = first.split(": ", 1)
            msg = parts[1] if len(parts) == 2 and ":" in parts[0] else first
        if record.levelno >= logging.WARNING:
            return f"physgen: {record.levelname.lower()}: {msg}"
        return msg


class _Stderr(logging.StreamHandler):
    """A stream handler on whatever ``sys.stderr`` is at each message (a redirect or capture is followed)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def _handler(stream: TextIO | None) -> logging.Handler:
    h: logging.Handler = _Stderr() if stream is None else logging.StreamHandler(stream)
    h.setFormatter(_Format())
    setattr(h, _MARK, True)
    return h


def configure(verbosity: int = 0, *, stream: TextIO | None = None) -> logging.Logger:
    """Configure physgen's output for a command line run.

    Args:
        verbosity: -1 (``-q``): warnings and errors only; 0: progress and results; 1 or more (``-v``): debug.
        stream: where to write (default ``sys.stderr``).

    Returns:
        The ``physgen`` logger. Calling again replaces the handler this function installed before;
        :func:`reset` removes it (the command line does so when its command returns).
    """
    level = logging.WARNING if verbosity < 0 else logging.INFO if verbosity == 0 else logging.DEBUG
    reset()
    logger = logging.getLogger(LOGGER)
    handler = _handler(stream)
    logger.addHandler(handler)
    logger.setLevel(level)
    logging.captureWarnings(True)  # warnings.warn(...) -> the "py.warnings" logger, printed by the same handler
    logging.getLogger("py.warnings").addHandler(handler)
    return logger


def reset() -> None:
    """Undo :func:`configure`: remove its handlers, the level it set and the routing of Python warnings."""
    for name in (LOGGER, "py.warnings"):
        lg = logging.getLogger(name)
        mine = [h for h in lg.handlers if getattr(h, _MARK, False)]
        for h in mine:
            lg.removeHandler(h)
        if mine and name == LOGGER:
            lg.setLevel(logging.NOTSET)
            logging.captureWarnings(False)


def ensure_handler() -> None:
    """Make INFO messages of physgen visible when the application configured no logging at all (module docstring)."""
    logger = logging.getLogger(LOGGER)
    if logger.handlers or logging.getLogger().handlers:
        return
    logger.addHandler(_handler(None))
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
