"""Data-parallel trials through the local executor (``[study] ranks = 2``): real `tiny` trials
in two gloo processes on the CPU, the driver's retry of a trial whose rank 1 died, and the
refusals of ranks the study cannot use."""

from __future__ import annotations

import dataclasses
import re
import socket
import time

import optuna
import pytest
from optuna.trial import TrialState

from search import board, cost, jobs, status
from search import run as run_cli
from search.config import ConfigError, config_from_dict, load_study_config
from search.driver import Driver
from search.executors import JobOutcome, LocalExecutor, combine_ranks
from search.study import open_study
from search.trial import SetupError, TrialContext, make_context
from tests.search import _fakes


def _config(tmp_path, **study):
    return load_study_config("smoke", {"study": {
        "run_dir": str(tmp_path / "run"), "cache_dir": str(tmp_path / "cache"), "n_trials": 1,
        "seeds": [0], "executor": "local", "workers": 1, "ranks": 2, "max_retries": 1,
        **study}})


@pytest.mark.slow
def test_a_dead_rank_fails_its_trial_naming_it_and_the_retry_completes(tmp_path):
    cfg = _config(tmp_path)
    cfg.cache_dir.mkdir(parents=True)
    (cfg.cache_dir / "rank-dies.armed").touch()
    context = make_context(cfg)
    study = open_study(cfg, context)
    executor = LocalExecutor(cfg.run_dir / "workers", threads_per_job=1, ranks=2)
    try:
        Driver(config=cfg, study=study, executor=executor, context=context,
               trial_fn=_fakes.rank_one_dies_once, baseline_fn=jobs.run_baseline_job).run()
    finally:
        executor.shutdown()
    assert (cfg.cache_dir / "rank-dies").exists(), "rank 1 never reached its 20th step"
    trials = study.get_trials()
    summary = [(t.number, t.state.name, t.user_attrs.get("fail_reason")) for t in trials]
    (lost,) = [t for t in trials if t.state == TrialState.FAIL]
    reason = lost.user_attrs["fail_reason"]
    assert re.fullmatch(rf"lost: rank 1 of 2 \(pid \d+ on {re.escape(socket.gethostname())}\): "
                        "worker killed by SIGKILL", reason), summary
    assert lost.user_attrs["retried"]
    (retry,) = [t for t in trials if t.state == TrialState.COMPLETE]
    assert retry.user_attrs["retry_of"] == lost.number and retry.user_attrs["job_ranks"] == 2
    assert retry.user_attrs["losses"][0] > 0  # a real, scored trial


def test_a_rank_that_failed_alone_is_named_before_the_peers_it_left():
    ends = [JobOutcome(ok=False, reason="Traceback...\nPeerLostError: rank 0 of 3 lost its peers"),
            JobOutcome(ok=True, value=None),
            JobOutcome(ok=False, reason="Traceback (most recent call last):\nMemoryError: boom")]
    out = combine_ranks(ends, [("a", 1), ("b", 2), ("c", 3)])
    assert not out.ok and out.reason == "rank 2 of 3 (pid 3 on c): MemoryError: boom"
    done = [JobOutcome(ok=True, value="rank 0's"), JobOutcome(ok=True, value=None)]
    assert combine_ranks(done, []).value == "rank 0's"


def test_ranks_that_do_not_split_a_step_are_refused_before_anything_runs(tmp_path):
    cfg = load_study_config("smoke", {
        "study": {"run_dir": str(tmp_path / "run"), "executor": "slurm"},
        "slurm": {"gpus_per_node": 0, "tasks_per_node": 3}})
    assert cfg.ranks == 3
    with pytest.raises(SetupError, match=r"^3 ranks per trial: the tiny preset's domain stage "
                                         r"takes 8 sequences per step"):
        make_context(cfg)


@pytest.mark.parametrize(("study", "slurm", "message"), [
    ({"executor": "inline", "ranks": 2}, {},
     "[study] ranks = 2 is for the local executor; inline runs each trial as one process"),
    ({"executor": "slurm", "ranks": 2}, {},
     "[study] ranks = 2 is for the local executor; slurm runs each trial as Slurm"),
    ({"executor": "slurm"}, {"gpus_per_node": 2, "tasks_per_node": 4},
     "[slurm] tasks_per_node = 4: expected at most gpus_per_node = 2 (one GPU per rank)"),
])
def test_ranks_the_executor_cannot_start_are_refused(tmp_path, study, slurm, message):
    raw = {"study": {"name": "t", "domain": "code", "run_dir": str(tmp_path), **study},
           "slurm": slurm}
    with pytest.raises(ConfigError) as err:
        config_from_dict(raw)
    assert str(err.value).startswith(message), str(err.value)


