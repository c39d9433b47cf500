"""What the confirmation phase costs next to the search it confirms, from a finished study.

    python -m search.bench_confirm --storage runs/code/journal.log --study code

Prints the wall time of each phase (from its scratch-baseline phase or first trial to its last
finished trial, as the journal recorded them), the confirmation's cost as a ratio to the
search's, and its runs: trials, arms and grid points, seeds.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import optuna
from optuna.trial import TrialState

from ncaio.cli import OneLineParser
from search.board import fmt_duration
from search.confirm import confirm_name
from search.progress import BASELINE_PHASE_ATTR
from search.storage import StorageError, open_storage, resolve_study_names

__all__ = ["main", "phase_span"]


def phase_span(study: optuna.Study) -> tuple[float, float]:
    """(start, end) in Unix seconds of a study's work: its baseline phase's start (or its first
    trial's) to its last finished trial."""
    trials = study.get_trials(deepcopy=False)
    finished = [t.datetime_complete.timestamp() for t in trials
                if t.state != TrialState.RUNNING and t.datetime_complete]
    if not finished:
        raise ValueError(f"study {study.study_name!r} has no finished trial")
    phase = study.user_attrs.get(BASELINE_PHASE_ATTR) or {}
    starts = [t.datetime_start.timestamp() for t in trials if t.datetime_start]
    if isinstance(phase, dict) and phase.get("started"):
        starts.append(float(phase["started"]))
    return min(starts), max(finished)


def main(argv: Sequence[str] | None = None) -> int:
    p = OneLineParser(prog="python -m search.bench_confirm", description=__doc__.splitlines()[0])
    p.add_argument("--storage", required=True, help="the study's journal file or database URL")
    p.add_argument("--study", required=True, help="the search study's name")
    args = p.parse_args(argv)
    try:
        storage = open_storage(args.storage, create=False)
        resolve_study_names(storage, [args.study, confirm_name(args.study)])
        search = optuna.load_study(study_name=args.study, storage=storage)
        confirm = optuna.load_study(study_name=confirm_name(args.study), storage=storage)
        (s0, s1), (c0, c1) = phase_span(search), phase_span(confirm)
    except (StorageError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    runs = confirm.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    arms = {t.user_attrs.get("arm") for t in runs}
    seeds = {len(t.user_attrs.get("seeds", [])) for t in runs}
    print(f"search phase:       {fmt_duration(s1 - s0)}  "
          f"({len(search.get_trials(deepcopy=False))} trials)")
    print(f"confirmation phase: {fmt_duration(c1 - c0)}  ({len(runs)} runs: {len(arms)} arms x "
          f"grid points, {'/'.join(map(str, sorted(seeds)))} fresh seeds each)")
    print(f"confirmation / search: {(c1 - c0) / max(1.0, s1 - s0):.2f}; whole study "
          f"{fmt_duration(c1 - s0)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
