"""Training progress: a tqdm bar on a terminal, one plain line per epoch otherwise.

When stderr is a terminal the bar redraws in place. When it is not (a log file, a pipe, CI), carriage-return
frames would pile up on one line, so each epoch is one INFO line of the ``physgen.train`` logger instead
(``fit: epoch 12  train 1.2345  val 1.3456  best 1.3001  (8.1 s)``), at most one every ``every`` seconds so
that short epochs do not flood the log; the last epoch is always printed. ``progress=False`` prints nothing.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

__all__ = ["EpochProgress"]

log = logging.getLogger("physgen.train")


class EpochProgress:
    """Progress over epochs ``initial .. total`` (module docstring).

    Args:
        enabled: False prints nothing.
        total: the maximum number of epochs.
        initial: epochs already done (a resumed run).
        every: least number of seconds between two lines when stderr is not a terminal.
        stream: the stream whose terminal-ness decides (default ``sys.stderr``).
    """

    def __init__(self, enabled: bool, total: int, initial: int = 0, *, every: float = 5.0, stream: Any = None):
        self.enabled = bool(enabled)
        self.every = float(every)
        self._last = -float("inf")
        self._pending: str | None = None
        stream = sys.stderr if stream is None else stream
        tty = bool(getattr(stream, "isatty", lambda: False)())
        self.bar = None
        if self.enabled and tty:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc="fit", unit="epoch", leave=False, file=stream)
        elif self.enabled:
            from physgen.logs import ensure_handler

            ensure_handler()

    def epoch(self, entry: dict, best_val_loss: float, seconds: float) -> None:
        """Report one finished epoch (``entry``: the history entry, with epoch, train_loss, val_loss)."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(
                train=f"{entry['train_loss']:.4f}", val=f"{entry['val_loss']:.4f}", best=f"{best_val_loss:.4f}"
            )
            return
        line = (
            f"fit: epoch {entry['epoch']}  train {entry['train_loss']:.4f}  val {entry['val_loss']:.4f}  "
            f"best {best_val_loss:.4f}  ({seconds:.1f} s){'  partial' if entry.get('partial') else ''}"
        )
        now = time.monotonic()
        if now - self._last >= self.every:
            log.info(line)
            self._last, self._pending = now, None
        else:
            self._pending = line

    def close(self) -> None:
        """Close the bar, or print the last epoch's line if the time limit held it back."""
        if self.bar is not None:
            self.bar.close()
        elif self._pending is not None:
            log.info(self._pending)
            self._pending = None
