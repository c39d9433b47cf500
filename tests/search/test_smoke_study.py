"""The real service end to end on the `smoke` study (tiny preset, real NCA data, real training).

Local executor with 2 worker processes and journal storage, as a user runs it; then resume,
caching, pruning and PostgreSQL (Ctrl-C and killed workers: tests/faults).
"""

from __future__ import annotations

import json
import os
import shutil
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


def test_smoke_study_on_postgresql(smoke_run, tmp_path, postgres_url):
    """The storage is what is tested: the smoke run's cache is shared, so its seeds are read back
    (Ctrl-C, kill -9 and SIGTERM with a journal: tests/faults)."""
    shutil.copytree(smoke_run[0] / "cache", tmp_path / "cache", copy_function=os.link,
                    ignore=lambda d, names: [n for n in names if n.endswith(".lock")])
    result = subprocess.run(_cmd(tmp_path, "--storage", postgres_url, "--n-trials", "2"), cwd=REPO,
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(study_name="smoke", storage=postgres_url)
    finished = [t for t in study.trials if t.state.is_finished()]
    assert len([t for t in finished if not t.user_attrs.get("infeasible")]) == 2
