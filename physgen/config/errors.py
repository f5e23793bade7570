"""The one error class of configuration files: every problem of a config, found anywhere, is a ConfigError."""

from __future__ import annotations

import os

__all__ = ["ConfigError"]


class ConfigError(ValueError):
    """A configuration file is missing, is not TOML, or does not fit its command's schema.

    Args:
        message: what is wrong and where in the file (``unknown key 'lrr' in [train]; allowed keys: ...``);
            one line.
        path: the file, when known; ``str(err)`` is then ``"{path}: {message}"``.
    """

    def __init__(self, message: str, path: str | os.PathLike | None = None) -> None:
        self.message = " ".join(str(message).split("\n"))
        self.path = None if path is None else str(path)
        super().__init__(self.message if self.path is None else f"{self.path}: {self.message}")

    def at(self, path: str) -> ConfigError:
        """This error located in ``path`` (itself when it already names a file)."""
        return self if self.path is not None else ConfigError(self.message, path)
