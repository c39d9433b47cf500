"""Complexity profiles: the score distribution of random rules for given generator settings.

A profile is the first `n_rules` scores of a rule stream (see `nca.bank`), so it costs nothing
extra when the same stream is later searched for a band. It resolves quantile bands (an
alphabet-fair notion of complexity: "the top 20% of what this alphabet can do") and refuses
absolute bands the settings cannot reach before any search starts.

`python -m nca.profile --alphabet 10 --rules 4096 --seed 0 --json` prints one (see
`nca/profile.py`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nca.bank import ScoreStream
from nca.config import Band, BandUnreachableError, NCAConfig
from ncaio import atomic_write_text, content_key

PAPER_BINS = (0.0, 0.2, 0.3, 0.4, 0.5, 1.0)
"""Bin edges of the paper's complexity bands, with the <0.2 bin first."""


@dataclass(frozen=True, slots=True)
class ComplexityProfile:
    """Scores of `n_rules` random rules under one measure.

    Attributes:
        config: generator settings.
        measure: complexity measure name.
        seed: stream seed.
        scores: (n_rules,) float64 scores in stream order.
    """

    config: NCAConfig
    measure: str
    seed: int
    scores: np.ndarray

    @property
    def n_rules(self) -> int:
        """Number of rules profiled."""
        return len(self.scores)

    @property
    def max(self) -> float:
        """Highest score seen."""
        return float(self.scores.max())

    def percentiles(self) -> list[float]:
        """The 101 percentiles 0..100 of the scores."""
        return [float(x) for x in np.percentile(self.scores, np.arange(101))]

    def band_fractions(self) -> dict[str, float]:
        """Fractions of rules in the paper's bins: <0.2, [.2,.3), [.3,.4), [.4,.5), [.5,1]."""
        counts = np.histogram(self.scores, bins=PAPER_BINS)[0]
        return {f"{lo:g}-{hi:g}": float(c) / self.n_rules
                for lo, hi, c in zip(PAPER_BINS[:-1], PAPER_BINS[1:], counts, strict=True)}

    def fraction_in(self, band: Band) -> float:
        """Fraction of profiled rules inside an absolute band."""
        return float(np.mean(band.contains(self.scores)))

    def resolve(self, band: Band) -> Band:
        """The absolute band equal to `band` (quantile bounds become score quantiles)."""
        if band.measure != self.measure:
            raise ValueError(f"{band} uses measure {band.measure!r}; profile is {self.measure!r}")
        if band.kind == "absolute":
            return band
        lower = 0.0 if band.lower == 0 else float(np.quantile(self.scores, band.lower))
        upper = 1.0 if band.upper == 1 else float(np.quantile(self.scores, band.upper))
        if not lower < upper:
            raise BandUnreachableError(
                f"quantile band {band} for alphabet {self.config.alphabet} is empty: both bounds "
                f"resolve to {lower:.4f} (ties in {self.n_rules} profiled scores); widen it"
            )
        return Band(lower, upper, "absolute", band.measure)

    def check_reachable(self, band: Band, n_rules: int, max_candidates: int) -> None:
        """Refuse an absolute band that the profile says cannot be filled.

        Raises:
            BandUnreachableError: every profiled score is below the band, or the profiled
                acceptance needs more than `max_candidates` rules for `n_rules` accepted ones.
        """
        frac = self.fraction_in(band)
        n = self.config.alphabet
        if frac == 0 and band.lower > self.max:
            raise BandUnreachableError(
                f"band {band} is unreachable for alphabet {n}: the highest {self.measure} score "
                f"of {self.n_rules} random rules is {self.max:.4f}; "
                f"accepted: lower < {self.max:.4f}"
            )
        if frac > 0 and n_rules / frac > max_candidates:
            raise BandUnreachableError(
                f"band {band} for alphabet {n} holds {frac:.3%} of random rules (highest score "
                f"{self.max:.4f}): {n_rules} rules need ~{n_rules / frac:.0f} candidates, over "
                f"max_candidates={max_candidates}"
            )

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary: settings, percentiles, paper band fractions, max, median, mean."""
        return {
            "nca": self.config.to_dict(), "measure": self.measure, "seed": self.seed,
            "rules": self.n_rules, "percentiles": self.percentiles(),
            "band_fractions": self.band_fractions(), "max": self.max,
            "median": float(np.median(self.scores)), "mean": float(self.scores.mean()),
        }


def complexity_profile(config: NCAConfig, n_rules: int = 4096, seed: int = 0,
                       measure: str = "gzip", *, cache_dir: Path | None = None,
                       device: str | torch.device = "cpu",
                       stream: ScoreStream | None = None) -> ComplexityProfile:
    """Profile of the first `n_rules` rules of stream `seed` (cached with the stream).

    Example:
        >>> p = complexity_profile(NCAConfig(alphabet=2), n_rules=512)
        >>> p.max < 0.5
        True
    """
    if not isinstance(n_rules, int) or n_rules < 1:
        raise ValueError(f"n_rules={n_rules!r} is invalid; accepted: an integer >= 1")
    stream = stream or ScoreStream(config, seed, cache_dir, device)
    profile = ComplexityProfile(config, measure, seed, stream.scores(measure, n_rules).copy())
    if cache_dir is not None:
        key = content_key({"stream": stream.key, "measure": measure, "rules": n_rules})
        atomic_write_text(Path(cache_dir) / "profiles" / f"{key}.json",
                          json.dumps(profile.summary(), indent=1))
    return profile
