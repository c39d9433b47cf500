"""Run (or resume) a search study.

Usage:
    python -m search.run --domain code                 # studies/code.toml, local workers
    python -m search.run --study smoke --executor inline --n-trials 3
    python -m search.run --domain web --data ../shared/data/web --storage postgresql://...

Running the same command again resumes the study: finished trials are kept, trials that were
interrupted or lost are run again. Ctrl-C stops cleanly and leaves no trial RUNNING.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import optuna

from search import console
from search import study as study_lib
from search import trial as trial_lib
from search._toml import ConfigError
from search.config import EXECUTORS, StudyConfig, load_study_config
from search.driver import Driver, DriverEvents, StudyStopped
from search.driver_lock import StudyBusyError, StudyLock, acquire_study
from search.executors import BaseExecutor, InlineExecutor, LocalExecutor
from search.storage import check_storage, open_storage


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m search.run", description=__doc__.splitlines()[0])
    p.add_argument("--domain", help="code, math or web; picks studies/<domain>.toml unless --study")
    p.add_argument("--study", help="study name in studies/ or a path to a .toml file")
    p.add_argument("--n-trials", type=int, help="finished trials to reach (anchors included)")
    p.add_argument("--storage", help="journal file path or SQLAlchemy URL")
    p.add_argument("--executor", choices=EXECUTORS, help="where trials run (default: local)")
    p.add_argument("--workers", type=int, help="trials in flight at once")
    p.add_argument("--seed", type=int, help="sampler seed")
    p.add_argument("--seeds", help="training seeds per setting, comma-separated, e.g. 0,1,2")
    p.add_argument("--preset", help="model preset (auto, tiny, cpu-proxy, gpu-proxy, paper-1.6b)")
    p.add_argument("--data", help="domain data: a local file or folder, or a dataset id")
    p.add_argument("--run-dir", help="where the journal, artifacts and config go")
    p.add_argument("--cache-dir", help="shared cache of NCA data, checkpoints and baselines")
    p.add_argument("--name", help="study name (default: from the study file)")
    return p.parse_args(argv)


def _overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    study: dict[str, Any] = {}
    for flag, key in (("n_trials", "n_trials"), ("storage", "storage"), ("executor", "executor"),
                      ("workers", "workers"), ("preset", "preset"), ("data", "data"),
                      ("run_dir", "run_dir"), ("cache_dir", "cache_dir"), ("name", "name")):
        value = getattr(args, flag)
        if value is not None:
            study[key] = value
    if args.domain and args.study:
        study["domain"] = args.domain
    if args.seeds is not None:
        try:
            study["seeds"] = [int(s) for s in args.seeds.split(",") if s.strip()]
        except ValueError:
            raise ConfigError(f"--seeds {args.seeds!r} must be comma-separated integers") from None
    out: dict[str, dict[str, Any]] = {"study": study}
    if args.seed is not None:
        out["sampler"] = {"seed": args.seed}
    return out


def load_config(args: argparse.Namespace) -> StudyConfig:
    """The study config named by ``--study``/``--domain``, with CLI flags applied."""
    if not args.study and not args.domain:
        raise ConfigError("give --domain (code, math, web) or --study NAME_OR_PATH")
    return load_study_config(args.study or args.domain, _overrides(args))


def _executor(config: StudyConfig) -> BaseExecutor:
    kind = config.study.executor
    if kind == "inline":
        return InlineExecutor()
    if kind == "local":
        threads = config.study.threads or max(1, (os.cpu_count() or 1) // config.study.workers)
        return LocalExecutor(config.run_dir / "workers", threads_per_job=threads)
    from search.slurm import SlurmExecutor

    return SlurmExecutor(config)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    lock: StudyLock | None = None
    try:
        config = load_config(args)
        check_storage(config.storage_url, workers=config.study.workers)
        context = trial_lib.make_context(config)  # checks preset and corpus before writing
        lock = take_study(config)
        study = study_lib.open_study(config, context)
    except (ConfigError, trial_lib.SetupError) as exc:
        if lock is not None:
            lock.release()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    executor = _executor(config)
    events = DriverEvents(
        on_trial_end=lambda t, s: print(console.trial_line(t, s), flush=True),
        on_message=lambda m: print(f"[search] {m}", flush=True),
    )
    workers = config.slurm.max_in_flight if config.study.executor == "slurm" else config.study.workers
    print(f"[search] study {config.study.name!r} ({config.study.domain}, preset {context.preset}, "
          f"{config.study.executor} x{workers}) -> {config.storage_url}", flush=True)
    driver = Driver(config=config, study=study, executor=executor, context=context,
                    events=events, max_in_flight=workers, heartbeat=lock.renew)
    try:
        driver.run()
    except KeyboardInterrupt:
        print("\n[search] interrupted: in-flight trials were stopped and will rerun on resume",
              file=sys.stderr)
        return 130
    except (StudyBusyError, StudyStopped) as exc:  # lost baselines, or the study taken over
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        executor.shutdown()
        lock.release()
    matched = trial_lib.study_scratch_runs(context)[0]
    scratch = [trial_lib.scratch_baseline(context, matched, s).final_loss
               for s in config.study.seeds]
    console.summary(study, scratch, sys.stdout)
    _print_where(config)
    return 0


def take_study(config: StudyConfig) -> StudyLock:
    """Hold the study for this driver; one driver per study (see search.driver_lock).

    Raises:
        StudyBusyError: another live driver holds it (a ConfigError: exit 2, one line).
    """
    storage = open_storage(config.storage_url, workers=config.study.workers)
    return acquire_study(storage, config.storage_url, config.study.name, config.study.directions)


def _print_where(config: StudyConfig) -> None:
    storage = config.storage_url
    artifacts = config.run_dir / "artifacts"
    print(f"storage:   {storage}")
    print(f"report:    python -m analysis.report --storage {storage} --study {config.study.name} "
          f"--out {config.run_dir / 'report'}")
    print(f"dashboard: optuna-dashboard {storage} --artifact-dir {artifacts}")


if __name__ == "__main__":
    sys.exit(main())
