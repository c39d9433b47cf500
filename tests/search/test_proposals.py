"""search._proposals: anchors enqueued once, enqueued settings restored, duplicates reused."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from search import _proposals
from search.config import config_from_dict
from search.space import Setting


def _config(tmp_path):
    return config_from_dict({
        "study": {"name": "t", "domain": "code", "n_trials": 3, "seeds": [0],
                  "run_dir": str(tmp_path / "run"), "cache_dir": str(tmp_path / "cache")},
        "sampler": {"name": "random", "seed": 0},
        "space": {"band": {"choices": ["0.2-0.3", "0.5-1.0"]}, "alphabet": {"choices": [2, 4, 10]},
                  "grid": 8},
        "anchors": [{"name": "paper", "params": {"band": "0.3-0.4", "alphabet": 10}},
                    {"name": "small", "params": {"alphabet": 2}}],
    })


def test_anchors_are_enqueued_once_and_asked_first(tmp_path):
    cfg = _config(tmp_path)
    study = optuna.create_study()
    _proposals.enqueue_anchors(study, cfg)
    _proposals.enqueue_anchors(study, cfg)  # a resumed study
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert [t.user_attrs["kind"] for t in waiting] == ["anchor:paper", "anchor:small"]
    assert study.user_attrs["anchors_enqueued"] is True

    trial = study.ask()
    setting = _proposals.propose(trial, cfg)
    assert setting == Setting(band=(0.3, 0.4), alphabet=10, grid=8)  # fixed values included
    # Only the value the space's distribution holds becomes an Optuna param ("0.3-0.4" is not
    # one of the band's choices).
    assert trial.params == {"alphabet": 10}
    assert trial.user_attrs["kind"] == "anchor:paper"
    assert trial.user_attrs["describe"] == setting.describe()


def test_a_sampled_trial_is_recorded_as_search(tmp_path):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    setting = _proposals.propose(trial, _config(tmp_path))
    assert trial.user_attrs["kind"] == "search"
    assert _proposals.setting_from_json(trial.user_attrs["setting"]) == setting
    assert set(trial.params) == {"band", "alphabet"}


def test_unrealisable_proposal_raises(tmp_path):
    study = optuna.create_study()
    trial = study.ask()
    trial.set_user_attr("setting", '{"band": [0.2, 0.3], "alphabet": 99}')
    with pytest.raises(ValueError):
        _proposals.propose(trial, _config(tmp_path))


def test_a_re_proposed_setting_copies_the_completed_trials_values():
    study = optuna.create_study(directions=["minimize", "minimize"])
    setting = _proposals.setting_json(Setting(alphabet=4))
    done = study.ask()
    for key, value in {"setting": setting, "kind": "search", "gain_pct": 3.5, "job_pid": 7}.items():
        done.set_user_attr(key, value)
    study.tell(done, [0.25, 1.5])

    again = study.ask()
    again.set_user_attr("setting", setting)
    again.set_user_attr("kind", "search")
    told = _proposals.reuse_duplicate(study, again)
    assert told is not None and told.state == TrialState.COMPLETE
    assert told.values == [0.25, 1.5]
    assert told.user_attrs["duplicate_of"] == 0 and told.user_attrs["gain_pct"] == 3.5
    assert "job_pid" not in told.user_attrs  # the job was the original's


def test_a_new_setting_is_not_a_duplicate():
    study = optuna.create_study()
    done = study.ask()
    done.set_user_attr("setting", _proposals.setting_json(Setting(alphabet=4)))
    study.tell(done, 1.0)
    failed = study.ask()
    failed.set_user_attr("setting", _proposals.setting_json(Setting(alphabet=2)))
    study.tell(failed, state=TrialState.FAIL)  # only completed trials are reused
    new = study.ask()
    new.set_user_attr("setting", _proposals.setting_json(Setting(alphabet=2)))
    assert _proposals.reuse_duplicate(study, new) is None
    assert study.get_trials()[-1].state == TrialState.RUNNING


def test_setting_json_round_trips():
    setting = Setting(band=(0.1, 0.9), alphabet=3)
    assert _proposals.setting_from_json(_proposals.setting_json(setting)) == setting
