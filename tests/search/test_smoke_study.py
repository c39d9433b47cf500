"""The real service end to end on the `smoke` study (tiny preset, real NCA data, real training).

Local executor with 2 worker processes and journal storage, as a user runs it; then resume,
Ctrl-C, kill -9 of a worker, caching, pruning and PostgreSQL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState

from search.config import load_study_config
from search.jobs import TrialPayload, run_trial_job
from search.space import Setting
from search.study import open_study
from search.tally import counts_towards_n_trials
from search.trial import make_context
from tests.conftest import REPO

pytestmark = pytest.mark.slow


def _cmd(tmp_path, *extra):
    return [sys.executable, "-m", "search.run", "--study", "smoke",
            "--run-dir", str(tmp_path / "run"),
            "--cache-dir", str(tmp_path / "cache"), *extra]


def _load(tmp_path, name="smoke"):
    from search.storage import open_storage

    storage = open_storage(str(tmp_path / "run" / "journal.log"), create=False)
    return optuna.load_study(study_name=name, storage=storage)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """One real smoke study, shared by the checks below."""
    tmp_path = tmp_path_factory.mktemp("smoke")
    t0 = time.time()
    result = subprocess.run(_cmd(tmp_path), cwd=REPO, capture_output=True, text=True, timeout=600,
                            check=False)
    return tmp_path, result, time.time() - t0


def test_smoke_study_completes(smoke_run):
    tmp_path, result, _ = smoke_run
    assert result.returncode == 0, result.stdout + result.stderr
    study = _load(tmp_path)
    trials = study.get_trials()
    assert trials[0].user_attrs["kind"] == "anchor:paper"
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    # The smoke space holds bands alphabets 2 and 4 cannot reach: those do not count.
    assert len([t for t in trials if not t.user_attrs.get("infeasible")]) == 4
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert done, "no trial completed"
    attrs = done[0].user_attrs
    for key in ("seeds", "losses", "scratch_losses", "gain_pct", "gains_pct", "curves",
                "scratch_curves", "band", "alphabet", "upstream", "wall_s", "record_version",
                "nca_effect_pct", "net_effect_pct", "probes", "recipe"):
        assert key in attrs, key
    assert attrs["seeds"] == [0, 1] and len(attrs["curves"]) == 2
    assert attrs["upstream"]["uniform_loss"] > 0
    assert json.loads(study.user_attrs["config"])["study"]["name"] == "smoke"
    out = result.stdout
    assert "[search] study 'smoke' (new; code" in out
    assert "[I " not in result.stderr, "Optuna's INFO lines are not the driver's to print"
    assert "scratch" in out and "paper setting" in out and "optuna-dashboard" in out
    assert out.count(" COMPLETE ") + out.count(" PRUNED ") >= 4


def test_rerun_resumes_without_redoing(smoke_run):
    tmp_path, _, _ = smoke_run
    before = [(t.number, t.state, t.datetime_complete) for t in _load(tmp_path).get_trials()]
    result = subprocess.run(_cmd(tmp_path), cwd=REPO, capture_output=True, text=True, timeout=300,
                            check=False)
    assert result.returncode == 0, result.stderr
    after = [(t.number, t.state, t.datetime_complete) for t in _load(tmp_path).get_trials()]
    assert after == before
    assert f"[search] study 'smoke' (resumed, {len(before)} trials on record; " in result.stdout


def test_ctrl_c_leaves_no_running_trial_and_resume_finishes(tmp_path):
    # A study run from a terminal takes Ctrl-C; a suite started in the background (``cmd &``)
    # has SIGINT ignored and would hand that on, so the driver is started with the default.
    inherited = signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        proc = subprocess.Popen(_cmd(tmp_path, "--n-trials", "3"), cwd=REPO, start_new_session=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    finally:
        signal.signal(signal.SIGINT, inherited)
    _wait_for_running(tmp_path, proc)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal does on Ctrl-C
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    study = _load(tmp_path)
    assert not study.get_trials(states=(TrialState.RUNNING,))
    result = subprocess.run(_cmd(tmp_path, "--n-trials", "3"), cwd=REPO, capture_output=True,
                            text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr
    trials = _load(tmp_path).get_trials()
    assert sum(counts_towards_n_trials(t) for t in trials) == 3
    assert not [t for t in trials if t.state == TrialState.RUNNING]


def test_kill_9_worker_is_recovered(tmp_path):
    proc = subprocess.Popen(_cmd(tmp_path, "--n-trials", "3"), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    running = _wait_for_running(tmp_path, proc)
    os.kill(running.user_attrs["job_pid"], signal.SIGKILL)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    trials = _load(tmp_path).get_trials()
    lost = [t for t in trials if t.state == TrialState.FAIL]
    assert len(lost) == 1 and "SIGKILL" in lost[0].user_attrs["fail_reason"]
    retries = [t for t in trials if t.user_attrs.get("retry_of") == lost[0].number]
    assert len(retries) == 1 and retries[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert sum(counts_towards_n_trials(t) for t in trials) == 3
    assert len({t.number for t in trials}) == len(trials)


def _wait_for_running(tmp_path, proc, timeout_s=180):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        if (tmp_path / "run" / "journal.log").is_file():
            running = [t for t in _load(tmp_path).get_trials(states=(TrialState.RUNNING,))
                       if "job_pid" in t.user_attrs]
            if running:
                time.sleep(1.0)  # let the worker get into training
                return running[0]
        time.sleep(0.5)
    proc.kill()
    raise AssertionError(f"no trial started within {timeout_s}s")


def test_pruner_stops_a_hopeless_trial(tmp_path):
    """With earlier trials far better at every step, the median pruner stops a real trial."""
    config = load_study_config("smoke", {"study": {"run_dir": str(tmp_path / "run"),
                                                   "cache_dir": str(tmp_path / "cache")}})
    context = make_context(config)
    study = open_study(config, context)
    for _ in range(3):
        study.add_trial(optuna.create_trial(value=0.1,
                                            intermediate_values={k: 0.1 for k in range(20)}))
    trial = study.ask()
    payload = TrialPayload(storage=config.storage_url, study_name="smoke", trial_id=trial._trial_id,
                           setting=Setting(band=(0.2, 0.3), alphabet=2), context=context,
                           pruner=config.pruner, objectives=("loss",))
    result = run_trial_job(payload)
    assert result.state == "pruned" and "pruned at" in result.reason, result


def test_unreachable_band_is_pruned_with_reason(tmp_path):
    config = load_study_config("smoke", {"study": {"run_dir": str(tmp_path / "run"),
                                                   "cache_dir": str(tmp_path / "cache")}})
    context = make_context(config)
    study = open_study(config, context)
    trial = study.ask()
    payload = TrialPayload(storage=config.storage_url, study_name="smoke", trial_id=trial._trial_id,
                           setting=Setting(band=(0.5, 1.0), alphabet=2), context=context,
                           pruner=config.pruner, objectives=("loss",))
    result = run_trial_job(payload)
    assert result.state == "pruned" and "alphabet" in result.reason, result
    assert study.trials[trial.number].user_attrs["infeasible"] is True, "not counted by the driver"


def test_smoke_study_on_postgresql(tmp_path, postgres_url):
    result = subprocess.run(_cmd(tmp_path, "--storage", postgres_url, "--n-trials", "2"), cwd=REPO,
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(study_name="smoke", storage=postgres_url)
    finished = [t for t in study.trials if t.state.is_finished()]
    assert len([t for t in finished if not t.user_attrs.get("infeasible")]) == 2
