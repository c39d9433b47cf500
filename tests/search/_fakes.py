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
