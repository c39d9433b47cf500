"""Creating or resuming the Optuna study of a StudyConfig."""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence

import optuna

from ncaio import atomic_write_json
from search._toml import ConfigError
from search.config import StudyConfig
from search.driver_lock import StudyLock, acquire_study
from search.jobs import make_pruner
from search.storage import open_storage
from search.trial import TrialContext


def make_sampler(config: StudyConfig) -> optuna.samplers.BaseSampler:
    """The study's sampler with every argument pinned (Optuna 5 changed TPE's defaults)."""
    s = config.sampler
    if s.name == "random":
        return optuna.samplers.RandomSampler(seed=s.seed)
    if s.name == "grid":
        return _GridSampler(config.grid, seed=s.seed)
    return optuna.samplers.TPESampler(
        n_startup_trials=s.n_startup_trials, n_ei_candidates=s.n_ei_candidates, seed=s.seed,
        multivariate=s.multivariate, group=s.group, constant_liar=s.constant_liar,
    )


class _GridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler without its stop: ``after_trial`` calls ``study.stop()`` once the
    grid is covered, which raises outside ``study.optimize``; our ask/tell driver stops at the
    study's n_trials instead (set it to the grid's size)."""

    def after_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial,
                    state: optuna.trial.TrialState, values: Sequence[float] | None) -> None:
        return None


def take_study(config: StudyConfig) -> StudyLock:
    """Hold the study for this driver; one driver per study (see search.driver_lock).

    Raises:
        StudyBusyError: another live driver holds it (a ConfigError: exit 2, one line).
    """
    storage = open_storage(config.storage_url, workers=config.study.workers)
    return acquire_study(storage, config.storage_url, config.study.name, config.study.directions)


def open_study(config: StudyConfig, context: TrialContext) -> optuna.Study:
    """Create the study, or load it when it exists; save the resolved configuration with it."""
    workers = config.study.workers if config.study.executor == "local" else 1
    storage = open_storage(config.storage_url, workers=workers)
    try:
        study = optuna.create_study(
            storage=storage, study_name=config.study.name, load_if_exists=True,
            directions=config.study.directions, sampler=make_sampler(config),
            pruner=make_pruner(config.pruner, len(config.study.objectives)),
        )
    except ValueError as exc:
        raise ConfigError(f"study {config.study.name!r}: {exc}") from None
    _check_same_corpora(study, context)
    resolved = json.loads(config.to_json())
    resolved["context"] = context.to_dict()
    study.set_user_attr("config", json.dumps(resolved, sort_keys=True))
    study.set_user_attr("domain", config.study.domain)
    if config.study.multi_domain:
        study.set_user_attr("domains", list(config.study.domains))
    study.set_user_attr("preset", context.preset)
    study.set_user_attr("objectives", list(config.study.objectives))
    with warnings.catch_warnings():  # experimental since Optuna 3.2, unchanged since
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(list(config.study.objectives))  # the dashboard labels values
    _save_note(study, config)
    atomic_write_json(config.run_dir / "config.json", resolved)
    return study


def _check_same_corpora(study: optuna.Study, context: TrialContext) -> None:
    """A resumed study must train on the tokens it started with: its finished trials were scored
    on them, and a changed corpus would mix two datasets in one table.

    Raises:
        ConfigError: the stored context names other corpus tokens (a study that predates the
            keys is not checked).
    """
    try:
        before = json.loads(study.user_attrs["config"])["context"].get("corpus_keys")
    except (KeyError, TypeError, ValueError, AttributeError):
        return
    if before and tuple(before) != context.corpus_keys:
        domains = [d for d, _ in context.domains] or [context.domain]
        changed = [d for d, a, b in zip(domains, before, context.corpus_keys, strict=False)
                   if a != b]
        raise ConfigError(f"study {study.study_name!r} was run on other {', '.join(changed)} "
                          f"data (its tokens' key {before[0]}, now {context.corpus_keys[0]}); "
                          "restore the data, or start a new study with --name")


def _save_note(study: optuna.Study, config: StudyConfig) -> None:
    """Study notes, shown by optuna-dashboard, say what the study is."""
    text = (config.study.notes
            or f"NCA pre-pre-training search for the {config.study.domain} domain.")
    try:
        from optuna_dashboard import save_note
    except ImportError:
        return
    save_note(study, f"# {config.study.name}\n\n{text}\n")
