"""submitit against the REAL local Slurm: the mechanics the search driver relies on.

Results, concurrency, gres, the two failure classes (FailedJobError: the function raised;
UncompletedJobError: Slurm ended the job), checkpoint-requeue-resume, the requeue cap, and
reattaching to jobs from a new process (driver restart). The cluster comes from conftest.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import cloudpickle
import pytest
import submitit
from submitit.core.utils import FailedJobError, UncompletedJobError

# The job's interpreter imports nothing from tests/: ship this module's callables by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

_BOUND_S = 60.0


def _wait(predicate: Callable[[], bool], what: str, bound_s: float = _BOUND_S) -> None:
    deadline = time.monotonic() + bound_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {bound_s:.0f} s waiting for {what}")
        time.sleep(0.1)


def _sacct_states(job_id: str) -> list[str]:
    """Every attempt's state, oldest first (-D keeps requeued attempts)."""
    cmd = ["sacct", "-D", "-X", "-n", "-P", "-j", job_id, "-o", "State"]
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split("\n")[:-1]


def _job_info(a: int, b: int) -> dict:
    return {
        "sum": a + b,
        "job_id": os.environ.get("SLURM_JOB_ID"),
        "python": sys.executable,
        "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }


def _span(seconds: float) -> tuple[float, float]:
    start = time.time()
    time.sleep(seconds)
    return start, time.time()


def _raise(marker: str) -> None:
    raise ValueError(f"trial bug {marker}")


def _wait_for_file(started: str, release: str, bound_s: float) -> str:
    """Announce the start, then block until `release` exists (at most bound_s)."""
    Path(started).write_text(os.environ.get("SLURM_JOB_ID", ""))
    deadline = time.time() + bound_s
    while not Path(release).exists():
        if time.time() > deadline:
            raise TimeoutError(f"{release} never appeared")
        time.sleep(0.1)
    return "released"


class _Stepper(submitit.helpers.Checkpointable):
    """Counts to n_steps; each run logs where it started, each checkpoint where it saved.

    Until it has been checkpointed once it parks at step `park_at` (at most 60 s), so the test's
    interrupt always lands mid-run instead of racing the end of the job.
    """

    def __init__(self, n_steps: int, step_s: float, progress: str, park_at: int) -> None:
        self.n_steps = n_steps
        self.step_s = step_s
        self.progress = progress
        self.park_at = park_at
        self.step = 0
        self.starts: list[int] = []
        self.checkpoints: list[int] = []

    def __call__(self) -> dict:
        self.starts.append(self.step)
        while self.step < self.n_steps:
            if self.step == self.park_at and not self.checkpoints:
                time.sleep(60)  # the warning signal interrupts this sleep
                raise TimeoutError(f"parked at step {self.step} for 60 s; no interrupt came")
            time.sleep(self.step_s)
            self.step += 1
            Path(self.progress).write_text(str(self.step))
        return {"starts": self.starts, "checkpoints": self.checkpoints, "step": self.step}

    def checkpoint(self) -> submitit.helpers.DelayedSubmission:
        self.checkpoints.append(self.step)
        return super().checkpoint()


def _progress(path: Path) -> int:
    return int(path.read_text() or 0) if path.exists() else 0


def test_job_returns_its_result_from_slurm(slurm_executor) -> None:
    job = slurm_executor().submit(_job_info, 2, 3)
    info = job.result()
    assert info["sum"] == 5
    assert info["job_id"] == job.job_id  # it really ran as that Slurm job
    assert info["python"] == sys.executable
    assert info["cuda"] is None  # no gres asked, none given


def test_several_jobs_in_flight_overlap(slurm_executor) -> None:
    executor = slurm_executor()
    jobs = [executor.submit(_span, 3.0) for _ in range(4)]
    spans = [job.result() for job in jobs]
    latest_start = max(start for start, _ in spans)
    earliest_end = min(end for _, end in spans)
    assert latest_start < earliest_end, f"jobs ran one after another: {spans}"


def test_gres_request_maps_to_cuda_visible_devices(slurm_executor) -> None:
    one = slurm_executor(gpus_per_node=1).submit(_job_info, 0, 0)
    two = slurm_executor(gpus_per_node=2).submit(_job_info, 0, 0)
    assert one.result()["cuda"] in {"0", "1"}
    assert sorted(two.result()["cuda"].split(",")) == ["0", "1"]


def test_gres_request_beyond_the_node_is_refused(slurm_executor) -> None:
    # sbatch refuses it at submit time; submitit raises FailedJobError there too, with sbatch's
    # words.
    with pytest.raises(FailedJobError, match="Requested node configuration is not available"):
        slurm_executor(gpus_per_node=3).submit(_job_info, 0, 0)


def test_raising_job_gives_failed_job_error_with_traceback(slurm_executor) -> None:
    job = slurm_executor().submit(_raise, "m-4821")
    with pytest.raises(FailedJobError) as info:
        job.result()
    message = str(info.value)
    assert "Traceback" in message and "ValueError: trial bug m-4821" in message
    _wait(lambda: _sacct_states(job.job_id) == ["FAILED"], f"sacct FAILED for {job.job_id}")


def test_cancelled_job_is_uncompleted_and_cancelled_in_sacct(slurm_executor, tmp_path) -> None:
    started, release = tmp_path / "started", tmp_path / "release"
    job = slurm_executor().submit(_wait_for_file, str(started), str(release), 60)
    _wait(started.exists, f"job {job.job_id} to start")
    job.cancel()
    _wait(lambda: job.done(force_check=True), f"job {job.job_id} to be done after scancel")
    job._results_timeout_s = 1  # no result file will come; do not wait submitit's default 15 s
    with pytest.raises(UncompletedJobError, match="has not produced any output"):
        job.result()
    assert job.state.startswith("CANCELLED")
    assert _sacct_states(job.job_id)[0].startswith("CANCELLED")


@pytest.mark.slow
def test_interrupted_checkpointable_resumes_from_saved_state(slurm_executor, tmp_path) -> None:
    progress = tmp_path / "progress"
    stepper = _Stepper(n_steps=8, step_s=0.1, progress=str(progress), park_at=3)
    job = slurm_executor().submit(stepper)
    _wait(lambda: _progress(progress) == 3, f"job {job.job_id} to reach step 3")
    job._interrupt()  # what preemption sends: SIGTERM, then the warning signal (USR2)
    result = job.result()
    assert result["checkpoints"] == [3]
    assert result["starts"] == [0, 3], "the requeued run did not resume from its checkpoint"
    assert result["step"] == 8
    assert _sacct_states(job.job_id)[0] == "REQUEUED"


@pytest.mark.parametrize("timeout", [True, False], ids=["time-limit", "preemption"])
def test_requeue_cap_fails_the_job_with_the_reason(slurm_executor, tmp_path, timeout) -> None:
    # With timeout_min < 10 submitit counts every warning signal as a time-out (its "guaranteed"
    # walltime is min(0.8 * limit, limit - 10 min) < 0), so a preemption also uses up the cap.
    progress = tmp_path / "progress"
    executor = slurm_executor(max_num_timeout=0, timeout_min=5)
    job = executor.submit(_Stepper(n_steps=5, step_s=0.1, progress=str(progress), park_at=1))
    _wait(lambda: _progress(progress) == 1, f"job {job.job_id} to reach step 1")
    job._interrupt(timeout=timeout)
    # The cap is enforced inside the job, so it surfaces as FailedJobError, not UncompletedJobError.
    with pytest.raises(FailedJobError, match="timed-out too many times"):
        job.result()


_SUBMIT_AND_EXIT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import submitit

    def quick():
        return "quick done"

    def held(release):
        deadline = time.time() + 60
        while not Path(release).exists() and time.time() < deadline:
            time.sleep(0.1)
        return "held done"

    folder, release, name = sys.argv[1:]
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    executor.update_parameters(name=name, timeout_min=5, cpus_per_task=1)
    print(executor.submit(quick).job_id, executor.submit(held, release).job_id)
    """
)


def test_new_process_reattaches_to_running_and_finished_jobs(
    slurm_job_name, tmp_path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    folder, release = tmp_path / "jobs", tmp_path / "release"
    driver = subprocess.run(
        [sys.executable, "-c", _SUBMIT_AND_EXIT, str(folder), str(release), slurm_job_name],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    quick_id, held_id = driver.stdout.split()
    # The first driver is gone: only the folder and the job ids remain.
    quick = submitit.SlurmJob(folder, quick_id)
    held = submitit.SlurmJob(folder, held_id)
    _wait(lambda: held.get_info(mode="force").get("State") == "RUNNING", f"job {held_id} running")
    assert not held.done()
    assert quick.result() == "quick done"  # finished while no driver was watching
    release.touch()
    assert held.result() == "held done"
    _wait(lambda: _sacct_states(held_id) == ["COMPLETED"], f"sacct COMPLETED for {held_id}")
