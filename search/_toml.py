"""Strict conversion of TOML tables into frozen config dataclasses.

Unknown keys are refused with the list of valid ones, so a typo in a study file never silently
falls back to a default.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A study file or CLI override that cannot be turned into a valid configuration."""


def check_keys(table: dict[str, Any], valid: list[str] | tuple[str, ...], where: str) -> None:
    """Raise ConfigError when ``table`` has keys outside ``valid``."""
    unknown = sorted(set(table) - set(valid))
    if unknown:
        raise ConfigError(
            f"unknown key(s) {unknown} in [{where}]; valid keys: {', '.join(sorted(valid))}"
        )


def from_table(cls: type[T], table: dict[str, Any], where: str) -> T:
    """Build dataclass ``cls`` from ``table``, refusing unknown keys.

    Lists become tuples (the configs are frozen and hashable). Validation errors raised by the
    dataclass are re-raised as ConfigError naming the section.
    """
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    check_keys(table, names, where)
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in table.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"[{where}] {exc}") from None
