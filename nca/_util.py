"""Small shared helpers: seed derivation, canonical hashing, atomic writes, code version."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from ncaio import atomic_write, atomic_write_text, sha256_file, source_key  # noqa: F401 - re-exported

T = TypeVar("T")
R = TypeVar("R")

# Modules whose source decides which tokens a build writes; their hash is the generator's code
# version, part of every cache key, so editing any of them can never serve stale data. They are
# the modules nca.dataset imports (tests/test_imports.py checks): editing a tool
# (nca.render, nca.bench) regenerates nothing. lm's key is its package minus its command lines.
_GENERATOR_MODULES = (
    "rules.py", "rollout.py", "tokens.py", "complexity.py", "bank.py", "profiles.py",
    "curriculum.py", "controls.py", "dataset.py", "nca_source.py", "spec.py", "store.py",
    "config.py", "_util.py",
)


def derive_seed(*parts: object) -> int:
    """A 32-bit seed derived from `parts` (torch's CPU generator only uses the low 32 bits)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little")


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: equal values give equal text."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def content_key(obj: Any, length: int = 20) -> str:
    """Hex sha256 prefix of the canonical JSON of `obj`."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:length]


@cache
def code_version() -> str:
    """Hash of the generator's source files (see `_GENERATOR_MODULES`)."""
    here = Path(__file__).resolve().parent
    return source_key(here / name for name in _GENERATOR_MODULES)


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` atomically and durably (see ncaio)."""
    atomic_write_text(path, text)


def save_npy_atomic(path: Path, array: np.ndarray) -> None:
    """np.save to `path` atomically and durably (see ncaio)."""
    with atomic_write(path) as f:
        np.save(f, array)


@contextmanager
def staging_dir(final: Path) -> Iterator[Path]:
    """A fresh temporary directory beside `final`, removed on error (the caller renames it)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def publish_dir(tmp: Path, final: Path) -> bool:
    """Move a finished staging directory into place; False when another writer got there first.

    A directory rename cannot replace a non-empty directory, so an existing `final` (written by a
    concurrent build of the same key, or left for us to replace by the caller) wins and `tmp` is
    dropped.
    """
    try:
        os.rename(tmp, final)
        return True
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        return False


def discard_dir(path: Path) -> None:
    """Remove a directory after first renaming it aside, so readers never see it half-deleted."""
    if not path.exists():
        return
    aside = path.with_name(f".{path.name}.discard-{os.getpid()}")
    try:
        os.rename(path, aside)
    except OSError:
        return
    shutil.rmtree(aside, ignore_errors=True)


def default_workers(device: str | torch.device) -> int:
    """Parallel rollout workers: one per torch CPU thread on CPU, one on an accelerator."""
    return max(1, torch.get_num_threads()) if torch.device(device).type == "cpu" else 1


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Temporarily set torch's intra-op threads (process-wide) and restore them."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """fn over items on `workers` threads, results in input order, at most 2*workers in flight.

    Rollouts are many small torch ops: run single-threaded side by side on a thread pool (torch
    releases the GIL) they use the cores as well as intra-op threads on an idle machine and
    degrade gracefully on a busy one, where intra-op barriers stall (about 5x slower when other
    processes hold the cores, measured on the project's 2-core machine).
    """
    if workers <= 1:
        with torch_threads(1):
            yield from map(fn, items)
        return
    with torch_threads(1), ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque[Future[R]] = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
