"""Benchmark: what MLflow tracking (``--track mlflow``) costs a study.

Runs the smoke study in pairs, once without tracking and once with it into the default store
(SQLite under the run folder), each run in fresh folders and a fresh cache so both train every
stage, the order alternating between pairs so drifting machine load hits both alike. Prints each
run's wall time and CPU time (the study's processes together: the driver and its reaped workers,
robust on a shared machine) and the overhead as a ratio, with / without, the median over pairs.

    python -m search.bench_tracking [--pairs 3] [--n-trials 4] [--study smoke] [--json]
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


def _study_once(root: Path, study: str, n_trials: int, track: bool) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the study's processes) of one study in fresh folders.

    Raises:
        RuntimeError: the study failed (its stderr's tail).
    """
    cmd = [sys.executable, "-m", "search.run", "--study", study, "--n-trials", str(n_trials),
           "--run-dir", str(root / "run"), "--cache-dir", str(root / "cache"), "--quiet",
           "--no-confirm"] + (["--track", "mlflow"] if track else [])
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


def run(study: str, n_trials: int, pairs: int) -> dict[str, Any]:
    """The paired runs and their ratios (see the module's docstring)."""
    off: list[tuple[float, float]] = []
    on: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory(prefix="ncasearch-bench-tracking-") as tmp:
        for k in range(pairs):
            order = (False, True) if k % 2 == 0 else (True, False)  # drift hits both alike
            for track in order:
                got = _study_once(Path(tmp) / f"{k}-{int(track)}", study, n_trials, track)
                (on if track else off).append(got)
                print(f"  pair {k + 1} {'with   ' if track else 'without'}: wall {got[0]:.1f} s, "
                      f"CPU {got[1]:.1f} s", file=sys.stderr, flush=True)
    wall_ratios = [b[0] / a[0] for a, b in zip(off, on, strict=True)]
    cpu_ratios = [b[1] / a[1] for a, b in zip(off, on, strict=True)]
    return {"study": study, "n_trials": n_trials, "pairs": pairs,
            "without_wall_s": [w for w, _ in off], "with_wall_s": [w for w, _ in on],
            "without_cpu_s": [c for _, c in off], "with_cpu_s": [c for _, c in on],
            "wall_ratio": statistics.median(wall_ratios), "cpu_ratio": statistics.median(cpu_ratios),
            "wall_ratios": wall_ratios, "cpu_ratios": cpu_ratios}


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog="python -m search.bench_tracking", description=__doc__.splitlines()[0])
    p.add_argument("--study", default="smoke", help="study file to run (default: smoke)")
    p.add_argument("--n-trials", type=int, default=4, help="trials per study (default 4)")
    p.add_argument("--pairs", type=int, default=3, help="paired runs, with and without (default 3)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.pairs < 1 or args.n_trials < 1:
        p.error(f"--pairs {args.pairs}, --n-trials {args.n_trials}: give 1 or more of each")
    try:
        r = run(args.study, args.n_trials, args.pairs)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    print(f"study {r['study']}, {r['n_trials']} trials, {r['pairs']} pairs, each in a fresh cache")
    for label, key in (("without tracking", "without"), ("with tracking   ", "with")):
        print(f"  {label}: wall {', '.join(f'{x:.1f}' for x in r[f'{key}_wall_s'])} s; "
              f"CPU {', '.join(f'{x:.1f}' for x in r[f'{key}_cpu_s'])} s")
    print(f"  overhead ratio (with / without, median of pairs): CPU {r['cpu_ratio']:.3f}, "
          f"wall {r['wall_ratio']:.3f} (wall time carries the machine's other load)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
