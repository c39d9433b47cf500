"""The pruning rule of multi-objective studies: stop a trial whose first domain is hopeless.

Optuna has no pruner for multi-objective studies (``Trial.report`` refuses them), yet a
multi-domain study is one: a value per domain. Its trials train on the first domain first, so
that is what can be judged early. The rule is Optuna's median rule applied per objective and
required on all of them:

    after the first domain's stage of each seed, a trial stops when, on *every* objective the
    first domain measures, the mean of its seeds so far is worse than the median of the completed
    trials' means over the same seeds, once ``n_startup_trials`` trials have completed.

The first domain measures ``NAME:<first>``, a bare ``NAME`` in a one-domain study and
``mean-NAME`` (through its first-domain term). Objectives on other domains only, and ``compute``
(a cost known before the trial, which the sampler trades off), are not judged: a study with none
the first domain measures never prunes. Anchors are never pruned.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence

from search.record import (
    SeedRecord,
    TrialRecord,
    objective_direction,
    seeds_objective,
    split_objective,
)


def judged_objectives(objectives: Sequence[str], first_domain: str) -> tuple[str, ...]:
    """The base objectives (``loss``, ``net-effect``, ...) the first domain measures."""
    judged = []
    for name in objectives:
        base, domain, _ = split_objective(name)
        if base != "compute" and domain in ("", first_domain) and base not in judged:
            judged.append(base)
    return tuple(judged)


def hopeless(seeds: Sequence[SeedRecord], completed: Iterable[TrialRecord],
             objectives: Sequence[str], first_domain: str, n_startup_trials: int) -> bool:
    """True when the first domain's ``seeds`` so far are worse than the completed trials' median
    over the same seeds on every judged objective (see the module docstring)."""
    judged = judged_objectives(objectives, first_domain)
    n = len(seeds)
    peers = [p for r in completed if (p := _first_seeds(r, first_domain, n)) is not None]
    if not judged or len(peers) < max(n_startup_trials, 1):
        return False
    return all(_worse(seeds_objective(seeds, base),
                      statistics.median(seeds_objective(p, base) for p in peers),
                      objective_direction(base)) for base in judged)


def _first_seeds(record: TrialRecord, first_domain: str, n: int) -> Sequence[SeedRecord] | None:
    """A completed trial's first ``n`` seeds on the first domain (None if it has fewer)."""
    one = record.for_domain(first_domain) if record.domains else record
    return one.seeds[:n] if len(one.seeds) >= n else None


def _worse(value: float, median: float, direction: str) -> bool:
    return value > median if direction == "minimize" else value < median
