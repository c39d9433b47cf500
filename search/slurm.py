"""``--executor slurm``: one trial = one Slurm job, through submitit.

Jobs run the same ``search.jobs`` functions as local workers, wrapped in a
``submitit.helpers.Checkpointable`` so a preempted or timed-out job is requeued and resumes from
the trial's own checkpoints (finished seeds, the cached pre-pre-trained weights and the periodic
checkpoint of the stage in progress). Failure classes:

- the job's code raised (``FailedJobError``): the trial fails with its traceback, no retry;
- the infrastructure lost it (``UncompletedJobError``: cancelled, node failure, out of memory):
  the driver retries it up to ``max_retries``;
- it ran out of requeues (time limit or preemption ``max_requeues`` times): the trial fails.

A trial of several ranks (``[slurm] tasks_per_node`` x ``nodes``) is one multi-task job: every
task joins the process group submitit's ``TorchDistributedEnvironment`` describes and runs the
job function (``search.executors.run_as_rank``); srun ends the step when one task dies
(``--kill-on-bad-exit``), and the job is lost (retried) with a reason naming that rank and its
host. A requeued job's ranks resume from the stage checkpoint rank 0 wrote.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import submitit
from submitit.core.utils import FailedJobError, UncompletedJobError

from search.config import StudyConfig
from search.executors import (
    RANKS_FOLDER_ENV,
    BaseExecutor,
    BaseJob,
    JobOutcome,
    combine_ranks,
    read_rank_hosts,
    run_as_rank,
)
from search.jobs import TrialResult

_SACCT_EVERY_S = 5.0
"""How often a job's state is read from sacct when it has no result yet."""


class _Requeueable(submitit.helpers.Checkpointable):
    """Wraps a job function so submitit requeues it on the timeout/preemption signal.

    The default ``checkpoint`` resubmits the same call; the state to resume from lives on disk
    (the trial writes it as it goes), so nothing needs to be pickled here.
    """

    def __init__(self, fn: Callable[[Any], Any], ranks: int = 1) -> None:
        self.fn = fn
        self.ranks = ranks

    def __call__(self, payload: Any) -> Any:
        if self.ranks == 1:
            return self.fn(payload)
        # RANK, WORLD_SIZE, MASTER_ADDR (the first node), MASTER_PORT (drawn from the job id),
        # LOCAL_RANK; CUDA_VISIBLE_DEVICES stays Slurm's (the job's GPUs on this node), and
        # each rank takes the LOCAL_RANK-th of them
        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False,
                                                              overwrite=True)
        os.environ[RANKS_FOLDER_ENV] = str(submitit.JobEnvironment().paths.folder)
        return run_as_rank(self.fn, payload)


class _SlurmJob(BaseJob):
    def __init__(self, job: submitit.Job) -> None:
        self._job = job
        # A job that died without a result file is only seen through sacct, which submitit
        # polls less and less often; and it waits 15 s for a result file that never comes.
        for k in range(job.num_tasks):
            job.task(k)._results_timeout_s = 2
        self._checked = 0.0

    def done(self) -> bool:
        now = time.time()
        force = now - self._checked > _SACCT_EVERY_S
        if force:
            self._checked = now
        return self._job.done(force_check=force)

    def outcome(self) -> JobOutcome:
        if self._job.num_tasks > 1:
            return self._ranks_outcome()
        try:
            value = self._job.result()
        except FailedJobError as exc:
            # The job's own code raised, or it ran out of requeues: a final failure.
            return JobOutcome(ok=True, value=TrialResult(state="failed", reason=_failure_line(exc)))
        except UncompletedJobError:
            return JobOutcome(ok=False,
                              reason=f"slurm job {self._job.job_id} ended {self._job.state}")
        self._clean()
        return JobOutcome(ok=True, value=value)

    def _ranks_outcome(self) -> JobOutcome:
        """A multi-task job: rank 0's value, or lost naming the rank that ended first on its
        own (search.executors.combine_ranks); rank 0's own failure (its code raised, or the
        requeues ran out) fails the trial as for one process."""
        said = self._srun_said()
        ends, raised = [], []
        for k in range(self._job.num_tasks):
            try:
                ends.append(JobOutcome(ok=True, value=self._job.task(k).result()))
            except FailedJobError as exc:
                ends.append(JobOutcome(ok=False, reason=_failure_line(exc)))
            except UncompletedJobError:
                reason = (f"srun: task {k}: {said[k][1]}" if k in said else
                          f"ended without a result (slurm job {self._job.job_id} "
                          f"{self._job.state})")
                ends.append(JobOutcome(ok=False, reason=reason))
            raised.append(not ends[-1].ok and "without a result" not in ends[-1].reason
                          and not ends[-1].reason.startswith("srun: "))
        if raised[0] and "PeerLostError" not in ends[0].reason:  # srun then stopped the rest
            return JobOutcome(ok=True, value=TrialResult(state="failed", reason=ends[0].reason))
        # srun names the task that ended first on its own first; those it names after were
        # terminated by it (--kill-on-bad-exit), and are not the cause
        first = min((order for order, _ in said.values()), default=0)
        stopped = {k for k, (order, _) in said.items() if order > first}
        combined = combine_ranks(ends, read_rank_hosts(Path(self._job.paths.folder)),
                                 stopped=stopped)
        if combined.ok:
            self._clean()
        return combined

    def _srun_said(self) -> dict[int, tuple[int, str]]:
        """What srun said of each task that ended badly in the job's last attempt (``task 1:
        Killed``), with the line's order: ``{task: (order, what)}``."""
        try:
            log = Path(self._job.paths.stdout).read_text(errors="replace")
        except OSError:
            return {}
        log = log[max(0, log.rfind("Starting with JobEnvironment")):]  # a requeue appends
        said: dict[int, tuple[int, str]] = {}
        lines = re.findall(r"srun: error: \S+: tasks? ([0-9,-]+): (.+)", log)
        for order, (tasks, what) in enumerate(lines):
            for k in _task_ids(tasks):
                said.setdefault(k, (order, what.strip()))
        return said

    def cancel(self) -> None:
        if not self._job.done():
            self._job.cancel(check=False)

    def _clean(self) -> None:
        """Drop the finished job's pickles; keep its logs."""
        for k in range(self._job.num_tasks):
            paths = self._job.task(k).paths
            for path in (paths.submitted_pickle, paths.result_pickle):
                Path(path).unlink(missing_ok=True)

    @property
    def info(self) -> dict[str, Any]:
        info = {"slurm_job_id": self._job.job_id, "slurm_folder": str(self._job.paths.folder)}
        return info | ({"ranks": self._job.num_tasks} if self._job.num_tasks > 1 else {})


