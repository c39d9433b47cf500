"""Complexity measures of NCA trajectories, scored for many rules at once.

The paper's measure is `gzip`: the gzip (level 9) size of the **int32 little-endian** bytes of the
patch tokens of the first `score_frames` frames after burn-in (delimiters removed), divided by the
raw size. The dtype sets the scale: uint16 or int64 bytes compress differently, and the paper's
bands only mean the same thing with exactly this serialisation. zlib releases the GIL, so rules
are compressed on a thread pool.
"""

from __future__ import annotations

import os
import zlib
from concurrent.futures import Executor
from typing import Protocol

import numpy as np

GZIP_LEVEL = 9
# zlib's gzip container: the same 10-byte header and 8-byte trailer as gzip.GzipFile
_GZIP_WBITS = 31


class ComplexityMeasure(Protocol):
    """Scores trajectories; higher means more complex. Scores are in [0, 1]."""

    name: str

    def score(self, frames: np.ndarray, tokens: np.ndarray,
              executor: Executor | None) -> np.ndarray:
        """Score each trajectory.

        Args:
            frames: (R, T, H, W) uint8 cell states of the scored frames.
            tokens: (R, T, P) int32 patch tokens of the same frames (no delimiters).
            executor: optional thread pool for parallel work.

        Returns:
            (R,) float64 scores.
        """
        ...


def gzip_ratio(data: bytes) -> float:
    """Gzip (level 9) size of `data` over its raw size, as the reference computes it."""
    return len(zlib.compress(data, GZIP_LEVEL, _GZIP_WBITS)) / len(data)


def _gzip_rows(rows: np.ndarray) -> list[float]:
    return [gzip_ratio(row.tobytes()) for row in rows]


class GzipRatio:
    """The paper's score: gzip ratio of the int32 little-endian patch tokens."""

    name = "gzip"

    def score(self, frames: np.ndarray, tokens: np.ndarray,
              executor: Executor | None) -> np.ndarray:
        rows = np.ascontiguousarray(tokens.reshape(len(tokens), -1), dtype="<i4")
        if executor is None or len(rows) < 64:
            return np.asarray(_gzip_rows(rows), dtype=np.float64)
        # A few chunks per worker: per-task overhead stays small next to ~50 us per compression.
        n_chunks = min(len(rows), 4 * (os.cpu_count() or 1))
        parts = executor.map(_gzip_rows, np.array_split(rows, n_chunks))
        return np.asarray([s for part in parts for s in part], dtype=np.float64)


class ChangeRate:
    """Fraction of cells that change between consecutive frames, averaged over the frames."""

    name = "change"

    def score(self, frames: np.ndarray, tokens: np.ndarray,
              executor: Executor | None) -> np.ndarray:
        changed = frames[:, 1:] != frames[:, :-1]
        return changed.reshape(len(frames), -1).mean(axis=1, dtype=np.float64)


MEASURES: dict[str, ComplexityMeasure] = {m.name: m for m in (GzipRatio(), ChangeRate())}
"""Registered complexity measures by name."""


def get_measure(name: str) -> ComplexityMeasure:
    """The registered measure called `name`."""
    try:
        return MEASURES[name]
    except KeyError:
        raise ValueError(
            f"{name!r} is not a complexity measure; valid: {sorted(MEASURES)}") from None
