"""Curricula: a pre-pre-training stream made of stages, in a defined token order.

Families:
- `constant`: one stage.
- `ascending`: stages one after another, simple to complex (bands in increasing order).
- `descending`: the same, complex to simple.
- `mixture`: stages interleaved in proportion to their shares all through the stream.

The order is part of the dataset: sequence i of a split is at position i of its shards.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from nca.config import Band, NCAConfig, Stage

FAMILIES = ("constant", "ascending", "descending", "mixture")
"""Curriculum families."""

Family = Literal["constant", "ascending", "descending", "mixture"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Curriculum:
    """Stages and how they are ordered in the token stream."""

    family: Family
    """One of `FAMILIES`."""
    stages: tuple[Stage, ...]
    """Stages in stream order; shares sum to 1."""

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"{self.family!r} is not a curriculum family; valid: {list(FAMILIES)}")
        if not isinstance(self.stages, tuple) or not self.stages:
            raise ValueError(f"Curriculum.stages={self.stages!r} is invalid; accepted: a non-empty "
                             f"tuple of Stage")
        if self.family == "constant" and len(self.stages) != 1:
            raise ValueError(f"a constant curriculum has exactly 1 stage, got {len(self.stages)}")
        total = sum(s.share for s in self.stages)
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(f"Curriculum stage shares sum to {total:g}; accepted: they sum to 1")
        frame_lens = {s.nca.frame_len for s in self.stages}
        if len(frame_lens) > 1:
            raise ValueError(f"Curriculum stages have frame lengths {sorted(frame_lens)} tokens; "
                             f"accepted: one frame length ((grid/patch)**2 + 2) for all stages")
        if self.family in ("ascending", "descending"):
            self._check_order()

    def _check_order(self) -> None:
        bands = [s.band for s in self.stages]
        if len({(b.kind, b.measure) for b in bands}) > 1:
            raise ValueError(f"an {self.family} curriculum needs bands of one kind and measure")
        keys = [(b.lower, b.upper) for b in bands]
        want = sorted(keys, reverse=self.family == "descending")
        if keys != want:
            raise ValueError(f"{self.family} curriculum bands are out of order: "
                             f"{[str(b) for b in bands]}")

    @classmethod
    def constant(cls, nca: NCAConfig, band: Band) -> Curriculum:
        """One stage: every sequence from `band`."""
        return cls(family="constant", stages=(Stage(nca=nca, band=band, share=1.0),))

    @classmethod
    def ascending(cls, nca: NCAConfig, bands: Sequence[Band],
                  shares: Sequence[float] | None = None) -> Curriculum:
        """Stages from simple to complex (bands sorted by their bounds, shares follow them)."""
        return cls._ordered("ascending", nca, bands, shares, reverse=False)

    @classmethod
    def descending(cls, nca: NCAConfig, bands: Sequence[Band],
                   shares: Sequence[float] | None = None) -> Curriculum:
        """Stages from complex to simple."""
        return cls._ordered("descending", nca, bands, shares, reverse=True)

    @classmethod
    def mixture(cls, nca: NCAConfig, bands: Sequence[Band],
                shares: Sequence[float] | None = None) -> Curriculum:
        """Bands interleaved in proportion to `shares` (equal by default)."""
        return cls(family="mixture", stages=_stages(nca, list(bands), shares))

    @classmethod
    def _ordered(cls, family: Family, nca: NCAConfig, bands: Sequence[Band],
                 shares: Sequence[float] | None, reverse: bool) -> Curriculum:
        stages = _stages(nca, list(bands), shares)
        ordered = sorted(stages, key=lambda s: (s.band.lower, s.band.upper), reverse=reverse)
        return cls(family=family, stages=tuple(ordered))

    @property
    def vocab_size(self) -> int:
        """One vocabulary for all stages: the largest alphabet's patch tokens plus 2 delimiters."""
        return max(s.nca.patch_values for s in self.stages) + 2

    @property
    def frame_len(self) -> int:
        """Tokens per frame, shared by all stages."""
        return self.stages[0].nca.frame_len

    def sequence_counts(self, n_sequences: int) -> list[int]:
        """Sequences per stage for `n_sequences` in all (largest remainder of the shares)."""
        exact = np.array([s.share for s in self.stages]) * n_sequences
        counts = np.floor(exact).astype(int)
        order = np.argsort(-(exact - counts), kind="stable")
        counts[order[: n_sequences - counts.sum()]] += 1
        return counts.tolist()

    def order(self, counts: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Stream order: (stage, index within the stage) of every position.

        Sequential families put the stages one after another; `mixture` places sequence m of a
        stage with c sequences at fraction (m + 0.5) / c of the stream, so stages stay in
        proportion everywhere.
        """
        stage = np.concatenate([np.full(c, j) for j, c in enumerate(counts)]).astype(np.int64)
        index = np.concatenate([np.arange(c) for c in counts]).astype(np.int64)
        if self.family == "mixture":
            where = np.concatenate([(np.arange(c) + 0.5) / c for c in counts if c])
            perm = np.lexsort((stage, where))
            stage, index = stage[perm], index[perm]
        return stage, index

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for JSON and cache keys)."""
        return {"family": self.family, "stages": [s.to_dict() for s in self.stages]}


def _stages(nca: NCAConfig, bands: list[Band], shares: Sequence[float] | None) -> tuple[Stage, ...]:
    if not bands:
        raise ValueError("a curriculum needs at least one band")
    if shares is None:
        shares = [1.0 / len(bands)] * len(bands)
    if len(shares) != len(bands):
        raise ValueError(f"{len(shares)} shares for {len(bands)} bands; accepted: one per band")
    return tuple(Stage(nca=nca, band=b, share=float(s)) for b, s in zip(bands, shares, strict=True))
