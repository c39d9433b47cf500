"""The live view of a running study: a board on a terminal, plain lines in logs.

The driver calls ``Board.tick`` from its poll loop (``DriverEvents.on_tick``, about once a
second). A tick takes a ``Snapshot``: the study's counts and best trial from the storage, and each
in-flight trial's ``progress.json`` from its work folder (``search.progress``), which every
executor shares with the driver. Three renderings of the same snapshot:

- ``LiveBoard`` (stdout is a terminal): a ``rich`` table redrawn in place, one row per running
  trial (or one for the scratch baselines while they run) under a header of counts, elapsed time,
  projected end and best so far; finished-trial lines scroll above it.
- ``PlainBoard`` (a pipe, a Slurm log, CI): one line per stage change and, every ``heartbeat_s``,
  one line per running trial and one for the study, so logs stay readable.
- ``QuietBoard``: only the finished-trial lines.
"""

from __future__ import annotations

import logging
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Self, TextIO

from search.progress import Progress, progress_path, read_progress
from search.tally import best_text, mean_trial_s, trial_counts

if TYPE_CHECKING:
    from rich.console import RenderableType

    from search.driver import Driver

_log = logging.getLogger(__name__)

__all__ = ["Board", "LiveBoard", "PlainBoard", "QuietBoard", "Row", "Snapshot", "baseline_row",
           "make_board", "project_end", "snapshot"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Row:
    """One running trial, or the scratch-baseline phase (``label = "baselines"``)."""

    label: str
    setting: str
    started: float
    progress: Progress | None
    where: str = ""
    """Where it runs: a worker pid or a Slurm job id."""
    estimated_left_s: float | None = None
    """Seconds left by the cost estimate (``search.cost``): the ETA until the progress has a
    rate."""

    def eta_s(self) -> float | None:
        measured = self.progress.eta_s() if self.progress else None
        return self.estimated_left_s if measured is None else measured


@dataclass(frozen=True, kw_only=True, slots=True)
class Snapshot:
    """What the board shows at one moment."""

    study: str
    now: float
    started: float
    complete: int
    pruned: int
    failed: int
    running: int
    left: int
    rows: tuple[Row, ...]
    best: str = ""
    projected_end: float | None = None
    projection_note: str = ""
    """Which figure the projected end uses, when not the estimate's (see ``corrected_trial_s``)."""

    def header(self) -> str:
        note = f"; {self.projection_note}" if self.projection_note else ""
        end = "-" if self.projected_end is None else (
            f"{time.strftime('%H:%M:%S', time.localtime(self.projected_end))} "
            f"(in {fmt_duration(self.projected_end - self.now)}{note})")
        best = f"; best {self.best}" if self.best else ""
        return (f"study {self.study}: {self.complete} complete, {self.pruned} pruned, "
                f"{self.failed} failed, {self.running} running, {self.left} left; "
                f"elapsed {fmt_duration(self.now - self.started)}; projected end {end}{best}")


# -- gathering -----------------------------------------------------------------------------------


def snapshot(driver: Driver, started: float, *, trial_s: float | None = None,
             baseline_s: float | None = None, domain_rate: float | None = None) -> Snapshot:
    """The board's view of ``driver`` now; ``trial_s`` is the estimated seconds of one trial
    (``search.cost``) until the study has finished trials of its own, ``baseline_s`` those of
    the scratch-baseline phase until it has measured its own rate, ``domain_rate`` the
    domain-stage tokens/s of one worker that ``trial_s`` assumes."""
    now = time.time()
    trials = driver.study.get_trials(deepcopy=False)
    counts = trial_counts(trials)
    rows = [_trial_row(r.number, r.describe, r.started, read_progress(progress_path(r.work_dir)),
                       r.info) for r in driver.running()]
    if driver.baseline_phase_seeds:
        rows.insert(0, baseline_row(driver.baseline_phase_seeds, driver.baseline_started,
                                    driver.baseline_progress(), estimate_s=baseline_s, now=now))
    running = len(driver.running())
    left = max(0, driver.config.study.n_trials - driver.finished_count() - running)
    per_trial, note = mean_trial_s(trials), ""
    if per_trial is None:
        per_trial, note = corrected_trial_s(trial_s, domain_rate,
                                            measured_domain_rate(rows, driver.max_in_flight))
    end = project_end(now, [r.eta_s() for r in rows], left, driver.max_in_flight, per_trial)
    return Snapshot(study=driver.study.study_name, now=now, started=started, rows=tuple(rows),
                    running=running, left=left, best=best_text(driver.study, trials),
                    projected_end=end, projection_note=note, **counts)


RATE_TOLERANCE = 1.5
"""How far the domain-stage rate the study measures may stray from the calibration's before the
projection follows the measured one (a calibration taken on a loaded machine is off by more)."""


def measured_domain_rate(rows: list[Row], workers: int) -> float | None:
    """The median domain-stage tokens/s of one worker among ``rows``: trials in their domain
    stage, and the scratch-baseline phase (the same shapes; its rate is its running jobs' sum)."""
    rates = []
    for row in rows:
        p = row.progress
        if p is None or p.tokens_per_s <= 0:
            continue
        if row.label == "baselines":
            rates.append(p.tokens_per_s / max(1, min(workers, p.n_seeds)))
        elif p.stage == "domain":
            rates.append(p.tokens_per_s)
    return statistics.median(rates) if rates else None


def corrected_trial_s(trial_s: float | None, predicted_rate: float | None,
                      measured_rate: float | None) -> tuple[float | None, str]:
    """The estimated trial seconds, rescaled by the measured rate when it strays from the one
    the estimate assumed by more than ``RATE_TOLERANCE``; and a note saying so (empty when the
    estimate stands)."""
    if trial_s is None or not predicted_rate or not measured_rate:
        return trial_s, ""
    ratio = measured_rate / predicted_rate
    if 1 / RATE_TOLERANCE <= ratio <= RATE_TOLERANCE:
        return trial_s, ""
    return trial_s / ratio, f"from measured rates, {ratio:.2g}x the calibration's"


def _trial_row(number: int, describe: str, started: float, progress: Progress | None,
               info: dict) -> Row:
    # A retry resumes in the first attempt's folder: its old record is not this attempt's.
    if progress is not None and progress.updated_at < started - 1.0:
        progress = None
    where = f"slurm {info['slurm_job_id']}" if "slurm_job_id" in info else (
        f"pid {info['pid']}" if "pid" in info else "inline")
    where += ranks_text(info.get("ranks"))
    return Row(label=f"#{number}", setting=describe, started=started, progress=progress,
               where=where)


def ranks_text(ranks: object) -> str:
    """`` ranks N`` after where a data-parallel trial runs (its job's rank 0); nothing for one
    process."""
    return f" ranks {ranks}" if isinstance(ranks, int) and ranks > 1 else ""


def baseline_row(seeds: list[int] | tuple[int, ...], started: float,
                 progress: Progress | None, where: str = "", *, estimate_s: float | None = None,
                 now: float | None = None) -> Row:
    """The scratch-baseline phase in one row (the board's and search.status'). ``estimate_s``,
    the phase's estimated seconds, gives its ETA until the progress has a rate: it is not a
    trial, and ``project_end`` would count it as half of one."""
    left = None
    if estimate_s is not None:
        left = max(0.0, estimate_s - ((time.time() if now is None else now) - started))
    return Row(label="baselines", setting=f"scratch, seeds {list(seeds)}", started=started,
               progress=progress, where=where, estimated_left_s=left)


def project_end(now: float, etas: list[float | None], left: int, workers: int,
                trial_s: float | None) -> float | None:
    """When the study should end: the running trials finish (their ETAs), then the trials left
    run ``workers`` at a time, ``trial_s`` each. None when nothing is known yet."""
    known = [e for e in etas if e is not None]
    if not etas and not left:
        return None  # nothing runs, nothing is left: the study is done
    if left and trial_s is None:
        return None
    if not known and etas:
        if trial_s is None:
            return None
        known = [trial_s / 2]  # a trial with no measured rate yet is counted half done
    first = max(known, default=0.0)
    return now + first + math.ceil(left / max(1, workers)) * (trial_s or 0.0)


# -- formatting ----------------------------------------------------------------------------------


def fmt_duration(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``2h07m``; ``-`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def fmt_tokens(n: float) -> str:
    """``512``, ``8.2k``, ``1.6M``."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:.0f}"


def stage_text(p: Progress | None) -> str:
    if p is None:
        return "starting"
    if p.stage == "scratch":
        return "scratch baseline"
    return f"{p.label}, seed {p.seed_index + 1}/{p.n_seeds}"


def tokens_text(p: Progress | None) -> str:
    if p is None or p.total <= 0:
        return ""
    pct = 100 * (p.fraction or 0.0)
    return (f"{fmt_tokens(p.tokens)}/{fmt_tokens(p.total)} tokens ({pct:.0f}%), "
            f"{fmt_tokens(p.tokens_per_s)} tokens/s")


def loss_text(p: Progress | None) -> str:
    if p is None or p.val_loss is None:
        return ""
    scratch = "" if p.scratch_loss is None else f" (scratch {p.scratch_loss:.3f})"
    return f"val {p.val_loss:.3f}{scratch}"


# -- renderings ----------------------------------------------------------------------------------


@dataclass(kw_only=True)
class Board:
    """Base rendering: hands finished-trial lines and messages to ``out`` as plain lines."""

    out: TextIO = field(default_factory=lambda: sys.stdout)
    trial_s: float | None = None
    """Estimated seconds per trial before the study has measured its own."""
    baseline_s: float | None = None
    """Estimated seconds of the scratch-baseline phase before it has measured its rate."""
    domain_rate: float | None = None
    """Domain-stage tokens/s of one worker that ``trial_s`` assumes (``corrected_trial_s``)."""
    started: float = field(default_factory=time.time)

    def trial_line(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    def message(self, text: str) -> None:
        print(f"[search] {text}", file=self.out, flush=True)

    _broken: bool = False

    def tick(self, driver: Driver) -> None:
        """Called by the driver about once a second; a failure to draw never stops the study."""
        try:
            self.show(snapshot(driver, self.started, trial_s=self.trial_s,
                               baseline_s=self.baseline_s, domain_rate=self.domain_rate))
        except Exception as exc:  # noqa: BLE001 - a storage hiccup must not end the study
            if not self._broken:
                _log.warning("the progress board could not be drawn (%s: %s); the study goes on",
                             type(exc).__name__, exc)
            self._broken = True

    def show(self, snap: Snapshot) -> None:
        """Draw ``snap``."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


@dataclass(kw_only=True)
class QuietBoard(Board):
    """``--quiet``: finished-trial lines only."""

    def message(self, text: str) -> None:
        return None

    def tick(self, driver: Driver) -> None:
        return None


@dataclass(kw_only=True)
class PlainBoard(Board):
    """Logs: a line per stage change, and every ``heartbeat_s`` a line per running trial plus
    one for the study."""

    heartbeat_s: float = 60.0
    _stages: dict[str, tuple[str, int]] = field(default_factory=dict)
    _beats: dict[str, float] = field(default_factory=dict)
    _study_beat: float = -math.inf

    def show(self, snap: Snapshot) -> None:
        """Print what changed in ``snap`` and the heartbeats that are due."""
        for row in snap.rows:
            p = row.progress
            where = (p.stage, p.seed_index) if p else ("starting", 0)
            if self._stages.get(row.label) != where:
                self._stages[row.label] = where
                self._beats[row.label] = snap.now
                self.message(f"{row.label} {stage_text(p)}")
            elif snap.now - self._beats.get(row.label, 0.0) >= self.heartbeat_s:
                self._beats[row.label] = snap.now
                self.message(heartbeat_line(row, snap.now))
        live = {r.label for r in snap.rows}
        for label in [k for k in self._stages if k not in live]:
            del self._stages[label]  # a finished trial's label may come back as a retry
        if snap.rows and snap.now - self._study_beat >= self.heartbeat_s:
            self._study_beat = snap.now
            self.message(snap.header())


def heartbeat_line(row: Row, now: float) -> str:
    """``#3 domain stage, seed 1/2: 8.2k/16.4k tokens (50%), 2.1k tokens/s, val 2.413 (scratch
    2.450), elapsed 35s, eta 12s``."""
    p = row.progress
    parts = [tokens_text(p), loss_text(p), f"elapsed {fmt_duration(now - row.started)}",
             f"eta {fmt_duration(row.eta_s())}"]
    return f"{row.label} {stage_text(p)}: " + ", ".join(x for x in parts if x)


class LiveBoard(Board):
    """A terminal: the board redrawn in place (``rich.live``), finished trials above it."""

    def __init__(self, *, out: TextIO | None = None, trial_s: float | None = None,
                 baseline_s: float | None = None, refresh_per_second: float = 2.0) -> None:
        from rich.console import Console
        from rich.live import Live

        super().__init__(out=out or sys.stdout, trial_s=trial_s, baseline_s=baseline_s)
        self._console = Console(file=self.out, highlight=False)
        self._live = Live(console=self._console, refresh_per_second=refresh_per_second,
                          transient=False, redirect_stdout=False, redirect_stderr=False)
        self._snap: Snapshot | None = None

    def trial_line(self, line: str) -> None:
        self._console.print(line, markup=False, soft_wrap=True)

    def message(self, text: str) -> None:
        self._console.print(f"[search] {text}", markup=False, soft_wrap=True)

    def show(self, snap: Snapshot) -> None:
        self._snap = snap
        self._live.update(render(snap), refresh=True)

    def __enter__(self) -> Self:
        self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.stop()


def render(snap: Snapshot) -> RenderableType:
    """The board: the header over a table of running trials."""
    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False, header_style="bold")
    numbers = ("tokens", "val loss", "elapsed", "eta")
    for name in ("trial", "setting", "stage", "progress", *numbers, "where"):
        table.add_column(name, justify="right" if name in numbers else "left", no_wrap=True)
    for row in snap.rows:
        p = row.progress
        bar = ProgressBar(total=max(1, p.total), completed=p.tokens, width=20) \
            if p and p.total > 0 else Text("")
        table.add_row(row.label, row.setting[:40], stage_text(p), bar,
                      tokens_text(p).replace(" tokens", "").replace(" (", "  ("),
                      loss_text(p).replace("val ", ""), fmt_duration(snap.now - row.started),
                      fmt_duration(row.eta_s()), row.where)
    return Group(Text(snap.header(), style="bold"), table)


def make_board(mode: str, *, heartbeat_s: float = 60.0, out: TextIO | None = None) -> Board:
    """``auto`` picks the live board on a terminal and plain lines elsewhere; ``live``,
    ``plain`` and ``quiet`` force one. Its ``trial_s`` and ``baseline_s`` (the estimates the
    projected end uses until the study has measured its own) are set once they are known."""
    out = out or sys.stdout
    if mode == "auto":
        mode = "live" if out.isatty() else "plain"
    if mode == "live":
        return LiveBoard(out=out)
    if mode == "quiet":
        return QuietBoard(out=out)
    return PlainBoard(out=out, heartbeat_s=heartbeat_s)
