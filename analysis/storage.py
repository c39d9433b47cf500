"""Open an Optuna storage for reading: a journal file path or an SQLAlchemy URL.

Example:
    >>> storage = open_storage("runs/code.journal")          # doctest: +SKIP
    >>> names = resolve_study_names(storage, ["code"])       # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path

import optuna
from optuna.exceptions import StorageInternalError
from optuna.storages import BaseStorage
from optuna.storages.journal import JournalFileBackend

__all__ = ["StorageError", "open_storage", "resolve_study_names"]

_SQLITE_HEADER = b"SQLite format 3\x00"
_CONNECT_TIMEOUT_S = 5


class StorageError(ValueError):
    """The storage cannot be opened or does not hold the requested studies."""


def open_storage(spec: str | os.PathLike[str] | BaseStorage) -> BaseStorage:
    """Open ``spec`` read-only in spirit: nothing is created if it does not exist.

    Args:
        spec: An existing journal file (as written by ``JournalFileBackend``), an existing
            SQLite file, an SQLAlchemy URL (``sqlite:///x.db``, ``postgresql://...``), or an
            already opened storage (returned as is).

    Returns:
        The opened storage.

    Raises:
        StorageError: With a one-line message when the file is missing, is not a storage, or
            the database cannot be reached.
    """
    if isinstance(spec, BaseStorage):
        return spec
    text = os.fspath(spec)
    if "://" in text:
        return _open_url(text)
    path = Path(text)
    if not path.is_file():
        raise StorageError(
            f"storage {text!r} is neither an existing journal file nor a database URL "
            "(e.g. sqlite:///study.db, postgresql://user@host/db)"
        )
    with path.open("rb") as f:
        is_sqlite = f.read(len(_SQLITE_HEADER)) == _SQLITE_HEADER
    if is_sqlite:
        return _open_url(f"sqlite:///{path.resolve()}")
    return _open_journal(path)


def _open_journal(path: Path) -> BaseStorage:
    backend = JournalFileBackend(str(path))
    try:
        # The journal is replayed on construction, so a file that is not a journal fails here.
        return optuna.storages.JournalStorage(backend)
    except (ValueError, KeyError, TypeError, AssertionError) as e:
        raise StorageError(f"{str(path)!r} is not an Optuna journal file: {_first_line(e)}") from e


def _open_url(url: str) -> BaseStorage:
    import sqlalchemy.exc

    given = url  # errors name what the user typed, not our driver rewrite
    engine_kwargs: dict = {}
    if url.startswith("sqlite:///"):
        db_path = url.removeprefix("sqlite:///")
        if db_path and db_path != ":memory:" and not Path(db_path).is_file():
            # SQLite would silently create an empty database here.
            raise StorageError(f"storage {url!r}: no such SQLite file {db_path!r}")
    elif url.startswith(("postgresql", "mysql")):
        engine_kwargs = {"connect_args": {"connect_timeout": _CONNECT_TIMEOUT_S}}
        url = _with_installed_pg_driver(url)
    try:
        return optuna.storages.RDBStorage(
            url, engine_kwargs=engine_kwargs, skip_table_creation=True,
            skip_compatibility_check=True,
        )
    except (sqlalchemy.exc.SQLAlchemyError, StorageInternalError, ImportError, ValueError) as e:
        raise StorageError(f"cannot open storage {given!r}: {_first_line(e)}") from e


def _with_installed_pg_driver(url: str) -> str:
    """``postgresql://`` means psycopg2 to SQLAlchemy; use psycopg 3 when only it is installed."""
    if not url.startswith("postgresql://") or importlib.util.find_spec("psycopg2") is not None:
        return url
    if importlib.util.find_spec("psycopg") is not None:
        return "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


def resolve_study_names(storage: BaseStorage, names: Sequence[str] | None = None) -> list[str]:
    """Return ``names`` checked against the storage, or every study in it when ``names`` is None.

    Raises:
        StorageError: If the storage cannot be read, holds no study, or lacks one of ``names``.
    """
    import sqlalchemy.exc

    try:
        available = [s.study_name for s in storage.get_all_studies()]
    except (sqlalchemy.exc.SQLAlchemyError, StorageInternalError) as e:
        raise StorageError(f"cannot read studies from the storage: {_first_line(e)}") from e
    if not available:
        raise StorageError("the storage holds no study (is it an Optuna journal or database?)")
    if names is None:
        return available
    missing = [n for n in names if n not in available]
    if missing:
        raise StorageError(f"no study named {missing[0]!r} in the storage; valid: {available}")
    return list(dict.fromkeys(names))


def _first_line(e: BaseException) -> str:
    # Optuna wraps a refused connection in StorageInternalError("...during the commit..."),
    # which names no cause: report the database driver's error it chains instead.
    while isinstance(e, StorageInternalError) and e.__cause__ is not None:
        e = e.__cause__
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"
