"""The ask/tell driver: anchors, resume, retries of lost trials, failures, stale leases.

The trial function is a cheap stand-in here (tests/search/_fakes.py); the real trial runs in
tests/search/test_smoke_study.py.
"""

from __future__ import annotations

import time

import pytest
from optuna.trial import TrialState

from search.config import config_from_dict
from search.driver import BaselineLostError, Driver, DriverEvents
from search.executors import InlineExecutor, LocalExecutor
from search.study import open_study
from search.tally import counts_towards_n_trials
from search.trial import TrialContext
from tests.search import _fakes


def _config(tmp_path, n_trials=5, space=None, max_retries=2):
    raw = {
        "study": {"name": "t", "domain": "code", "n_trials": n_trials, "seeds": [0, 1],
                  "run_dir": str(tmp_path / "run"), "cache_dir": str(tmp_path / "cache"),
                  "max_retries": max_retries},
        "sampler": {"name": "random", "seed": 0},
        "space": space or {"band": {"choices": ["0.2-0.3", "0.5-1.0"]},
                           "alphabet": {"choices": [2, 4]}},
        "anchors": [{"name": "paper", "params": {"band": "0.3-0.4", "alphabet": 10}}],
    }
    return config_from_dict(raw)


def _context(cfg):
    return TrialContext(domain="code", data="", tokenizer="byte", preset="tiny", nca_tokens=1,
                        domain_tokens=1, seeds=(0, 1), cache_dir=str(cfg.cache_dir))


def _drive(cfg, executor, workers=1):
    cfg.cache_dir.mkdir(parents=True, exist_ok=True)
    context = _context(cfg)
    study = open_study(cfg, context)
    driver = Driver(config=cfg, study=study, executor=executor, context=context,
                    max_in_flight=workers, trial_fn=_fakes.fake_trial,
                    baseline_fn=_fakes.fake_baseline)
    driver.run()
    return study


def _states(study):
    return [t.state for t in study.get_trials(deepcopy=False)]


def test_anchor_first_and_trial_count(tmp_path):
    study = _drive(_config(tmp_path), InlineExecutor())
    trials = [t for t in study.get_trials() if "duplicate_of" not in t.user_attrs]
    assert len(trials) == 5 and all(t.state == TrialState.COMPLETE for t in trials)
    assert trials[0].user_attrs["kind"] == "anchor:paper"
    assert '"alphabet": 10' in trials[0].user_attrs["setting"]


def test_resume_never_redoes_finished_trials(tmp_path):
    cfg = _config(tmp_path, n_trials=3)
    study = _drive(cfg, InlineExecutor())
    first = [(t.number, t.datetime_complete) for t in study.get_trials()]
    study = _drive(cfg, InlineExecutor())
    assert [(t.number, t.datetime_complete) for t in study.get_trials()] == first
    study = _drive(_config(tmp_path, n_trials=5), InlineExecutor())
    trials = [t for t in study.get_trials() if "duplicate_of" not in t.user_attrs]
    assert len(trials) == 5 and len({t.user_attrs["setting"] for t in trials}) == 5


def test_failing_trial_fails_once_and_counts(tmp_path):
    cfg = _config(tmp_path, n_trials=3, space={"transfer": "freeze-all"})
    study = _drive(cfg, InlineExecutor())
    assert _states(study) == [TrialState.FAIL] * 3
    assert all("broken on purpose" in t.user_attrs["fail_reason"] for t in study.get_trials())
    assert not any(t.user_attrs.get("retried") for t in study.get_trials())


def test_killed_worker_is_retried_without_loss_or_duplicate(tmp_path):
    cfg = _config(tmp_path, n_trials=4)
    (cfg.cache_dir).mkdir(parents=True)
    (cfg.cache_dir / "kill-once.armed").touch()
    study = _drive(cfg, LocalExecutor(tmp_path / "workers"), workers=2)
    trials = study.get_trials()
    lost = [t for t in trials if t.state == TrialState.FAIL]
    assert len(lost) == 1 and lost[0].user_attrs["retried"]
    assert "SIGKILL" in lost[0].user_attrs["fail_reason"]
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(done) == 4
    retry = [t for t in done if t.user_attrs.get("retry_of") == lost[0].number]
    assert len(retry) == 1 and retry[0].user_attrs["setting"] == lost[0].user_attrs["setting"]


def _baseline_driver(tmp_path, deaths, max_retries):
    cfg = _config(tmp_path, max_retries=max_retries)
    cfg.cache_dir.mkdir(parents=True)
    (cfg.cache_dir / "baseline-deaths").write_text(str(deaths))
    messages = []
    driver = Driver(config=cfg, study=open_study(cfg, _context(cfg)),
                    executor=LocalExecutor(tmp_path / "workers"), context=_context(cfg),
                    events=DriverEvents(on_message=messages.append),
                    baseline_fn=_fakes.dying_baseline)
    return driver, messages


