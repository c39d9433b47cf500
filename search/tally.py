"""What a study's trials add up to, read the same way by the driver, the board, ``search.status``,
the closing summary and the cost estimate: how many run side by side, which count towards
``n_trials``, how many ended each way, their mean wall time, and the best so far. Torch-free, so
``search.status`` stays quick."""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState

__all__ = ["best_text", "counts_towards_n_trials", "is_infeasible", "jobs_at_once", "mean_trial_s",
           "trial_counts"]


def jobs_at_once(executor: str, *, workers: int, n_trials: int, max_in_flight: int) -> int:
    """Jobs a study runs side by side: its workers (Slurm: ``max_in_flight``), or fewer locally
    when it has fewer trials, so their cores are not left idle (``search.cost.trial_threads``)."""
    if executor == "slurm":
        return max_in_flight
    return max(1, min(workers, n_trials))


def counts_towards_n_trials(t: FrozenTrial) -> bool:
    """Complete and pruned trials count (unless infeasible, or a repeat of a setting already
    scored whose result was copied), and so do trials failed for good; a trial failed and
    retried, or never started, does not."""
    if t.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return not is_infeasible(t) and "duplicate_of" not in t.user_attrs
    lost = t.user_attrs.get("retried") or t.user_attrs.get("never_started")
    return t.state == TrialState.FAIL and not lost


def is_infeasible(t: FrozenTrial) -> bool:
    """A setting that could not be realised (an unreachable band): it costs nothing and does not
    count."""
    return t.state == TrialState.PRUNED and bool(t.user_attrs.get("infeasible"))


def trial_counts(trials: list[FrozenTrial]) -> dict[str, int]:
    """The trials that count towards ``n_trials``, by outcome: ``complete``, ``pruned`` and
    ``failed`` (for good)."""
    out = {"complete": 0, "pruned": 0, "failed": 0}
    for t in trials:
        if not counts_towards_n_trials(t):
            continue
        key = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned"}.get(t.state, "failed")
        out[key] += 1
    return out


def best_text(study: optuna.Study, trials: list[FrozenTrial]) -> str:
    """The best completed trial as the header shows it (``#3 1.5320 (setting)``; the Pareto
    front's size for several objectives); empty before any completed."""
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.values]
    if not done:
        return ""
    if len(study.directions) > 1:
        return f"{len(study.best_trials)} trials on the Pareto front"
    best = study.best_trial
    return f"#{best.number} {best.value:.4f} ({best.user_attrs.get('describe', '')})"


def mean_trial_s(trials: list[FrozenTrial]) -> float | None:
    """Mean wall time of the study's trials that ran (infeasible and reused ones cost nothing,
    and one that read seeds back from another study costs less)."""
    spans = [(t.datetime_complete - t.datetime_start).total_seconds() for t in trials
             if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and t.datetime_start
             and t.datetime_complete and not t.user_attrs.get("infeasible")
             and "duplicate_of" not in t.user_attrs and "shared_seeds" not in t.user_attrs]
    return sum(spans) / len(spans) if spans else None
