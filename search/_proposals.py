"""Where a trial's setting comes from: anchors, enqueued settings, the sampler, duplicates.

The study's anchors are enqueued once, ahead of anything the sampler proposes. An enqueued
trial (an anchor, or a retry from search._leases) carries its whole setting as the ``setting``
user attribute. Any other trial is sampled from the space. When a setting has already been
scored, the trial copies that result instead of running again (trials are seeded, so a rerun
would give the same score).

The user attribute names (``setting``, ``describe``, ``kind``, ``duplicate_of``) are part of the
journal format.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from search import _optuna
from search.config import StudyConfig
from search.space import Setting, sample, setting_from_params


def enqueue_anchors(study: optuna.Study, config: StudyConfig) -> None:
    """Enqueue the study's anchors, once per study (a resumed study skips them)."""
    if study.user_attrs.get("anchors_enqueued"):
        return
    space = config.space_map
    fixed = {p.name: p.fixed for p in config.space if not p.searched}
    for anchor in config.anchors:
        setting = setting_from_params({**fixed, **dict(anchor.params)})
        # Only values the distributions hold become Optuna params; the rest live in `setting`.
        params = {k: v for k, v in anchor.params
                  if k in space and space[k].searched and space[k].contains(v)}
        study.enqueue_trial(
            params, user_attrs={"setting": setting_json(setting), "kind": f"anchor:{anchor.name}"},
            skip_if_exists=False,
        )
    study.set_user_attr("anchors_enqueued", True)


def propose(trial: optuna.Trial, config: StudyConfig) -> Setting:
    """The setting ``trial`` runs, recorded on it as ``setting``, ``describe`` and ``kind``.

    Raises:
        ValueError: the sampler proposed values no Setting can hold.
    """
    setting = _setting_for(trial, config)
    trial.set_user_attr("setting", setting_json(setting))
    trial.set_user_attr("describe", setting.describe())
    trial.set_user_attr("kind", trial.user_attrs.get("kind", "search"))
    return setting


def reuse_duplicate(study: optuna.Study, trial: optuna.Trial) -> FrozenTrial | None:
    """Tell ``trial`` at once when its setting was already run: COMPLETE with the values of a
    completed trial of the same setting, or PRUNED when one is still running.

    Samplers re-propose points of small discrete spaces, and rerunning them only burns compute.
    The copy keeps the original's user attributes (except its job's), plus ``duplicate_of``,
    which keeps it from counting towards ``n_trials`` (``search.tally``). Returns the told
    trial, or None when the setting is new.
    """
    key = trial.user_attrs["setting"]
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING)):
        if t.number == trial.number or t.user_attrs.get("setting") != key:
            continue
        trial.set_user_attr("duplicate_of", t.number)
        if t.state == TrialState.RUNNING:
            trial.set_user_attr("pruned_reason", f"same setting as #{t.number}, still running")
            return study.tell(trial, state=TrialState.PRUNED)
        for name, value in t.user_attrs.items():
            if name not in trial.user_attrs and not name.startswith("job_"):
                trial.set_user_attr(name, value)
        return study.tell(trial, t.values)
    return None


def setting_json(setting: Setting) -> str:
    """The ``setting`` user attribute."""
    return json.dumps(asdict(setting), sort_keys=True)


def setting_from_json(text: str) -> Setting:
    """Inverse of the ``setting`` user attribute."""
    data: dict[str, Any] = json.loads(text)
    data["band"] = tuple(data["band"])
    return Setting(**data)


def _setting_for(trial: optuna.Trial, config: StudyConfig) -> Setting:
    """An enqueued trial (anchor or retry) carries its setting; others are sampled."""
    stored = trial.user_attrs.get("setting")
    if stored is None:
        return sample(trial, config.space_map)
    fixed_params = _optuna.fixed_params(trial)
    for spec in config.space:
        if spec.searched and spec.name in fixed_params:
            spec.suggest(trial)  # records the anchor's value as an Optuna param
    return setting_from_json(stored)
