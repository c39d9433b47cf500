"""``--executor slurm``: one trial = one Slurm job, through submitit.

Jobs run the same ``search.jobs`` functions as local workers, wrapped in a
``submitit.helpers.Checkpointable`` so a preempted or timed-out job is requeued and resumes from
the trial's own checkpoints (finished seeds, the cached pre-pre-trained weights and the periodic
checkpoint of the stage in progress). Failure classes:

- the job's code raised (``FailedJobError``): the trial fails with its traceback, no retry;
- the infrastructure lost it (``UncompletedJobError``: cancelled, node failure, out of memory):
  the driver retries it up to ``max_retries``;
- it ran out of requeues (time limit or preemption ``max_requeues`` times): the trial fails.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import submitit
from submitit.core.utils import FailedJobError, UncompletedJobError

from search.config import StudyConfig
from search.executors import BaseExecutor, BaseJob, JobOutcome
from search.jobs import TrialResult

_SACCT_EVERY_S = 5.0
"""How often a job's state is read from sacct when it has no result yet."""


class _Requeueable(submitit.helpers.Checkpointable):
    """Wraps a job function so submitit requeues it on the timeout/preemption signal.

    The default ``checkpoint`` resubmits the same call; the state to resume from lives on disk
    (the trial writes it as it goes), so nothing needs to be pickled here.
    """

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self.fn = fn

    def __call__(self, payload: Any) -> Any:
        return self.fn(payload)


class _SlurmJob(BaseJob):
    def __init__(self, job: submitit.Job) -> None:
        self._job = job
        # A job that died without a result file is only seen through sacct, which submitit
        # polls less and less often; and it waits 15 s for a result file that never comes.
        self._job._results_timeout_s = 2
        self._checked = 0.0

    def done(self) -> bool:
        now = time.time()
        force = now - self._checked > _SACCT_EVERY_S
        if force:
            self._checked = now
        return self._job.done(force_check=force)

    def outcome(self) -> JobOutcome:
        try:
            value = self._job.result()
        except FailedJobError as exc:
            # The job's own code raised, or it ran out of requeues: a final failure.
            return JobOutcome(ok=True, value=TrialResult(state="failed", reason=_failure_line(exc)))
        except UncompletedJobError:
            return JobOutcome(ok=False, reason=f"slurm job {self._job.job_id} ended {self._job.state}")
        self._clean()
        return JobOutcome(ok=True, value=value)

    def cancel(self) -> None:
        if not self._job.done():
            self._job.cancel(check=False)

    def _clean(self) -> None:
        """Drop the finished job's pickles; keep its logs."""
        for path in (self._job.paths.submitted_pickle, self._job.paths.result_pickle):
            Path(path).unlink(missing_ok=True)

    @property
    def info(self) -> dict[str, Any]:
        return {"slurm_job_id": self._job.job_id, "slurm_folder": str(self._job.paths.folder)}


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
        for name in ("partition", "account", "qos", "constraint"):
            if getattr(s, name):
                params[name] = getattr(s, name)
        self._executor.update_parameters(**params)

    def submit(self, fn: Callable[[Any], Any], payload: Any) -> BaseJob:
        return _SlurmJob(self._executor.submit(_Requeueable(fn), payload))

    def reattach(self, info: dict[str, Any]) -> BaseJob | None:
        """A handle on a job a previous driver submitted, from the ids recorded on its trial."""
        job_id, folder = info.get("job_slurm_job_id"), info.get("job_slurm_folder")
        if not job_id or not folder or not Path(folder).is_dir():
            return None
        return _SlurmJob(submitit.SlurmJob(folder=Path(folder).parent / "%j", job_id=str(job_id)))

    def shutdown(self) -> None:
        """Slurm jobs outlive a crashed driver on purpose: a restarted driver reattaches."""
