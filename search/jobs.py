"""The job functions executors run, and what travels to and from them.

``run_trial_job`` opens the study's storage from inside the worker (a local process or a Slurm
job), so intermediate losses and user attributes reach Optuna as the trial runs and the pruner
can stop it; the driver only tells the final state.

A data-parallel job (several ranks, ``lm.distributed``) runs the same function on every rank:
rank 0 opens the storage, reports and returns the result; the other ranks train along, follow
rank 0's pruning decisions and return None. A rank that loses its peers raises
``PeerLostError``, which the executor reports as a lost job (retried), naming the rank that died.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from lm import distributed
from search import _first_domain, artifacts, disk, tracking
from search import progress as progress_lib
from search import trial as trial_lib
from search.config import PrunerSection
from search.record import SeedRecord, TrialRecord
from search.space import Setting
from search.tracking import TrackingConfig
from search.trial import TrialContext

__all__ = [
    "TrialContext",
    "TrialPayload",
    "TrialResult",
    "baseline_cached",
    "baseline_phase_progress",
    "baseline_progress_path",
    "make_pruner",
    "run_baseline_job",
    "run_trial_job",
]


@dataclass(frozen=True, kw_only=True, slots=True)
class TrialPayload:
    """Everything a worker needs to run one trial and write to its study."""

    storage: str
    study_name: str
    trial_id: int
    setting: Setting
    context: TrialContext
    pruner: PrunerSection
    objectives: tuple[str, ...]
    work_dir: str = ""
    """Where the trial keeps its resumable state (finished seeds, stage checkpoints)."""
    artifact_dir: str = ""
    """Optuna FileSystemArtifactStore root for the dashboard; empty = no artifacts."""
    prunable: bool = True
    """False for anchors: reference points report their curves (the pruner's median uses them)
    but always run every seed to the end."""
    tracking: TrackingConfig | None = None
    """Where the worker mirrors the trial's runs (search.tracking); None = not tracked."""


@dataclass(frozen=True, kw_only=True, slots=True)
class TrialResult:
    """What the driver tells Optuna: ``complete`` with values, ``pruned`` or ``failed``; or
    ``disk_full``, which stops the study (search.disk)."""

    state: str
    values: list[float] = field(default_factory=list)
    reason: str = ""
    tracking_stopped: bool = False
    """The worker's tracker failed (it warned once): the driver tracks no further trial."""


PROGRESS_ATTR_EVERY_S = 10.0
"""Least seconds between two updates of a trial's ``progress`` user attribute: every update is a
storage write (a journal line), so the dashboard sees progress at this coarse rate."""

_log = logging.getLogger(__name__)


def make_pruner(section: PrunerSection, n_objectives: int = 1) -> optuna.pruners.BasePruner:
    """The study's pruner; multi-objective studies cannot prune (Optuna has no such rule)."""
    if section.name == "none" or n_objectives > 1:
        return optuna.pruners.NopPruner()
    if section.name == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=section.n_startup_trials, n_warmup_steps=section.n_warmup_steps
        )
    if section.name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=section.min_resource, reduction_factor=section.reduction_factor
        )
    return optuna.pruners.WilcoxonPruner(
        p_threshold=section.p_threshold, n_startup_steps=section.n_warmup_steps
    )


