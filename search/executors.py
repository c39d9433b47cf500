"""Where a job runs: in this process, in a local worker process, or (see ``search.slurm``) on Slurm.

Executors decide *where* ``search.jobs`` functions run, never *what* they do. A submitted job is
polled with ``done()`` and then read with ``outcome()``, which tells a finished job from one lost to
the infrastructure (a killed worker, a cancelled Slurm job): the driver retries only the latter.

A job may run as several ranks of one data-parallel process group (``LocalExecutor(ranks=N)``,
Slurm's ``tasks_per_node`` and ``nodes``): every rank runs the job function (``run_as_rank``), the
job's value is rank 0's, and a rank that died or failed on its own loses the whole job, with a
reason that names the rank and its host.
"""

from __future__ import annotations

import abc
import ctypes
import json
import multiprocessing as mp
import os
import pickle
import resource
import shutil
import signal
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ncaio import atomic_write, atomic_write_json


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
        """Stop the job if it still runs (best effort).

        A hook, not abstract on purpose: the default does nothing, for jobs that are done as soon
        as they are submitted (``InlineExecutor``'s); the others override it.
        """
        return

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
        """Release what the executor holds; running jobs are cancelled.

        A hook, not abstract on purpose: the default does nothing, for executors that hold
        nothing between jobs (``InlineExecutor``); the others override it.
        """
        return

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
        return _process_outcome(self._process, self._result_path)

    def cancel(self) -> None:
        _stop(self._process)

    @property
    def info(self) -> dict[str, Any]:
        return {"pid": self._process.pid}


def _process_outcome(process: mp.process.BaseProcess, result_path: Path) -> JobOutcome:
    """What an ended worker left: its result file, or why it has none."""
    process.join(timeout=5)
    code = process.exitcode
    if result_path.is_file():
        with open(result_path, "rb") as f:
            value = pickle.load(f)
        result_path.unlink()
        if isinstance(value, _WorkerCrash):
            return JobOutcome(ok=False, reason=value.text)
        return JobOutcome(ok=True, value=value)
    if code is not None and code < 0:
        return JobOutcome(ok=False, reason=f"worker killed by {signal.Signals(-code).name}")
    return JobOutcome(ok=False, reason=f"worker exited with code {code} and no result")


def _stop(process: mp.process.BaseProcess) -> None:
    """SIGTERM, then SIGKILL after 10 s (each wait bounded)."""
    if process.exitcode is None:
        process.terminate()
        process.join(timeout=10)
        if process.exitcode is None:
            process.kill()
            process.join(timeout=5)


RANK_GRACE_S = 10.0
"""How long the other ranks of a local job may go on after one of them died before they are
stopped: enough to record their own view (they lose their peers at once under gloo), short
enough that none waits out the process group's timeout (NCCL does not notice a dead peer)."""


class _RanksJob(BaseJob):
    """One job run as ``len(processes)`` ranks of a process group on this machine."""

    def __init__(self, processes: Sequence[mp.process.BaseProcess], result_paths: list[Path],
                 folder: Path) -> None:
        self._processes, self._paths, self._folder = processes, result_paths, folder
        self._first_death: float | None = None
        self._stopped: set[int] = set()

    def done(self) -> bool:
        ended = [p.exitcode is not None for p in self._processes]
        if all(ended):
            return True
        died = [r for r, p in enumerate(self._processes)  # killed, crashed or failed alone
                if p.exitcode not in (None, 0)
                or (p.exitcode == 0 and not self._paths[r].is_file())]
        if died and self._first_death is None:
            self._first_death = time.monotonic()
        if self._first_death is not None and time.monotonic() - self._first_death > RANK_GRACE_S:
            for r, p in enumerate(self._processes):
                if p.exitcode is None:
                    self._stopped.add(r)
                    _stop(p)
            return True
        return False

    def outcome(self) -> JobOutcome:
        ends = [_process_outcome(p, path) for p, path in zip(self._processes, self._paths,
                                                            strict=True)]
        hosts = read_rank_hosts(self._folder) or [(socket.gethostname(), p.pid or 0)
                                                  for p in self._processes]
        shutil.rmtree(self._folder, ignore_errors=True)
        return combine_ranks(ends, hosts, stopped=self._stopped)

    def cancel(self) -> None:
        for p in self._processes:
            _stop(p)

    @property
    def info(self) -> dict[str, Any]:
        return {"pid": self._processes[0].pid, "ranks": len(self._processes)}


