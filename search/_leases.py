"""Leases on running trials, and the retry of trials lost to the infrastructure.

A driver holds a lease on every trial it runs and renews it while the job lives. When a
driver restarts, it fails any RUNNING trial whose lease is dead and enqueues its setting
again. A lost job (killed worker, lost Slurm job) is retried the same way. Every retry counts
as an attempt, up to ``max_retries``, and resumes in the work folder of its first attempt (its
``origin``), so the checkpoints that attempt left are reused.

The attribute names are part of the journal format: studies still running and the journals
under studies/results/ carry them.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from ncaio import content_key
from search import _optuna
from search.jobs import TrialContext

LEASE_S = 120.0
"""A trial whose lease is older than this belongs to a dead driver."""
RENEW_S = 30.0
"""Seconds between renewals: a lease outlives three missed ones."""
HOLDER = f"{socket.gethostname()}:{os.getpid()}"
IDENTITY_ATTRS = ("setting", "kind", "arm", "lr_x")
"""What a retry carries over from the trial it retries: what it runs (and, for a confirmation
run, which arm and grid point it is: ``search.confirm``)."""


def grant(study: optuna.Study, trial_id: int) -> None:
    """Lease the trial to this driver for ``LEASE_S`` seconds (also renews the lease)."""
    _optuna.set_system_attr(study, trial_id, "lease_until", time.time() + LEASE_S)
    _optuna.set_system_attr(study, trial_id, "lease_holder", HOLDER)


def is_dead(system_attrs: dict[str, Any], now: float) -> bool:
    """A lease is dead once it has expired. It is dead at once when its driver ran on this
    host and has exited."""
    if system_attrs.get("lease_until", 0.0) < now:
        return True
    host, _, pid = str(system_attrs.get("lease_holder", "")).rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def fail_and_retry(study: optuna.Study, t: FrozenTrial, reason: str, *, max_retries: int,
                   count_attempt: bool) -> str:
    """Fail the lost trial ``t``, and enqueue its setting again unless it is out of attempts.

    ``count_attempt`` is False for an interrupted trial (Ctrl-C), which is not its own fault.
    A trial that never got a setting (its driver died between asking and starting it) is
    marked ``never_started`` and not retried: nothing ran. Returns the line to show the user.
    """
    attempt = int(t.user_attrs.get("attempt", 0)) + (1 if count_attempt else 0)
    trial_id = _optuna.trial_id(t)
    _optuna.set_user_attr(study, trial_id, "fail_reason", reason)
    if "setting" not in t.user_attrs:
        _optuna.set_user_attr(study, trial_id, "never_started", True)
    retry = attempt <= max_retries and "setting" in t.user_attrs
    if retry:
        _optuna.set_user_attr(study, trial_id, "retried", True)
    if t.state == TrialState.RUNNING:
        study.tell(t.number, state=TrialState.FAIL)
    if not retry:
        return f"trial {t.number} {reason}; not retried"
    attrs: dict[str, Any] = {k: t.user_attrs[k] for k in IDENTITY_ATTRS if k in t.user_attrs}
    study.enqueue_trial(
        dict(t.params), user_attrs={**attrs, "attempt": attempt, "retry_of": t.number,
                                    "origin": t.user_attrs.get("origin", t.number)},
        skip_if_exists=False,
    )
    return f"trial {t.number} {reason}; retrying (attempt {attempt})"


def work_dir(trial: optuna.Trial | FrozenTrial, *, run_dir: Path, study_name: str,
             context: TrialContext) -> Path:
    """The trial's work folder. A retry resumes in the folder of its first attempt.

    The name also carries a key of the setting and the study, so two of them never share a
    folder (a seed in it must also carry its own key: see search.trial).
    """
    origin = trial.user_attrs.get("origin", trial.number)
    key = content_key({"setting": trial.user_attrs["setting"], "study": study_name,
                       "context": context.to_dict()})
    return run_dir / "trials" / f"{origin:05d}-{key[:10]}"