def test_killed_baseline_worker_is_retried(tmp_path):
    driver, messages = _baseline_driver(tmp_path, deaths=1, max_retries=1)
    driver.ensure_baselines()
    retries = [m for m in messages if "retrying" in m]
    assert len(retries) == 2 and all("SIGKILL" in m for m in retries), messages


def test_baseline_lost_beyond_max_retries_stops_with_one_line(tmp_path):
    driver, _ = _baseline_driver(tmp_path, deaths=3, max_retries=1)
    with pytest.raises(BaselineLostError) as info:
        driver.ensure_baselines()
    text = str(info.value)
    assert "\n" not in text and "lost 2 times" in text and "max_retries = 1" in text, text


def test_stale_running_trial_is_failed_and_retried(tmp_path):
    cfg = _config(tmp_path, n_trials=2)
    context = _context(cfg)
    study = open_study(cfg, context)
    trial = study.ask()
    trial.set_user_attr("setting", '{"alphabet": 4, "band": [0.2, 0.3]}')
    study._storage.set_trial_system_attr(trial._trial_id, "lease_until", time.time() - 1)
    driver = Driver(config=cfg, study=study, executor=InlineExecutor(), context=context,
                    trial_fn=_fakes.fake_trial, baseline_fn=_fakes.fake_baseline)
    driver.recover_stale()
    frozen = study.get_trials()[0]
    assert frozen.state == TrialState.FAIL and "driver stopped" in frozen.user_attrs["fail_reason"]
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert len(waiting) == 1 and waiting[0].user_attrs["retry_of"] == 0


def test_retry_cap(tmp_path):
    cfg = _config(tmp_path, n_trials=1, max_retries=0)
    context = _context(cfg)
    study = open_study(cfg, context)
    trial = study.ask()
    trial.set_user_attr("setting", "{}")
    driver = Driver(config=cfg, study=study, executor=InlineExecutor(), context=context,
                    trial_fn=_fakes.fake_trial, baseline_fn=_fakes.fake_baseline)
    driver.recover_stale()
    assert not study.get_trials(states=(TrialState.WAITING,))
    assert driver.finished_count() == 1


def test_live_lease_of_a_dead_local_driver_is_recovered_at_once(tmp_path):
    import socket
    import subprocess

    cfg = _config(tmp_path, n_trials=2)
    context = _context(cfg)
    study = open_study(cfg, context)
    asked = study.ask()  # a driver died between ask() and recording the setting
    dead = subprocess.Popen(["true"])
    dead.wait()
    storage = study._storage
    storage.set_trial_system_attr(asked._trial_id, "lease_until", time.time() + 600)
    storage.set_trial_system_attr(asked._trial_id, "lease_holder",
                                  f"{socket.gethostname()}:{dead.pid}")
    driver = Driver(config=cfg, study=study, executor=InlineExecutor(), context=context,
                    trial_fn=_fakes.fake_trial, baseline_fn=_fakes.fake_baseline)
    driver.run()
    trials = study.get_trials()
    assert trials[0].state == TrialState.FAIL and trials[0].user_attrs["never_started"]
    assert len([t for t in trials if t.state == TrialState.COMPLETE]) == 2
    assert not study.get_trials(states=(TrialState.RUNNING,))


def test_anchors_are_submitted_unprunable(tmp_path):
    cfg = _config(tmp_path, n_trials=3)
    cfg.cache_dir.mkdir(parents=True, exist_ok=True)
    context = _context(cfg)
    seen = []

    def trial_fn(payload):
        seen.append((payload.setting.alphabet, payload.prunable))
        return _fakes.fake_trial(payload)

    Driver(config=cfg, study=open_study(cfg, context), executor=InlineExecutor(), context=context,
           trial_fn=trial_fn, baseline_fn=_fakes.fake_baseline).run()
    assert seen[0] == (10, False)  # the paper anchor
    assert [p for _, p in seen[1:]] == [True, True]


def _infeasible_below(limit):
    """A trial job that reports alphabets below ``limit`` as infeasible, like an unreachable
    band."""
    def trial_fn(payload):
        from search.jobs import TrialResult
        from search.storage import open_storage

        if payload.setting.alphabet < limit:
            open_storage(payload.storage).set_trial_user_attr(payload.trial_id, "infeasible", True)
            return TrialResult(state="pruned", reason="band unreachable")
        return _fakes.fake_trial(payload)
    return trial_fn


def _drive_with(cfg, trial_fn):
    cfg.cache_dir.mkdir(parents=True, exist_ok=True)
    context = _context(cfg)
    messages = []
    study = open_study(cfg, context)
    Driver(config=cfg, study=study, executor=InlineExecutor(), context=context, trial_fn=trial_fn,
           baseline_fn=_fakes.fake_baseline,
           events=DriverEvents(on_message=messages.append)).run()
    return study, messages


