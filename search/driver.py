"""The ask/tell loop shared by every executor.

One trial, from ``search.run`` to its score:

1. ``Driver.run`` starts by recovering the trials a dead driver left (``recover_stale``),
   enqueuing the study's anchors and computing missing scratch baselines (search._baselines).
2. ``_fill`` asks Optuna for a trial and gives it a setting (search._proposals). A setting
   already scored is not run again: the trial copies its values and does not count towards
   ``n_trials`` (``MAX_REPEATS_IN_A_ROW`` repeats in a row stop sampling; one, where nothing
   is searched). Otherwise the driver leases
   the trial (search._leases) and submits its job to the executor.
3. ``_collect`` tells Optuna each finished job's result. A job lost to the infrastructure
   (killed worker, lost Slurm job) fails its trial, which is retried up to ``max_retries``
   times. A trial whose own code raised fails for good.
4. Between polls, ``_renew_leases`` renews the leases of jobs in flight and picks up trials of
   a driver that died meanwhile.

The loop stops once ``n_trials`` trials count (``search.tally.counts_towards_n_trials``), or
earlier when ``DriverEvents.may_start`` says no (a time budget). On Ctrl-C, in-flight jobs are
stopped and their trials failed as interrupted and re-enqueued, so no trial stays RUNNING and
the next run picks them up.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from search import _baselines, _leases, _optuna, _proposals, disk, jobs
from search._proposals import setting_from_json
from search.config import StudyConfig
from search.executors import BaseExecutor, BaseJob, WorkerStartError
from search.progress import BASELINE_PHASE_ATTR, Progress
from search.space import Setting
from search.tally import counts_towards_n_trials, is_infeasible
from search.tracking import TrackingConfig

__all__ = [
    "BaselineLostError",
    "Driver",
    "DriverEvents",
    "Running",
    "StudyStopped",
    "Terminated",
    "setting_from_json",
]

_POLL_S = 0.5
MAX_REPEATS_IN_A_ROW = 25
"""Proposals in a row that repeat a scored setting before sampling stops: the sampler has
likely exhausted a small space (a repeat copies its result and does not count as a trial)."""
_TICK_S = 1.0
"""Least seconds between two ``on_tick`` calls (the board redraws from what a tick gathers)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (what Slurm sends at a time limit or preemption, and ``kill``'s default): handled
    like Ctrl-C, so no trial is left RUNNING."""


class StudyStopped(RuntimeError):
    """The study cannot go on; the message is one line for the user (the CLI exits 1)."""


class BaselineLostError(StudyStopped):
    """A scratch baseline job was lost more often than ``max_retries`` allows."""


@dataclass(slots=True)
class _InFlight:
    trial: optuna.Trial
    setting: Setting
    job: BaseJob
    work_dir: Path
    started: float
    renewed: float = 0.0


@dataclass(slots=True)
class DriverEvents:
    """Callbacks for the CLI's live output; all optional."""

    on_trial_end: Callable[[FrozenTrial, float], None] | None = None
    on_message: Callable[[str], None] | None = None
    on_tick: Callable[[Driver], None] | None = None
    """Called from the poll loops (baselines and trials), at most every ``_TICK_S``."""
    may_start: Callable[[Driver], bool] | None = None
    """Asked before each new trial is sampled; False stops sampling (e.g. a time budget)."""


@dataclass(frozen=True, slots=True)
class Running:
    """A trial in flight, as the live board sees it."""

    number: int
    describe: str
    work_dir: Path
    started: float
    info: dict[str, Any]


@dataclass(slots=True)
class Driver:
    """Runs one study to its trial count with ``executor``."""

    config: StudyConfig
    study: optuna.Study
    executor: BaseExecutor
    context: jobs.TrialContext
    events: DriverEvents = field(default_factory=DriverEvents)
    max_in_flight: int = 1
    trial_fn: Callable[[jobs.TrialPayload], jobs.TrialResult | None] = jobs.run_trial_job
    """The job each trial runs (its value is rank 0's: None only on other ranks); tests swap it
    for a cheap stand-in."""
    baseline_fn: Callable[[tuple[jobs.TrialContext, int]], float] = jobs.run_baseline_job
    heartbeat: Callable[[], None] | None = None
    """Called every 30 s while driving: renews the study lease (search.driver_lock); what it
    raises stops the driver."""
    tracking: TrackingConfig | None = None
    """Where the workers mirror their trials (search.tracking, experiment created); None = off."""
    _inflight: dict[int, _InFlight] = field(default_factory=dict)
    _last_recovery: float = 0.0
    _last_heartbeat: float = 0.0
    baseline_phase_seeds: tuple[int, ...] = ()
    """Seeds of the baseline phase under way (finished, running and waiting); empty after it."""
    baseline_started: float = 0.0
    _baseline_published: float = 0.0
    _last_tick: float = 0.0
    _repeats: int = 0
    """Proposals in a row that repeated a scored setting."""

    def run(self) -> None:
        """Drive the study until it has ``n_trials`` finished trials."""
        self.recover_stale()
        self.enqueue_anchors()
        self.ensure_baselines()
        try:
            while self._fill() or self._inflight:
                if not self._collect():
                    time.sleep(_POLL_S)  # nothing finished: wait before polling again
                self._renew_leases()
                self._tick()
        except KeyboardInterrupt as stop:
            self._interrupt("SIGTERM" if isinstance(stop, Terminated) else "Ctrl-C")
            raise

    # -- the phases before the loop ------------------------------------------------------------

    def enqueue_anchors(self) -> None:
        """Enqueue the study's anchors once, before anything the sampler proposes."""
        _proposals.enqueue_anchors(self.study, self.config)

    def recover_stale(self) -> None:
        """Reattach to jobs of RUNNING trials a previous driver left, or fail and retry them.

        A trial whose job can be reattached (Slurm) is adopted whatever its lease says; one
        that cannot (a local worker dies with its driver) is failed once its lease is dead, since
        a live lease means another driver may still own it.
        """
        now = time.time()
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.number in self._inflight:
                continue
            job = self.executor.reattach(t.user_attrs)
            if job is not None and "setting" in t.user_attrs:
                trial = optuna.Trial(self.study, _optuna.trial_id(t))
                setting = setting_from_json(t.user_attrs["setting"])
                self._inflight[t.number] = _InFlight(trial, setting, job, self._work_dir(trial),
                                                     now, now)
                _leases.grant(self.study, _optuna.trial_id(t))
                self._say(f"trial {t.number}: reattached to its job {job.info}")
            elif _leases.is_dead(t.system_attrs, now):
                self._fail_and_retry(t, "lost: its driver stopped", count_attempt=True)

    def ensure_baselines(self) -> None:
        """Compute missing scratch baselines once per seed, ``max_in_flight`` at a time, before
        any trial.

        Raises:
            BaselineLostError: a seed's baseline was lost more than ``max_retries`` times.
        """
        todo = [s for s in self.config.study.seeds if not jobs.baseline_cached(self.context, s)]
        if not todo:
            if self.study.user_attrs.get(BASELINE_PHASE_ATTR, {}).get("running"):
                self._publish_baseline_phase()  # a dead driver's phase, finished meanwhile
            return
        self._say(f"computing scratch baselines for seeds {todo}")
        self.baseline_phase_seeds, self.baseline_started = tuple(todo), time.time()
        max_retries = self.config.study.max_retries
        try:
            lost = _baselines.compute(
                todo, lambda seed: self.executor.submit(self.baseline_fn, (self.context, seed)),
                at_once=self.max_in_flight, max_retries=max_retries,
                wait=self._wait_for_baselines, say=self._say, on_lost=self._baseline_lost)
        except WorkerStartError as exc:
            raise StudyStopped(str(exc)) from None
        finally:
            self.baseline_phase_seeds = ()
            self._publish_baseline_phase()
        if lost is not None:
            raise BaselineLostError(
                f"scratch baseline for seed {lost.seed} was lost {lost.attempts} times "
                f"(last: {lost.reason}); max_retries = {max_retries}")

    def _baseline_lost(self, seed: int, reason: str) -> None:
        """A baseline job lost to a full disk stops the study (it would fail every retry)."""
        what = f"the scratch baseline of seed {seed} could not be written"
        if any(text in reason for text in disk.DISK_FULL_TEXTS):
            self._stop_for_disk(None, what)
        self._check_space(None, what)

    def baseline_progress(self) -> Progress | None:
        """The baseline phase under way as one record (None before its first job reports)."""
        return jobs.baseline_phase_progress(self.context, self.baseline_phase_seeds,
                                            self.baseline_started)

    def _wait_for_baselines(self) -> None:
        time.sleep(_POLL_S)
        self._beat()  # baselines can outlast the study lease
        if time.time() - self._baseline_published >= jobs.PROGRESS_ATTR_EVERY_S:
            self._publish_baseline_phase()
        self._tick()

    def _publish_baseline_phase(self) -> None:
        """The phase as a study attribute, for search.status on any machine: its seeds, start
        and progress while it runs (every ``PROGRESS_ATTR_EVERY_S``), ``running: False`` after."""
        progress = self.baseline_progress() if self.baseline_phase_seeds else None
        self._baseline_published = time.time()
        self.study.set_user_attr(BASELINE_PHASE_ATTR, {
            "running": bool(self.baseline_phase_seeds), "seeds": list(self.baseline_phase_seeds),
            "started": self.baseline_started, "updated_at": self._baseline_published,
            "progress": progress.to_dict() if progress else None})

    # -- the loop ------------------------------------------------------------------------------

    def finished_count(self) -> int:
        """Trials that count towards n_trials (see ``counts_towards_n_trials``)."""
        return sum(counts_towards_n_trials(t) for t in self.study.get_trials(deepcopy=False))

    def infeasible_count(self) -> int:
        """Trials whose setting could not be realised; they cost nothing and do not count."""
        return sum(is_infeasible(t) for t in self.study.get_trials(deepcopy=False))

    def _fill(self) -> bool:
        """Start trials while there is room; False when nothing is left to start."""
        target = self.config.study.n_trials
        while len(self._inflight) < self.max_in_flight:
            if self.finished_count() + len(self._inflight) >= target:
                return False
            if self._repeats >= self._repeat_limit:
                return False
            if any(item.job.done() for item in self._inflight.values()):
                return True  # tell finished trials first: a proposal is checked against them
            if self.infeasible_count() >= target:
                self._say(f"stopped sampling: {target} proposed settings could not be realised "
                          "(bands their alphabet cannot reach); narrow the space")
                return False
            if self.events.may_start and not self.events.may_start(self):
                return False
            trial = self.study.ask()
            try:
                setting = _proposals.propose(trial, self.config)
            except ValueError as exc:
                self._fail_unrealisable(trial, exc)
                continue
            duplicate = _proposals.reuse_duplicate(self.study, trial)
            if duplicate is not None:
                self._announce(duplicate, time.time())
                self._repeats += 1
                if self._repeats == self._repeat_limit:
                    self._say(f"stopped sampling: the last {self._repeats} proposal(s) repeated "
                              "settings already scored (the space looks exhausted); widen it "
                              "or lower n_trials")
                continue
            self._repeats = 0
            self._start(trial, setting)
        return True

    @property
    def _repeat_limit(self) -> int:
        """Repeats in a row that stop sampling: one where nothing is searched (the space holds
        one setting), else ``MAX_REPEATS_IN_A_ROW``."""
        return MAX_REPEATS_IN_A_ROW if any(p.searched for p in self.config.space) else 1

    def _start(self, trial: optuna.Trial, setting: Setting) -> None:
        """Lease ``trial`` and submit its job."""
        _leases.grant(self.study, _optuna.trial_id(trial))
        work_dir = self._work_dir(trial)
        trial.set_user_attr("job_work_dir", str(work_dir.absolute()))  # search.status reads it
        payload = jobs.TrialPayload(
            storage=self.config.storage_url, study_name=self.study.study_name,
            trial_id=_optuna.trial_id(trial), setting=setting, context=self.context,
            pruner=self.config.pruner, objectives=self.config.study.objectives,
            work_dir=str(work_dir),
            artifact_dir=str(self.config.run_dir / "artifacts"),
            prunable=not trial.user_attrs["kind"].startswith("anchor"),
            tracking=self.tracking,
        )
        started = time.time()
        try:
            job = self.executor.submit(self.trial_fn, payload)
        except WorkerStartError as exc:
            self._stop_all(_optuna.current(self.study, _optuna.trial_id(trial)), "no worker")
            raise StudyStopped(str(exc)) from None
        for key, value in job.info.items():
            trial.set_user_attr(f"job_{key}", value)
        self._inflight[trial.number] = _InFlight(trial, setting, job, work_dir, started,
                                                 time.time())

    def _fail_unrealisable(self, trial: optuna.Trial, exc: ValueError) -> None:
        """A proposal no Setting can hold fails its own trial (counted, not retried).

        Study validation checks every bound and choice, so this is the rare value that only
        breaks a rule inside a range (an odd grid); crashing would leave the trial RUNNING
        and every rerun would crash the same way.
        """
        reason = f"{type(exc).__name__}: {exc}"
        trial.set_user_attr("fail_reason", f"unrealisable setting: {reason}")
        self._announce(self.study.tell(trial, state=TrialState.FAIL), time.time())

    def _collect(self) -> bool:
        """Tell the results of finished jobs; True when any finished."""
        collected = False
        for number, item in list(self._inflight.items()):
            if not item.job.done():
                continue
            collected = True
            del self._inflight[number]
            out = item.job.outcome()
            if out.ok:
                self._tell(item, out.value)
            else:
                self._check_space(item, f"trial {number}'s job was lost")
                trial_id = _optuna.trial_id(item.trial)
                self._fail_and_retry(_optuna.current(self.study, trial_id), f"lost: {out.reason}",
                                     count_attempt=True)
                self._announce(_optuna.current(self.study, trial_id), item.started)
        return collected

    def _folders(self) -> tuple[Path, ...]:
        """Where a study writes: its run folder (journal, work folders) and its cache."""
        return (self.config.run_dir, self.config.cache_dir)

    def _check_space(self, item: _InFlight | None, what: str) -> None:
        """A lost job on a disk too full for a trial was lost to the disk: stop for it."""
        folder = disk.low_on_space(self._folders(), disk.trial_bytes(self.context))
        if folder is not None:
            self._stop_for_disk(item, what, folder)

    def _stop_for_disk(self, item: _InFlight | None, what: str,
                       folder: Path | None = None) -> None:
        """Re-enqueue every trial in flight without spending an attempt, and stop.

        Raises:
            StudyStopped: always, with the one line ``search.disk.message`` gives.
        """
        folder = folder or min(self._folders(), key=disk.free_bytes)
        if item is not None:
            item.job.cancel()
        self._stop_all(_optuna.current(self.study, _optuna.trial_id(item.trial))
                       if item is not None else None, "disk full")
        raise StudyStopped(disk.message(folder, disk.trial_bytes(self.context), what))

    def _stop_all(self, trial: FrozenTrial | None, why: str) -> None:
        """Stop ``trial`` (no longer in flight) and every trial in flight, re-enqueued without
        spending an attempt: the study stops for a reason that is not theirs."""
        for other in self._inflight.values():
            other.job.cancel()
        frozen = [_optuna.current(self.study, _optuna.trial_id(o.trial))
                  for o in self._inflight.values()]
        for t in ([trial] if trial is not None else []) + frozen:
            if t.state == TrialState.RUNNING:
                self._fail_and_retry(t, f"interrupted ({why})", count_attempt=False)
        self._inflight.clear()

    def _tell(self, item: _InFlight, result: jobs.TrialResult) -> None:
        trial = item.trial
        if result.tracking_stopped:  # its worker warned once: later trials would each warn again
            self.tracking = None
        if result.state == "disk_full":
            self._stop_for_disk(item, result.reason)
        if result.state == "complete":
            told = self.study.tell(trial, result.values)
        elif result.state == "pruned":
            trial.set_user_attr("pruned_reason", result.reason)
            told = self.study.tell(trial, state=TrialState.PRUNED)
        else:
            trial.set_user_attr("fail_reason", result.reason)
            told = self.study.tell(trial, state=TrialState.FAIL)
        self._announce(told, item.started)

    def _fail_and_retry(self, t: FrozenTrial, reason: str, *, count_attempt: bool) -> None:
        self._say(_leases.fail_and_retry(self.study, t, reason, count_attempt=count_attempt,
                                         max_retries=self.config.study.max_retries))

    def _interrupt(self, by: str) -> None:
        for item in self._inflight.values():
            item.job.cancel()
            frozen = _optuna.current(self.study, _optuna.trial_id(item.trial))
            self._fail_and_retry(frozen, f"interrupted ({by})", count_attempt=False)
        self._inflight.clear()

    def _work_dir(self, trial: optuna.Trial) -> Path:
        return _leases.work_dir(trial, run_dir=self.config.run_dir,
                                study_name=self.study.study_name, context=self.context)

    def _beat(self) -> None:
        now = time.time()
        if self.heartbeat is not None and now - self._last_heartbeat > _leases.RENEW_S:
            self.heartbeat()
            self._last_heartbeat = now

    def _renew_leases(self) -> None:
        self._beat()
        now = time.time()
        if now - self._last_recovery > _leases.RENEW_S:
            self.recover_stale()  # picks up trials of a driver that died while we run
            self._last_recovery = now
        for item in self._inflight.values():
            if now - item.renewed > _leases.RENEW_S:
                _leases.grant(self.study, _optuna.trial_id(item.trial))
                item.renewed = now

    # -- live output ---------------------------------------------------------------------------

    def running(self) -> list[Running]:
        """The trials in flight now, oldest first."""
        return [Running(number=n, describe=item.setting.describe(),
                        work_dir=item.work_dir, started=item.started,
                        info=dict(item.job.info))
                for n, item in sorted(self._inflight.items())]

    def _tick(self) -> None:
        now = time.time()
        if self.events.on_tick and now - self._last_tick >= _TICK_S:
            self._last_tick = now
            self.events.on_tick(self)

    def _announce(self, trial: FrozenTrial, started: float) -> None:
        if self.events.on_trial_end:
            self.events.on_trial_end(trial, time.time() - started)

    def _say(self, text: str) -> None:
        if self.events.on_message:
            self.events.on_message(text)
