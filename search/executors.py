"""Where a job runs: in this process, in a local worker process, or (see ``search.slurm``) on Slurm.

Executors decide *where* ``search.jobs`` functions run, never *what* they do. A submitted job is
polled with ``done()`` and then read with ``outcome()``, which tells a finished job from one lost to
the infrastructure (a killed worker, a cancelled Slurm job): the driver retries only the latter.
"""

from __future__ import annotations

import abc
import ctypes
import multiprocessing as mp
import os
import pickle
import resource
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ncaio import atomic_write


@dataclass(frozen=True, kw_only=True, slots=True)
class JobOutcome:
    """How a job ended: ``ok`` with its return value, or ``lost`` with the reason."""

    ok: bool
    value: Any = None
    reason: str = ""


class BaseJob(abc.ABC):
    """A handle on one submitted job."""

    @abc.abstractmethod
    def done(self) -> bool:
        """True once the job has finished or was lost."""

    @abc.abstractmethod
    def outcome(self) -> JobOutcome:
        """The job's outcome; only valid when ``done()``."""

    def cancel(self) -> None:
        """Stop the job if it still runs (best effort)."""

    @property
    def info(self) -> dict[str, Any]:
        """Where the job runs, recorded on the trial (pid, Slurm job id and folder)."""
        return {}


class BaseExecutor(abc.ABC):
    """Runs ``fn(payload)`` somewhere and hands back a job handle."""

    @abc.abstractmethod
    def submit(self, fn: Callable[[Any], Any], payload: Any) -> BaseJob:
        """Start ``fn(payload)``; ``fn`` must be importable by name (module-level)."""

    def shutdown(self) -> None:
        """Release what the executor holds; running jobs are cancelled."""

    def reattach(self, info: dict[str, Any]) -> BaseJob | None:
        """A handle on a job that a previous driver started, or None when that cannot be.

        ``info`` holds the trial's user attributes (the job ids recorded at submission).
        """
        return None


class _DoneJob(BaseJob):
    def __init__(self, outcome: JobOutcome) -> None:
        self._outcome = outcome

    def done(self) -> bool:
        return True

    def outcome(self) -> JobOutcome:
        return self._outcome


class InlineExecutor(BaseExecutor):
    """Runs each job immediately in this process: for debugging and tests."""

    def submit(self, fn: Callable[[Any], Any], payload: Any) -> BaseJob:
        return _DoneJob(JobOutcome(ok=True, value=fn(payload)))


class _ProcessJob(BaseJob):
    def __init__(self, process: mp.process.BaseProcess, result_path: Path) -> None:
        self._process = process
        self._result_path = result_path

    def done(self) -> bool:
        return self._process.exitcode is not None

    def outcome(self) -> JobOutcome:
        self._process.join(timeout=5)
        code = self._process.exitcode
        if self._result_path.is_file():
            with open(self._result_path, "rb") as f:
                value = pickle.load(f)
            self._result_path.unlink()
            if isinstance(value, _WorkerCrash):
                return JobOutcome(ok=False, reason=value.text)
            return JobOutcome(ok=True, value=value)
        if code is not None and code < 0:
            return JobOutcome(ok=False, reason=f"worker killed by {signal.Signals(-code).name}")
        return JobOutcome(ok=False, reason=f"worker exited with code {code} and no result")

    def cancel(self) -> None:
        if self._process.exitcode is None:
            self._process.terminate()
            self._process.join(timeout=10)
            if self._process.exitcode is None:
                self._process.kill()
                self._process.join(timeout=5)

    @property
    def info(self) -> dict[str, Any]:
        return {"pid": self._process.pid}


@dataclass(frozen=True, slots=True)
class _WorkerCrash:
    """What a worker writes when its job function itself raised outside the trial's guard."""

    text: str


