"""Live progress of a running trial or baseline, passed from the worker to whoever watches.

A worker writes one small JSON file (``<work_dir>/progress.json``) through ``ProgressWriter``: at
most every ``every_s`` seconds and on every stage change, atomically, never raising into training.
Every executor shares that folder with its driver (a local process, a Slurm job on a shared
filesystem, a driver that reattached), so the board (``search.board``) and ``search.status`` read
the same record with ``read_progress`` whatever ran the trial.

Stages, in the order a seed goes through them: ``data`` (NCA data built or fetched), ``nca`` (the
pre-pre-training stage), ``transfer``, ``domain`` (the downstream stage), then ``artifacts`` (the
dashboard files, once per trial); ``scratch`` is a baseline run; ``starting`` is a worker that has
not reached its first stage yet.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ncaio import atomic_write_json

__all__ = [
    "BASELINE_PHASE_ATTR",
    "ESTIMATED_BASELINE_ATTR",
    "ESTIMATED_DOMAIN_RATE_ATTR",
    "ESTIMATED_TRIAL_ATTR",
    "FILE_NAME",
    "STAGE_LABELS",
    "Progress",
    "ProgressWriter",
    "progress_path",
    "read_progress",
    "tokens_left",
]

FILE_NAME = "progress.json"
STAGE_LABELS = {"starting": "starting", "data": "NCA data", "nca": "NCA stage",
                "transfer": "transfer", "domain": "domain stage", "scratch": "scratch baseline",
                "artifacts": "artifacts"}
"""How each stage reads on the board."""
BASELINE_PHASE_ATTR = "baseline_phase"
"""The study user attribute where the driver publishes its baseline phase (seeds, start,
progress, ``running``) for ``search.status`` on any machine: its jobs have no trial to write to."""
ESTIMATED_TRIAL_ATTR = "estimated_trial_s"
"""The study user attribute with the driver's estimate of one trial's seconds (search.cost), from
which ``search.status`` projects the end until the study has finished trials of its own."""
ESTIMATED_BASELINE_ATTR = "estimated_baseline_s"
"""Likewise for the scratch-baseline phase: its ETA until the phase has measured its rate."""
ESTIMATED_DOMAIN_RATE_ATTR = "estimated_domain_rate"
"""Study attribute: the domain-stage tokens/s of one worker that ``estimated_trial_s`` assumes
(its calibration's); a projection compares the rates its trials measure with it."""

_log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True, slots=True)
class Progress:
    """Where one trial (or one scratch baseline, ``trial = -1``) stands right now."""

    trial: int
    seed_index: int
    n_seeds: int
    stage: str
    tokens: int
    """Training tokens done in the current stage."""
    total: int
    """Training tokens of the current stage (0 when the stage is not counted in tokens)."""
    tokens_per_s: float = 0.0
    """Throughput of the current stage since it started here, evaluations included."""
    tokens_left: int = 0
    """Training tokens left in the whole trial (this stage, later stages, later seeds)."""
    val_loss: float | None = None
    """Latest validation loss of the current stage."""
    scratch_loss: float | None = None
    """Scratch's validation loss after the same number of tokens (domain stage only)."""
    host: str = ""
    pid: int = 0
    updated_at: float = 0.0
    """Unix time of this record."""

    @property
    def label(self) -> str:
        return STAGE_LABELS.get(self.stage, self.stage)

    @property
    def fraction(self) -> float | None:
        """Share of the current stage done, or None when it is not counted in tokens."""
        return min(1.0, self.tokens / self.total) if self.total > 0 else None

    def eta_s(self) -> float | None:
        """Seconds the trial still needs at the current throughput, when it is known."""
        if self.tokens_per_s <= 0:
            return None
        return self.tokens_left / self.tokens_per_s

    def age_s(self, now: float | None = None) -> float:
        return (time.time() if now is None else now) - self.updated_at

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Progress:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def progress_path(work_dir: str | Path) -> Path:
    """Where the worker of the trial with this work folder writes its progress."""
    return Path(work_dir) / FILE_NAME