def test_infeasible_settings_do_not_count_towards_the_study(tmp_path):
    study, _ = _drive_with(_config(tmp_path, n_trials=4), _infeasible_below(4))
    trials = study.get_trials()
    infeasible = [t for t in trials if t.user_attrs.get("infeasible")]
    assert infeasible and all(t.state == TrialState.PRUNED for t in infeasible)
    counted = [t for t in trials if counts_towards_n_trials(t)]
    # the anchor and the two bands at alphabet 4: every feasible setting, each once
    assert len(counted) == 3 and len({t.user_attrs["setting"] for t in counted}) == 3


def test_sampling_stops_when_nothing_proposed_can_be_realised(tmp_path):
    study, messages = _drive_with(_config(tmp_path, n_trials=3), _infeasible_below(99))
    assert sum(bool(t.user_attrs.get("infeasible")) for t in study.get_trials()) == 3
    assert any("could not be realised" in m for m in messages)


def test_unrealisable_proposal_fails_its_trial_not_the_driver(tmp_path):
    # Both bounds are valid grids, 5 inside them is not (odd): only the trial proposing it fails.
    cfg = _config(tmp_path, n_trials=6, space={"grid": {"low": 4, "high": 6}})
    study = _drive(cfg, InlineExecutor())
    trials = study.get_trials()
    odd = [t for t in trials if t.params.get("grid") == 5]
    assert odd and all(t.state == TrialState.FAIL for t in odd)
    assert all("grid=5 is invalid; accepted: a multiple of patch=2" in t.user_attrs["fail_reason"]
               for t in odd)
    assert len(trials) == 6 and not study.get_trials(states=(TrialState.RUNNING,))
    assert all(t.state == TrialState.COMPLETE for t in trials if t not in odd)


def test_baseline_phase_is_published_for_status_and_closed_after(tmp_path):
    """search.status on another machine sees the phase only through the study: the driver
    publishes its seeds and merged progress while it runs and ``running: False`` after."""
    from search.progress import BASELINE_PHASE_ATTR

    cfg = _config(tmp_path)
    cfg.cache_dir.mkdir(parents=True)
    seen = []
    driver = Driver(config=cfg, study=open_study(cfg, _context(cfg)), executor=InlineExecutor(),
                    context=_context(cfg), baseline_fn=_fakes.reporting_baseline,
                    events=DriverEvents(on_tick=lambda d: seen.append(
                        d.study.user_attrs.get(BASELINE_PHASE_ATTR))))
    driver.ensure_baselines()
    first = seen[0]
    assert first["running"] and first["seeds"] == [0, 1]
    progress = first["progress"]  # seed 0 half done at 50 tokens/s, seed 1 waiting
    assert (progress["tokens"], progress["total"], progress["tokens_left"]) == (500, 2000, 1500)
    assert progress["tokens_per_s"] == 50.0
    assert driver.study.user_attrs[BASELINE_PHASE_ATTR]["running"] is False


def test_a_dead_drivers_baseline_phase_is_closed_when_its_seeds_are_cached(tmp_path):
    from search import trial as trial_lib
    from search.progress import BASELINE_PHASE_ATTR

    cfg = _config(tmp_path)
    cfg.cache_dir.mkdir(parents=True)
    context = _context(cfg)
    study = open_study(cfg, context)
    study.set_user_attr(BASELINE_PHASE_ATTR, {"running": True, "seeds": [0, 1]})
    for seed in (0, 1):  # its jobs finished after their driver died (Slurm)
        for run in trial_lib.study_scratch_runs(context):
            path = trial_lib.baseline_path(context, run, seed)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("{}")
    Driver(config=cfg, study=study, executor=InlineExecutor(), context=context,
           baseline_fn=_fakes.fake_baseline).ensure_baselines()
    assert study.user_attrs[BASELINE_PHASE_ATTR]["running"] is False


def test_a_repeated_setting_is_not_counted_and_an_exhausted_space_stops(tmp_path):
    """A proposal that repeats a scored setting copies its result but is not a trial (a 4-trial
    study used to test 3 settings); a space with fewer settings than n_trials stops sampling
    after MAX_REPEATS_IN_A_ROW repeats in a row instead of looping."""
    from search.driver import MAX_REPEATS_IN_A_ROW

    space = {"band": {"choices": ["0.2-0.3", "0.5-1.0"]}, "alphabet": 4}
    study = _drive(_config(tmp_path, n_trials=6, space=space), InlineExecutor())
    trials = study.get_trials()
    counted = [t for t in trials if counts_towards_n_trials(t)]
    assert len({t.user_attrs["setting"] for t in counted}) == len(counted) == 3  # anchor + 2
    repeats = [t for t in trials if "duplicate_of" in t.user_attrs]
    assert len(repeats) >= MAX_REPEATS_IN_A_ROW
    assert all(t.values == trials[t.user_attrs["duplicate_of"]].values for t in repeats)