def _task_ids(text: str) -> list[int]:
    """The task ids of srun's ``0,2-3``."""
    ids: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        if lo.isdigit() and (not hi or hi.isdigit()):
            ids.extend(range(int(lo), int(hi or lo) + 1))
    return ids


def _failure_line(exc: FailedJobError) -> str:
    """The exception line of submitit's message (its last line is only the log's path)."""
    text = str(exc)
    if "timed-out too many times" in text:
        return "slurm job ran out of requeues (time limit or preemption)"
    parts = re.split(r"\n-{5,}\n", text)
    body = parts[1] if len(parts) > 1 else parts[0]
    lines = [line.strip() for line in body.splitlines() if line.strip()]
    return lines[-1] if lines else "slurm job failed"


class SlurmExecutor(BaseExecutor):
    """Submits each job to Slurm with the study's ``[slurm]`` settings."""

    def __init__(self, config: StudyConfig) -> None:
        s = config.slurm
        self.folder = Path(s.folder or config.run_dir / "slurm")
        self._max_requeues = s.max_requeues
        self._executor = submitit.SlurmExecutor(
            folder=self.folder / "%j", max_num_timeout=s.max_requeues, python=sys.executable
        )
        params: dict[str, Any] = {
            "job_name": f"ncasearch-{config.study.name}", "cpus_per_task": s.cpus_per_task,
            "mem": f"{s.mem_gb}GB", "time": s.timeout_min, "setup": list(s.setup),
            "additional_parameters": dict(s.extra), "stderr_to_stdout": True,
        }
        if s.gpus_per_node:
            params["gres"] = f"gpu:{s.gpus_per_node}"
        self._ranks = s.ranks
        if s.ranks > 1:
            # one task that dies ends the step at once: under NCCL its peers would otherwise
            # wait out the process group's timeout
            params.update(ntasks_per_node=s.tasks_per_node, nodes=s.nodes,
                          srun_args=["--kill-on-bad-exit=1"])
        for name in ("partition", "account", "qos", "constraint"):
            if getattr(s, name):
                params[name] = getattr(s, name)
        self._executor.update_parameters(**params)

    def submit(self, fn: Callable[[Any], Any], payload: Any) -> BaseJob:
        return _SlurmJob(self._executor.submit(_Requeueable(fn, self._ranks), payload))

    def reattach(self, info: dict[str, Any]) -> BaseJob | None:
        """A handle on a job a previous driver submitted, from the ids recorded on its trial."""
        job_id, folder = info.get("job_slurm_job_id"), info.get("job_slurm_folder")
        if not job_id or not folder or not Path(folder).is_dir():
            return None
        tasks = range(int(info.get("job_ranks", 1)))
        return _SlurmJob(submitit.SlurmJob(folder=Path(folder).parent / "%j", job_id=str(job_id),
                                           tasks=tasks))

    def shutdown(self) -> None:
        """Slurm jobs outlive a crashed driver on purpose: a restarted driver reattaches."""
