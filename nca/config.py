"""Frozen, validated configuration: generator settings, complexity bands, stages, data specs."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

from nca.complexity import MEASURES

MAX_ALPHABET = 15
"""Largest alphabet: 15**4 + 2 tokens still fit the paper's 64k vocabulary (and uint16)."""

MAX_VOCAB = 2**31 - 1
"""Patch tokens are serialised as int32 for the gzip score, so they must fit in int32."""


class BandUnreachableError(ValueError):
    """A complexity band that the given generator settings cannot fill."""


def _check_int(owner: str, name: str, value: object, lo: int, hi: int | None = None) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= lo
    if ok and hi is not None:
        ok = value <= hi  # type: ignore[operator]
    if not ok:
        accepted = f"an integer in [{lo}, {hi}]" if hi is not None else f"an integer >= {lo}"
        raise ValueError(f"{owner}.{name}={value!r} is invalid; accepted: {accepted}")


def _check_float(owner: str, name: str, value: object, *, positive: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and positive:
        ok = value > 0  # type: ignore[operator]
    if not ok:
        accepted = "a finite number > 0" if positive else "a finite number"
        raise ValueError(f"{owner}.{name}={value!r} is invalid; accepted: {accepted}")


@dataclass(frozen=True, kw_only=True, slots=True)
class NCAConfig:
    """Settings of the NCA generator (the paper's defaults)."""

    alphabet: int = 10
    """Number of cell states n, 2..15."""
    grid: int = 12
    """Grid side in cells (square, periodic boundary); divisible by `patch`."""
    temperature: float = 1e-4
    """Softmax temperature of the stochastic update, > 0."""
    identity_bias: float = 0.0
    """Logit bonus for keeping the current state."""
    burn_in: int = 10
    """Steps simulated before the first recorded frame."""
    dt: int = 1
    """Steps between recorded frames."""
    patch: int = 2
    """Patch side in cells; one token encodes patch*patch cells."""
    score_frames: int = 10
    """Frames after burn-in that the complexity score reads."""

    def __post_init__(self) -> None:
        _check_int("NCAConfig", "alphabet", self.alphabet, 2, MAX_ALPHABET)
        _check_int("NCAConfig", "patch", self.patch, 1, 4)
        _check_int("NCAConfig", "grid", self.grid, self.patch, 256)
        if self.grid % self.patch:
            raise ValueError(
                f"NCAConfig.grid={self.grid} is invalid; accepted: a multiple of patch={self.patch}"
            )
        _check_float("NCAConfig", "temperature", self.temperature, positive=True)
        _check_float("NCAConfig", "identity_bias", self.identity_bias)
        _check_int("NCAConfig", "burn_in", self.burn_in, 0, 100_000)
        _check_int("NCAConfig", "dt", self.dt, 1, 10_000)
        _check_int("NCAConfig", "score_frames", self.score_frames, 2, 10_000)
        if self.vocab_size > MAX_VOCAB:
            raise ValueError(
                f"NCAConfig alphabet={self.alphabet}, patch={self.patch} gives "
                f"{self.vocab_size} tokens; accepted: alphabet**(patch**2) + 2 <= {MAX_VOCAB}"
            )

    @property
    def patch_values(self) -> int:
        """Distinct patch tokens, alphabet**(patch**2)."""
        return self.alphabet ** (self.patch**2)

    @property
    def vocab_size(self) -> int:
        """Patch tokens plus the start and end delimiters."""
        return self.patch_values + 2

    @property
    def patches_per_frame(self) -> int:
        """Tokens per frame without delimiters."""
        return (self.grid // self.patch) ** 2

    @property
    def frame_len(self) -> int:
        """Tokens per frame: start, patches, end."""
        return self.patches_per_frame + 2

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields (for JSON and cache keys)."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Band:
    """An interval [lower, upper) of a complexity measure (upper == 1 is inclusive).

    Positional, `Band(0.5, 1.0)`, because an interval reads best that way.
    """

    lower: float
    """Lower bound: an absolute score, or a quantile of the alphabet's profile, in [0, 1)."""
    upper: float
    """Upper bound, in (lower, 1]."""
    kind: Literal["absolute", "quantile"] = "absolute"
    """`absolute`: bounds are scores; `quantile`: bounds are quantiles of the complexity profile."""
    measure: str = "gzip"
    """Complexity measure the bounds refer to (see `nca.complexity.MEASURES`)."""

    def __post_init__(self) -> None:
        _check_float("Band", "lower", self.lower)
        _check_float("Band", "upper", self.upper)
        if self.kind not in ("absolute", "quantile"):
            raise ValueError(
                f"Band.kind={self.kind!r} is invalid; accepted: 'absolute', 'quantile'")
        if self.measure not in MEASURES:
            raise ValueError(
                f"Band.measure={self.measure!r} is not a complexity measure; "
                f"valid: {sorted(MEASURES)}"
            )
        if not (0.0 <= self.lower < self.upper <= 1.0):
            raise ValueError(
                f"Band({self.lower}, {self.upper}) is invalid; accepted: 0 <= lower < upper <= 1"
            )

    def contains(self, scores: Any) -> Any:
        """Boolean mask of `scores` inside the band (absolute bands only)."""
        if self.kind != "absolute":
            raise ValueError(f"{self} is a quantile band; resolve it with a profile first")
        inside = (scores >= self.lower) & (scores < self.upper)
        return inside | (scores == 1.0) if self.upper == 1.0 else inside

    def __str__(self) -> str:
        q = "q" if self.kind == "quantile" else ""
        close = "]" if self.upper == 1.0 else ")"
        return f"{self.measure}{q}[{self.lower:g}, {self.upper:g}{close}"

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields (for JSON and cache keys)."""
        return {"lower": self.lower, "upper": self.upper, "kind": self.kind,
                "measure": self.measure}


PAPER_BANDS = (Band(0.2, 0.3), Band(0.3, 0.4), Band(0.4, 0.5), Band(0.5, 1.0))
"""The gzip bands the paper compares (20-30%, 30-40%, 40-50%, 50%+)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Stage:
    """One part of a curriculum: generator settings, band and share of the tokens."""

    nca: NCAConfig
    """Generator settings of this stage."""
    band: Band
    """Complexity band its rules are drawn from."""
    share: float = 1.0
    """Fraction of the dataset's tokens, in (0, 1]."""

    def __post_init__(self) -> None:
        if not isinstance(self.nca, NCAConfig):
            raise TypeError(f"Stage.nca={self.nca!r} is invalid; accepted: an NCAConfig")
        if not isinstance(self.band, Band):
            raise TypeError(f"Stage.band={self.band!r} is invalid; accepted: a Band")
        _check_float("Stage", "share", self.share, positive=True)
        if self.share > 1:
            raise ValueError(f"Stage.share={self.share} is invalid; accepted: 0 < share <= 1")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields (for JSON and cache keys)."""
        return {"nca": self.nca.to_dict(), "band": self.band.to_dict(), "share": self.share}
