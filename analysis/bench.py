"""Benchmark: report a 10,000-trial study end to end (target: under 30 s).

Builds a synthetic study (:mod:`analysis.synthetic`, §4 attributes, curves for every seed) in a
journal file, then runs ``python -m analysis.report`` on it several times in a fresh process
(interpreter start, imports, reading the journal, statistics, figures, CSV/Markdown/HTML) and
prints the median, plus one in-process breakdown by phase.

Run:
    python -m analysis.bench                     # 10,000 trials, 3 seeds each, 3 runs
    python -m analysis.bench --trials 2000 --runs 5
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import optuna
from optuna.storages.journal import JournalFileBackend

from analysis.synthetic import create_synthetic_study

__all__ = ["main", "make_study"]

TARGET_S = 30.0
"""The issue's budget for reporting a 10,000-trial study."""


def make_study(path: Path, n_trials: int, seeds_per_trial: int, seed: int = 0) -> None:
    """Write a journal with one synthetic code study of ``n_trials`` trials (6 are anchors)."""
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    create_synthetic_study(storage, "bench", domain="code", n_search=max(n_trials - 6, 0),
                           seed=seed, search_seeds=tuple(range(seeds_per_trial)))


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _phases(journal: Path, out: Path) -> dict[str, float]:
    """One in-process run, timed by phase (seconds)."""
    import pandas as pd

    from analysis.confirmation import power_table
    from analysis.frame import load_studies, seeds_frame, trials_frame
    from analysis.paper import band_table, cross_domain_table
    from analysis.report import Analysis, _with_upstream, pareto_fronts, write_report
    from analysis.stats import seed_noise, setting_stats

    t = [time.perf_counter()]
    records = load_studies(journal)
    t.append(time.perf_counter())
    trials = trials_frame(records)
    seeds = seeds_frame(records, trials=trials)
    t.append(time.perf_counter())
    settings = _with_upstream(setting_stats(seeds), trials)
    a = Analysis(records=tuple(records), trials=trials, seeds=seeds, settings=settings,
                 noise=seed_noise(seeds), cross_domain=cross_domain_table(settings),
                 bands=band_table(settings), pareto=pareto_fronts(records, trials),
                 confirmed=pd.DataFrame(), power=power_table(seeds))
    t.append(time.perf_counter())
    write_report(a, out)
    t.append(time.perf_counter())
    names = ["read storage", "frames", "statistics", "figures + files"]
    return {n: b - a for n, a, b in zip(names, t, t[1:], strict=True)}


def main(argv: Sequence[str] | None = None) -> int:
    """Build the study, time the report; exit 1 if the median misses the target."""
    p = argparse.ArgumentParser(prog="python -m analysis.bench", description=__doc__.split("\n")[0])
    p.add_argument("--trials", type=int, default=10_000, help="trials in the study")
    p.add_argument("--seeds-per-trial", type=int, default=3, help="seeds (curves) per trial")
    p.add_argument("--runs", type=int, default=3, help="timed report runs (median printed)")
    args = p.parse_args(argv)
    if args.trials < 6 or args.runs < 1 or args.seeds_per_trial < 1:
        print("error: need --trials >= 6, --runs >= 1, --seeds-per-trial >= 1", file=sys.stderr)
        return 2
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    with tempfile.TemporaryDirectory(prefix="ncasearch-bench-") as tmp:
        journal = Path(tmp) / "bench.journal"
        t0 = time.perf_counter()
        make_study(journal, args.trials, args.seeds_per_trial)
        print(f"built {args.trials} trials x {args.seeds_per_trial} seeds in "
              f"{time.perf_counter() - t0:.1f} s; journal {journal.stat().st_size / 1e6:.1f} MB")
        times, cpu = [], []
        for i in range(args.runs):
            cmd = [sys.executable, "-m", "analysis.report", "--storage", str(journal),
                   "--out", str(Path(tmp) / f"report{i}")]
            before = _children_cpu_s()
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            times.append(time.perf_counter() - t0)
            cpu.append(_children_cpu_s() - before)
        median = statistics.median(times)
        runs = ", ".join(f"{t:.2f}" for t in times)
        print(f"report end to end (fresh process): median {median:.2f} s wall over {args.runs} "
              f"runs [{runs}], median {statistics.median(cpu):.2f} s CPU; "
              f"target < {TARGET_S:.0f} s; load average {os.getloadavg()[0]:.1f} on "
              f"{os.cpu_count()} cores")
        phases = _phases(journal, Path(tmp) / "report_phases")
        print("in-process phases: " + ", ".join(f"{k} {v:.2f} s" for k, v in phases.items()))
    return 0 if median < TARGET_S or args.trials != 10_000 else 1


if __name__ == "__main__":
    sys.exit(main())
