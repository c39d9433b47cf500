"""Opening Optuna storage from what a user types: a journal file path or an SQLAlchemy URL."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import BinaryIO

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
from sqlalchemy.exc import SQLAlchemyError

from ncaio import atomic_write_bytes
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
    note = repair_torn_journal(path, lock)
    if note:
        print(f"warning: {note}", file=sys.stderr, flush=True)
    return JournalStorage(JournalFileBackend(str(path), lock_obj=lock))


def repair_torn_journal(path: Path, lock: JournalFileOpenLock) -> str | None:
    """Cut a torn last record off a journal, keeping it in ``<journal>.torn-<UTC time>``.

    A writer killed mid-append (or a full disk) leaves a last line without its newline, or
    one that is not JSON. Optuna's reader skips such a line, but its writer appends after
    it, gluing the next record onto the fragment: from then on every read fails. Optuna has
    no repair, so we truncate the journal to its last record boundary before anyone appends,
    under the journal's own lock so no append interleaves. Returns a one-line note of what
    was repaired, or None when the journal was whole.
    """
    if not path.is_file():
        return None
    lock.acquire()
    try:
        with open(path, "r+b") as f:
            cut = _torn_tail_start(f)
            if cut is None:
                return None
            f.seek(cut)
            fragment = f.read()
            side = path.with_name(f"{path.name}.torn-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
            atomic_write_bytes(side, fragment)  # kept for inspection before the journal changes
            f.truncate(cut)
            f.flush()
            os.fsync(f.fileno())
    finally:
        lock.release()
    return (f"journal {str(path)!r} ended in a torn record ({len(fragment)} bytes cut "
            f"mid-write); moved it to {str(side)!r}, the journal now ends on its last whole record")


def _torn_tail_start(f: BinaryIO) -> int | None:
    """Offset where the torn last record of an open journal starts; None when it is whole."""
    size = f.seek(0, os.SEEK_END)
    if size == 0:
        return None
    f.seek(size - 1)
    if f.read(1) != b"\n":
        return _line_start(f, size)  # cut mid-line
    start = _line_start(f, size - 1)
    f.seek(start)
    try:
        json.loads(f.read(size - 1 - start))  # a whole line must also be a whole record
    except ValueError:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        return start
    return None


def _line_start(f: BinaryIO, end: int, chunk: int = 1 << 16) -> int:
    """Offset just after the last newline before ``end`` (0 when there is none)."""
    pos = end
    while pos > 0:
        step = min(chunk, pos)
        f.seek(pos - step)
        block = f.read(step)
        nl = block.rfind(b"\n")
        if nl >= 0:
            return pos - step + nl + 1
        pos -= step
    return 0


def check_storage(storage: str, *, workers: int = 1) -> None:
    """Refuse a bad or unreachable storage before anything is written anywhere.

    Database URLs are connected to; a journal path is only checked for a usable parent.
    """
    if is_url(storage) or "://" in storage:
        open_storage(storage, workers=workers)
        return
    if Path(storage).is_dir():
        raise ConfigError(f"storage {storage!r} is a folder; accepted: a journal file path "
                          f"(e.g. {str(Path(storage) / 'journal.log')!r}) or a database URL")
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