def read_progress(path: str | Path) -> Progress | None:
    """The record at ``path``, or None when there is none yet or it cannot be read."""
    try:
        return Progress.from_dict(json.loads(Path(path).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def tokens_left(stage: str, seed_index: int, n_seeds: int, tokens: int, total: int, *,
                nca_tokens: int, domain_tokens: int) -> int:
    """Training tokens a trial still has to process; data building and transfer count as none."""
    per_seed = nca_tokens + domain_tokens
    later = max(0, n_seeds - seed_index - 1) * per_seed
    if stage in ("starting", "data"):
        return per_seed + later
    if stage == "nca":
        return max(0, total - tokens) + domain_tokens + later
    if stage == "transfer":
        return domain_tokens + later
    return max(0, total - tokens) + later


def domain_stage_tokens(per_domain: int, n_domains: int) -> int:
    """The tokens of one seed's ``domain`` stage: a multi-domain seed's domain stages are told
    as one stage of ``n_domains`` times the tokens (see :func:`across_domains`)."""
    return per_domain * n_domains


def across_domains(tell: Callable[..., None], d: int, n: int, per_domain: int
                   ) -> Callable[..., None]:
    """``tell`` for domain ``d`` of a seed's ``n`` domain stages, told as one: its tokens follow
    the earlier domains', out of :func:`domain_stage_tokens` (so bars and ETAs cover them all)."""
    if n == 1:
        return tell

    def told(stage: str, *, tokens: int, total: int, **kw: Any) -> None:
        if stage == "domain":
            tokens, total = d * per_domain + tokens, domain_stage_tokens(per_domain, n)
        tell(stage, tokens=tokens, total=total, **kw)
    return told


class ProgressWriter:
    """Writes a trial's ``Progress`` atomically at a low rate; cheap enough to call every step.

    Args:
        path: the file to write (see ``progress_path``).
        trial: trial number (-1 for a scratch baseline).
        n_seeds: seeds the trial runs.
        every_s: least seconds between two writes within one stage; a change of stage or seed,
            or a new validation loss, is written at once.
        clock: the time source (tests pass a fake one).
    """

    def __init__(self, path: str | Path, *, trial: int, n_seeds: int, every_s: float = 2.0,
                 clock: Callable[[], float] = time.time) -> None:
        self._path = Path(path)
        self._trial, self._n_seeds, self._every = trial, n_seeds, every_s
        self._clock = clock
        self._host, self._pid = socket.gethostname(), os.getpid()
        self._where: tuple[str, int] | None = None
        self._start = (0.0, 0)  # (time, tokens) when the current stage was first seen here
        self._written = -math.inf
        self._val: float | None = None
        self._scratch: float | None = None
        self._rate = 0.0
        self._broken = False

    def update(self, stage: str, seed_index: int, tokens: int, total: int, *,
               val_loss: float | None = None, scratch_loss: float | None = None,
               tokens_left: int = 0) -> Progress | None:
        """Record where the trial stands; returns the record when it was written."""
        now = self._clock()
        changed = (stage, seed_index) != self._where
        if changed:
            self._where, self._start = (stage, seed_index), (now, tokens)
            self._val = self._scratch = None
        if val_loss is not None:
            self._val, self._scratch = val_loss, scratch_loss
        elif not changed and now - self._written < self._every:
            return None  # the hot path: one comparison per optimiser step
        return self._write(stage, seed_index, tokens, total, tokens_left, now)

    def _write(self, stage: str, seed_index: int, tokens: int, total: int, left: int,
               now: float) -> Progress | None:
        started, first = self._start
        if now > started and tokens > first:
            self._rate = (tokens - first) / (now - started)
        # Until a new stage has a throughput of its own, the last one stands in (for the ETA).
        rate = self._rate
        record = Progress(trial=self._trial, seed_index=seed_index, n_seeds=self._n_seeds,
                          stage=stage, tokens=tokens, total=total, tokens_per_s=rate,
                          tokens_left=left, val_loss=self._val, scratch_loss=self._scratch,
                          host=self._host, pid=self._pid, updated_at=now)
        self._written = now
        try:
            atomic_write_json(self._path, record.to_dict())
        except Exception as exc:  # noqa: BLE001 - a display must never stop training
            if not self._broken:
                _log.warning("progress of trial %d cannot be written to %s (%s); training goes on",
                             self._trial, self._path, exc)
            self._broken = True
            return None
        return record
