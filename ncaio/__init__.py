"""Atomic writes and verified cache entries: the one implementation every package uses.

Every package (``nca``, ``lm``, ``search``, ``analysis``) may import this one; it imports
nothing of the project, so the import rules between the others still hold.

- ``atomic_write_*``: the file at ``path`` is either the old one or the complete new one, even
  after a crash or a full disk: the bytes go to a temporary file in the same folder, are
  flushed and fsync'd, renamed over ``path``, and the folder is fsync'd so the rename survives
  a power cut. On any failure (ENOSPC included) the temporary file is removed.
- ``write_verified_json``/``read_verified_json``: JSON stored with the sha256 of its payload;
  reading checks it.
- ``save_verified``/``verify_file``: any file (a torch checkpoint) with a ``<path>.sha256``
  sidecar, written atomically after the file; verify before loading.
- ``quarantine``: a damaged entry is moved to ``<dir>/.corrupt/`` for inspection, never deleted.
- ``content_key``/``canonical_json``, ``sha256_bytes``/``sha256_file``, ``source_key``: the one
  set of hashers behind every cache key and checksum (nca, lm, search).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePath
from typing import IO, Any, TypeVar

T = TypeVar("T")

__all__ = [
    "TOKEN_FORMAT",
    "CorruptCacheError",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_npy",
    "atomic_write_text",
    "canonical_json",
    "content_key",
    "discard_dir",
    "publish_dir",
    "quarantine",
    "read_intact",
    "read_verified_json",
    "report_corrupt",
    "save_verified",
    "sha256_bytes",
    "sha256_file",
    "sidecar_path",
    "source_key",
    "staging_dir",
    "verify_file",
    "write_verified_json",
]

_VERIFIED_FORMAT = "ncaio-verified/1"
TOKEN_FORMAT = "ncasearch-tokens/1"
"""The format of a token dataset on disk (docs/interfaces.md 1b): ``nca`` writes it, ``lm``
reads it, neither imports the other."""


class CorruptCacheError(ValueError):
    """A cache entry whose content does not match what was recorded when it was written.

    A ValueError because callers already treat ValueError as "this input is unusable"; it is
    not an OSError, since the file system itself worked.
    """

    def __init__(self, path: str | os.PathLike[str], why: str) -> None:
        self.path = Path(path)
        self.why = why
        super().__init__(f"{str(self.path)!r} is damaged: {why}")


@contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on a clean exit it replaces ``path`` durably.

    Usage: ``with atomic_write(p) as f: torch.save(state, f)``. ``mode`` is ``"wb"`` or ``"w"``.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode {mode!r} must be 'wb' or 'w'")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


def atomic_write_npy(path: str | os.PathLike[str], array: Any) -> None:
    """``np.save`` to ``path`` atomically and durably."""
    import numpy as np  # here: ncaio stays importable without numpy's start-up cost

    with atomic_write(path) as f:
        np.save(f, array)


@contextmanager
def staging_dir(final: str | os.PathLike[str]) -> Iterator[Path]:
    """A fresh temporary folder beside ``final``, removed on error; ``publish_dir`` moves it into
    place once complete, so readers never see half of a folder."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def publish_dir(tmp: str | os.PathLike[str], final: str | os.PathLike[str]) -> bool:
    """Move a finished staging folder into place; False when another writer got there first.

    A folder rename cannot replace a non-empty folder, so an existing ``final`` (a concurrent
    build of the same key) wins and ``tmp`` is dropped.
    """
    try:
        os.rename(tmp, final)
        return True
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        return False


def discard_dir(path: str | os.PathLike[str]) -> None:
    """Remove a folder after first renaming it aside, so readers never see it half-deleted."""
    path = Path(path)
    if not path.exists():
        return
    aside = path.with_name(f".{path.name}.discard-{os.getpid()}")
    try:
        os.rename(path, aside)
    except OSError:
        return
    shutil.rmtree(aside, ignore_errors=True)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and durably."""
    with atomic_write(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically and durably."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON to ``path`` atomically and durably."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # some platforms cannot open a folder; the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass  # not supported for folders on this file system
    finally:
        os.close(fd)


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str], chunk_bytes: int = 1 << 22) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_bytes):
            h.update(block)
    return h.hexdigest()


def source_key(files: Iterable[Path], length: int = 16) -> str:
    """Hex sha256 prefix of the names and bytes of source ``files``, in the order given (a
    missing file counts as empty): a code version no one has to bump by hand."""
    h = hashlib.sha256()
    for path in files:
        h.update(path.name.encode())
        h.update(path.read_bytes() if path.exists() else b"")
    return h.hexdigest()[:length]


def _key_default(obj: Any) -> Any:
    if isinstance(obj, PurePath):
        return str(obj)
    if type(obj).__module__ == "numpy" and hasattr(obj, "item"):  # a numpy scalar
        return obj.item()
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def canonical_json(obj: Any, *, default: Callable[[Any], Any] | None = _key_default) -> str:
    """JSON with sorted keys and no whitespace: equal values give equal text.

    ``default`` turns what JSON cannot hold into what it can; the default writes paths as
    strings and numpy scalars as numbers, and refuses anything else.
    """
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=default)


def content_key(obj: Any, *, length: int = 20,
                default: Callable[[Any], Any] | None = _key_default) -> str:
    """Hex sha256 prefix of ``canonical_json(obj, default=default)``: a cache key.

    Changing how a key is computed orphans every cache entry stored under it, so callers pin
    their ``default`` (tests/ncaio/test_content_keys.py pins the keys).
    """
    return sha256_bytes(canonical_json(obj, default=default).encode())[:length]


def _payload(obj: Any) -> str:
    return canonical_json(obj, default=None)  # strict: what is stored must read back the same


def write_verified_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` with the sha256 of its canonical JSON, atomically."""
    data = _payload(obj)
    atomic_write_json(path, {"format": _VERIFIED_FORMAT,
                             "sha256": sha256_bytes(data.encode("utf-8")), "data": obj})


