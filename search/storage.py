"""Opening an Optuna storage from what a user types: the one opener of search and analysis.

Accepted: a journal file path, an SQLite file path, an SQLAlchemy URL (``sqlite:///x.db``,
``postgresql://user@host/db``, ...) or an already opened ``BaseStorage``. The search opens to
write (``create=True``: a missing journal, its folder, an SQLite file and the tables are
created); analysis and status open to read (``create=False``: nothing is created or changed).
Every failure is a ``StorageError`` with a one-line message naming what the user typed.

This module imports only the standard library, Optuna and ``ncaio`` (never torch, nor another
search module but the torch-free ``search.journal`` when a journal is damaged), so ``analysis``
imports it cheaply.

Example:
    >>> storage = open_storage("runs/code/journal.log", create=False)   # doctest: +SKIP
    >>> names = resolve_study_names(storage, ["code"])                  # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import optuna
from optuna.exceptions import StorageInternalError
from optuna.storages import BaseStorage, JournalStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

from ncaio import atomic_write_bytes

__all__ = ["StorageError", "check_storage", "is_url", "open_storage", "repair_torn_journal",
           "resolve_study_names"]

_URL_SCHEMES = ("sqlite", "postgresql", "mysql", "oracle", "mssql")
_SQLITE_HEADER = b"SQLite format 3\x00"
_CONNECT_TIMEOUT_S = 5  # fail fast on a wrong host instead of hanging on the OS connect timeout
_EXAMPLES = "a journal file path or a database URL (e.g. sqlite:///study.db, postgresql://user@host/db)"


class StorageError(ValueError):
    """The storage cannot be opened, or does not hold the requested studies (a one-line message).

    A ValueError like the search's ConfigError: the input is unusable, the program is not broken.
    """


def is_url(storage: str) -> bool:
    """True when ``storage`` is an SQLAlchemy URL of a known dialect rather than a file path."""
    return "://" in storage and _scheme(storage) in _URL_SCHEMES


def open_storage(storage: str | os.PathLike[str] | BaseStorage, *, workers: int = 1,
                 create: bool = True) -> BaseStorage:
    """Open a journal file (open-lock: safe across processes and on NFS), SQLite file or URL.

    Args:
        storage: A journal file path, an SQLite file path, an SQLAlchemy URL, or an opened
            storage (returned as is).
        workers: Processes that will write at once; SQLite is refused for more than one.
        create: True to open for writing: a missing journal (and its folder), SQLite file or
            tables are created, and a torn last journal record is repaired. False to read:
            the storage must exist and nothing is created or changed (Optuna's reader skips a
            torn last record; the next writer repairs it).

    Raises:
        StorageError: SQLite with more than one worker (it locks under concurrency), an
            unknown URL scheme, a folder, a missing journal or SQLite file when ``create`` is
            false, a file that is not a journal, or an unreachable database.
    """
    if isinstance(storage, BaseStorage):
        return storage
    text = os.fspath(storage)
    if "://" in text:
        return _open_url(text, given=text, workers=workers, create=create)
    path = Path(text)
    if path.is_dir():
        raise StorageError(_folder_message(text))
    if path.is_file() and _is_sqlite(path):
        return _open_url(f"sqlite:///{path.resolve()}", given=text, workers=workers, create=create)
    if not create and not path.is_file():
        raise StorageError(f"storage {text!r} is neither an existing journal file nor {_EXAMPLES}")
    return _open_journal(path, create=create)


def check_storage(storage: str, *, workers: int = 1) -> None:
    """Refuse a bad or unreachable storage before anything is written anywhere.

    Database URLs are connected to; a journal path is only checked for a usable parent.

    Raises:
        StorageError: As ``open_storage``, or the journal's folder is not writable.
    """
    if "://" in storage:
        open_storage(storage, workers=workers)
        return
    if Path(storage).is_dir():
        raise StorageError(_folder_message(storage))
    if Path(storage).is_file() and not _is_sqlite(Path(storage)):
        _check_journal(Path(storage))
        from search.journal import damage_message, scan  # torch-free, like this module

        damaged = scan(Path(storage))
        if damaged:  # refused before the writer's lock or repair touches the folder
            raise StorageError(damage_message(Path(storage), damaged))
    parent = Path(storage).resolve().parent
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent, os.W_OK):
        raise StorageError(f"storage {storage!r}: {parent} is not writable")


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


# -- databases -----------------------------------------------------------------------------------


def _open_url(url: str, *, given: str, workers: int, create: bool) -> BaseStorage:
    """``given`` is what the user typed: errors name it, not our rewrite of it."""
    import sqlalchemy.exc

    scheme = _scheme(url)
    if scheme not in _URL_SCHEMES:
        raise StorageError(f"storage {given!r}: unknown URL scheme; use a journal file path or "
                           f"one of {', '.join(s + '://' for s in _URL_SCHEMES)}")
    if scheme == "sqlite":
        if workers > 1:
            raise StorageError(
                f"storage {given!r}: SQLite locks under concurrent writers; use a journal file "
                f"or PostgreSQL with --workers {workers}, or --workers 1")
        db_path = url.split(":///", 1)[1] if ":///" in url else ""
        if not create and db_path and db_path != ":memory:" and not Path(db_path).is_file():
            raise StorageError(f"storage {given!r}: no such SQLite file {db_path!r}")  # not created
    try:
        return optuna.storages.RDBStorage(
            _with_installed_pg_driver(url), engine_kwargs=_engine_kwargs(scheme),
            skip_table_creation=not create, skip_compatibility_check=not create)
    except (sqlalchemy.exc.SQLAlchemyError, StorageInternalError, ImportError, ValueError,
            OSError) as e:
        raise StorageError(f"cannot open storage {given!r}: {_first_line(e)}") from e


def _scheme(url: str) -> str:
    return url.split(":", 1)[0].split("+")[0]


def _engine_kwargs(scheme: str) -> dict[str, Any]:
    if scheme in ("postgresql", "mysql"):
        return {"connect_args": {"connect_timeout": _CONNECT_TIMEOUT_S}, "pool_pre_ping": True}
    return {}


def _with_installed_pg_driver(url: str) -> str:
    """A bare ``postgresql://`` means psycopg2 to SQLAlchemy 2; we ship psycopg 3, so use it
    when it is installed (else SQLAlchemy's default driver, or its own clear error)."""
    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg") is not None:
        return "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


def _is_sqlite(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(len(_SQLITE_HEADER)) == _SQLITE_HEADER


def _folder_message(storage: str) -> str:
    return (f"storage {storage!r} is a folder; accepted: a journal file path "
            f"(e.g. {str(Path(storage) / 'journal.log')!r}) or a database URL")


def _first_line(e: BaseException) -> str:
    # Optuna wraps a refused connection in StorageInternalError("...during the commit..."),
    # which names no cause: report the database driver's error it chains instead.
    while isinstance(e, StorageInternalError) and e.__cause__ is not None:
        e = e.__cause__
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"


# -- journal files -------------------------------------------------------------------------------


_JOURNAL_START = re.compile(rb'\{\s*"op_code"\s*:')
"""How every record of an Optuna journal starts (compact or spaced JSON)."""


def _check_journal(path: Path) -> None:
    """Refuse an existing file that is not an Optuna journal, before anything reads or repairs
    it: an empty file is a new journal; any other must start like a journal record.

    Raises:
        StorageError: the file holds something else (text, a binary), or cannot be read.
    """
    try:
        with path.open("rb") as f:
            head = f.read(64)
    except OSError as exc:
        raise StorageError(f"storage {str(path)!r} cannot be read ({exc.strerror})") from None
    if head and not _JOURNAL_START.match(head):
        raise StorageError(f"storage {str(path)!r} is a file that is not an Optuna journal (it "
                           f"starts {head[:16]!r}); it was left as it is: give a new path or a "
                           "journal file")


def _open_journal(path: Path, *, create: bool) -> BaseStorage:
    if path.is_file():
        _check_journal(path)
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
    lock = JournalFileOpenLock(str(path))
    if create:
        note = repair_torn_journal(path, lock)
        if note:
            print(f"warning: {note}", file=sys.stderr, flush=True)
    try:
        # The journal is replayed on construction, so a file that is not a journal fails here.
        return JournalStorage(JournalFileBackend(str(path), lock_obj=lock))
    except (ValueError, KeyError, TypeError, AssertionError) as e:
        from search.journal import damage_message, scan  # torch-free, like this module

        damaged = scan(path)
        if damaged:
            raise StorageError(damage_message(path, damaged)) from e
        raise StorageError(f"{str(path)!r} is not an Optuna journal file: {_first_line(e)}") from e

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
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            side = path.with_name(f"{path.name}.torn-{stamp}")
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
