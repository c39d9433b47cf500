"""Data-parallel trials through the local executor (``[study] ranks = 2``): real `tiny` trials
in two gloo processes on the CPU, the driver's retry of a trial whose rank 1 died, and the
refusals of ranks the study cannot use."""

from __future__ import annotations

import re
import socket

import pytest
from optuna.trial import TrialState

from search import jobs
from search.config import ConfigError, config_from_dict, load_study_config
from search.driver import Driver
from search.executors import JobOutcome, LocalExecutor, combine_ranks
from search.study import open_study
from search.trial import SetupError, make_context
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
