"""slurm/driver.sbatch on the REAL local Slurm: it runs the search CLI, and requeues itself.

The requeue test runs the script with a stand-in interpreter (NCASEARCH_PYTHON) that logs its
arguments and sleeps, because what is under test is the script's signal trap and requeue, not
the driver; the driver's own reattachment is tested with the driver.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

SBATCH_SCRIPT = Path(__file__).resolve().parents[2] / "slurm" / "driver.sbatch"
_BOUND_S = 60.0


def _sbatch(args: list[str], cwd: Path, env: dict[str, str], *extra: str) -> str:
    cmd = ["sbatch", "--parsable", *extra, str(SBATCH_SCRIPT), *args]
    out = subprocess.run(
        cmd,
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=_BOUND_S,
        check=True,
    )
    return out.stdout.strip().split(";")[0]


def _sacct_states(job_id: str) -> list[str]:
    cmd = ["sacct", "-D", "-X", "-n", "-P", "-j", job_id, "-o", "State"]
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split()


def _wait(predicate, what: str) -> None:
    deadline = time.monotonic() + _BOUND_S
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {_BOUND_S:.0f} s waiting for {what}")
        time.sleep(0.1)


def test_driver_sbatch_runs_the_search_cli(local_slurm, slurm_job_name, tmp_path) -> None:
    env = {"NCASEARCH_PYTHON": sys.executable}
    job_id = _sbatch(["--help"], tmp_path, env, f"--job-name={slurm_job_name}")
    # Not `sbatch --wait`: it polls on a backoff that reaches 10 s.
    _wait(lambda: _sacct_states(job_id) == ["COMPLETED"], f"driver job {job_id} to complete")
    log = (tmp_path / f"ncasearch-driver-{job_id}.out").read_text()
    assert "usage: python -m search.run" in log and "--executor" in log


@pytest.mark.slow
def test_driver_sbatch_requeues_itself_and_reruns_the_same_command(
    local_slurm, slurm_job_name, tmp_path
) -> None:
    runs = tmp_path / "runs.log"
    stand_in = tmp_path / "stand_in_python"
    stand_in.write_text(
        "#!/bin/bash\n"
        f'echo "restart=${{SLURM_RESTART_COUNT:-0}} args=$*" >> {runs}\n'
        "[[ ${SLURM_RESTART_COUNT:-0} -ge 1 ]] && exit 0\n"
        "exec sleep 60\n"
    )
    stand_in.chmod(0o755)
    env = {"NCASEARCH_PYTHON": str(stand_in), "NCASEARCH_STORAGE": str(tmp_path / "s.journal")}
    job_id = _sbatch(["--domain", "code"], tmp_path, env, f"--job-name={slurm_job_name}")
    _wait(runs.exists, f"driver job {job_id} to start")
    # What Slurm sends 5 min before the time limit (--signal=B:USR1@300), sent now.
    subprocess.run(["scancel", "--batch", "--signal=USR1", job_id], check=True, timeout=30)
    _wait(lambda: _sacct_states(job_id) == ["REQUEUED", "COMPLETED"], f"job {job_id} to rerun")
    args = f"args=-m search.run --executor slurm --storage {tmp_path / 's.journal'} --domain code"
    assert runs.read_text().splitlines() == [f"restart=0 {args}", f"restart=1 {args}"]