def combine_ranks(ends: list[JobOutcome], hosts: list[tuple[str, int]], *,
                  stopped: set[int] | frozenset[int] = frozenset()) -> JobOutcome:
    """A data-parallel job's outcome from its ranks' (``ends``, in rank order): rank 0's value
    when every rank finished, else lost, naming the rank that ended first on its own: one that
    died or failed alone before one that only lost its peers (``PeerLostError``). Ranks the
    executor ``stopped`` after another died are not causes."""
    lost = [(r, e) for r, e in enumerate(ends) if not e.ok and r not in stopped]
    if not lost:
        return ends[0]
    rank, end = min(lost, key=lambda item: ("PeerLostError" in item[1].reason, item[0]))
    host, pid = hosts[rank] if rank < len(hosts) else ("?", 0)
    lines = [line.strip() for line in end.reason.strip().splitlines() if line.strip()]
    return JobOutcome(ok=False, reason=f"rank {rank} of {len(ends)} (pid {pid} on {host}): "
                                       f"{lines[-1] if lines else 'ended without a result'}")


@dataclass(frozen=True, slots=True)
class _WorkerCrash:
    """What a worker writes when its job function itself raised outside the trial's guard."""

    text: str


def run_as_rank(fn: Callable[[Any], Any], payload: Any) -> Any:
    """``fn(payload)`` inside the process group the environment describes (none for one
    process), left again afterwards. Rank 0 records every rank's host and pid first (see
    ``rank_hosts_path``) so that a lost job can name where its dead rank ran."""
    from lm import distributed

    if not distributed.init_from_env():
        return fn(payload)
    try:
        hosts = distributed.rank_hosts()
        folder = os.environ.get(RANKS_FOLDER_ENV)
        if folder and distributed.is_main():
            atomic_write_json(rank_hosts_path(Path(folder)), [list(h) for h in hosts])
        return fn(payload)
    finally:
        distributed.shutdown()


RANKS_FOLDER_ENV = "NCASEARCH_RANKS_FOLDER"
"""Where ``run_as_rank`` writes the job's ``ranks.json`` (set by the executor)."""


def rank_hosts_path(folder: Path) -> Path:
    """The job's record of its ranks: ``[[host, pid], ...]`` in rank order."""
    return folder / "ranks.json"


def read_rank_hosts(folder: Path) -> list[tuple[str, int]]:
    """The ranks ``run_as_rank`` recorded in ``folder`` (empty when it wrote none)."""
    try:
        return [(str(h), int(p)) for h, p in json.loads(rank_hosts_path(folder).read_text())]
    except (OSError, ValueError, TypeError):
        return []


def _worker_main(fn: Callable[[Any], Any], payload: Any, result_path: str, threads: int,
                 env: dict[str, str] | None = None) -> None:
    _die_with_parent()
    os.environ.update(env or {})
    if threads:
        import torch

        torch.set_num_threads(threads)
    try:
        value: Any = run_as_rank(fn, payload) if env else fn(payload)
    except KeyboardInterrupt:
        raise
    except BaseException:  # noqa: BLE001 - reported to the driver as a lost job
        value = _WorkerCrash(traceback.format_exc())
    with atomic_write(result_path) as f:
        pickle.dump(value, f)
    if env and isinstance(value, _WorkerCrash):
        sys.exit(1)  # a rank that failed alone: its job's other ranks are stopped (_RanksJob)


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


def _free_port() -> int:
    """A TCP port free on this machine now (the rendezvous of a local job's ranks)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalExecutor(BaseExecutor):
    """One fresh worker process per job (spawned, so CUDA and thread pools start clean), or
    ``ranks`` of them joined into one data-parallel process group."""

    def __init__(self, workdir: Path, threads_per_job: int = 0, ranks: int = 1) -> None:
        self._workdir = Path(workdir)
        self._workdir.mkdir(parents=True, exist_ok=True)
        self._threads = threads_per_job
        self._ranks = ranks
        self._ctx = mp.get_context("spawn")
        self._jobs: list[BaseJob] = []

    def submit(self, fn: Callable[[Any], Any], payload: Any) -> BaseJob:
        if self._ranks > 1:
            job: BaseJob = self._submit_ranks(fn, payload)
        else:
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

    def _submit_ranks(self, fn: Callable[[Any], Any], payload: Any) -> _RanksJob:
        """``self._ranks`` worker processes joined into one gloo (or NCCL) process group."""
        folder = Path(tempfile.mkdtemp(dir=self._workdir, suffix=".ranks"))
        port = _free_port()
        processes, paths = [], []
        for rank in range(self._ranks):
            env = {"RANK": str(rank), "WORLD_SIZE": str(self._ranks), "LOCAL_RANK": str(rank),
                   "LOCAL_WORLD_SIZE": str(self._ranks), "MASTER_ADDR": "127.0.0.1",
                   "MASTER_PORT": str(port), RANKS_FOLDER_ENV: str(folder)}
            paths.append(folder / f"rank{rank}.result")
            processes.append(self._ctx.Process(
                target=_worker_main, args=(fn, payload, str(paths[-1]), self._threads, env),
                daemon=False))
        for process in processes:
            _start_waiting(process)
        return _RanksJob(processes, paths, folder)

    def shutdown(self) -> None:
        for job in self._jobs:
            job.cancel()
        self._jobs.clear()
