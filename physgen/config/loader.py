"""The one TOML loader: a file in, a command's typed schema out, or a ConfigError.

TOML is read by ``tomllib`` (Python 3.11+) or its backport ``tomli`` (Python 3.10).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef,unused-ignore]

from physgen.config.commands import MINIMAL, SCHEMAS
from physgen.config.errors import ConfigError
from physgen.config.schema import build

__all__ = ["load_config"]


def load_config(path: str | os.PathLike, command: str | type) -> Any:
    """Read a TOML file into the schema of ``command``, checking every key and value.

    Args:
        path: the TOML file.
        command: a command name (a key of ``physgen.config.SCHEMAS``: ``"train"``, ``"vmc"``, ...) or a
            schema dataclass.

    Returns:
        the schema instance (``RunConfig``, ``VMCConfig``, ``TomographyConfig``, ...).

    Raises:
        ConfigError: the file is missing, empty or not TOML, or a key is unknown, or a value has the wrong
            type, is not one of the allowed values or lies outside its domain; the message names the file, the
            table, the key and the allowed keys (values, domain); for an empty file, a minimal config.
    """
    name = command if isinstance(command, str) else None
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
    if not data:
        example = MINIMAL.get(name or "", "") or next((MINIMAL[k] for k, v in SCHEMAS.items() if v is schema), "")
        raise ConfigError(
            "the file is empty (every option would be a default, which is never what a run means); "
            + (f"a minimal config: {example}" if example else "give the options of the command"),
            path,
        )
    try:
        return build(schema, data)
    except ConfigError as err:
        raise err.at(str(path)) from None
