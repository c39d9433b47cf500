"""Small shared helpers: seed derivation, the generator's code version, ordered parallel maps
(hashing, atomic writes and folder publishing are ncaio's)."""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TypeVar

import torch

from ncaio import sha256_file, source_key  # noqa: F401 - re-exported

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


@cache
def code_version() -> str:
    """Hash of the generator's source files (see `_GENERATOR_MODULES`)."""
    here = Path(__file__).resolve().parent
    return source_key(here / name for name in _GENERATOR_MODULES)


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
