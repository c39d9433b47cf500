"""Strict conversion of TOML tables into frozen config dataclasses.

Unknown keys are refused with the list of valid ones, so a typo in a study file never silently
falls back to a default. Every value is checked against its field's type (an ``int`` field takes
neither ``4.5`` nor ``true``; a ``float`` field takes an int, but never nan or inf) before the
dataclass is built; the dataclass checks the bounds its fields declare with :func:`bounded`.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, TypeVar, Union

T = TypeVar("T")

SEED_MAX = 2**32 - 1
"""Largest seed numpy's generators take (seeds are non-negative integers below 2^32)."""


class ConfigError(ValueError):
    """A study file or CLI override that cannot be turned into a valid configuration."""


def bounded(default: Any, low: float, high: float) -> Any:
    """A dataclass field whose value must lie in ``[low, high]`` (see ``check_bounds``)."""
    return dataclasses.field(default=default, metadata={"bounds": (low, high)})


def check_bounds(config: Any, where: str) -> None:
    """Check every field of the dataclass ``config`` declared with :func:`bounded` (called from
    the configs' ``__post_init__``, so a config built in code is checked like one from TOML).

    Raises:
        ConfigError: a value outside its field's bounds.
    """
    for f in dataclasses.fields(config):
        bounds = f.metadata.get("bounds")
        value = getattr(config, f.name)
        if bounds is not None and not bounds[0] <= value <= bounds[1]:
            raise ConfigError(f"[{where}] {f.name} = {_show(value)}: expected a value in "
                              f"[{bounds[0]!r}, {bounds[1]!r}]")


def check_keys(table: dict[str, Any], valid: list[str] | tuple[str, ...], where: str) -> None:
    """Raise ConfigError when ``table`` has keys outside ``valid``."""
    unknown = sorted(set(table) - set(valid))
    if unknown:
        raise ConfigError(
            f"unknown key(s) {unknown} in [{where}]; valid keys: {', '.join(sorted(valid))}"
        )


def from_table(cls: type[T], table: dict[str, Any], where: str) -> T:
    """Build dataclass ``cls`` from ``table``, refusing unknown keys, wrong types and values
    outside a field's bounds.

    Lists become tuples (the configs are frozen and hashable), ints in float fields floats.
    Validation errors raised by the dataclass are re-raised as ConfigError naming the section.
    """
    kwargs = typed_fields(cls, table, where)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"[{where}] {exc}") from None


def typed_fields(cls: type, table: dict[str, Any], where: str) -> dict[str, Any]:
    """``table``'s values checked against and converted to the types of ``cls``' fields.

    Raises:
        ConfigError: not a table, a key ``cls`` does not have, or a value of the wrong type.
    """
    if not isinstance(table, dict):
        raise ConfigError(f"[{where}] must be a table, not {_kind(table)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    check_keys(table, list(fields), where)
    hints = typing.get_type_hints(cls)
    return {name: checked_value(value, hints[name], f"[{where}] {name}")
            for name, value in table.items()}


def checked_value(value: Any, hint: Any, where: str) -> Any:
    """``value`` converted to the type ``hint`` (lists to tuples, ints to floats).

    Raises:
        ConfigError: the value is not of that type, or not finite.
    """
    converted = _convert(value, hint)
    if converted is _WRONG:
        raise ConfigError(f"{where} = {_show(value)}: expected {_describe(hint)}")
    return converted


_WRONG = object()


def _convert(value: Any, hint: Any) -> Any:
    """``value`` as ``hint``, or ``_WRONG``."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        for member in typing.get_args(hint):
            out = _convert(value, member)
            if out is not _WRONG:
                return out
        return _WRONG
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            return _WRONG
        args = typing.get_args(hint)
        if args[-1] is Ellipsis:
            item_hints = [args[0]] * len(value)
        elif len(value) != len(args):
            return _WRONG
        else:
            item_hints = list(args)
        items = [_convert(v, h) for v, h in zip(value, item_hints, strict=True)]
        return _WRONG if any(i is _WRONG for i in items) else tuple(items)
    if hint is bool:
        return value if isinstance(value, bool) else _WRONG
    if hint is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _WRONG
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return _WRONG
        try:
            out = float(value)
        except OverflowError:  # an integer too large for a float
            return _WRONG
        return out if math.isfinite(out) else _WRONG
    if hint is str:
        return value if isinstance(value, str) else _WRONG
    return value if isinstance(hint, type) and isinstance(value, hint) else _WRONG


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(m) for m in typing.get_args(hint))
    if origin is tuple:
        args = typing.get_args(hint)
        if args[-1] is Ellipsis:
            return f"a list of {_describe(args[0]).removeprefix('an ').removeprefix('a ')}s"
        return f"a pair ({', '.join(_describe(a) for a in args)})"
    return {bool: "true or false", int: "an integer", float: "a finite number",
            str: "a string"}.get(hint, getattr(hint, "__name__", str(hint)))


def _kind(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a table"}.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    """A value as its TOML spelling would read (``true``, not ``True``)."""
    text = str(value).lower() if isinstance(value, bool) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
