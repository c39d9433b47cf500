"""Run (or resume) a search study.

Usage:
    python -m search.run --domain code                 # studies/code.toml, local workers
    python -m search.run --study smoke --executor inline --n-trials 3
    python -m search.run --domain web --data ../shared/data/web --storage postgresql://...
    python -m search.run --domain code --dry-run          # what it will do and cost; runs nothing
    python -m search.run --domain code --time-budget 2h   # stop sampling when the next won't fit

Running the same command again resumes the study: finished trials are kept, trials that were
interrupted or lost are run again. Ctrl-C stops cleanly and leaves no trial RUNNING.

On a terminal a live board shows each running trial's stage, tokens, throughput, validation loss
next to scratch's, and ETA; in a log (stdout not a terminal) it becomes a line per stage change and
a heartbeat line per trial every ``--heartbeat`` seconds.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import optuna
from optuna.trial import TrialState

from ncaio.cli import OneLineParser, check_output_folder
from search import board as board_lib
from search import confirm, console, cost, disk
from search import noise as noise_lib
from search import study as study_lib
from search import tracking as tracking_lib
from search import trial as trial_lib
from search._toml import ConfigError
from search.config import DOMAINS, EXECUTORS, StudyConfig, load_study_config
from search.driver import Driver, DriverEvents, StudyStopped, Terminated
from search.driver_lock import StudyBusyError, StudyLock
from search.executors import BaseExecutor, InlineExecutor, LocalExecutor
from search.progress import (
    ESTIMATED_BASELINE_ATTR,
    ESTIMATED_DOMAIN_RATE_ATTR,
    ESTIMATED_TRIAL_ATTR,
)
from search.storage import StorageError, check_storage, open_storage


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = OneLineParser(prog="python -m search.run", description=__doc__.splitlines()[0])
    p.add_argument("--domain", help="code, math or web; picks studies/<domain>.toml unless --study")
    p.add_argument("--study", help="study name in studies/ or a path to a .toml file")
    p.add_argument("--n-trials", type=int, help="finished trials to reach (anchors included)")
    p.add_argument("--storage", help="journal file path or SQLAlchemy URL")
    p.add_argument("--executor", choices=EXECUTORS, help="where trials run (default: local)")
    p.add_argument("--workers", type=int, help="trials in flight at once")
    p.add_argument("--threads", type=int,
                   help="torch threads per trial (default: the cores shared by the workers)")
    p.add_argument("--ranks", type=int,
                   help="processes per trial of the local executor, data-parallel (default 1)")
    p.add_argument("--seed", type=int, help="sampler seed")
    p.add_argument("--sampler", help="sampler: tpe, random or grid (default: the study file's)")
    p.add_argument("--seeds", help="training seeds per setting, comma-separated, e.g. 0,1,2")
    p.add_argument("--preset", help="model preset (auto, tiny, cpu-proxy, gpu-proxy, paper-1.6b)")
    p.add_argument("--data", action="append", metavar="[DOMAIN=]DATA",
                   help="domain data: a local file or folder, or a dataset id; DOMAIN=DATA names "
                        "one domain's of a multi-domain study (repeat for several)")
    p.add_argument("--run-dir", help="where the journal, artifacts and config go")
    p.add_argument("--cache-dir", help="shared cache of NCA data, checkpoints and baselines")
    p.add_argument("--name", help="study name (default: from the study file)")
    p.add_argument("--dry-run", action="store_true",
                   help="resolve the study, check the data, print what it will do and cost; "
                        "run nothing")
    p.add_argument("--time-budget", metavar="DURATION",
                   help="stop sampling new trials when the next would not end within it (90m, 2h)")
    p.add_argument("--heartbeat", type=float, default=60.0, metavar="SECONDS",
                   help="seconds between progress lines when stdout is not a terminal (default 60)")
    p.add_argument("--quiet", action="store_true",
                   help="print only the finished-trial lines and the closing summary")
    p.add_argument("--confirm", action=argparse.BooleanOptionalAction, default=None,
                   help="run the confirmation phase after the search (default: the study "
                        "file's [confirm] enabled); --no-confirm skips it")
    p.add_argument("--confirm-only", action="store_true",
                   help="run (or resume) only the confirmation of a finished search")
    p.add_argument("--confirm-seeds", metavar="SEEDS",
                   help="the confirmation's fresh training seeds, comma-separated")
    p.add_argument("--track", metavar="mlflow[:URI]",
                   help="mirror every trial, seed and stage into MLflow (default URI: SQLite in "
                        "<run-dir>/mlflow); needs pip install -e \".[track]\"")
    return p.parse_args(argv)


def _overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    study: dict[str, Any] = {}
    for flag, key in (("n_trials", "n_trials"), ("storage", "storage"), ("executor", "executor"),
                      ("workers", "workers"), ("threads", "threads"), ("ranks", "ranks"),
                      ("preset", "preset"), ("run_dir", "run_dir"), ("cache_dir", "cache_dir"),
                      ("name", "name"), ("track", "track")):
        value = getattr(args, flag)
        if value is not None:
            study[key] = value
    if args.domain and args.study:
        study["domain"] = args.domain
    if args.data:
        study["data"] = _data_override(args.data)
    if args.seeds is not None:
        study["seeds"] = _seed_list("--seeds", args.seeds)
    out: dict[str, dict[str, Any]] = {"study": study}
    sampler = {k: v for k, v in (("seed", args.seed), ("name", args.sampler)) if v is not None}
    if sampler:
        out["sampler"] = sampler
    if args.confirm_seeds is not None:
        out["confirm"] = {"seeds": _seed_list("--confirm-seeds", args.confirm_seeds)}
    return out


def _seed_list(flag: str, text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"{flag} {text!r} must be comma-separated integers") from None


def _data_override(values: list[str]) -> str | dict[str, str]:
    """``--data PATH`` (one domain) or ``--data web=PATH`` (repeatable; merged into the study
    file's data table): a value is per-domain when the text before its first ``=`` is a domain."""
    table: dict[str, str] = {}
    plain: list[str] = []
    for value in values:
        domain, sep, data = value.partition("=")
        if sep and domain in DOMAINS:
            if domain in table:
                raise ConfigError(f"--data {value!r}: domain {domain!r} is given twice")
            table[domain] = data
        elif sep and domain.isidentifier() and not Path(value).exists():
            # ``chess=PATH`` reads as a wrong domain name, not as a path with '=' in it.
            raise ConfigError(f"--data {value!r}: {domain!r} is not a domain; "
                              f"give DOMAIN=PATH with DOMAIN one of {', '.join(DOMAINS)}")
        else:
            plain.append(value)
    if plain and (table or len(plain) > 1):
        raise ConfigError(f"--data {plain[-1]!r}: give one plain --data PATH, or DOMAIN=PATH "
                          f"for each domain ({', '.join(DOMAINS)})")
    return plain[0] if plain else table


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
        return LocalExecutor(config.run_dir / "workers", threads_per_job=cost.trial_threads(config),
                             ranks=config.ranks)
    from search.slurm import SlurmExecutor

    return SlurmExecutor(config)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    # Optuna's INFO lines ("A new study created", "Using an existing study") would come before
    # a refusal's one line, and from whichever racing driver created the study; the board's
    # first line says new or resumed instead.
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return _run(args)
    except Exception as exc:
        if not disk.is_disk_full(exc):
            raise
        config = load_config(args)  # it loaded before the disk filled: reading writes nothing
        print(f"error: {disk.short_message(exc, (config.run_dir, config.cache_dir))}",
              file=sys.stderr)
        return 1


@dataclass(slots=True)
class _Study:
    """A study set up to run: its config, context, storage study and lock."""

    config: StudyConfig
    context: trial_lib.TrialContext
    study: optuna.Study
    lock: StudyLock
    budget_s: float | None
    tracking: tracking_lib.TrackingConfig | None = None
    """Where trials are mirrored (search.tracking), before the experiment is created."""


def _run(args: argparse.Namespace) -> int:
    setup = _setup(args)
    if isinstance(setup, int):
        return setup
    config = setup.config
    board = board_lib.make_board("quiet" if args.quiet else "auto", heartbeat_s=args.heartbeat)
    executor = _executor(config)
    confirmed, tracking = None, None
    try:
        with board, _sigterm_as_interrupt():
            started = time.time()
            tracking = _start_tracking(setup, board)
            known_cost = _search(setup, board, executor, tracking, skip=args.confirm_only)
            if _confirming(config, args):
                confirmed = _confirm(setup, board, executor, known_cost, time.time() - started,
                                     tracking)
    except KeyboardInterrupt as stop:
        by, status = ("SIGTERM", 143) if isinstance(stop, Terminated) else ("interrupted", 130)
        print(f"\n[search] {by}: in-flight trials were stopped and will rerun on resume",
              file=sys.stderr)
        return status
    except (StudyBusyError, StudyStopped) as exc:  # lost baselines, or the study taken over
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        executor.shutdown()
        with suppress(OSError):  # a full disk: the next driver takes over the dead one's lock
            setup.lock.release()
    _closing(setup, confirmed, tracking)
    return 0


def _setup(args: argparse.Namespace) -> _Study | int:
    """Check everything, then take and open the study; 2 (after one line) on bad input, or
    the dry run's status."""
    lock: StudyLock | None = None
    try:
        if not 0 < args.heartbeat < math.inf:
            raise ConfigError(f"--heartbeat {args.heartbeat:g}: give seconds > 0")
        budget_s = _budget_s(args)
        config = load_config(args)
        tracking = tracking_lib.from_config(config)
        if tracking is not None:
            tracking_lib.require_mlflow()
        check_folders(config)
        check_storage(config.storage_url, workers=config.study.workers)
        if args.confirm_only:
            _existing_search(config)
        context = trial_lib.make_context(config)  # checks preset and corpus before writing
        if args.dry_run:
            return dry_run(config, context)
        lock = study_lib.take_study(config)
        study = study_lib.open_study(config, context)
    except (ConfigError, StorageError, trial_lib.SetupError) as exc:
        if lock is not None:
            lock.release()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return _Study(config=config, context=context, study=study, lock=lock, budget_s=budget_s,
                  tracking=tracking)


def _start_tracking(setup: _Study, board: board_lib.Board
                    ) -> tracking_lib.TrackingConfig | None:
    """The study's experiment, created once here; the workers log into it (None: off, or the
    tracker unreachable, which warned once)."""
    if setup.tracking is None:
        return None
    started = tracking_lib.start(setup.tracking)
    if started is not None:
        board.message(f"tracking into MLflow experiment {started.experiment!r} at "
                      f"{tracking_lib.shown_uri(started.uri)}")
    return started


def _confirming(config: StudyConfig, args: argparse.Namespace) -> bool:
    """Whether the confirmation runs: ``--confirm-only``, else ``--[no-]confirm``, else the
    study file's ``[confirm] enabled``."""
    if args.confirm_only:
        return True
    return config.confirm.enabled if args.confirm is None else bool(args.confirm)


def _events(board: board_lib.Board) -> DriverEvents:
    return DriverEvents(on_trial_end=lambda t, s: board.trial_line(console.trial_line(t, s)),
                        on_message=board.message, on_tick=board.tick)


def _search(setup: _Study, board: board_lib.Board, executor: BaseExecutor,
            tracking: tracking_lib.TrackingConfig | None, *, skip: bool) -> cost.Estimate | None:
    """The search phase (nothing with ``skip``, which ``--confirm-only`` gives); returns the
    study's cost estimate, when one was at hand."""
    config, context, study = setup.config, setup.context, setup.study
    workers = config.trials_at_once
    known = len(study.get_trials(deepcopy=False))
    state = f"resumed, {known} trials on record" if known else "new"
    board.message(f"study {config.study.name!r} ({state}; {config.study.domain}, preset "
                  f"{context.preset}, {config.study.executor} x{workers}) -> {config.storage_url}")
    known_cost = _known_estimate(config, context, study, measure=setup.budget_s is not None,
                                 say=board.message)
    if skip:
        return known_cost
    board.trial_s = (known_cost.trial_s or None) if known_cost else None
    board.baseline_s = (known_cost.baseline_s or None) if known_cost else None
    board.domain_rate = known_cost.domain_rate if known_cost else None
    for attr, value in ((ESTIMATED_TRIAL_ATTR, board.trial_s),
                        (ESTIMATED_BASELINE_ATTR, board.baseline_s),
                        (ESTIMATED_DOMAIN_RATE_ATTR, board.domain_rate)):
        if value is not None:  # search.status projects the end from them too
            study.set_user_attr(attr, value)
    events = _events(board)
    if setup.budget_s is not None:
        assert known_cost is not None  # calibrated above, so the estimate cannot fail
        # the confirmation after the search must fit in the budget too
        events.may_start = _budget_gate(cost.TimeBudget(
            budget_s=setup.budget_s - known_cost.confirm_s, trial_s=known_cost.trial_s), board)
    driver = Driver(config=config, study=study, executor=executor, context=context,
                    events=events, max_in_flight=workers, heartbeat=setup.lock.renew,
                    tracking=tracking)
    driver.run()
    board.tick(driver)  # the final counts stay on the board
    return known_cost


def _confirm(setup: _Study, board: board_lib.Board, executor: BaseExecutor,
             known_cost: cost.Estimate | None, elapsed_s: float,
             tracking: tracking_lib.TrackingConfig | None) -> optuna.Study | None:
    """The confirmation phase (``search.confirm``), unless a time budget cannot hold it."""
    if setup.budget_s is not None and known_cost is not None and (
            elapsed_s + known_cost.confirm_s > setup.budget_s):
        board.message(f"confirmation skipped: it needs about "
                      f"{board_lib.fmt_duration(known_cost.confirm_s)} and the time budget has "
                      f"{board_lib.fmt_duration(max(0.0, setup.budget_s - elapsed_s))} left; "
                      "run it later with --confirm-only")
        return None
    return confirm.drive(setup.study, setup.config, setup.context, executor, _events(board),
                         say=board.message, tick=board.tick, tracking=tracking)


def _closing(setup: _Study, confirmed: optuna.Study | None,
             tracking: tracking_lib.TrackingConfig | None) -> None:
    """The closing summary: the confirmed table first, then the search's, its power, and
    where everything is."""
    from analysis import confirmation
    from analysis.frame import load_studies, seeds_frame

    config, context = setup.config, setup.context
    if confirmed is not None:
        (record,) = load_studies(config.storage_url, [confirmed.study_name])
        print(confirmation.confirmed_text(confirmation.confirmed_table(record)))
    scratch = {one.domain: [trial_lib.scratch_baseline(
        one, trial_lib.study_scratch_runs(one)[0], s).final_loss for s in config.study.seeds]
        for one in context.per_domain()}
    console.summary(setup.study, scratch, sys.stdout)
    noise = confirmation.noise_summary(seeds_frame(load_studies(config.storage_url,
                                                                [config.study.name])))
    noise_lib.record(config, context, noise)
    print(confirmation.power_text(noise["sd"], len(config.study.seeds)))
    _print_where(config, tracking)


def _existing_search(config: StudyConfig) -> None:
    """``--confirm-only`` confirms a search that has completed trials.

    Raises:
        ConfigError: there is no such study, or it has no completed trial.
    """
    study = _existing_study(config)
    if study is None or not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise ConfigError(f"--confirm-only: study {config.study.name!r} in "
                          f"{config.storage_url} has no completed trial to confirm; run the "
                          "search first")


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises ``Terminated`` in the driver (a KeyboardInterrupt), so
    a time limit or ``kill`` stops the study as Ctrl-C does."""

    def stop(signum: int, frame: FrameType | None) -> None:
        raise Terminated()

    before = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def check_folders(config: StudyConfig) -> None:
    """Refuse a run or cache folder the study cannot write in, before it writes anything.

    Raises:
        ConfigError: the folder is a file, or not writable.
    """
    for path, flag in ((config.run_dir, "--run-dir"), (config.cache_dir, "--cache-dir")):
        try:
            check_output_folder(path, flag)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None


def _budget_s(args: argparse.Namespace) -> float | None:
    if not args.time_budget:
        return None
    try:
        budget = cost.parse_duration(args.time_budget)
    except ValueError as exc:
        raise ConfigError(f"--time-budget: {exc}") from None
    if budget <= 0:
        raise ConfigError(f"--time-budget {args.time_budget!r}: give a duration > 0 (45m, 2h)")
    return budget


def _known_estimate(config: StudyConfig, context: trial_lib.TrialContext, study: optuna.Study,
                    *, measure: bool, say: Callable[[str], None]) -> cost.Estimate | None:
    """The study's cost for the projected end and the time budget. Without ``measure`` only
    from what costs nothing to read (the study's finished trials or this machine's cached
    calibration); with it, this machine is calibrated first where it has no calibration."""
    cal = cost.cached_calibration(config, context)
    if cal is None and measure:
        say("time budget: calibrating this machine (seconds, once; then cached)")
        cal, _ = cost.calibrate(config, context)
    try:
        return cost.estimate(config, context, cal, study)
    except ValueError:
        return None


def _budget_gate(budget: cost.TimeBudget, board: board_lib.Board) -> Callable[[Driver], bool]:
    """``DriverEvents.may_start`` for ``--time-budget``: says once why sampling stopped."""

    def may_start(driver: Driver) -> bool:
        if budget.allows(driver.study):
            return True
        if budget.stopped and not getattr(may_start, "said", False):
            board.message(budget.stopped)
            may_start.said = True  # type: ignore[attr-defined]
        return False

    return may_start


def dry_run(config: StudyConfig, context: trial_lib.TrialContext) -> int:
    """Print what the study will do and cost on this machine; write nothing but the calibration."""
    study = _existing_study(config)
    cal, cached = cost.calibrate(config, context)
    est = cost.estimate(config, context, cal, study)
    p = cost.plan(config, context)
    print(cost_report(config, context, est, p, cal, cached, cost.cached_parts(config, context)))
    return 0


def cost_report(config: StudyConfig, context: trial_lib.TrialContext, est: cost.Estimate,
                p: cost.Plan, cal: cost.Calibration, cached: bool,
                parts: dict[str, tuple[int, int]]) -> str:
    """The dry run's text."""
    from search.board import fmt_duration, fmt_tokens

    s = config.study
    resumed = f", {est.trials_done} already finished" if est.trials_done else ""
    calibrated = "cached" if cached else "measured now"
    if cal.busy_share > cost.BUSY_LIMIT:
        calibrated += (f" while other work used {cal.busy_share:.0%} of the CPUs (its "
                       "figures are slow: the run follows its own measured rates, and the "
                       "next dry run measures again)")
    lines = [
        (f"[dry-run] study {s.name!r}: {', '.join(s.domains)}, preset {context.preset}, "
         f"{s.executor} x{est.workers}, storage {config.storage_url}"),
        (f"  trials:      {est.trials_total}{resumed}; {est.trials_left} to run, "
         f"{len(config.anchors)} of them anchors first"),
        f"  seeds:       {list(context.seeds)} (each trial runs every seed)",
        (f"  per trial:   NCA stage {fmt_tokens(p.nca_tokens)} tokens + "
         f"{_times(p.domains)}domain stage {fmt_tokens(p.domain_tokens)} tokens, per seed; "
         f"{fmt_tokens(p.tokens_per_trial)} tokens in all"),
        "  cached:      " + ", ".join(f"{name} {have}/{need}"
                                      for name, (have, need) in parts.items()),
        f"  calibration: {cal.host}, {cal.threads} torch thread(s), {calibrated}: domain "
        f"{fmt_tokens(_rate(p.domain_tokens, p.domain_steps, cal.domain_step_s))} tokens/s, NCA "
        + ", ".join(f"{fmt_tokens(_rate(p.nca_tokens, p.nca_steps, v))} tokens/s (n={a})"
                    for a, v in sorted(cal.nca_step_s.items()))
        + f"; worker start {cal.startup_s:.1f}s, NCA data {cal.data_s:.1f}s/seed, "
        f"artifacts {cal.artifacts_s:.1f}s; " + (
            f"{est.workers} workers side by side run {cal.parallel_slowdown:.2f}x slower each"
            if est.workers > 1 else "one trial at a time"),
        (f"  estimate:    {fmt_duration(est.total_s)} on this machine (scratch baselines "
         f"{fmt_duration(est.baseline_s)} for seeds {list(est.baseline_seeds)}"
         + (f", {est.baseline_trained:.0%} of them trained before" if est.baseline_trained else "")
         + ", then "
         f"{est.trials_left} trial(s) of ~{fmt_duration(est.trial_s)}, {est.workers} at a time; "
         f"from {est.source})"),
    ]
    if est.source == "calibration":
        lines.append("               an upper bound: pruned and infeasible trials end early")
    if p.ranks > 1:
        lines.append(_ranks_line(config, p))
    lines += [_confirm_line(config, est), _noise_line(config, context)]
    tracking = tracking_lib.from_config(config)
    if tracking is not None:
        lines.append(f"  tracking:    MLflow experiment {tracking.experiment!r} at "
                     f"{tracking_lib.shown_uri(tracking.uri)}")
    lines.append("[dry-run] nothing was run; drop --dry-run to start")
    return "\n".join(lines)


def _ranks_line(config: StudyConfig, p: cost.Plan) -> str:
    """What the estimate assumes about a multi-process trial's scaling."""
    how = (f"Slurm tasks ({config.slurm.tasks_per_node} per node x {config.slurm.nodes} "
           "node(s))" if config.study.executor == "slurm" else "local processes")
    return (f"  ranks:       {p.ranks} per trial, data-parallel {how}: optimiser steps assumed "
            f"{p.speedup:.2f}x as fast as one process's (parallel efficiency "
            f"{cost.RANK_EFFICIENCY:g} per doubling, assumed, not measured); evaluations and "
            "NCA data run on rank 0 at one process's speed")


def _confirm_line(config: StudyConfig, est: cost.Estimate) -> str:
    from lm.recipe import RECIPES
    from search.board import fmt_duration

    c = config.confirm
    if not c.enabled:
        return "  confirm:     off ([confirm] enabled = false or --no-confirm)"
    paper = " + the paper anchor" if any(a.name == "paper" for a in config.anchors) else ""
    return (f"  confirm:     top {c.top}{paper} and {len(RECIPES)} scratch recipes, each at lr x "
            f"{', '.join(f'{m:g}' for m in c.lr_grid)} on fresh seeds {list(c.seeds)}, scored "
            f"on test: ~{fmt_duration(est.confirm_s)} after the search (whole study "
            f"~{fmt_duration(est.total_s + est.confirm_s)})")


def _noise_line(config: StudyConfig, context: trial_lib.TrialContext) -> str:
    """What the study's seeds can detect, from earlier studies of its domain and preset."""
    from analysis.confirmation import power_text

    known = noise_lib.known(context)
    if known is None:
        return (f"  power:       not known yet: no earlier {context.domain} study at "
                f"{context.preset} in this cache has measured the seed noise")
    return (f"  power:       {power_text(known['sd'], len(config.study.seeds))} (from "
            f"{known['studies']} earlier {context.domain} {context.preset} study(ies))")


def _times(domains: int) -> str:
    """``3 x `` before the domain stage of a three-domain study (nothing for one domain)."""
    return f"{domains} x " if domains > 1 else ""


def _rate(tokens: int, steps: int, step_s: float) -> float:
    return tokens / steps / step_s if steps and step_s > 0 else 0.0


def _existing_study(config: StudyConfig) -> optuna.Study | None:
    """The study when it already exists (a resume), without creating anything."""
    try:
        storage = open_storage(config.storage_url, create=False)
        return optuna.load_study(study_name=config.study.name, storage=storage)
    except (StorageError, KeyError):
        return None


def _print_where(config: StudyConfig, tracking: tracking_lib.TrackingConfig | None) -> None:
    storage = config.storage_url
    artifacts = config.run_dir / "artifacts"
    print(f"storage:   {storage}")
    print(f"report:    python -m analysis.report --storage {storage} --study {config.study.name} "
          f"--out {config.run_dir / 'report'}")
    print(f"dashboard: optuna-dashboard {storage} --artifact-dir {artifacts}")
    if tracking is not None:
        print(f"tracking:  {tracking_lib.ui_command(tracking.uri)} (experiment "
              f"{tracking.experiment!r})")


if __name__ == "__main__":
    sys.exit(main())