def read_verified_json(path: str | os.PathLike[str]) -> Any:
    """The object stored by ``write_verified_json``.

    Raises:
        FileNotFoundError: no entry at ``path``.
        CorruptCacheError: truncated, undecodable, not ours, or the hash does not match.
    """
    raw = Path(path).read_bytes()
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptCacheError(path, f"not JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != _VERIFIED_FORMAT or "data" not in doc:
        raise CorruptCacheError(path, "no recorded sha256 (not written by write_verified_json)")
    if sha256_bytes(_payload(doc["data"]).encode("utf-8")) != doc.get("sha256"):
        raise CorruptCacheError(path, "sha256 does not match the content")
    return doc["data"]


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """Where the sha256 of a binary file is recorded: ``<path>.sha256``."""
    p = Path(path)
    return p.with_name(p.name + ".sha256")


def save_verified(path: str | os.PathLike[str], write_fn: Callable[[IO[bytes]], None]) -> Path:
    """Write a binary file with ``write_fn(f)`` atomically, then record its sha256 beside it.

    The sidecar is written after the file: a crash in between leaves the new file beside the
    old hash (or none), which ``verify_file`` rejects, so an entry is trusted only once complete.
    A failed write (ENOSPC) leaves the old file and its sidecar untouched, still verifiable.
    """
    target = Path(path)
    with atomic_write(target, "wb") as f:
        write_fn(f)
    atomic_write_text(sidecar_path(target), sha256_file(target) + "\n")
    return target


def verify_file(path: str | os.PathLike[str]) -> None:
    """Check a file written by ``save_verified`` against its sidecar.

    Raises:
        FileNotFoundError: no file at ``path``.
        CorruptCacheError: the sidecar is missing or unreadable, or the hash does not match.
    """
    target = Path(path)
    if not target.is_file():
        raise FileNotFoundError(f"no file at {str(target)!r}")
    try:
        recorded = sidecar_path(target).read_text().strip()
    except (OSError, UnicodeDecodeError):
        raise CorruptCacheError(target, "no sha256 recorded (incomplete write)") from None
    if sha256_file(target) != recorded:
        raise CorruptCacheError(target, "sha256 does not match the recorded one")


def quarantine(path: str | os.PathLike[str]) -> Path:
    """Move a damaged entry (and its sidecar) to ``<dir>/.corrupt/<name>.<timestamp>``.

    Kept for inspection, never deleted; the caller then recomputes the entry. Works for files
    and folders. Returns the entry's new path.
    """
    src = Path(path)
    aside_dir = src.parent / ".corrupt"
    aside_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    dest = aside_dir / f"{src.name}.{stamp}.{os.getpid()}"
    n = 0
    while dest.exists():  # two quarantines of one name within a second
        n += 1
        dest = aside_dir / f"{src.name}.{stamp}.{os.getpid()}.{n}"
    os.rename(src, dest)
    sidecar = sidecar_path(src)
    if sidecar.exists():
        os.rename(sidecar, sidecar_path(dest))
    return dest


def report_corrupt(exc: CorruptCacheError, what: str = "cache entry") -> Path | None:
    """Quarantine the entry of ``exc`` and say so in one line on stderr; returns where it went.

    None when another process moved the entry first (both found it damaged at once).
    """
    try:
        dest: Path | None = quarantine(exc.path)
    except FileNotFoundError:
        dest = None
    where = f"moved to {str(dest)!r}" if dest else "already moved aside by another process"
    print(f"warning: {what} {str(exc.path)!r} is damaged ({exc.why}); {where}; recomputing",
          file=sys.stderr, flush=True)
    return dest


def read_intact(path: str | os.PathLike[str], read: Callable[[Path], T], what: str) -> T | None:
    """``read(path)`` when the cache entry exists and is intact; None when it is absent or
    damaged (a damaged one is reported in one line and quarantined, so the caller recomputes).

    ``read`` raises CorruptCacheError for damage it detects itself (a wrong key, a bad hash).
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        return read(path)
    except CorruptCacheError as exc:
        report_corrupt(exc, what)
        return None
