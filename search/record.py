"""What a finished trial records: the one schema the search writes and the reports read.

A completed trial stores its results as Optuna user attributes (JSON, see docs/interfaces.md §4).
:class:`TrialRecord` is that record, typed: ``search.trial`` builds one and stores
:meth:`TrialRecord.to_attrs`; ``analysis`` reads :meth:`TrialRecord.from_attrs`; the synthetic
studies that tests and benchmarks use build one too. A field renamed here therefore breaks the
search, the reports and their tests together, instead of the reports alone.

This module imports only the standard library, so ``analysis`` may import it without torch.

Record versions:
    1: the evidence studies (``studies/results/runs``): one scratch run per seed, so the best
       scratch run is the matched one and the net effect equals the NCA effect.
    2: scratch runs per recipe (issue 11): NCA effect, net effect, best scratch run, probes.
    3: several domains (issue 15): version 2's keys hold the first domain's results, ``domains``
       and ``by_domain`` every domain's. A one-domain trial still writes version 2.
    Any version of a confirmation run (issue 27) also holds ``test_losses``, each seed's final
    loss on the test split.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "CONFIRMS_ATTR",
    "DOMAINS_RECORD_VERSION",
    "OBJECTIVES",
    "PER_DOMAIN_OBJECTIVES",
    "PLAN_ATTR",
    "RECORD_VERSION",
    "DomainRecord",
    "SeedRecord",
    "TrialRecord",
    "objective_direction",
    "seeds_objective",
    "split_objective",
]

CONFIRMS_ATTR = "confirms"
"""Study user attribute of a confirmation study (``search.confirm``): the search study's name."""
PLAN_ATTR = "confirm_plan"
"""Study user attribute of a confirmation study: its finalists, scratch arms, lr grid and seeds
(JSON), which ``analysis.confirmation`` reads."""

RECORD_VERSION = 2
"""The version of a one-domain record."""
DOMAINS_RECORD_VERSION = 3
"""The version of a multi-domain record."""

Direction = Literal["minimize", "maximize"]

OBJECTIVES: dict[str, Direction] = {
    "loss": "minimize", "gain": "maximize", "nca-effect": "maximize", "net-effect": "maximize",
    "speedup": "maximize", "compute": "minimize",
}
"""Objective names a study may use, with their directions. ``gain`` is the NCA effect under its
older name; ``compute`` is the training tokens per seed (NCA + domain)."""

PER_DOMAIN_OBJECTIVES = ("loss", "gain", "nca-effect", "net-effect", "speedup")
"""Objectives measured on each domain of a multi-domain study: ``net-effect:math`` is the net
effect on math, ``mean-net-effect`` its mean over the study's domains (``compute`` is the
trial's)."""


def split_objective(name: str) -> tuple[str, str, bool]:
    """``(base, domain, mean)`` of an objective name: ``net-effect:math`` -> ``("net-effect",
    "math", False)``, ``mean-loss`` -> ``("loss", "", True)``, ``loss`` -> ``("loss", "", False)``.

    Raises:
        ValueError: not an objective name.
    """
    base, _, domain = name.partition(":")
    mean = base.startswith("mean-") and not domain
    if mean:
        base = base.removeprefix("mean-")
    per_domain = bool(domain) or mean
    if base not in OBJECTIVES or (per_domain and base not in PER_DOMAIN_OBJECTIVES):
        raise ValueError(f"objective {name!r}: expected one of {', '.join(OBJECTIVES)}, "
                         f"NAME:DOMAIN or mean-NAME "
                         f"(NAME one of {', '.join(PER_DOMAIN_OBJECTIVES)})")
    return base, domain, mean


def objective_direction(name: str) -> Direction:
    """The direction of objective ``name`` (a per-domain or mean one: its base objective's)."""
    return OBJECTIVES[split_objective(name)[0]]


