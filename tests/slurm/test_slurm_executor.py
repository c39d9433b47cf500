"""`--executor slurm` on the real local Slurm: a smoke study with jobs in flight, a driver
killed and restarted, and a trial that is preempted, requeued and resumes from its checkpoint."""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from search.config import StudyConfig, load_study_config
from search.jobs import TrialPayload, run_trial_job
from search.slurm import SlurmExecutor
from search.space import Setting
from search.storage import open_storage
from search.study import open_study
from search.tally import counts_towards_n_trials
from search.trial import make_context
from tests.conftest import REPO
from tests.faults._harness import DRIVER_STOP_RACE, link_cache
from tests.search import _fakes

pytestmark = pytest.mark.slow

_SLURM = """
[slurm]
gpus_per_node = 0
cpus_per_task = 1
mem_gb = 1
timeout_min = 11
max_in_flight = 3
"""


def _study_file(tmp_path: Path, n_trials: int) -> Path:
    text = (REPO / "studies" / "smoke.toml").read_text()
    text = text.replace("n_trials = 4", f"n_trials = {n_trials}") + _SLURM
    path = tmp_path / "slurm_smoke.toml"
    path.write_text(text)
    return path


def _cmd(tmp_path: Path, study: Path) -> list[str]:
    return [sys.executable, "-m", "search.run", "--study", str(study), "--executor", "slurm",
            "--run-dir", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache")]


def _trials(tmp_path: Path) -> list[optuna.trial.FrozenTrial]:
    storage = open_storage(str(tmp_path / "run" / "journal.log"), create=False)
    return optuna.load_study(study_name="smoke", storage=storage).get_trials()


@DRIVER_STOP_RACE
def test_smoke_study_with_jobs_in_flight_survives_its_driver_killed(local_slurm, tmp_path,
                                                                     reference):
    link_cache(reference.root, tmp_path / "cache")  # the trials train; their inputs are cached
    study = _study_file(tmp_path, 4)
    proc = subprocess.Popen(_cmd(tmp_path, study), cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        if (tmp_path / "run" / "journal.log").is_file() and any(
                t.state == TrialState.RUNNING and "job_slurm_job_id" in t.user_attrs
                for t in _trials(tmp_path)):
            break
        time.sleep(0.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    result = subprocess.run(_cmd(tmp_path, study), cwd=REPO, capture_output=True, text=True,
                            timeout=600, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "reattached" in result.stdout
    trials = _trials(tmp_path)
    finished = [t for t in trials if counts_towards_n_trials(t)]
    summary = [(t.number, t.state.name, t.user_attrs.get("fail_reason")) for t in trials]
    assert len(finished) == 4, (summary, result.stdout)
    assert not [t for t in trials if t.state == TrialState.RUNNING], summary
    settings = [t.user_attrs["setting"] for t in trials
                if t.user_attrs.get("kind") == "anchor:paper"]
    assert len(settings) == 1, "the anchor ran twice"
    ran = [t for t in trials if "job_slurm_job_id" in t.user_attrs]
    assert len({t.user_attrs["job_slurm_job_id"] for t in ran}) == len(ran)
    spans = sorted((t.datetime_start, t.datetime_complete) for t in ran)
    assert any(b[0] < a[1] for a, b in itertools.pairwise(spans)), "no two trial jobs overlapped"
    # Finished jobs leave their logs but not their pickles, reattached ones included.
    folder = Path(ran[0].user_attrs["job_slurm_folder"])
    assert not list(folder.glob("*_result.pkl")) and list(folder.glob("*.out"))


def _preempted_trial_resumes(config: StudyConfig, tmp_path: Path, timeout_s: float) -> None:
    """Submit one trial of ``config`` as a Slurm job, preempt it once its first seed is done,
    and check the requeued job completes without recomputing that seed."""
    context = make_context(config)
    trial = open_study(config, context).ask()
    work = tmp_path / "run" / "trials" / "00000"
    payload = TrialPayload(storage=config.storage_url, study_name="smoke", trial_id=trial._trial_id,
                           setting=Setting(band=(0.2, 0.3), alphabet=2), context=context,
                           pruner=config.pruner, objectives=("loss",), work_dir=str(work))
    job = SlurmExecutor(config).submit(run_trial_job, payload)
    first_seed = work / "seed0.json"
    deadline = time.time() + timeout_s
    while not first_seed.exists():
        assert time.time() < deadline and not job.done(), "seed 0 never finished"
        time.sleep(0.2)
    stamp = first_seed.stat().st_mtime_ns
    job._job._interrupt()  # preemption: the warning signal to every task, then requeue
    deadline = time.time() + timeout_s
    while not job.done():
        assert time.time() < deadline, "requeued trial did not finish"
        time.sleep(0.5)
    out = job.outcome()
    assert out.ok and out.value.state == "complete", out
    assert first_seed.stat().st_mtime_ns == stamp, "seed 0 was recomputed after the requeue"
    states = subprocess.run(["sacct", "-j", str(job.info["slurm_job_id"]), "-D", "-n", "-X",
                             "-o", "State"], capture_output=True, text=True,
                            check=False).stdout.split()
    assert "REQUEUED" in states[0], states


def test_preempted_trial_resumes_from_its_checkpoint(local_slurm, tmp_path, reference):
    link_cache(reference.root, tmp_path / "cache")
    config = load_study_config(str(_study_file(tmp_path, 1)), {"study": {
        "run_dir": str(tmp_path / "run"), "cache_dir": str(tmp_path / "cache"),
        "seeds": [0, 1, 2]}})
    _preempted_trial_resumes(config, tmp_path, timeout_s=300)


_TWO_TASKS = _SLURM + "tasks_per_node = 2\n"
"""Each trial one job of two tasks (ranks) of one CPU each, data-parallel under gloo."""


def test_smoke_study_of_two_task_trials_tracked_into_mlflow(local_slurm, tmp_path, reference):
    """A study whose trial is a 2-task job; with MLflow installed (the test extra installs it)
    also tracked: rank 0 of the job logs the trial into the study's default store (SQLite in the
    run folder, which the job reaches by its absolute path), the driver only makes the
    experiment."""
    from tests.search.test_tracking import _check_store

    link_cache(reference.root, tmp_path / "cache", skip=("ppt",))  # the NCA stage trains
    track = importlib.util.find_spec("mlflow") is not None
    study = tmp_path / "two_tasks.toml"
    study.write_text(_study_file(tmp_path, 1).read_text().replace(_SLURM, _TWO_TASKS))
    cmd = [*_cmd(tmp_path, study), "--seeds", "0"] + (["--track", "mlflow"] if track else [])
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    trials = _trials(tmp_path)
    summary = [(t.number, t.state.name, t.user_attrs.get("fail_reason")) for t in trials]
    assert len([t for t in trials if counts_towards_n_trials(t)]) == 1, summary
    ran = [t for t in trials if "job_slurm_job_id" in t.user_attrs]
    assert ran and all(t.user_attrs["job_ranks"] == 2 for t in ran), summary
    assert any(t.state == TrialState.COMPLETE for t in ran), summary
    # both tasks ran: each left its own log, and rank 0 recorded both ranks' pids
    folder = Path(ran[0].user_attrs["job_slurm_folder"])
    job = ran[0].user_attrs["job_slurm_job_id"]
    assert (folder / f"{job}_0_log.out").is_file() and (folder / f"{job}_1_log.out").is_file()
    assert len(json.loads((folder / "ranks.json").read_text())) == 2
    if track:
        assert "warning" not in result.stderr, result.stderr
        _check_store(f"sqlite:///{tmp_path / 'run' / 'mlflow' / 'mlflow.db'}", tmp_path / "run",
                     trained=True)


def test_preempted_two_task_trial_resumes_from_its_checkpoint(local_slurm, tmp_path, reference):
    link_cache(reference.root, tmp_path / "cache")
    study = tmp_path / "two_tasks.toml"
    study.write_text(_study_file(tmp_path, 1).read_text().replace(_SLURM, _TWO_TASKS))
    config = load_study_config(str(study), {"study": {
        "run_dir": str(tmp_path / "run"), "cache_dir": str(tmp_path / "cache"),
        "seeds": [0, 1], "executor": "slurm"}})
    assert config.ranks == 2
    _preempted_trial_resumes(config, tmp_path, timeout_s=400)


def test_a_dead_task_loses_its_two_task_job_naming_its_rank_and_host(local_slurm, tmp_path):
    study = tmp_path / "two_tasks.toml"
    study.write_text(_study_file(tmp_path, 1).read_text().replace(_SLURM, _TWO_TASKS))
    config = load_study_config(str(study), {"study": {"run_dir": str(tmp_path / "run"),
                                                      "executor": "slurm"}})
    job = SlurmExecutor(config).submit(_fakes.rank_one_dies_at_once, None)
    deadline = time.time() + 180
    while not job.done():
        assert time.time() < deadline, "the job of a dead task did not end"
        time.sleep(0.5)
    out = job.outcome()
    assert not out.ok, out  # lost (retried by the driver), not a failed trial
    assert re.match(rf"rank 1 of 2 \(pid \d+ on {re.escape(socket.gethostname())}\): ",
                    out.reason), out.reason
