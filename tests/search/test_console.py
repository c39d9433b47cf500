"""The console's closing summary counts trials as the board does, and says what it left out."""

from __future__ import annotations

import io

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from search import console


def _trial(state: TrialState, **attrs) -> optuna.trial.FrozenTrial:
    return create_trial(state=state, params={"x": 0.5},
                        distributions={"x": FloatDistribution(0, 1)},
                        value=1.0 if state == TrialState.COMPLETE else None, user_attrs=attrs)


def test_retried_attempts_and_infeasible_trials_are_not_counted_as_failed_or_pruned():
    study = optuna.create_study()
    for t in (_trial(TrialState.COMPLETE), _trial(TrialState.COMPLETE), _trial(TrialState.PRUNED),
              _trial(TrialState.PRUNED, infeasible=True), _trial(TrialState.FAIL, retried=True),
              _trial(TrialState.FAIL, never_started=True), _trial(TrialState.FAIL)):
        study.add_trial(t)
    out = io.StringIO()
    console.summary(study, {}, out)
    assert out.getvalue().splitlines()[-1] == (
        "trials: 2 complete, 1 pruned, 1 failed, 1 infeasible (not counted); "
        "2 attempt(s) lost or interrupted (not counted: run again or never started)")


def test_a_trial_that_read_seeds_back_says_so_and_is_left_out_of_the_mean_trial_time():
    from search.tally import mean_trial_s

    shared = _trial(TrialState.COMPLETE, shared_seeds=2, kind="anchor:paper")
    assert "(2 seed(s) read back from another study's)" in console.trial_line(shared, 3.0)
    assert mean_trial_s([shared]) is None
    assert mean_trial_s([shared, _trial(TrialState.COMPLETE)]) == 0.0
