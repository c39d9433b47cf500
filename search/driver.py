"""The ask/tell loop shared by every executor.

The driver asks Optuna for settings, hands each to an executor as one job, and tells results
as jobs finish. It owns the bookkeeping Optuna cannot do across processes and clusters:

- a lease on every trial it runs, renewed while the job lives, so a restarted driver fails
  trials whose driver died (lease expired) and re-enqueues their settings;
- a retry cap for trials lost to the infrastructure (killed worker, lost job), while a trial
  whose own code raised fails for good;
- Ctrl-C: in-flight jobs are stopped, their trials failed as interrupted and re-enqueued, so no
  trial stays RUNNING and the next run picks them up.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from search import jobs
from search.config import StudyConfig
from search.executors import BaseExecutor, BaseJob
from search.plan import content_key
from search.space import Setting, sample, setting_from_params

LEASE_S = 120.0
"""A trial whose lease is older than this belongs to a dead driver."""
_RENEW_S = 30.0
_POLL_S = 0.5
_TICK_S = 1.0
"""Least seconds between two ``on_tick`` calls (the board redraws from what a tick gathers)."""


class StudyStopped(RuntimeError):
    """The study cannot go on; the message is one line for the user (the CLI exits 1)."""


class BaselineLostError(StudyStopped):
    """A scratch baseline job was lost more often than ``max_retries`` allows."""


@dataclass(slots=True)
class _InFlight:
    trial: optuna.Trial
    setting: Setting
    job: BaseJob
    started: float
    renewed: float = 0.0


@dataclass(slots=True)
class DriverEvents:
    """Callbacks for the CLI's live output; all optional."""

    on_trial_end: Callable[[optuna.trial.FrozenTrial, float], None] | None = None
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
    trial_fn: Callable[[jobs.TrialPayload], jobs.TrialResult] = jobs.run_trial_job
    """The job each trial runs; tests swap it for a cheap stand-in."""
    baseline_fn: Callable[[tuple[jobs.TrialContext, int]], float] = jobs.run_baseline_job
    heartbeat: Callable[[], None] | None = None
    """Called every 30 s while driving: renews the study lease (search.driver_lock); what it
    raises stops the driver."""
    _inflight: dict[int, _InFlight] = field(default_factory=dict)
    _last_recovery: float = 0.0
    _last_heartbeat: float = 0.0
    baselines_running: tuple[int, ...] = ()
    """Seeds whose scratch baselines are being computed right now."""
    _last_tick: float = 0.0

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
        except KeyboardInterrupt:
            self._interrupt()
            raise

    # -- study bookkeeping -------------------------------------------------------------------

    def finished_count(self) -> int:
        """Trials that count towards n_trials: complete, pruned (unless infeasible), or failed
        for good."""
        return sum(_counts(t) for t in self.study.get_trials(deepcopy=False))

    def infeasible_count(self) -> int:
        """Trials whose setting could not be realised; they cost nothing and do not count."""
        return sum(_infeasible(t) for t in self.study.get_trials(deepcopy=False))

    def enqueue_anchors(self) -> None:
        """Enqueue the study's anchors once, before anything the sampler proposes."""
        if self.study.user_attrs.get("anchors_enqueued"):
            return
        space = self.config.space_map
        for anchor in self.config.anchors:
            fixed = {p.name: p.fixed for p in self.config.space if not p.searched}
            setting = setting_from_params({**fixed, **dict(anchor.params)})
            # Only values the distributions hold become Optuna params; the rest live in `setting`.
            params = {k: v for k, v in anchor.params
                      if k in space and space[k].searched and space[k].contains(v)}
            self.study.enqueue_trial(
                params, user_attrs={"setting": _setting_json(setting), "kind": f"anchor:{anchor.name}"},
                skip_if_exists=False,
            )
        self.study.set_user_attr("anchors_enqueued", True)

    def recover_stale(self) -> None:
        """Reattach to jobs of RUNNING trials a previous driver left, or fail and retry them.

        A trial whose job can be reattached (Slurm) is adopted whatever its lease says; one
        that cannot (a local worker dies with its driver) is failed once its lease expired, since
        a live lease means another driver may still own it.
        """
        now = time.time()
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.number in self._inflight:
                continue
            job = self.executor.reattach(t.user_attrs)
            if job is not None and "setting" in t.user_attrs:
                trial = optuna.Trial(self.study, t._trial_id)
                setting = setting_from_json(t.user_attrs["setting"])
                self._inflight[t.number] = _InFlight(trial, setting, job, now, now)
                self._lease(t._trial_id)
                self._say(f"trial {t.number}: reattached to its job {job.info}")
            elif _lease_dead(t.system_attrs, now):
                self._fail_and_retry(t, "lost: its driver stopped", count_attempt=True)

    def ensure_baselines(self) -> None:
        """Compute missing scratch baselines once per seed, in parallel, before any trial.

        A lost baseline job (killed worker, lost Slurm job) is resubmitted like a lost trial,
        up to ``max_retries`` times.

        Raises:
            BaselineLostError: a seed's baseline was lost more than ``max_retries`` times.
        """
        todo = [s for s in self.config.study.seeds if not jobs.baseline_cached(self.context, s)]
        if not todo:
            return
        self._say(f"computing scratch baselines for seeds {todo}")
        running = {s: self.executor.submit(self.baseline_fn, (self.context, s)) for s in todo}
        attempts = dict.fromkeys(todo, 0)
        self.baselines_running = tuple(todo)
        while running:
            time.sleep(_POLL_S)
            self._beat()  # baselines can outlast the study lease
            self._tick()
            for seed, job in list(running.items()):
                if not job.done():
                    continue
                out = job.outcome()
                del running[seed]
                if out.ok:
                    continue
                attempts[seed] += 1
                if attempts[seed] > self.config.study.max_retries:
                    for other in running.values():
                        other.cancel()
                    raise BaselineLostError(
                        f"scratch baseline for seed {seed} was lost {attempts[seed]} times "
                        f"(last: {_last_line(out.reason)}); "
                        f"max_retries = {self.config.study.max_retries}")
                self._say(f"scratch baseline for seed {seed} lost: {_last_line(out.reason)}; "
                          f"retrying (attempt {attempts[seed]})")
                running[seed] = self.executor.submit(self.baseline_fn, (self.context, seed))
        self.baselines_running = ()

    # -- the loop ------------------------------------------------------------------------------

    def _fill(self) -> bool:
        """Start trials while there is room; False when nothing is left to start."""
        target = self.config.study.n_trials
        while len(self._inflight) < self.max_in_flight:
            if self.finished_count() + len(self._inflight) >= target:
                return False
            if self.infeasible_count() >= target:
                self._say(f"stopped sampling: {target} proposed settings could not be realised "
                          "(bands their alphabet cannot reach); narrow the space")
                return False
            if self.events.may_start and not self.events.may_start(self):
                return False
            trial = self.study.ask()
            try:
                setting = _setting_for(trial, self.config)
            except ValueError as exc:
                self._fail_unrealisable(trial, exc)
                continue
            trial.set_user_attr("setting", _setting_json(setting))
            trial.set_user_attr("describe", setting.describe())
            trial.set_user_attr("kind", trial.user_attrs.get("kind", "search"))
            if self._reuse_duplicate(trial, setting):
                continue
            self._lease(trial._trial_id)
            payload = jobs.TrialPayload(
                storage=self.config.storage_url, study_name=self.study.study_name,
                trial_id=trial._trial_id, setting=setting, context=self.context,
                pruner=self.config.pruner, objectives=self.config.study.objectives,
                work_dir=str(self._work_dir(trial)),
                artifact_dir=str(self.config.run_dir / "artifacts"),
                prunable=not trial.user_attrs["kind"].startswith("anchor"),
            )
            started = time.time()
            job = self.executor.submit(self.trial_fn, payload)
            for key, value in job.info.items():
                trial.set_user_attr(f"job_{key}", value)
            self._inflight[trial.number] = _InFlight(trial, setting, job, started, time.time())
        return True

    def _fail_unrealisable(self, trial: optuna.Trial, exc: ValueError) -> None:
        """A proposal no Setting can hold fails its own trial (counted, not retried).

        Study validation checks every bound and choice, so this is the rare value that only
        breaks a rule inside a range (an odd grid); crashing would leave the trial RUNNING
        and every rerun would crash the same way.
        """
        reason = f"{type(exc).__name__}: {exc}"
        trial.set_user_attr("fail_reason", f"unrealisable setting: {reason}")
        self.study.tell(trial, state=TrialState.FAIL)
        self._announce(trial._trial_id, time.time())

    def _reuse_duplicate(self, trial: optuna.Trial, setting: Setting) -> bool:
        """A setting already evaluated gives the same result (seeded, deterministic): copy it.

        Samplers re-propose points of small discrete spaces; rerunning them only burns compute.
        """
        key = trial.user_attrs["setting"]
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if t.user_attrs.get("setting") == key:
                for name, value in t.user_attrs.items():
                    if name not in trial.user_attrs and not name.startswith("job_"):
                        trial.set_user_attr(name, value)
                trial.set_user_attr("duplicate_of", t.number)
                self.study.tell(trial, t.values)
                self._announce(trial._trial_id, time.time())
                return True
        return False

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
                frozen = self.study._storage.get_trial(item.trial._trial_id)
                self._fail_and_retry(frozen, f"lost: {out.reason}", count_attempt=True)
                self._announce(item.trial._trial_id, item.started)
        return collected

    def _tell(self, item: _InFlight, result: jobs.TrialResult) -> None:
        trial = item.trial
        if result.state == "complete":
            self.study.tell(trial, result.values)
        elif result.state == "pruned":
            trial.set_user_attr("pruned_reason", result.reason)
            self.study.tell(trial, state=TrialState.PRUNED)
        else:
            trial.set_user_attr("fail_reason", result.reason)
            self.study.tell(trial, state=TrialState.FAIL)
        self._announce(trial._trial_id, item.started)

    def _fail_and_retry(self, t: optuna.trial.FrozenTrial, reason: str, *, count_attempt: bool) -> None:
        storage = self.study._storage
        attempt = int(t.user_attrs.get("attempt", 0)) + (1 if count_attempt else 0)
        storage.set_trial_user_attr(t._trial_id, "fail_reason", reason)
        if "setting" not in t.user_attrs:
            # Its driver died between asking and starting it: nothing ran, nothing to count.
            storage.set_trial_user_attr(t._trial_id, "never_started", True)
        retry = attempt <= self.config.study.max_retries and "setting" in t.user_attrs
        if retry:
            storage.set_trial_user_attr(t._trial_id, "retried", True)
        if t.state == TrialState.RUNNING:
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        if retry:
            attrs = {k: t.user_attrs[k] for k in ("setting", "kind") if k in t.user_attrs}
            self.study.enqueue_trial(
                dict(t.params), user_attrs={**attrs, "attempt": attempt, "retry_of": t.number,
                            "origin": t.user_attrs.get("origin", t.number)},
                skip_if_exists=False,
            )
            self._say(f"trial {t.number} {reason}; retrying (attempt {attempt})")
        else:
            self._say(f"trial {t.number} {reason}; not retried")

    def _interrupt(self) -> None:
        for item in self._inflight.values():
            item.job.cancel()
            frozen = self.study._storage.get_trial(item.trial._trial_id)
            self._fail_and_retry(frozen, "interrupted (Ctrl-C)", count_attempt=False)
        self._inflight.clear()

    def _work_dir(self, trial: optuna.Trial) -> Path:
        """A retry resumes in the work directory of the first attempt; the name also carries the
        setting's and the study's content, so a folder is never shared by two of them (a seed in
        it must also carry its own key: see search.trial)."""
        origin = trial.user_attrs.get("origin", trial.number)
        key = content_key({"setting": trial.user_attrs["setting"], "study": self.study.study_name,
                           "context": self.context.to_dict()})
        return self.config.run_dir / "trials" / f"{origin:05d}-{key[:10]}"

    def _lease(self, trial_id: int) -> None:
        storage = self.study._storage
        storage.set_trial_system_attr(trial_id, "lease_until", time.time() + LEASE_S)
        storage.set_trial_system_attr(trial_id, "lease_holder", _HOLDER)

    def _beat(self) -> None:
        now = time.time()
        if self.heartbeat is not None and now - self._last_heartbeat > _RENEW_S:
            self.heartbeat()
            self._last_heartbeat = now

    def _renew_leases(self) -> None:
        self._beat()
        now = time.time()
        if now - self._last_recovery > _RENEW_S:
            self.recover_stale()  # picks up trials of a driver that died while we run
            self._last_recovery = now
        for item in self._inflight.values():
            if now - item.renewed > _RENEW_S:
                self._lease(item.trial._trial_id)
                item.renewed = now

    def running(self) -> list[Running]:
        """The trials in flight now, oldest first."""
        return [Running(number=n, describe=item.setting.describe(),
                        work_dir=self._work_dir(item.trial), started=item.started,
                        info=dict(item.job.info))
                for n, item in sorted(self._inflight.items())]

    def _tick(self) -> None:
        now = time.time()
        if self.events.on_tick and now - self._last_tick >= _TICK_S:
            self._last_tick = now
            self.events.on_tick(self)

    def _announce(self, trial_id: int, started: float) -> None:
        if self.events.on_trial_end:
            self.events.on_trial_end(self.study._storage.get_trial(trial_id), time.time() - started)

    def _say(self, text: str) -> None:
        if self.events.on_message:
            self.events.on_message(text)


