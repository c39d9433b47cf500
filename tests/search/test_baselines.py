"""search._baselines: the baseline phase runs its jobs ``at_once`` at a time and resubmits lost
ones up to max_retries."""

from __future__ import annotations

from search import _baselines
from search.executors import BaseJob, JobOutcome

_KILLED = "Traceback (most recent call last):\n  ...\nWorkerKilled: SIGKILL\n"


class _Job(BaseJob):
    """Done after ``polls`` polls; lost (a killed worker) unless ``ok``."""

    def __init__(self, seed: int, ok: bool, polls: int) -> None:
        self.seed, self.ok, self.polls, self.cancelled = seed, ok, polls, False

    def done(self) -> bool:
        self.polls -= 1
        return self.polls < 0

    def outcome(self) -> JobOutcome:
        return JobOutcome(ok=self.ok, value=1.0, reason="" if self.ok else _KILLED)

    def cancel(self) -> None:
        self.cancelled = True


def _run(deaths: dict[int, int], max_retries: int, slow_seed_1: int = 0):
    """Seed s's job is lost ``deaths[s]`` times before it succeeds."""
    submitted: list[_Job] = []
    messages: list[str] = []

    def submit(seed: int) -> _Job:
        lost = sum(1 for job in submitted if job.seed == seed)
        job = _Job(seed, ok=lost >= deaths.get(seed, 0), polls=slow_seed_1 if seed == 1 else 0)
        submitted.append(job)
        return job

    lost = _baselines.compute([0, 1], submit, at_once=2, max_retries=max_retries,
                              wait=lambda: None, say=messages.append)
    return lost, submitted, messages


def test_every_seed_finishes():
    lost, submitted, messages = _run({}, max_retries=0)
    assert lost is None and [job.seed for job in submitted] == [0, 1] and not messages


def test_a_lost_baseline_is_resubmitted():
    lost, submitted, messages = _run({0: 2}, max_retries=2)
    assert lost is None and [job.seed for job in submitted] == [0, 1, 0, 0]
    assert messages == [
        "scratch baseline for seed 0 lost: WorkerKilled: SIGKILL; retrying (attempt 1)",
        "scratch baseline for seed 0 lost: WorkerKilled: SIGKILL; retrying (attempt 2)",
    ]


def test_lost_beyond_max_retries_cancels_the_others():
    lost, submitted, _ = _run({0: 5}, max_retries=1, slow_seed_1=10)
    assert lost == _baselines.LostBaseline(seed=0, attempts=2, reason="WorkerKilled: SIGKILL")
    assert [job.cancelled for job in submitted if job.seed == 1] == [True]


def test_last_line_of_a_traceback():
    assert _baselines.last_line("Traceback\n  x\nValueError: bad\n\n") == "ValueError: bad"
    assert _baselines.last_line("  ") == "no reason given"


def test_no_more_jobs_in_flight_than_at_once_and_a_retry_takes_the_freed_slot():
    submitted: list[_Job] = []
    most = 0

    def submit(seed: int) -> _Job:
        job = _Job(seed, ok=seed != 1 or any(j.seed == 1 for j in submitted), polls=2)
        submitted.append(job)
        return job

    def wait() -> None:
        nonlocal most
        most = max(most, sum(job.polls >= 0 for job in submitted))

    lost = _baselines.compute([0, 1, 2], submit, at_once=2, max_retries=1, wait=wait,
                              say=lambda _: None)
    assert lost is None and most == 2
    assert [job.seed for job in submitted] == [0, 1, 1, 2]  # seed 1 again before seed 2
