"""Opening Optuna storage from what a user types: a journal file path or an SQLAlchemy URL."""

from __future__ import annotations

import os
from pathlib import Path

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
from sqlalchemy.exc import SQLAlchemyError

from search._toml import ConfigError

_URL_SCHEMES = ("sqlite", "postgresql", "mysql", "oracle", "mssql")


def is_url(storage: str) -> bool:
    """True when ``storage`` is an SQLAlchemy URL rather than a journal file path."""
    return "://" in storage and storage.split(":", 1)[0].split("+")[0] in _URL_SCHEMES


def open_storage(storage: str, *, workers: int = 1, create: bool = True) -> optuna.storages.BaseStorage:
    """Open a journal file (open-lock: safe across processes and on NFS) or a database URL.

    Raises:
        ConfigError: SQLite with more than one worker (it locks under concurrency), a missing
            journal when ``create`` is false, or an unreachable database.
    """
    if is_url(storage):
        if storage.startswith("sqlite") and workers > 1:
            raise ConfigError(
                f"storage {storage!r}: SQLite locks under concurrent writers; use a journal file "
                f"or PostgreSQL with --workers {workers}, or --workers 1"
            )
        if storage.startswith("postgresql://"):
            # SQLAlchemy 2.0 reads a bare postgresql:// as psycopg2; we ship psycopg 3.
            storage = "postgresql+psycopg://" + storage[len("postgresql://"):]
        try:
            return optuna.storages.RDBStorage(storage, engine_kwargs=_engine_kwargs(storage))
        except (SQLAlchemyError, ImportError, OSError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"storage {storage!r} is unreachable: {first}") from None
    if "://" in storage:
        raise ConfigError(
            f"storage {storage!r}: unknown URL scheme; use a journal file path or one of "
            f"{', '.join(s + '://' for s in _URL_SCHEMES)}"
        )
    path = Path(storage)
    if not create and not path.is_file():
        raise ConfigError(f"storage {storage!r}: no such journal file")
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = JournalFileOpenLock(str(path))
    return JournalStorage(JournalFileBackend(str(path), lock_obj=lock))


def check_storage(storage: str, *, workers: int = 1) -> None:
    """Refuse a bad or unreachable storage before anything is written anywhere.

    Database URLs are connected to; a journal path is only checked for a usable parent.
    """
    if is_url(storage) or "://" in storage:
        open_storage(storage, workers=workers)
        return
    parent = Path(storage).resolve().parent
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent, os.W_OK):
        raise ConfigError(f"storage {storage!r}: {parent} is not writable")


def _engine_kwargs(url: str) -> dict:
    if url.startswith("postgresql"):
        # Fail fast on a wrong host instead of hanging on the OS connect timeout.
        return {"connect_args": {"connect_timeout": 5}, "pool_pre_ping": True}
    return {}