def _counts(t: optuna.trial.FrozenTrial) -> bool:
    if t.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return not _infeasible(t)
    lost = t.user_attrs.get("retried") or t.user_attrs.get("never_started")
    return t.state == TrialState.FAIL and not lost


def _infeasible(t: optuna.trial.FrozenTrial) -> bool:
    return t.state == TrialState.PRUNED and bool(t.user_attrs.get("infeasible"))


_HOLDER = f"{socket.gethostname()}:{os.getpid()}"


def _lease_dead(system_attrs: dict[str, Any], now: float) -> bool:
    """A lease is dead once expired, or at once when its driver ran here and has exited."""
    if system_attrs.get("lease_until", 0.0) < now:
        return True
    host, _, pid = str(system_attrs.get("lease_holder", "")).rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _last_line(text: str) -> str:
    """The last non-empty line: the exception itself when ``text`` is a traceback."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no reason given"


def _setting_for(trial: optuna.Trial, config: StudyConfig) -> Setting:
    """An enqueued trial (anchor or retry) carries its setting; others are sampled."""
    stored = trial.user_attrs.get("setting")
    if stored is None:
        return sample(trial, config.space_map)
    fixed_params = trial.study._storage.get_trial_system_attrs(trial._trial_id).get("fixed_params", {})
    for spec in config.space:
        if spec.searched and spec.name in fixed_params:
            spec.suggest(trial)  # records the anchor's value as an Optuna param
    return setting_from_json(stored)


def _setting_json(setting: Setting) -> str:
    from dataclasses import asdict

    return json.dumps(asdict(setting), sort_keys=True)


def setting_from_json(text: str) -> Setting:
    """Inverse of the ``setting`` user attribute."""
    data: dict[str, Any] = json.loads(text)
    data["band"] = tuple(data["band"])
    return Setting(**data)
