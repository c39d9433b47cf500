"""The Pareto front of a multi-objective study, and the trials on it with their per-domain values.

In a multi-domain study with an objective per domain (``net-effect:code``, ``net-effect:math``,
...), the front is the trade-off between domains: no trial on it can gain on one domain without
losing on another.

Example:
    >>> pareto_mask(np.array([[1.0, 2.0], [2.0, 1.0], [2.0, 2.0]]), ["minimize", "minimize"])
    array([ True,  True, False])
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from optuna.trial import TrialState

from analysis.frame import StudyRecord
from search.record import TrialRecord

__all__ = ["EFFECTS", "pareto_mask", "pareto_table"]

EFFECTS = ("nca-effect", "net-effect")
"""The per-domain values :func:`pareto_table` shows for every domain of the study."""


def pareto_mask(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """Non-dominated rows of an ``(n, k)`` array: O(n log n) for two objectives, O(n^2 k)
    otherwise. Of rows with equal values only the first is on the front."""
    v = values * np.where(np.asarray(directions) == "maximize", -1.0, 1.0)  # all minimised
    if v.shape[1] != 2:
        return _pareto_mask_nd(v)
    order = np.lexsort((v[:, 1], v[:, 0]))
    best1 = np.minimum.accumulate(v[order, 1])
    front = np.empty(len(order), dtype=bool)
    front[0] = True
    front[1:] = v[order[1:], 1] < best1[:-1]
    mask = np.zeros(len(v), dtype=bool)
    mask[order[front]] = True
    return mask


def _pareto_mask_nd(v: np.ndarray) -> np.ndarray:
    """Row i is dominated by a row at least as good everywhere and better somewhere, or equal
    and earlier (so that duplicates keep one, as the two-objective sweep does)."""
    mask = np.zeros(len(v), dtype=bool)
    index = np.arange(len(v))
    for i, row in enumerate(v):
        weakly = np.all(v <= row, axis=1)
        better = np.any(v < row, axis=1) | (np.all(v == row, axis=1) & (index < i))
        mask[i] = not np.any(weakly & better)
    return mask


def pareto_table(rec: StudyRecord, trials: pd.DataFrame) -> pd.DataFrame:
    """The completed trials on the study's Pareto front (over all its objectives), best first on
    the first objective.

    Columns ``study, number, label, band, alphabet``, one per objective (named as the study
    names it) and, for each of the study's domains, ``nca-effect:<domain>`` and
    ``net-effect:<domain>`` (mean over seeds, from ``TrialRecord.for_domain``) unless an
    objective is already that value. Empty for a single-objective study.

    Args:
        rec: The study.
        trials: :func:`analysis.frame.trials_frame` of it (``values_<name>`` columns).
    """
    names = list(rec.metric_names)
    t = trials[(trials["study"] == rec.name) & (trials["state"] == "COMPLETE")]
    cols = [f"values_{m}" for m in names]
    if not rec.is_multi_objective or t.empty:
        return pd.DataFrame()
    t = t.dropna(subset=cols)
    front = t[pareto_mask(t[cols].to_numpy(dtype=np.float64), rec.directions)]
    out = front[["study", "number", "label", "band", "alphabet"]].copy()
    out[names] = front[cols].to_numpy()
    records = _records(rec, out["number"])
    for domain in rec.domains:
        for effect in EFFECTS:
            if f"{effect}:{domain}" not in names:
                out[f"{effect}:{domain}"] = [_effect(r, effect, domain, rec.domains[0])
                                             for r in records]
    ascending = rec.directions[0] == "minimize"
    return out.sort_values(names[0], ascending=ascending, kind="stable").reset_index(drop=True)


def _records(rec: StudyRecord, numbers: pd.Series) -> list[TrialRecord | None]:
    by_number = {t.number: t for t in rec.trials if t.state == TrialState.COMPLETE}
    return [TrialRecord.from_attrs(by_number[int(n)].user_attrs) for n in numbers]


def _effect(record: TrialRecord | None, effect: str, domain: str, first: str) -> float:
    """Mean ``effect`` on ``domain``; NaN where the trial has no result there (a one-domain
    record holds its study's first domain only)."""
    ran = record.domains if record is not None and record.domains else (first,)
    if record is None or domain not in ran:
        return float("nan")
    return record.for_domain(domain).objective(effect)
