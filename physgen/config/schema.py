"""The type-checking rules shared by every config schema.

A schema is a dataclass whose fields carry type hints; a field whose type is itself a dataclass is a
TOML table (``[section]`` at the top level, ``[section.sub]`` below). :func:`build` turns the dict read
from TOML into the schema, with one rule set for every command:

* a key the schema does not declare is an error naming the key, its table and the allowed keys;
* ``int`` takes an integer (not a bool), ``float`` an integer or a float (stored as a float), ``bool``
  a bool, ``str`` a string, ``list[T]`` an array whose items follow T, ``dict`` a table (its keys
  are free: constructor options), ``T | None`` a T (TOML has no null; the default may be None),
  ``Any`` anything;
* a field declared with :func:`choice` takes one of a fixed set of values, and an error names them;
* a field declared with :func:`bounded` takes values in a domain (:class:`physgen.checks.Domain`: an int
  >= 1, a float in (0, 1), ...), and an error names the key and the domain;
* a float is never NaN or ±inf.

Every problem raises :class:`~physgen.config.errors.ConfigError` with a one-line message.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any

from physgen.config.errors import ConfigError

__all__ = ["build", "choice", "check_choice", "bounded"]

_TYPE_NAMES = {bool: "bool", int: "int", float: "float", str: "string", list: "array", dict: "table"}


def choice(default: str, *allowed: str) -> Any:
    """A dataclass field that takes one of ``(default, *allowed)``; other values are errors naming them."""
    values = (default, *[a for a in allowed if a != default])
    return dataclasses.field(default=default, metadata={"choices": values})


def bounded(
    default: Any,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    note: str = "",
) -> Any:
    """A numeric dataclass field whose values must lie in a domain (the bounds, and ``note`` on special values
    such as ``"0 leaves it to the model family"``); the loader's error names the key and the domain. The
    int/float kind follows the field's type hint."""
    from physgen.checks import Domain

    kind = int if isinstance(default, int) and not isinstance(default, bool) else float
    return dataclasses.field(default=default, metadata={"domain": Domain(kind, ge=ge, gt=gt, le=le, lt=lt, note=note)})


def domain_error(value: Any, domain: Any, where: str, key: str) -> ConfigError | None:
    """The ConfigError for a value outside ``domain`` (None when it is inside), naming the key."""
    wrong = domain.problem(value)
    if wrong is None:
        return None
    return ConfigError(f"{_at(where, key)} = {_short(value)} is out of range: it must be {wrong}")


def check_choice(value: Any, allowed: typing.Iterable[Any], where: str, key: str) -> None:
    """Raise ConfigError unless ``value`` is one of ``allowed``; the message names the allowed values.

    Args:
        value: the value read from the file.
        allowed: the values the key takes.
        where: the table, ``"[model]"`` (``""`` for the top level).
        key: the key in that table.
    """
    allowed = list(allowed)
    if value not in allowed:
        raise ConfigError(
            f"{_at(where, key)} = {_short(value)} is not allowed; allowed: {', '.join(repr(a) for a in allowed)}"
        )


def build(schema: type, data: Any, where: str = "") -> Any:
    """Build the dataclass ``schema`` from ``data`` (a dict as read from TOML), checking every key and value.

    Args:
        schema: a dataclass; fields with a dataclass type are tables.
        data: the parsed TOML table.
        where: the dotted name of this table (``""`` for the top level, ``"model"`` for ``[model]``).

    Returns:
        an instance of ``schema``; absent keys keep their defaults.

    Raises:
        ConfigError: an unknown key, a value of the wrong type or outside the allowed values.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"[{where}] should be a table; got {_type_name(data)} {_short(data)}")
    fields = {f.name: f for f in dataclasses.fields(schema)}
    hints = typing.get_type_hints(schema)
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(_unknown(key, value, where, fields, hints))
    kwargs = {}
    for key, value in data.items():
        tp = hints[key]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise ConfigError(
                    f"{_at(where, key)} = {_short(value)} should be a table ([{_join(where, key)}]); "
                    f"got {_type_name(value)}"
                )
            kwargs[key] = build(tp, value, _join(where, key))
            continue
        kwargs[key] = _check(value, tp, where, key)
        choices = fields[key].metadata.get("choices")
        if choices is not None:
            check_choice(kwargs[key], choices, f"[{where}]" if where else "", key)
        domain = fields[key].metadata.get("domain")
        if domain is not None:
            err = domain_error(kwargs[key], domain, where, key)
            if err is not None:
                raise err
    return schema(**kwargs)


def _check(value: Any, tp: Any, where: str, key: str) -> Any:
    """``value`` converted to ``tp`` (ints to floats), or a ConfigError naming the key and the type."""
    if tp is Any:
        return value
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        for option in options:
            try:
                return _check(value, option, where, key)
            except ConfigError:
                pass
        raise _wrong(value, " or ".join(_hint_name(a) for a in options), where, key)
    base = origin or tp
    if base is float and isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{_at(where, key)} = {value} is not allowed: give a finite number")
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if (base in (int, float) and isinstance(value, bool)) or not isinstance(value, base):
        raise _wrong(value, _hint_name(tp), where, key)
    if base is list and args:
        return [_check(item, args[0], where, f"{key}[{i}]") for i, item in enumerate(value)]
    return value


def _unknown(key: str, value: Any, where: str, fields: dict, hints: dict) -> str:
    allowed = ", ".join(fields)
    if where:
        return f"unknown key {key!r} in [{where}]; allowed keys: {allowed}"
    sections = [k for k in fields if dataclasses.is_dataclass(hints[k])]
    if isinstance(value, dict):
        return f"unknown section [{key}]; allowed sections: {', '.join(sections)}" + (
            f" (and top-level keys: {', '.join(k for k in fields if k not in sections)})"
            if len(sections) < len(fields)
            else ""
        )
    return f"unknown top-level key {key!r}; allowed: {allowed}"


def _wrong(value: Any, expected: str, where: str, key: str) -> ConfigError:
    return ConfigError(f"{_at(where, key)} = {_short(value)} should be of type {expected}; got {_type_name(value)}")


def _at(where: str, key: str) -> str:
    where = where.strip("[]")
    return f"[{where}] {key}" if where else key


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _type_name(value: Any) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _hint_name(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is list and args:
        return f"array of {_hint_name(args[0])}"
    return _TYPE_NAMES.get(origin or tp, getattr(tp, "__name__", str(tp)))