def seeds_objective(seeds: Sequence[SeedRecord], name: str) -> float:
    """The mean over ``seeds`` of a per-domain objective (a key of
    :data:`PER_DOMAIN_OBJECTIVES`): how a trial, or the seeds of one so far, is scored."""
    if name == "loss":
        return statistics.fmean(s.loss for s in seeds)
    if name in ("gain", "nca-effect"):
        return statistics.fmean(s.gain_pct for s in seeds)
    if name == "net-effect":
        return statistics.fmean(s.net_gain_pct for s in seeds)
    if name == "speedup":
        return statistics.fmean(s.speedup or 0.0 for s in seeds)
    raise ValueError(f"objective {name!r} is not measured per seed; "
                     f"expected one of {', '.join(PER_DOMAIN_OBJECTIVES)}")


Curve = tuple[tuple[int, float], ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class SeedRecord:
    """One seed of a trial, paired with the scratch runs of the same seed and budget."""

    seed: int
    """The seed (NCA data, init and batch order)."""
    loss: float
    """Final downstream validation loss (nats/token)."""
    scratch_loss: float
    """Final loss of the matched scratch run (same downstream recipe)."""
    gain_pct: float
    """NCA effect: % lower loss than the matched scratch run (positive = better)."""
    net_gain_pct: float
    """Net effect: % lower loss than the best scratch run."""
    best_scratch_loss: float
    """The lowest final loss among the scratch runs of this seed and budget."""
    best_scratch_recipe: str
    """Which scratch run that was (``matched``, ``paper``, ``proxy``)."""
    scratch_losses: Mapping[str, float]
    """Final loss of each scratch run by label (empty in version 1)."""
    speedup: float | None
    """Scratch tokens / NCA-arm tokens to reach scratch's final loss (None: never reached)."""
    curve: Curve
    """``(tokens, val_loss)`` of the NCA arm's downstream stage."""
    scratch_curve: Curve
    """``(tokens, val_loss)`` of the matched scratch run."""
    probe: Mapping[str, Any] | None
    """Transfer probe (``lm.probe``) of both arms, or None when not measured."""
    test_loss: float | None = None
    """Final loss on the test split: a confirmation run's only (a search never reads it)."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SeedRecord:
        """The record of ``dataclasses.asdict(record)`` read back from JSON (curves as lists).

        Raises:
            TypeError: ``data`` misses a field or has one the record does not know.
        """
        return cls(**{**data, "curve": _curve(data.get("curve")),
                      "scratch_curve": _curve(data.get("scratch_curve"))})


@dataclass(frozen=True, kw_only=True, slots=True)
class DomainRecord:
    """One domain of a multi-domain trial: its seeds, paired with that domain's scratch runs."""

    seeds: tuple[SeedRecord, ...]
    """Per-seed results on this domain, in the study's seed order."""
    bpb: float
    """Mean final loss in bits per byte of this domain's text."""
    recipe: Mapping[str, Any] | None
    """The downstream recipe as resolved for this domain."""


_DOMAIN_KEYS = ("seeds", "losses", "test_losses", "scratch_losses", "bpb", "gains_pct", "gain_pct",
                "nca_effect_pct", "net_effects_pct", "net_effect_pct", "best_scratch_losses",
                "best_scratch_recipes", "scratch_losses_by_recipe", "speedups", "speedup",
                "curves", "scratch_curves", "recipe", "probes")
"""The keys of a one-domain record that ``by_domain`` repeats for each domain."""


@dataclass(frozen=True, kw_only=True, slots=True)
class TrialRecord:
    """Every seed of one completed trial and what the setting realised."""

    seeds: tuple[SeedRecord, ...]
    """Per-seed results, in the study's seed order."""
    source: str
    """``nca`` or another pre-pre-training source; ``none`` for scratch."""
    band: tuple[float, float] | None
    """The complexity band as run (gzip ratio, lower and upper)."""
    alphabet: int | None
    """NCA alphabet size."""
    recipe: Mapping[str, Any] | None
    """The resolved ``lm.recipe.Recipe`` as a dict (None in version 1)."""
    nca_tokens: int | None
    """NCA tokens of the pre-pre-training stage (None in version 1)."""
    domain_tokens: int | None
    """Downstream tokens (None in version 1)."""
    tokens: int
    """Training tokens per seed, NCA + domain."""
    bpb: float
    """Mean final loss in bits per byte of text."""
    complexity_mean: float | None
    """Mean gzip ratio of the NCA data, from its manifest."""
    acceptance_rate: float | None
    """Share of sampled rules that fell in the band."""
    upstream: Mapping[str, Any] | None
    """The NCA stage's own losses (``val_loss``, ``unigram_loss``, ``learned``, ...)."""
    wall_s: float
    """Wall time of the trial (seconds)."""
    device: str
    """``cpu`` or ``cuda``."""
    version: int = RECORD_VERSION
    """The record version it was written with (see the module docstring)."""
    domains: Mapping[str, DomainRecord] = field(default_factory=dict)
    """Every domain's results in study order (version 3; empty for one domain). ``seeds``,
    ``bpb`` and ``recipe`` are then the first domain's."""

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ValueError("a trial record needs at least one seed; got none")

    def for_domain(self, domain: str) -> TrialRecord:
        """The record as a one-domain trial on ``domain`` would have written it (a one-domain
        record is its own: it does not know its domain's name)."""
        if not self.domains:
            return self
        if domain not in self.domains:
            raise ValueError(f"domain {domain!r}: the trial ran on {', '.join(self.domains)}")
        d = self.domains[domain]
        return dataclasses.replace(self, seeds=d.seeds, bpb=d.bpb, recipe=d.recipe, domains={},
                                   version=RECORD_VERSION)

    def objective(self, name: str) -> float:
        """The value of objective ``name``: a key of :data:`OBJECTIVES` (on the first domain),
        ``NAME:DOMAIN`` or ``mean-NAME`` (see :func:`split_objective`); a mean over seeds."""
        base, domain, mean = split_objective(name)
        if mean:
            return statistics.fmean(self.for_domain(d).objective(base)
                                    for d in (self.domains or [""]))
        if domain:
            return self.for_domain(domain).objective(base)
        return float(self.tokens) if base == "compute" else seeds_objective(self.seeds, base)

    def to_attrs(self) -> dict[str, Any]:
        """The user attributes of docs/interfaces.md §4: per-seed values as parallel lists."""
        s = self.seeds
        reached = [x.speedup for x in s if x.speedup is not None]
        return {
            "seeds": [x.seed for x in s], "losses": [x.loss for x in s],
            "scratch_losses": [x.scratch_loss for x in s], "bpb": self.bpb,
            "gains_pct": [x.gain_pct for x in s], "gain_pct": self.objective("nca-effect"),
            "nca_effect_pct": self.objective("nca-effect"),
            "net_effects_pct": [x.net_gain_pct for x in s],
            "net_effect_pct": self.objective("net-effect"),
            "best_scratch_losses": [x.best_scratch_loss for x in s],
            "best_scratch_recipes": [x.best_scratch_recipe for x in s],
            "scratch_losses_by_recipe": [dict(x.scratch_losses) for x in s],
            "speedups": [x.speedup for x in s],
            "speedup": statistics.fmean(reached) if reached else None,
            "curves": [[list(p) for p in x.curve] for x in s],
            "scratch_curves": [[list(p) for p in x.scratch_curve] for x in s],
            "band": list(self.band) if self.band else None, "alphabet": self.alphabet,
            "source": self.source, "recipe": _plain(self.recipe),
            "nca_tokens": self.nca_tokens, "domain_tokens": self.domain_tokens,
            "complexity_mean": self.complexity_mean, "acceptance_rate": self.acceptance_rate,
            "upstream": _plain(self.upstream), "probes": [_plain(x.probe) for x in s],
            "tokens": self.tokens, "wall_s": self.wall_s, "device": self.device,
            "record_version": self.version,
        } | self._test_attrs() | self._domain_attrs()

    def _test_attrs(self) -> dict[str, Any]:
        """``test_losses`` of a confirmation run (nothing for a search trial)."""
        if all(x.test_loss is None for x in self.seeds):
            return {}
        return {"test_losses": [x.test_loss for x in self.seeds]}

    def _domain_attrs(self) -> dict[str, Any]:
        """``domains`` and ``by_domain`` of a multi-domain record (nothing for one domain)."""
        if not self.domains:
            return {}
        return {"domains": list(self.domains), "by_domain": {
            name: {k: v for k, v in self.for_domain(name).to_attrs().items() if k in _DOMAIN_KEYS}
            for name in self.domains}}

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> TrialRecord | None:
        """The record in a trial's user attributes; None when it holds no results (a pruned,
        failed or running trial). Reads every version listed in the module docstring."""
        losses = attrs.get("losses")
        if not isinstance(losses, Sequence) or not losses:
            return None
        version = int(attrs.get("record_version", 1))
        seeds = tuple(_seed_record(attrs, i) for i in range(len(losses)))
        band: Any = attrs.get("band")
        return cls(
            seeds=seeds, source=str(attrs.get("source") or "nca"),
            band=(float(band[0]), float(band[1])) if _is_pair(band) else None,
            alphabet=_opt_int(attrs.get("alphabet")), recipe=attrs.get("recipe"),
            nca_tokens=_opt_int(attrs.get("nca_tokens")),
            domain_tokens=_opt_int(attrs.get("domain_tokens")),
            tokens=int(attrs.get("tokens") or 0), bpb=float(attrs.get("bpb") or math.nan),
            complexity_mean=attrs.get("complexity_mean"),
            acceptance_rate=attrs.get("acceptance_rate"), upstream=attrs.get("upstream"),
            wall_s=float(attrs.get("wall_s") or 0.0), device=str(attrs.get("device") or ""),
            version=version, domains=_domain_records(attrs),
        )


def _domain_records(attrs: Mapping[str, Any]) -> dict[str, DomainRecord]:
    """The ``by_domain`` results of a version-3 record, in the order of ``domains``."""
    by_domain = attrs.get("by_domain")
    if not isinstance(by_domain, Mapping):
        return {}
    out = {}
    for name in attrs.get("domains") or list(by_domain):
        sub = by_domain[name]
        out[str(name)] = DomainRecord(
            seeds=tuple(_seed_record(sub, i) for i in range(len(sub["losses"]))),
            bpb=float(sub.get("bpb") or math.nan), recipe=sub.get("recipe"))
    return out


def _seed_record(attrs: Mapping[str, Any], i: int) -> SeedRecord:
    """Seed ``i`` of the parallel lists. Version 1 had one scratch run, so the matched run is
    the best one and the net effect is the NCA effect."""
    n = len(attrs["losses"])
    loss = attrs["losses"][i]
    scratch = _nth(attrs, "scratch_losses", i, n)
    gain = _nth(attrs, "gains_pct", i, n)
    if gain is None and loss is not None and scratch:
        gain = 100.0 * (scratch - loss) / scratch
    legacy = "net_effects_pct" not in attrs
    return SeedRecord(
        seed=_nth(attrs, "seeds", i, n), loss=loss, scratch_loss=scratch, gain_pct=gain,
        net_gain_pct=gain if legacy else _nth(attrs, "net_effects_pct", i, n),
        best_scratch_loss=scratch if legacy else _nth(attrs, "best_scratch_losses", i, n),
        best_scratch_recipe="matched" if legacy else _nth(attrs, "best_scratch_recipes", i, n),
        scratch_losses=_nth(attrs, "scratch_losses_by_recipe", i, n) or {},
        speedup=_nth(attrs, "speedups", i, n),
        curve=_curve(_nth(attrs, "curves", i, n)),
        scratch_curve=_curve(_nth(attrs, "scratch_curves", i, n)),
        probe=_nth(attrs, "probes", i, n), test_loss=_nth(attrs, "test_losses", i, n),
    )


def _nth(attrs: Mapping[str, Any], key: str, i: int, n: int) -> Any:
    """Element ``i`` of a per-seed list, or None when the list is missing or of another length."""
    values = attrs.get(key)
    if isinstance(values, Sequence) and not isinstance(values, str) and len(values) == n:
        return values[i]
    return None


def _curve(points: Any) -> Curve:
    if not isinstance(points, Sequence):
        return ()
    return tuple((int(p[0]), float(p[1])) for p in points)


def _is_pair(value: Any) -> bool:
    return (isinstance(value, Sequence) and len(value) == 2
            and all(isinstance(v, (int, float)) for v in value))


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _plain(value: Any) -> Any:
    """Mappings as plain dicts, so the attributes are JSON whatever a caller passed in."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value