class _OptunaReporter:
    """Connects the trial function to its Optuna trial inside a worker."""

    def __init__(self, payload: TrialPayload) -> None:
        from search.storage import open_storage

        storage = open_storage(payload.storage)
        pruner = make_pruner(payload.pruner, len(payload.objectives))
        study = optuna.load_study(study_name=payload.study_name, storage=storage, pruner=pruner)
        self._trial = optuna.Trial(study, payload.trial_id)
        self._per_seed = payload.pruner.name == "wilcoxon"
        # Optuna refuses intermediate values in multi-objective studies (and cannot prune them):
        # those follow search._first_domain's rule instead (report_domain).
        self._reports = len(payload.objectives) == 1
        self._objectives = payload.objectives
        self._objective = payload.objectives[0]
        self._first_domain = payload.context.domain
        self._pruner = payload.pruner
        self._study = study
        self._prunable = payload.prunable
        self._artifacts = payload.artifact_dir
        self.tracker = (tracking.open_trial(
            payload.tracking, study=payload.study_name, number=self._trial.number,
            attrs=self._trial.user_attrs, setting=payload.setting, domain=payload.context.domain)
            if payload.tracking else None)
        self._init_progress(payload)

    def upload(self, path: Path) -> None:
        """Attach a file to the trial through Optuna's artifact store (seen by the dashboard)
        and to its tracked run."""
        if self.tracker:
            self.tracker.log_artifact(path)
        if self._artifacts:
            Path(self._artifacts).mkdir(parents=True, exist_ok=True)
            store = optuna.artifacts.FileSystemArtifactStore(self._artifacts)
            optuna.artifacts.upload_artifact(study_or_trial=self._trial, file_path=str(path),
                                             artifact_store=store)

    def report_curve(self, step: int, point: trial_lib.CurvePoint) -> bool:
        """Report a validation point of the downstream stage, as the study's first objective
        scores trials (a loss, or a % effect); True when the trial should stop."""
        if self._per_seed or not self._reports:
            return False
        self._trial.report(point.value(self._objective), step)
        return self._prunable and self._trial.should_prune()

    def report_seed(self, seed_index: int, point: trial_lib.CurvePoint) -> bool:
        """Wilcoxon pruning compares per-seed results as instances: the paired loss difference
        (trial minus scratch) for a loss objective, the seed's % effect for an effect one."""
        if not self._per_seed or not self._reports:
            return False
        value = (point.loss - point.scratch_loss if self._objective == "loss"
                 else point.value(self._objective))
        self._trial.report(value, seed_index)
        return self._prunable and self._trial.should_prune()

    def report_domain(self, domain: str, seeds: tuple[SeedRecord, ...]) -> bool:
        """A multi-objective study's rule (search._first_domain): True when the first domain's
        ``seeds`` so far are worse than the completed trials' median on every objective."""
        if (self._reports or not self._prunable or self._pruner.name != "median"
                or domain != self._first_domain):
            return False
        completed = (TrialRecord.from_attrs(t.user_attrs) for t in self._study.get_trials(
            deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
        return _first_domain.hopeless(seeds, [r for r in completed if r is not None],
                                      self._objectives, self._first_domain,
                                      self._pruner.n_startup_trials)

    def report_eval(self, stage: str, seed: int, domain: str, tokens: int, val_loss: float,
                    scratch_loss: float | None) -> None:
        """A validation point of a stage the trial trains (search.trial), for the tracker."""
        if self.tracker:
            self.tracker.log_eval(stage, seed, domain, tokens, val_loss, scratch_loss)

    def set_attr(self, key: str, value: Any) -> None:
        self._trial.set_user_attr(key, value)

    # -- live progress (search.progress): a file for the board, a user attribute for the dashboard

    def _init_progress(self, payload: TrialPayload) -> None:
        context, setting = payload.context, payload.setting
        self._nca_tokens = (0 if setting.source == "none"
                            else (setting.nca_tokens or context.nca_tokens))
        self._domain_tokens = 0 if setting.source == "none" else progress_lib.domain_stage_tokens(
            context.domain_tokens, len(context.per_domain()))
        self._n_seeds = len(context.seeds)
        self._writer = (progress_lib.ProgressWriter(progress_lib.progress_path(payload.work_dir),
                                                    trial=self._trial.number, n_seeds=self._n_seeds)
                        if payload.work_dir else None)
        self._attr_at = -PROGRESS_ATTR_EVERY_S
        self._attr_broken = False
        self.progress("starting", 0, 0, 0)  # replaces a previous attempt's record at once

    def progress(self, stage: str, seed_index: int, tokens: int, total: int,
                 val_loss: float | None = None, scratch_loss: float | None = None) -> None:
        """Where the trial stands: written to ``<work_dir>/progress.json`` every few seconds,
        and to the ``progress`` user attribute at most every ``PROGRESS_ATTR_EVERY_S``."""
        if self._writer is None:
            return
        left = progress_lib.tokens_left(stage, seed_index, self._n_seeds, tokens, total,
                                        nca_tokens=self._nca_tokens,
                                        domain_tokens=self._domain_tokens)
        record = self._writer.update(stage, seed_index, tokens, total, val_loss=val_loss,
                                     scratch_loss=scratch_loss, tokens_left=left)
        now = time.monotonic()
        if record is None or now - self._attr_at < PROGRESS_ATTR_EVERY_S:
            return
        self._attr_at = now
        try:
            self._trial.set_user_attr("progress", record.to_dict())
        except Exception as exc:  # noqa: BLE001 - the storage hiccuped: the display waits
            if not self._attr_broken:
                _log.warning("trial %d: progress attribute not stored (%s)",
                             self._trial.number, exc)
            self._attr_broken = True


class _RankReporter:
    """A data-parallel trial's reporter: rank 0's ``_OptunaReporter`` (``inner``) decides and
    writes; the other ranks (``inner`` None) get its pruning decisions, so that every rank stops
    at the same seed and meets the same collectives."""

    def __init__(self, inner: _OptunaReporter | None) -> None:
        self._inner = inner

    def report_curve(self, step: int, point: trial_lib.CurvePoint) -> bool:
        # the trainer calls its callback on rank 0 alone and hands what it raises to the others
        return self._inner.report_curve(step, point) if self._inner else False

    def report_seed(self, seed_index: int, point: trial_lib.CurvePoint) -> bool:
        inner = self._inner
        return distributed.from_main(lambda: inner is not None and inner.report_seed(
            seed_index, point), "the seed report")

    def report_domain(self, domain: str, seeds: tuple[SeedRecord, ...]) -> bool:
        inner = self._inner
        return distributed.from_main(lambda: inner is not None and inner.report_domain(
            domain, seeds), "the domain report")

    def report_eval(self, stage: str, seed: int, domain: str, tokens: int, val_loss: float,
                    scratch_loss: float | None) -> None:
        if self._inner:  # the tracker is rank 0's
            self._inner.report_eval(stage, seed, domain, tokens, val_loss, scratch_loss)

    def set_attr(self, key: str, value: Any) -> None:
        if self._inner:
            self._inner.set_attr(key, value)

    def progress(self, stage: str, seed_index: int, tokens: int, total: int,
                 val_loss: float | None = None, scratch_loss: float | None = None) -> None:
        if self._inner:
            self._inner.progress(stage, seed_index, tokens, total, val_loss, scratch_loss)


def _run_on_other_rank(payload: TrialPayload) -> None:
    """The trial on a rank other than 0: train along; rank 0 reports everything it shares
    (its exceptions, pruning); what fails on this rank alone is raised (a lost job)."""
    work_dir = Path(payload.work_dir) if payload.work_dir else None
    try:
        trial_lib.run_trial(payload.setting, payload.context, reporter=_RankReporter(None),
                            work_dir=work_dir)
    except trial_lib.TrialPrunedError:
        pass
    except Exception as exc:
        if not distributed.raised_on_main(exc):
            raise


def run_trial_job(payload: TrialPayload) -> TrialResult | None:
    """Run one trial; exceptions inside it become a ``failed`` result carrying the traceback.

    Data-parallel: None on every rank but 0.

    Raises:
        PeerLostError: another rank of a data-parallel trial died (the job is lost, not failed).
    """
    inner = distributed.main_only(lambda: _OptunaReporter(payload), "opening the study")
    if inner is None:  # another rank than 0
        _run_on_other_rank(payload)
        return None
    result = _run_trial(payload, inner)
    if inner.tracker:
        inner.tracker.finish(result.state, result.reason)
    if payload.tracking and tracking.stopped():
        return dataclasses.replace(result, tracking_stopped=True)
    return result


def _run_trial(payload: TrialPayload, inner: _OptunaReporter) -> TrialResult:
    """Rank 0's part of ``run_trial_job``: the trial, its record and its artifacts."""
    reporter = _RankReporter(inner) if distributed.is_distributed() else inner
    try:
        work_dir = Path(payload.work_dir) if payload.work_dir else None
        outcome = trial_lib.run_trial(payload.setting, payload.context, reporter=reporter,
                                      work_dir=work_dir)
    except trial_lib.TrialPrunedError as exc:
        inner.set_attr("pruned_reason", str(exc))
        if isinstance(exc, trial_lib.InfeasibleSettingError):
            inner.set_attr("infeasible", True)
        return TrialResult(state="pruned", reason=str(exc))
    except (KeyboardInterrupt, distributed.PeerLostError):
        raise
    except Exception as exc:  # noqa: BLE001 - a bug in a trial fails that trial, not the study
        if disk.is_disk_full(exc):  # not the trial's fault: the driver stops the study
            return TrialResult(state="disk_full", reason=_first_line(exc))
        text = traceback.format_exc()
        inner.set_attr("traceback", text[-4000:])
        return TrialResult(state="failed", reason=f"{type(exc).__name__}: {exc}")
    record = outcome.record()
    for key, value in record.to_attrs().items():
        inner.set_attr(key, value)
    if outcome.shared_seeds:  # its wall time is not a trial's: the board's estimates leave it out
        inner.set_attr("shared_seeds", outcome.shared_seeds)
    values = [record.objective(o) for o in payload.objectives]
    if inner.tracker:
        inner.tracker.log_outcome(outcome, dict(zip(payload.objectives, values, strict=True)))
    inner.progress("artifacts", len(payload.context.seeds) - 1, 0, 0)
    try:
        artifacts.upload(outcome, payload.context, inner.upload)
    except (OSError, ValueError) as exc:  # pictures are a nicety; the measurement stands
        inner.set_attr("artifact_error", f"{type(exc).__name__}: {exc}")
    return TrialResult(state="complete", values=values)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def run_baseline_job(args: tuple[TrialContext, int]) -> float:
    """Compute (or fetch) the scratch runs of one seed at the study's default setting (the
    matched recipe and every named one; on every domain of a multi-domain study); returns the
    first domain's matched run's final loss."""
    context, seed = args
    writer = progress_lib.ProgressWriter(baseline_progress_path(context, seed), trial=-1,
                                         n_seeds=len(context.seeds))
    index = context.seeds.index(seed) if seed in context.seeds else 0

    runs = [(one, run) for one in context.per_domain() for run in trial_lib.study_scratch_runs(one)]
    distinct = {(one.domain, run.plan) for one, run in runs}  # matched may be a named one
    finished: set[Any] = set()  # progress counts tokens over all distinct runs

    def progress(tokens: int, total: int) -> None:
        so_far, whole = len(finished) * total + tokens, len(distinct) * total
        writer.update("scratch", index, so_far, whole, tokens_left=whole - so_far)

    losses = {}
    for one, run in runs:
        losses[one.domain, run.label] = trial_lib.scratch_baseline(
            one, run, seed, progress=progress).final_loss
        finished.add((one.domain, run.plan))
    return losses[context.domain, "matched"]


def baseline_progress_path(context: TrialContext, seed: int) -> Path:
    """Where the job computing the scratch runs of ``seed`` writes its progress."""
    first = context.per_domain()[0]
    path = trial_lib.baseline_path(first, trial_lib.study_scratch_runs(first)[0], seed)
    return path.with_name(path.stem + ".progress.json")


def baseline_cached(context: TrialContext, seed: int) -> bool:
    """True when every scratch run of ``seed`` at the study's default setting is cached (on
    every domain of a multi-domain study)."""
    return all(trial_lib.baseline_path(one, run, seed).is_file()
               for one in context.per_domain() for run in trial_lib.study_scratch_runs(one))


def baseline_phase_progress(context: TrialContext, seeds: tuple[int, ...],
                            since: float) -> progress_lib.Progress | None:
    """The baseline phase over ``seeds`` as one record, from its jobs' files written ``since``
    (None before the first job reports). Its jobs run some at a time, so a seed already finished
    counts whole, a running one as far as it got, and a waiting one as left."""
    records = {s: progress_lib.read_progress(baseline_progress_path(context, s)) for s in seeds}
    live = {s: p for s, p in records.items() if p is not None and p.updated_at >= since - 1.0}
    if not live:
        return None
    # each job counts every scratch run of its seed (recipes, domains): the same for all
    per_seed = max(p.total for p in live.values())
    done = [s for s in seeds if baseline_cached(context, s)]
    running = [p for s, p in live.items() if s not in done]
    tokens = per_seed * len(done) + sum(p.tokens for p in running)
    return progress_lib.Progress(trial=-1, seed_index=0, n_seeds=len(seeds), stage="scratch",
                                 tokens=tokens, total=per_seed * len(seeds),
                                 tokens_per_s=sum(p.tokens_per_s for p in running),
                                 tokens_left=per_seed * len(seeds) - tokens,
                                 updated_at=max(p.updated_at for p in live.values()))
