"""search._leases: leases on running trials, and the retry of lost trials in their origin folder."""

from __future__ import annotations

import os
import socket
import subprocess
import time

import optuna
from optuna.trial import TrialState

from search import _leases, _optuna
from search.trial import TrialContext

_SETTING = '{"alphabet": 4, "band": [0.2, 0.3]}'
_CONTEXT = TrialContext(domain="code", data="", tokenizer="byte", preset="tiny", nca_tokens=1,
                        domain_tokens=1, seeds=(0, 1), cache_dir="")


def _running(study, **user_attrs):
    trial = study.ask()
    for key, value in user_attrs.items():
        trial.set_user_attr(key, value)
    return trial


def _lose(study, trial, *, max_retries=2, count_attempt=True):
    frozen = _optuna.current(study, _optuna.trial_id(trial))
    return _leases.fail_and_retry(study, frozen, "lost: test", max_retries=max_retries,
                                  count_attempt=count_attempt)


def _work_dir(trial, tmp_path):
    return _leases.work_dir(trial, run_dir=tmp_path, study_name="s", context=_CONTEXT)


def test_grant_writes_the_lease_attributes():
    study = optuna.create_study()
    trial = study.ask()
    before = time.time()
    _leases.grant(study, _optuna.trial_id(trial))
    attrs = study.get_trials()[0].system_attrs
    assert attrs["lease_holder"] == _leases.HOLDER == f"{socket.gethostname()}:{os.getpid()}"
    assert before + _leases.LEASE_S <= attrs["lease_until"] <= time.time() + _leases.LEASE_S
    assert not _leases.is_dead(attrs, time.time())


def test_a_lease_is_dead_once_expired_or_when_its_local_driver_exited():
    now = time.time()
    assert _leases.is_dead({}, now)
    assert _leases.is_dead({"lease_until": now - 1, "lease_holder": "elsewhere:1"}, now)
    assert not _leases.is_dead({"lease_until": now + 60, "lease_holder": "elsewhere:1"}, now)
    exited = subprocess.Popen(["true"])
    exited.wait()
    here = socket.gethostname()
    assert _leases.is_dead({"lease_until": now + 60, "lease_holder": f"{here}:{exited.pid}"}, now)
    assert not _leases.is_dead({"lease_until": now + 60, "lease_holder": f"{here}:{os.getpid()}"},
                               now)


def test_expired_trial_is_failed_and_retried_in_its_origin_folder(tmp_path):
    study = optuna.create_study()
    first = _running(study, setting=_SETTING, kind="search")
    _optuna.set_system_attr(study, _optuna.trial_id(first), "lease_until", time.time() - 1)
    assert _leases.is_dead(study.get_trials()[0].system_attrs, time.time())

    assert _lose(study, first) == "trial 0 lost: test; retrying (attempt 1)"
    failed = study.get_trials()[0]
    assert failed.state == TrialState.FAIL and failed.user_attrs["retried"]
    assert failed.user_attrs["fail_reason"] == "lost: test"
    second = study.ask()  # the retry: enqueued, so asked before anything sampled
    assert second.user_attrs == {"setting": _SETTING, "kind": "search", "attempt": 1,
                                 "retry_of": 0, "origin": 0}
    assert _work_dir(second, tmp_path) == _work_dir(first, tmp_path)
    assert _work_dir(second, tmp_path).name.startswith("00000-")

    _lose(study, second)  # a retry of a retry still resumes in the first attempt's folder
    third = study.ask()
    assert third.user_attrs["origin"] == 0 and third.user_attrs["retry_of"] == 1
    assert third.user_attrs["attempt"] == 2
    assert _work_dir(third, tmp_path) == _work_dir(first, tmp_path)


def test_out_of_attempts_fails_for_good():
    study = optuna.create_study()
    trial = _running(study, setting=_SETTING, attempt=2)
    assert _lose(study, trial, max_retries=2) == "trial 0 lost: test; not retried"
    frozen = study.get_trials()[0]
    assert frozen.state == TrialState.FAIL and "retried" not in frozen.user_attrs
    assert not study.get_trials(states=(TrialState.WAITING,))


def test_interrupted_trial_is_retried_without_counting_an_attempt():
    study = optuna.create_study()
    trial = _running(study, setting=_SETTING, attempt=2)
    assert _lose(study, trial, max_retries=2, count_attempt=False).endswith("(attempt 2)")
    assert study.get_trials(states=(TrialState.WAITING,))[0].user_attrs["attempt"] == 2


def test_trial_without_a_setting_never_started_and_is_not_retried():
    study = optuna.create_study()
    trial = study.ask()
    _lose(study, trial)
    frozen = study.get_trials()[0]
    assert frozen.state == TrialState.FAIL and frozen.user_attrs["never_started"]
    assert not study.get_trials(states=(TrialState.WAITING,))


def test_work_dir_differs_by_setting_and_study(tmp_path):
    study = optuna.create_study()
    a = _running(study, setting=_SETTING)
    b = _running(study, setting='{"alphabet": 2}')
    assert _work_dir(a, tmp_path).parent == tmp_path / "trials"
    assert _work_dir(a, tmp_path).name[6:] != _work_dir(b, tmp_path).name[6:]
    other = _leases.work_dir(a, run_dir=tmp_path, study_name="other", context=_CONTEXT)
    assert other != _work_dir(a, tmp_path)
