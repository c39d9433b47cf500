"""Benchmark: what MLflow tracking (``--track mlflow``) costs a study.

Runs the smoke study in pairs, once without tracking and once with it (``--track``, by default
the default store: SQLite under the run folder), each run in fresh folders and a fresh cache so
both train every stage, the order alternating between pairs so drifting machine load hits both
alike. Prints each run's wall time and CPU time (the study's processes together: the driver
and its reaped workers, robust on a shared machine) and the overhead as a ratio, with / without,
the median over pairs.

It also prices the tracker alone, free of training's noise: the CPU time of a fresh process
that creates the study's experiment in a new SQLite store (what the driver does once), and of
one that tracks a trial as a worker does (import MLflow, open the store, a parent run, 2 seeds x
2 stages of 5 evaluations, 3 artifacts, the runs closed), against an empty run of Python.

    python -m search.bench_tracking [--pairs 3] [--n-trials 4] [--study smoke]
                                    [--track mlflow[:URI]] [--json]
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ncaio.cli import OneLineParser

__all__ = ["main", "run"]

REPO = Path(__file__).resolve().parents[1]


def _study_once(root: Path, study: str, n_trials: int, track: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the study's processes) of one study in fresh folders.

    Raises:
        RuntimeError: the study failed (its stderr's tail).
    """
    cmd = [sys.executable, "-m", "search.run", "--study", study, "--n-trials", str(n_trials),
           "--run-dir", str(root / "run"), "--cache-dir", str(root / "cache"), "--quiet",
           "--no-confirm"] + (["--track", track] if track else [])
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {done.returncode}: {done.stderr[-2000:]}")
    if track and "warning: tracking" in done.stderr:  # it would time a study that stopped tracking
        raise RuntimeError(f"tracking stopped during the benchmark: {done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def _child_cpu_s(code: str) -> float:
    """CPU seconds of a fresh ``python -c code`` in the repository.

    Raises:
        RuntimeError: it failed (its stderr's tail).
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0 or "warning: tracking" in done.stderr:
        raise RuntimeError(f"python -c {code!r} failed: {done.stderr[-2000:]}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


_START = """
from search import tracking
tracking.start(tracking.TrackingConfig(uri={uri!r}, experiment="bench", storage_key="bench",
                                       artifacts={artifacts!r}))
"""

_TRIAL = """
from pathlib import Path
from search import tracking
from search.space import Setting
config = tracking.start(tracking.TrackingConfig(uri={uri!r}, experiment="bench",
                                                storage_key="bench", artifacts={artifacts!r}))
t = tracking.open_trial(config, study="bench", number={number}, attrs={{}}, setting=Setting(),
                        domain="code")
for seed in (0, 1):
    for k in range(5):
        t.log_eval("nca", seed, "", 100 * k, 5.0 - k / 10, None)
    for k in range(5):
        t.log_eval("domain", seed, "code", 100 * k, 4.0 - k / 10, 4.1 - k / 10)
for name in ("curve.png", "config.json", "nca_sample.gif"):
    t.log_artifact(Path({folder!r}) / name)
t.finish("complete")
"""


def tracker_cost(root: Path, trials: int = 3) -> dict[str, float]:
    """CPU seconds of the tracker alone (see the module's docstring): ``python`` (an empty
    process), ``start`` (the driver's, once per study), ``trial`` (a worker's, median)."""
    folder = root / "files"
    folder.mkdir(parents=True)
    for name in ("curve.png", "config.json", "nca_sample.gif"):
        (folder / name).write_bytes(b"x" * 50_000)  # about a trial's figures' size
    # the artifacts beside the database, as search.tracking puts them (MLflow's default is the
    # current folder)
    uri = f"sqlite:///{root / 'mlflow' / 'mlflow.db'}"
    artifacts = (root / "mlflow" / "artifacts").as_uri()
    empty = _child_cpu_s("pass")
    start = _child_cpu_s(_START.format(uri=uri, artifacts=artifacts))
    per_trial = [_child_cpu_s(_TRIAL.format(uri=uri, artifacts=artifacts, number=k,
                                            folder=str(folder)))
                 for k in range(trials)]
    return {"python_s": empty, "start_s": start - empty,
            "trial_s": statistics.median(per_trial) - empty}


def run(study: str, n_trials: int, pairs: int, track: str = "mlflow") -> dict[str, Any]:
    """The paired runs and their ratios (see the module's docstring)."""
    off: list[tuple[float, float]] = []
    on: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory(prefix="ncasearch-bench-tracking-") as tmp:
        for k in range(pairs):
            order = (False, True) if k % 2 == 0 else (True, False)  # drift hits both alike
            for tracked in order:
                got = _study_once(Path(tmp) / f"{k}-{int(tracked)}", study, n_trials,
                                  track if tracked else "")
                (on if tracked else off).append(got)
                print(f"  pair {k + 1} {'with   ' if tracked else 'without'}: wall {got[0]:.1f} s, "
                      f"CPU {got[1]:.1f} s", file=sys.stderr, flush=True)
        alone = tracker_cost(Path(tmp) / "alone")
    wall_ratios = [b[0] / a[0] for a, b in zip(off, on, strict=True)]
    cpu_ratios = [b[1] / a[1] for a, b in zip(off, on, strict=True)]
    return {"study": study, "n_trials": n_trials, "pairs": pairs, "track": track,
            "without_wall_s": [w for w, _ in off], "with_wall_s": [w for w, _ in on],
            "without_cpu_s": [c for _, c in off], "with_cpu_s": [c for _, c in on],
            "wall_ratio": statistics.median(wall_ratios),
            "cpu_ratio": statistics.median(cpu_ratios),
            "wall_ratios": wall_ratios, "cpu_ratios": cpu_ratios,
            "tracker_start_cpu_s": alone["start_s"], "tracker_trial_cpu_s": alone["trial_s"]}


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog="python -m search.bench_tracking", description=__doc__.splitlines()[0])
    p.add_argument("--study", default="smoke", help="study file to run (default: smoke)")
    p.add_argument("--n-trials", type=int, default=4, help="trials per study (default 4)")
    p.add_argument("--pairs", type=int, default=3, help="paired runs, with and without (default 3)")
    p.add_argument("--track", default="mlflow", help="the tracked runs' --track (default: "
                   "mlflow, SQLite in each run folder; mlflow:http://HOST:PORT for a server)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.pairs < 1 or args.n_trials < 1:
        p.error(f"--pairs {args.pairs}, --n-trials {args.n_trials}: give 1 or more of each")
    try:
        r = run(args.study, args.n_trials, args.pairs, args.track)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    print(f"study {r['study']}, {r['n_trials']} trials, {r['pairs']} pairs, each in a fresh cache; "
          f"tracked with --track {r['track']}")
    for label, key in (("without tracking", "without"), ("with tracking   ", "with")):
        print(f"  {label}: wall {', '.join(f'{x:.1f}' for x in r[f'{key}_wall_s'])} s; "
              f"CPU {', '.join(f'{x:.1f}' for x in r[f'{key}_cpu_s'])} s")
    print(f"  overhead ratio (with / without, median of pairs): CPU {r['cpu_ratio']:.3f}, "
          f"wall {r['wall_ratio']:.3f} (wall time carries the machine's other load)")
    print(f"  the tracker alone: {r['tracker_start_cpu_s']:.2f} s CPU once per study (the "
          f"experiment, a new SQLite store), {r['tracker_trial_cpu_s']:.2f} s CPU per trial "
          f"(MLflow's import and the store's opening in each worker, then the runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
