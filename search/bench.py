"""Benchmark: what caching and pruning save, and what the service itself costs per trial.

Runs one small study twice over the same sequence of sampled settings (random sampler, same
seed): once as the service runs it (shared caches, median pruner) and once with neither (every
trial builds its own NCA data, pre-pre-trains and trains its scratch baselines, and no trial is
pruned). Prints the compute each took, the best setting each found, and the service overhead
(driver wall time not spent inside trials).

    python -m search.bench [--preset tiny] [--n-trials 12] [--json]
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

from lm.presets import PRESETS
from ncaio.cli import OneLineParser
from search import jobs
from search.config import config_from_dict
from search.driver import Driver
from search.executors import InlineExecutor
from search.study import open_study
from search.trial import make_context


def _study(root: Path, name: str, preset: str, n_trials: int, pruner: str) -> dict[str, Any]:
    return {
        "study": {"name": name, "domain": "code", "preset": preset, "n_trials": n_trials,
                  "seeds": [0, 1], "executor": "inline", "workers": 1,
                  "run_dir": str(root / name), "cache_dir": str(root / "cache")},
        "sampler": {"name": "random", "seed": 0},
        "pruner": {"name": pruner, "n_startup_trials": 3, "n_warmup_steps": 2},
        "space": {"band": {"choices": ["0.2-0.3", "0.3-0.4"]}, "alphabet": 4,
                  "lr": {"choices": [1e-3, 3e-3, 1e-2]},
                  "transfer": {"choices": ["full", "attention-only"]}},
    }


def _uncached_trial(payload: jobs.TrialPayload) -> jobs.TrialResult | None:
    """The real trial with a cache of its own: nothing is shared with other trials."""
    private = Path(payload.context.cache_dir) / "private" / uuid.uuid4().hex
    context = dataclasses.replace(payload.context, cache_dir=str(private))
    corpora = Path(payload.context.cache_dir) / "corpora"
    (private).mkdir(parents=True)
    (private / "corpora").symlink_to(corpora.resolve())  # tokenising the corpus is not a trial cost
    return jobs.run_trial_job(dataclasses.replace(payload, context=context))


def _run(root: Path, name: str, preset: str, n_trials: int, cached: bool) -> dict[str, Any]:
    config = config_from_dict(_study(root, name, preset, n_trials, "median" if cached else "none"))
    context = make_context(config)
    study = open_study(config, context)
    in_trials = [0.0]

    def timed(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def wrapper(arg: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(arg)
            finally:
                in_trials[0] += time.perf_counter() - t0
        return wrapper

    trial_fn = jobs.run_trial_job if cached else _uncached_trial
    driver = Driver(config=config, study=study, executor=InlineExecutor(), context=context,
                    trial_fn=timed(trial_fn),
                    baseline_fn=timed(jobs.run_baseline_job) if cached else (lambda _: 0.0))
    t0 = time.perf_counter()
    driver.run()
    total = time.perf_counter() - t0
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = min(done, key=lambda t: float(t.values[0]))
    return {"compute_s": total, "in_trials_s": in_trials[0],
            "overhead_pct": 100 * (total - in_trials[0]) / total,
            "best_value": best.value, "best_setting": best.user_attrs["describe"],
            "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)}


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog="python -m search.bench", description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="tiny", choices=PRESETS)
    p.add_argument("--n-trials", type=int, default=12)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="ncasearch-bench-") as tmp:
        root = Path(tmp)
        plain = _run(root, "plain", args.preset, args.n_trials, cached=False)
        fast = _run(root, "cached", args.preset, args.n_trials, cached=True)
    result = {"preset": args.preset, "n_trials": args.n_trials, "uncached_unpruned": plain,
              "cached_pruned": fast, "compute_ratio": fast["compute_s"] / plain["compute_s"],
              "same_best": fast["best_setting"] == plain["best_setting"]}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    for name, r in (("no cache, no pruning", plain), ("cache + pruning", fast)):
        print(f"{name:22s} compute {r['compute_s']:7.1f}s  best {r['best_value']:.4f} "
              f"({r['best_setting']})  pruned {r['pruned']}  "
              f"service overhead {r['overhead_pct']:.2f}%")
    print(f"compute ratio {result['compute_ratio']:.2f} (target <= 0.33); "
          f"same best: {result['same_best']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
