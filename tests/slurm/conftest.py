"""A real one-node Slurm (slurm/local_slurm.sh) for the tests in this folder.

`local_slurm` (session) starts the cluster, waits (bounded) until `sinfo` shows the node up and
points SLURM_CONF at it; at the end it stops the cluster only if this session started it, so a
cluster someone already had running (or another pytest run is using) is left alone.
`slurm_executor` (per test) makes submitit executors in a fresh folder under tmp_path (job ids
restart at 1 after `local_slurm.sh reset`) and cancels that test's leftover jobs by job name.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import submitit

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "slurm" / "local_slurm.sh"
_BINARIES = ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd", "sbatch", "sacct", "srun")
_START_BOUND_S = 180
_NODE_UP = ("idle", "mix", "alloc")


@dataclass(frozen=True, kw_only=True, slots=True)
class LocalSlurm:
    """The running local cluster."""

    conf: Path
    """slurm.conf the clients use (exported as SLURM_CONF)."""
    started_here: bool
    """True when this session started the cluster (and so stops it)."""


def _script(command: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), command],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def _wait_node_up(bound_s: float) -> None:
    deadline = time.monotonic() + bound_s
    state = ""
    while time.monotonic() < deadline:
        out = subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%t"], check=False, capture_output=True, text=True
        )
        state = out.stdout.strip()
        if out.returncode == 0 and state.rstrip("*") in _NODE_UP:
            return
        time.sleep(0.2)
    pytest.fail(f"local Slurm node not up after {bound_s:.0f} s (sinfo state {state!r})")


@pytest.fixture(scope="session")
def local_slurm() -> Iterator[LocalSlurm]:
    """Start the local Slurm for the session (skips when Slurm is not installed)."""
    missing = [b for b in _BINARIES if shutil.which(b) is None]
    if missing:
        pytest.skip(
            f"Slurm not installed (no {', '.join(missing)}); run slurm/local_slurm.sh install"
        )
    if os.geteuid() != 0:
        pytest.skip("the local Slurm starts system daemons and must run as root")
    env_line = _script("env", 10).stdout.strip()
    conf = Path(env_line.partition("SLURM_CONF=")[2])
    was_up = _script("status", 30).returncode == 0
    started = _script("start", _START_BOUND_S)
    if started.returncode != 0:
        pytest.fail(f"slurm/local_slurm.sh start failed:\n{started.stdout}{started.stderr}")
    patch = pytest.MonkeyPatch()
    patch.setenv("SLURM_CONF", str(conf))
    try:
        _wait_node_up(60)
        yield LocalSlurm(conf=conf, started_here=not was_up)
    finally:
        patch.undo()
        if not was_up:
            stopped = _script("stop", 120)
            assert stopped.returncode == 0, f"local_slurm.sh stop failed: {stopped.stderr}"


@pytest.fixture
def slurm_job_name(local_slurm: LocalSlurm) -> Iterator[str]:
    """A job name unique to this test; its jobs still queued or running at the end are cancelled."""
    name = f"ncasearch-test-{uuid.uuid4().hex[:8]}"
    yield name
    subprocess.run(["scancel", f"--name={name}"], check=False, capture_output=True, timeout=30)


@pytest.fixture
def slurm_executor(
    slurm_job_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., submitit.AutoExecutor]:
    """Factory of submitit Slurm executors with a fresh job folder per test.

    `make(**params)` returns an `AutoExecutor(cluster="slurm")` on `tmp_path / "jobs"`; `params`
    go to update_parameters (defaults: 1 CPU, 5 min limit); `max_num_timeout=` to the constructor.
    """
    # Jobs get the submitter's environment: make sure a GPU list can only come from Slurm.
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)

    def make(max_num_timeout: int = 3, **params: object) -> submitit.AutoExecutor:
        executor = submitit.AutoExecutor(
            folder=tmp_path / "jobs", cluster="slurm", slurm_max_num_timeout=max_num_timeout
        )
        executor.update_parameters(
            **{"name": slurm_job_name, "timeout_min": 5, "cpus_per_task": 1, **params}
        )
        return executor

    return make