def _worker_main(fn: Callable[[Any], Any], payload: Any, result_path: str, threads: int) -> None:
    _die_with_parent()
    if threads:
        import torch

        torch.set_num_threads(threads)
    try:
        value: Any = fn(payload)
    except KeyboardInterrupt:
        raise
    except BaseException:  # noqa: BLE001 - reported to the driver as a lost job
        value = _WorkerCrash(traceback.format_exc())
    with atomic_write(result_path) as f:
        pickle.dump(value, f)


def _die_with_parent() -> None:
    """Ask Linux to kill this worker when the driver dies, so no orphan keeps training."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass  # not Linux: orphans then finish their trial and exit on their own


class WorkerStartError(RuntimeError):
    """The system refused to start a worker process for ``SPAWN_WAIT_S`` seconds (a process or
    thread limit reached, typically by other jobs); the message says which limit and usage."""


SPAWN_WAIT_S = 60.0
"""How long a worker start is retried while the system refuses new processes (fork's EAGAIN:
other studies' workers and threads fill a process limit, then finish and free it)."""


def _start_waiting(process: mp.process.BaseProcess, wait_s: float = SPAWN_WAIT_S) -> None:
    """``process.start()``, retried with backoff while fork fails with EAGAIN.

    Raises:
        WorkerStartError: still refused after ``wait_s`` seconds.
    """
    deadline, pause, told = time.monotonic() + wait_s, 0.25, False
    while True:
        try:
            process.start()
            return
        except BlockingIOError as exc:  # EAGAIN from fork: a process or thread limit
            if time.monotonic() + pause > deadline:
                raise WorkerStartError(f"cannot start a worker process: the system refused new "
                                       f"processes for {wait_s:.0f} s ({exc.strerror}; "
                                       f"{task_limits()}); stop other jobs or lower workers "
                                       f"or threads") from None
            if not told:
                print(f"[search] waiting for the system to allow a new worker process "
                      f"({task_limits()})", file=sys.stderr, flush=True)
                told = True
            time.sleep(pause)
            pause = min(2 * pause, 5.0)


def task_limits() -> str:
    """What caps the tasks (processes and threads) this process may start, and their use: the
    pids cgroup (v1 or v2) and RLIMIT_NPROC, as far as this machine shows them."""
    parts = []
    for line in Path("/proc/self/cgroup").read_text().splitlines() if Path(
            "/proc/self/cgroup").is_file() else []:
        _, controllers, where = line.split(":", 2)
        root = {"pids": "/sys/fs/cgroup/pids", "": "/sys/fs/cgroup"}.get(controllers)
        folder = Path(f"{root}{where}") if root else None
        if folder is not None and (folder / "pids.max").is_file():
            current = (folder / "pids.current").read_text().strip()
            parts.append(f"{current} tasks in cgroup {where}, pids.max "
                         f"{(folder / 'pids.max').read_text().strip()}")
    soft, _ = resource.getrlimit(resource.RLIMIT_NPROC)
    if soft != resource.RLIM_INFINITY and os.geteuid() != 0:
        parts.append(f"RLIMIT_NPROC {soft}")
    return "; ".join(parts) or "no pids cgroup or process limit visible: the machine's tasks"


class LocalExecutor(BaseExecutor):
    """One fresh worker process per job (spawned, so CUDA and thread pools start clean)."""

    def __init__(self, workdir: Path, threads_per_job: int = 0) -> None:
        self._workdir = Path(workdir)
        self._workdir.mkdir(parents=True, exist_ok=True)
        self._threads = threads_per_job
        self._ctx = mp.get_context("spawn")
        self._jobs: list[_ProcessJob] = []

    def submit(self, fn: Callable[[Any], Any], payload: Any) -> BaseJob:
        fd, path = tempfile.mkstemp(dir=self._workdir, suffix=".result")
        os.close(fd)
        os.unlink(path)
        process = self._ctx.Process(
            target=_worker_main, args=(fn, payload, path, self._threads), daemon=False
        )
        _start_waiting(process)
        job = _ProcessJob(process, Path(path))
        self._jobs.append(job)
        return job

    def shutdown(self) -> None:
        for job in self._jobs:
            job.cancel()
        self._jobs.clear()