def test_the_dry_run_prices_steps_faster_by_the_assumed_efficiency_and_says_so(tmp_path):
    assert cost.rank_speedup(1) == 1.0
    assert cost.rank_speedup(2) == pytest.approx(1.8, rel=1e-12)
    assert cost.rank_speedup(8) == pytest.approx(8 * 0.9**3, rel=1e-12)
    config = load_study_config("smoke", {"study": {"run_dir": str(tmp_path / "run"),
                                                   "cache_dir": str(tmp_path / "cache")}})
    context = TrialContext(domain="code", data="", tokenizer="byte", preset="tiny",
                           nca_tokens=8192, domain_tokens=16384, seeds=(0,),
                           cache_dir=str(tmp_path / "cache"))
    cal = cost.Calibration(preset="tiny", host="h", threads=1, startup_s=2.0, data_s=1.0,
                           domain_step_s=0.01, domain_eval_s=0.1, nca_step_s={2: 0.02},
                           nca_eval_s={2: 0.1}, diagnose_s=0.5, artifacts_s=3.0)
    one = cost.plan(config, context)
    two = dataclasses.replace(one, ranks=2)
    steps_s = one.nca_steps * 0.02 + one.domain_steps * 0.01  # evaluations are rank 0's alone
    assert cost.seed_s(cal, two, 2) == pytest.approx(
        cost.seed_s(cal, one, 2) - steps_s * (1 - 1 / 1.8), rel=1e-12)
    line = run_cli._ranks_line(config, two)
    assert "2 per trial" in line and "1.80x" in line and "assumed, not measured" in line


def test_the_board_and_status_show_the_ranks_of_a_running_trial():
    now = time.time()
    assert board._trial_row(3, "nca", now, None, {"pid": 7, "ranks": 2}).where == "pid 7 ranks 2"
    assert board._trial_row(3, "nca", now, None, {"pid": 7}).where == "pid 7"
    running = optuna.trial.create_trial(state=TrialState.RUNNING,
                                        user_attrs={"job_slurm_job_id": "41", "job_ranks": 8})
    assert status._running(running, now, None)["where"] == "slurm 41 ranks 8"


class _EndedTask:
    """A task of a multi-task job that left no result (what submitit raises for it)."""

    def __init__(self, folder):
        self.paths = type("P", (), {"submitted_pickle": folder / "s.pkl",
                                    "result_pickle": folder / "r.pkl"})()

    def result(self):
        from submitit.core.utils import UncompletedJobError

        raise UncompletedJobError("no result")


class _EndedJob:
    """A two-task job whose tasks both left no result, with its log and ranks.json."""

    def __init__(self, folder, log):
        (folder / "276_0_log.out").write_text(log)
        (folder / "ranks.json").write_text('[["node1", 11], ["node2", 22]]')
        self.paths = type("P", (), {"stdout": folder / "276_0_log.out", "folder": folder})()
        self.num_tasks, self.job_id, self.state = 2, "276", "FAILED"
        self._tasks = [_EndedTask(folder), _EndedTask(folder)]

    def task(self, k):
        return self._tasks[k]


def test_the_slurm_task_srun_reports_first_is_the_cause_not_those_it_then_terminated(tmp_path):
    """srun's lines of the job's last attempt (an earlier one's are ignored) decide which rank
    died first when neither left a result: the real run is in tests/slurm."""
    from search.slurm import _SlurmJob

    log = ("Starting with JobEnvironment(job_id=276, ...)\n"
           "srun: error: node1: task 0: Exited with exit code 255\n"  # an earlier attempt's
           "Starting with JobEnvironment(job_id=276, ...)\n"
           "srun: error: node2: task 1: Killed\n"
           "srun: launch/slurm: _step_signal: Terminating StepId=276.0\n"
           "srun: error: node1: task 0: Terminated\n")
    job = _SlurmJob.__new__(_SlurmJob)
    job._job = _EndedJob(tmp_path, log)
    out = job.outcome()
    assert not out.ok and out.reason == "rank 1 of 2 (pid 22 on node2): srun: task 1: Killed"
