"""One writer per folder: an exclusive, advisory lock that a killed process releases by dying.

    with folder_lock(run_dir, "physgen train config.toml"):
        ...   # a second process that asks for run_dir's lock now fails at once with FolderLockedError

The lock is ``flock`` on the file ``<folder>/.physgen.lock`` (created with mode 0o666 less the umask). The
kernel releases it when the holder's process ends, however it ends (SIGKILL included), so a killed run
never leaves a stale lock behind. The file holds the holder's PID, command and start time as JSON; a
refused process names them. Within one process the lock is re-entrant (``physgen train`` locks the run
folder and ``physgen.simulate`` then locks the store inside it, or the same folder again).

POSIX only (``fcntl``); on a platform without it the lock is a no-op.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["FolderLockedError", "folder_lock", "LOCK_NAME"]

LOCK_NAME = ".physgen.lock"
_held: dict[str, list[int]] = {}  # resolved folder -> [fd, depth] held by this process
_guard = threading.Lock()


class FolderLockedError(RuntimeError):
    """Another process holds the folder's lock (the message names its PID and command)."""


def _command() -> str:
    return " ".join(Path(a).name if i == 0 else a for i, a in enumerate(sys.argv)) or "python"


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another process"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("started", 0)))
    return f"process {info.get('pid')} ({info.get('command')!r}, started {started})"


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, command: str | None = None) -> Iterator[Path]:
    """Hold the exclusive lock of ``folder`` (created if missing) for the ``with`` block.

    Args:
        folder: the run folder or store to guard.
        command: what the holder is doing, recorded for a refused process (default: this process's argv).

    Raises:
        FolderLockedError: another process holds it; the message names its PID and command and the fix.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    key = str(folder.resolve())
    with _guard:
        if key in _held:
            _held[key][1] += 1
        else:
            fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    holder = _holder(fd)
                    os.close(fd)
                    raise FolderLockedError(
                        f"{folder} is in use by {holder}: one physgen process writes a folder at a time; wait "
                        "for it to finish (or stop it) and run this command again"
                    ) from None
            info = {"pid": os.getpid(), "command": command or _command(), "started": time.time()}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
            _held[key] = [fd, 1]
    try:
        yield folder
    finally:
        with _guard:
            entry = _held[key]
            entry[1] -= 1
            if entry[1] == 0:
                del _held[key]
                os.close(entry[0])  # closing the descriptor releases the flock
