"""The one TOML loader: a file in, a command's typed schema out, or a ConfigError.

TOML is read by ``tomllib`` (Python 3.11+) or its backport ``tomli`` (Python 3.10).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from physgen.config.commands import SCHEMAS
from physgen.config.errors import ConfigError
from physgen.config.schema import build

__all__ = ["load_config"]


def load_config(path: str | Path, command: str | type) -> Any:
    """Read a TOML file into the schema of ``command``, checking every key and value.

    Args:
        path: the TOML file.
        command: a command name (a key of ``physgen.config.SCHEMAS``: ``"train"``, ``"vmc"``, ...) or a
            schema dataclass.

    Returns:
        the schema instance (``RunConfig``, ``VMCConfig``, ``TomographyConfig``, ...).

    Raises:
        ConfigError: the file is missing or not TOML, or a key is unknown, or a value has the wrong type
            or is not one of the allowed values; the message names the file, the table, the key and the
            allowed keys (or values).
    """
    if isinstance(command, str):
        if command not in SCHEMAS:
            raise ValueError(f"no config schema for command {command!r}; known: {', '.join(SCHEMAS)}")
        schema = SCHEMAS[command]
    else:
        schema = command
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("no such file", path) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read the file ({err})", path) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"not valid TOML: {err}", path) from None
    try:
        return build(schema, data)
    except ConfigError as err:
        raise err.at(str(path)) from None
