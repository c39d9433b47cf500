"""Submit-to-result latency and the requeue-resume timeline of submitit jobs on a real Slurm.

Needs a running Slurm with accounting; on this machine: `slurm/local_slurm.sh start`. Then:

    python slurm/bench_latency.py --runs 7

Prints the median (and min/max) submit-to-result latency of trivial jobs, seen two ways: polling
`job.done()` every 20 ms (what a driver loop sees) and blocking in `job.result()` (submitit polls
once a second), then the timeline of one checkpointable job that is interrupted, checkpoints,
is requeued and resumes: submit, start, interrupt, checkpoint, requeue, resume, result.
"""

from __future__ import annotations

import argparse
import datetime
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import submitit

_POLL_S = 0.02
_WAIT_BOUND_S = 120.0


def _now() -> float:
    return time.time()


class _Stepper(submitit.helpers.Checkpointable):
    """Counts to `n_steps` in `step_s` steps; its state survives a requeue through `checkpoint`."""

    def __init__(self, n_steps: int, step_s: float, progress: str) -> None:
        self.n_steps = n_steps
        self.step_s = step_s
        self.progress = progress
        self.step = 0
        self.starts: list[tuple[float, int]] = []
        self.checkpoints: list[tuple[float, int]] = []

    def __call__(self) -> dict:
        self.starts.append((time.time(), self.step))
        while self.step < self.n_steps:
            time.sleep(self.step_s)
            self.step += 1
            Path(self.progress).write_text(str(self.step))
        return {"starts": self.starts, "checkpoints": self.checkpoints, "step": self.step}

    def checkpoint(self) -> submitit.helpers.DelayedSubmission:
        self.checkpoints.append((time.time(), self.step))
        return super().checkpoint()


def _executor(folder: Path) -> submitit.AutoExecutor:
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    executor.update_parameters(timeout_min=5, cpus_per_task=1, slurm_signal_delay_s=30)
    return executor


def _wait_done(job: submitit.Job, bound_s: float = _WAIT_BOUND_S) -> float:
    """Poll `job.done()` until true; returns the time it became true."""
    deadline = time.monotonic() + bound_s
    while not job.done():
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"job {job.job_id} not done after {bound_s:.0f} s (state {job.state})"
            )
        time.sleep(_POLL_S)
    return _now()


def bench_latency(folder: Path, runs: int) -> dict[str, list[float]]:
    """Submit `runs` trivial jobs one after the other, timing each from submit to result."""
    executor = _executor(folder)
    out: dict[str, list[float]] = {"poll done()": [], "result()": [], "submit->run": []}
    for _ in range(runs):
        t0 = _now()
        job = executor.submit(_now)
        t_done = _wait_done(job)
        t_run = job.result()
        out["poll done()"].append(t_done - t0)
        out["submit->run"].append(t_run - t0)
    for _ in range(runs):
        t0 = _now()
        executor.submit(_now).result()
        out["result()"].append(_now() - t0)
    return out


def _sacct_requeued_at(job_id: str) -> float:
    """When Slurm ended the first attempt as REQUEUED (sacct has 1 s resolution), epoch seconds."""
    cmd = ["sacct", "-D", "-X", "-n", "-P", "-j", job_id, "-o", "State,End"]
    lines = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split()
    ends = [line.split("|")[1] for line in lines if line.startswith("REQUEUED|")]
    if not ends:
        raise RuntimeError(f"sacct shows no REQUEUED attempt for job {job_id}: {lines}")
    return datetime.datetime.fromisoformat(ends[0]).timestamp()


def bench_requeue(folder: Path) -> list[tuple[str, float]]:
    """Interrupt a running checkpointable job and time each stage until its result."""
    executor = _executor(folder)
    progress = folder / "progress.txt"
    t_submit = _now()
    job = executor.submit(_Stepper(n_steps=40, step_s=0.1, progress=str(progress)))
    deadline = time.monotonic() + _WAIT_BOUND_S
    while not (progress.exists() and int(progress.read_text() or 0) >= 5):
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job.job_id} made no progress in {_WAIT_BOUND_S:.0f} s")
        time.sleep(_POLL_S)
    t_interrupt = _now()
    job._interrupt()  # submitit's simulated preemption: SIGTERM then the warning signal
    _wait_done(job)
    t_result = _now()
    result = job.result()
    (t_start, _), (t_resume, resumed_at) = result["starts"]
    t_checkpoint, saved_at = result["checkpoints"][0]
    print(
        f"  job {job.job_id}: checkpoint at step {saved_at}, resumed at step {resumed_at}"
        f", finished at step {result['step']} of 40"
    )
    stages = [
        ("submit", t_submit),
        ("first start", t_start),
        ("interrupt sent", t_interrupt),
        ("checkpoint saved", t_checkpoint),
        ("requeued (sacct, 1 s res.)", _sacct_requeued_at(job.job_id)),
        ("resumed", t_resume),
        ("result seen", t_result),
    ]
    return [(name, t - t_submit) for name, t in stages]


def _summary(values: list[float]) -> str:
    return (
        f"median {statistics.median(values):5.2f} s  min {min(values):5.2f}"
        f"  max {max(values):5.2f}  (n={len(values)})"
    )


def _run(folder: Path, runs: int) -> None:
    print(f"submit-to-result latency of a trivial job ({runs} runs each):")
    for name, values in bench_latency(folder / "latency", runs).items():
        print(f"  {name:<12} {_summary(values)}")
    print("requeue-resume timeline (seconds after submit):")
    for name, t in bench_requeue(folder / "requeue"):
        print(f"  {name:<26} {t:6.2f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="trivial jobs per measurement")
    parser.add_argument(
        "--folder",
        type=Path,
        help="new or empty submitit folder the nodes can see (default: a temporary one in /tmp, "
        "fine for a one-node Slurm)",
    )
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error(f"--runs must be >= 1, got {args.runs}")
    if args.folder is not None and args.folder.exists() and any(args.folder.iterdir()):
        parser.error(f"--folder {args.folder} is not empty")
    if shutil.which("sbatch") is None:
        sys.exit("bench_latency: no sbatch on PATH; start Slurm first (slurm/local_slurm.sh start)")
    if args.folder is not None:
        _run(args.folder, args.runs)
        return
    with tempfile.TemporaryDirectory(prefix="ncasearch-slurm-bench-") as tmp:
        _run(Path(tmp), args.runs)


if __name__ == "__main__":
    main()
