"""One driver per study: the driver holds a lease on its study, a second one refuses.

Two drivers on one study each count finished trials and ask for more, so together they
overshoot n_trials and race on the same retries. ``search.run`` therefore takes the study
before driving it, and a second driver refuses in one line naming the holder. We chose to
refuse rather than join: joining would need the drivers to share the trial count and the
retry queue, refusing needs one record.

The record lives with the study (Optuna study system attribute ``driver_holder``), so it
works for every storage the service supports, journal files and databases alike: host, pid,
since when, and a lease the driver renews every 30 s (``Driver.heartbeat``). A holder is
stale, and is taken over with a one-line note, when its lease expired or when it ran on this
host and its process is gone.

Checking and setting the record must be one step, or two drivers started together both see
a free study. Journal and SQLite storages take an fcntl lock on ``<file>.driver.lock`` around
it; PostgreSQL takes a transaction-level advisory lock. Other databases (MySQL) have no such
guard: drivers started within the same second may both run there.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optuna.exceptions import DuplicatedStudyError
from optuna.storages import BaseStorage, RDBStorage
from optuna.study import StudyDirection

from search._toml import ConfigError

__all__ = ["HOLDER_ATTR", "Holder", "StudyBusyError", "StudyLock", "acquire_study"]

HOLDER_ATTR = "driver_holder"
LEASE_S = 120.0
"""A holder whose lease is older than this is gone (another host cannot check its pid)."""


class StudyBusyError(ConfigError):
    """Another live driver holds the study (exit 2, one line)."""


@dataclass(frozen=True, slots=True)
class Holder:
    """Who drives a study, and until when that claim holds without renewal."""

    host: str
    pid: int
    since: float
    lease_until: float

    @classmethod
    def me(cls, since: float | None = None) -> Holder:
        now = time.time()
        return cls(socket.gethostname(), os.getpid(), since or now, now + LEASE_S)

    @classmethod
    def from_attr(cls, value: Any) -> Holder | None:
        if not isinstance(value, dict):
            return None  # never held, or released
        try:
            return cls(str(value["host"]), int(value["pid"]), float(value["since"]),
                       float(value["lease_until"]))
        except (KeyError, TypeError, ValueError):
            return None  # unreadable: treated as free rather than blocking the study forever

    def to_attr(self) -> dict[str, Any]:
        return {"host": self.host, "pid": self.pid, "since": self.since,
                "lease_until": self.lease_until}

    def is_me(self) -> bool:
        return self.host == socket.gethostname() and self.pid == os.getpid()

    def why_stale(self, now: float) -> str | None:
        """Why this holder no longer drives the study; None while it does."""
        if self.lease_until < now:
            return f"its lease expired at {_utc(self.lease_until)}"
        if self.host == socket.gethostname() and not _alive(self.pid):
            return f"process {self.pid} is gone"
        return None

    def describe(self) -> str:
        return (f"{self.host}:{self.pid} since {_utc(self.since)} "
                f"(lease until {_utc(self.lease_until)})")


@dataclass(slots=True)
class StudyLock:
    """This process's hold on a study; renew it while driving, release it when done."""

    storage: BaseStorage
    study_id: int
    study_name: str
    holder: Holder

    def renew(self) -> None:
        """Extend the lease; refuses when another driver took the study over meanwhile.

        Raises:
            StudyBusyError: the record names another holder (our lease had expired).
        """
        current = Holder.from_attr(self._read())
        if current is not None and not current.is_me():
            raise StudyBusyError(f"study {self.study_name!r} was taken over by "
                                 f"{current.describe()}; this driver stops")
        self.holder = Holder.me(self.holder.since)
        self.storage.set_study_system_attr(self.study_id, HOLDER_ATTR, self.holder.to_attr())

    def release(self) -> None:
        """Give the study up (only if still ours), so the next driver starts at once."""
        current = Holder.from_attr(self._read())
        if current is not None and current.is_me():
            self.storage.set_study_system_attr(self.study_id, HOLDER_ATTR, None)

    def _read(self) -> Any:
        return self.storage.get_study_system_attrs(self.study_id).get(HOLDER_ATTR)


def acquire_study(storage: BaseStorage, storage_spec: str, study_name: str,
                  directions: Sequence[str]) -> StudyLock:
    """Take ``study_name`` (creating the study if new) for this process.

    Raises:
        StudyBusyError: a live driver holds it; the message names host, pid and since when.
    """
    study_id = _study_id(storage, study_name, directions)
    with _exclusive(storage, storage_spec):
        now = time.time()
        current = Holder.from_attr(storage.get_study_system_attrs(study_id).get(HOLDER_ATTR))
        if current is not None and not current.is_me():
            why = current.why_stale(now)
            if why is None:
                raise StudyBusyError(f"study {study_name!r} is driven by {current.describe()}; "
                                     "stop it or wait")
            print(f"warning: study {study_name!r} was held by {current.host}:{current.pid}, "
                  f"but {why}; taking it over", file=sys.stderr, flush=True)
        lock = StudyLock(storage, study_id, study_name, Holder.me())
        storage.set_study_system_attr(study_id, HOLDER_ATTR, lock.holder.to_attr())
    return lock


def _study_id(storage: BaseStorage, study_name: str, directions: Sequence[str]) -> int:
    """The study's id, creating it when it does not exist yet."""
    try:
        return storage.get_study_id_from_name(study_name)
    except KeyError:
        pass
    try:
        return storage.create_new_study([StudyDirection[d.upper()] for d in directions], study_name)
    except DuplicatedStudyError:  # another driver created it just now
        return storage.get_study_id_from_name(study_name)


@contextmanager
def _exclusive(storage: BaseStorage, storage_spec: str) -> Iterator[None]:
    """Make check-and-set of the holder one step across processes (see the module doc)."""
    if isinstance(storage, RDBStorage) and storage.engine.dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(b"ncasearch-driver").digest()[:8], "big", signed=True)
        with storage.engine.begin() as conn:
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({key})")
            yield
        return
    if isinstance(storage, RDBStorage) and storage.engine.dialect.name != "sqlite":
        yield  # no guard on other databases (documented above)
        return
    path = _lock_path(storage, storage_spec)
    with open(path, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _lock_path(storage: BaseStorage, storage_spec: str) -> Path:
    if isinstance(storage, RDBStorage):  # SQLite: the database file
        database = storage.engine.url.database or "sqlite"
        return Path(f"{database}.driver.lock")
    return Path(f"{storage_spec}.driver.lock")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))
