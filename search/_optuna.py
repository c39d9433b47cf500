"""The Optuna internals the search needs, in one place.

Checked against Optuna 5.0.0 (pyproject pins ``optuna>=5.0,<6``). Everything else goes
through the public API (``Study.ask``, ``tell``, ``enqueue_trial``, ``get_trials``,
``Trial.set_user_attr``, ``FrozenTrial.system_attrs``). Each helper here exists because that
API has no way to do what it does:

- ``trial_id``: the storage keys trials by id, while ``Trial.number`` counts within a study.
  A worker process rebuilds its trial with ``optuna.Trial(study, trial_id)`` and writes to the
  storage by id, so the driver has to hand the id over.
- ``current``: one trial's record as stored now. ``Study.get_trials`` reads every trial, and a
  live ``Trial`` caches its record, so it misses what the worker wrote (and the driver's own
  failure bookkeeping).
- ``set_system_attr``: leases (``lease_until``, ``lease_holder``) are system attributes, so they
  stay out of the user attributes that the dashboard and reports show. ``optuna.Trial`` has
  no public setter for them.
- ``set_user_attr``: a user attribute on a trial this process did not ask for (a RUNNING trial
  whose driver died). ``Trial.set_user_attr`` would need a live ``Trial``, and building one runs
  the sampler's ``before_trial`` for a trial that will never be sampled.
- ``fixed_params``: the params ``Study.enqueue_trial`` fixed for a trial, which it stores as the
  ``fixed_params`` system attribute. ``optuna.Trial`` does not expose system attributes.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import FrozenTrial


def trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    """The storage's id of ``trial`` (not its number)."""
    return trial._trial_id


def current(study: optuna.Study, trial_id: int) -> FrozenTrial:
    """The trial's record as the storage holds it now."""
    return study._storage.get_trial(trial_id)


def set_system_attr(study: optuna.Study, trial_id: int, key: str, value: Any) -> None:
    study._storage.set_trial_system_attr(trial_id, key, value)


def set_user_attr(study: optuna.Study, trial_id: int, key: str, value: Any) -> None:
    """Like ``Trial.set_user_attr``, for a trial this process holds no ``Trial`` of."""
    study._storage.set_trial_user_attr(trial_id, key, value)


def fixed_params(trial: optuna.Trial) -> dict[str, Any]:
    """The params ``Study.enqueue_trial`` gave ``trial``; empty for a sampled trial."""
    attrs = trial.study._storage.get_trial_system_attrs(trial._trial_id)
    return dict(attrs.get("fixed_params", {}))
