"""Cheap stand-ins for the trial and baseline jobs, importable by spawned workers."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from search.jobs import TrialPayload, TrialResult


def value_of(payload: TrialPayload) -> float:
    s = payload.setting
    return round(abs(s.band[0] - 0.3) + s.alphabet / 100, 6)


def fake_trial(payload: TrialPayload) -> TrialResult:
    """Scores a setting by a fixed formula; fails for 'freeze-all'; may kill itself once."""
    marker = Path(payload.context.cache_dir) / "kill-once"
    if marker.with_suffix(".armed").exists() and not marker.exists():
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.05)
    if payload.setting.transfer == "freeze-all":
        return TrialResult(state="failed", reason="RuntimeError: broken on purpose")
    return TrialResult(state="complete", values=[value_of(payload)])


def fake_baseline(args) -> float:
    return 1.0


def dying_baseline(args) -> float:
    """Kills its own worker the first N times per seed, N read from `<cache>/baseline-deaths`."""
    context, seed = args
    cache = Path(context.cache_dir)
    allowed = int((cache / "baseline-deaths").read_text())
    count = cache / f"baseline-deaths-{seed}"
    died = int(count.read_text()) if count.exists() else 0
    if died < allowed:
        count.write_text(str(died + 1))
        os.kill(os.getpid(), signal.SIGKILL)
    return 1.0
STAGE_S = 1.3
"""Seconds the staged fake spends in each stage: longer than the driver's tick (1 s)."""


def staged_trial(payload: TrialPayload) -> TrialResult:
    """Goes through every stage of a real trial, reporting progress the way the real one does
    (through the worker's Optuna reporter), then completes with the formula's value."""
    from search.jobs import _OptunaReporter

    reporter = _OptunaReporter(payload)
    n = len(payload.context.seeds)
    for index in range(n):
        reporter.progress("data", index, 0, 0)
        time.sleep(STAGE_S)
        for stage, total in (("nca", 800), ("transfer", 0), ("domain", 1600)):
            steps = 4 if total else 1
            for k in range(1, steps + 1):
                val = 3.0 - k / 10 if stage == "domain" else None
                reporter.progress(stage, index, total * k // steps, total, val_loss=val,
                                  scratch_loss=None if val is None else val + 0.05)
                time.sleep(STAGE_S / steps)
    return TrialResult(state="complete", values=[value_of(payload)])


def reporting_baseline(args) -> float:
    """Writes its seed's progress as a baseline job does: 500 of 1000 tokens in 10 s."""
    from search import jobs
    from search.progress import ProgressWriter

    context, seed = args
    path = jobs.baseline_progress_path(context, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    now = time.time()
    times = iter([now, now + 10.0])
    writer = ProgressWriter(path, trial=-1, n_seeds=len(context.seeds), clock=times.__next__)
    writer.update("scratch", 0, 0, 1000, tokens_left=1000)
    writer.update("scratch", 0, 500, 1000, tokens_left=500)
    return 1.0


def rank_one_dies_once(payload: TrialPayload) -> TrialResult | None:
    """The real trial job, except that rank 1 of a data-parallel trial kills itself (SIGKILL, no
    cleanup) at its 20th optimiser step (inside the domain stage of the `tiny` preset's first
    seed) the first time it runs, while `<cache>/rank-dies.armed` exists."""
    import torch.distributed as dist

    from lm import trainer
    from search.jobs import run_trial_job

    marker = Path(payload.context.cache_dir) / "rank-dies"
    if dist.get_rank() == 1 and marker.with_suffix(".armed").exists() and not marker.exists():
        step = trainer.data_parallel_step
        calls = iter(range(10**6))

        def dying_step(*args, **kwargs):
            if next(calls) == 20:
                marker.touch()
                os.kill(os.getpid(), signal.SIGKILL)
            return step(*args, **kwargs)

        trainer.data_parallel_step = dying_step
    return run_trial_job(payload)


def rank_one_dies_at_once(payload: object) -> str:
    """A job of several ranks whose rank 1 kills itself (SIGKILL) while rank 0 waits for it at a
    collective: rank 0 loses its peers."""
    import torch
    import torch.distributed as dist

    from lm import distributed

    if dist.get_rank() == 1:
        time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGKILL)
    distributed.all_sum(torch.ones(1), "a test's sum")
    return "finished"
