"""Where the studies of a storage stand, from any machine that sees the storage.

Usage:
    python -m search.status runs/smoke                 # a run folder (its journal and config)
    python -m search.status --storage runs/code/journal.log --study code
    python -m search.status --storage postgresql://user@host/db --watch
    python -m search.status runs/smoke --json          # for scripts

Prints each study with its counts and best value, then its running trials: stage, tokens,
throughput, validation loss next to scratch's, where it runs (host and pid, or Slurm job id and
state; ``ranks N`` for a data-parallel trial, at its rank 0), elapsed and ETA. Progress comes
from the trial's ``progress.json`` when this machine sees its work folder, else from the
``progress`` user attribute the worker updates every 10 s. While the scratch baselines run
(before any trial), one row shows their phase, which the driver publishes as a study attribute
every 10 s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState

from search import board as board_lib
from search import tally
from search._toml import ConfigError
from search.progress import (
    BASELINE_PHASE_ATTR,
    ESTIMATED_BASELINE_ATTR,
    ESTIMATED_DOMAIN_RATE_ATTR,
    ESTIMATED_TRIAL_ATTR,
    Progress,
    progress_path,
    read_progress,
)
from search.storage import StorageError

if TYPE_CHECKING:
    from rich.console import RenderableType

STALE_S = 300.0
"""A progress record older than this is flagged: its worker may be gone."""


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m search.status", description=__doc__.splitlines()[0])
    p.add_argument("run_dir", nargs="?",
                   help="a run folder (holds journal.log and config.json), or its journal file")
    p.add_argument("--storage", help="journal file path or SQLAlchemy URL")
    p.add_argument("--study", help="only this study (default: every study in the storage)")
    p.add_argument("--watch", nargs="?", type=float, const=5.0, metavar="SECONDS",
                   help="refresh every SECONDS (default 5) until Ctrl-C")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    return p.parse_args(argv)


def resolve_storage(run_dir: str | None, storage: str | None) -> str:
    """The storage named by ``--storage``, or the one a run folder's config points at."""
    if storage:
        return storage
    if not run_dir:
        raise ConfigError("give a run folder or --storage PATH_OR_URL")
    folder = Path(run_dir)
    config = folder / "config.json"
    if config.is_file():
        try:
            stored = json.loads(config.read_text(encoding="utf-8"))["study"]["storage"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{str(config)!r} is damaged or not a run folder's config "
                              f"({type(exc).__name__}); give --storage PATH_OR_URL") from None
        if stored:
            return str(stored)
    journal = folder / "journal.log"
    if not journal.is_file():
        raise ConfigError(f"{run_dir!r}: no journal.log or config.json naming a storage")
    return str(journal)


# -- gathering -----------------------------------------------------------------------------------


def study_status(study: optuna.Study, now: float | None = None,
                 run_dir: str | None = None) -> dict[str, Any]:
    """One study's counts, best value and running trials, as plain data; ``run_dir`` is where
    this machine sees the study's run folder when its config names another (a relative path)."""
    now = time.time() if now is None else now
    trials = study.get_trials(deepcopy=False)
    attrs = study.user_attrs  # one read of the storage
    config = _config(attrs)
    target = int(config.get("study", {}).get("n_trials", 0))
    counts = tally.trial_counts(trials)
    running = [_running(t, now, run_dir) for t in trials if t.state == TrialState.RUNNING]
    baselines = _baselines(attrs, now)
    finished = sum(counts.values())
    left = max(0, target - finished - len(running)) if target else 0
    workers = _workers(config)
    per_trial, note = tally.mean_trial_s(trials), ""
    if per_trial is None:
        rows = [board_lib.Row(label="baselines" if r is baselines else "#", setting="",
                              started=0.0, progress=Progress.from_dict(r["progress"]))
                for r in [*running, baselines] if r and r["progress"]]
        per_trial, note = board_lib.corrected_trial_s(
            attrs.get(ESTIMATED_TRIAL_ATTR), attrs.get(ESTIMATED_DOMAIN_RATE_ATTR),
            board_lib.measured_domain_rate(rows, workers))
    etas = [r["eta_s"] for r in running] + ([baselines["eta_s"]] if baselines else [])
    end = board_lib.project_end(now, etas, left, workers, per_trial)
    starts = [t.datetime_start.timestamp() for t in trials if t.datetime_start]
    starts += [baselines["started"]] if baselines else []
    best = tally.best_text(study, trials)
    best_value = None
    if best and len(study.directions) == 1:
        best_value = {"trial": study.best_trial.number, "value": study.best_trial.value}
    return {"study": study.study_name, "domain": attrs.get("domain", ""),
            "preset": attrs.get("preset", ""), "n_trials": target, **counts,
            "running": len(running), "left": left, "best": best_value, "best_text": best,
            "started": min(starts, default=now), "projected_end": end,
            "projection_note": note, "trials": running,
            "baselines": baselines}


def _baselines(attrs: dict[str, Any], now: float) -> dict[str, Any] | None:
    """The scratch-baseline phase the study's driver publishes (search.driver), while it runs."""
    phase = attrs.get(BASELINE_PHASE_ATTR)
    if not isinstance(phase, dict) or not phase.get("running"):
        return None
    progress = Progress.from_dict(phase["progress"]) if phase.get("progress") else None
    silent = now - float(phase.get("updated_at", now))
    started = float(phase.get("started", now))
    estimate_s = attrs.get(ESTIMATED_BASELINE_ATTR)
    row = board_lib.baseline_row(phase.get("seeds", []), started, progress,
                                 estimate_s=estimate_s, now=now)
    return {"seeds": phase.get("seeds", []), "started": started, "elapsed_s": now - started,
            "eta_s": row.eta_s(), "estimate_s": estimate_s,
            "state": f"no word from its driver for {board_lib.fmt_duration(silent)}"
            if silent > STALE_S else "",
            "progress": progress.to_dict() if progress else None}


def _running(t: optuna.trial.FrozenTrial, now: float, run_dir: str | None) -> dict[str, Any]:
    progress = _progress(t, run_dir)
    started = t.datetime_start.timestamp() if t.datetime_start else now
    attrs = t.user_attrs
    job = attrs.get("job_slurm_job_id")
    where = f"slurm {job}" if job else (
        f"{progress.host} pid {progress.pid}" if progress and progress.host
        else f"pid {attrs['job_pid']}" if "job_pid" in attrs else "")
    where += board_lib.ranks_text(attrs.get("job_ranks"))
    state = _slurm_state(str(job)) if job else ""
    if progress is not None and progress.age_s(now) > STALE_S:
        state = ((state + ", " if state else "")
                 + f"no progress for {board_lib.fmt_duration(progress.age_s(now))}")
    return {"trial": t.number, "setting": attrs.get("describe", ""), "kind": attrs.get("kind", ""),
            "where": where, "state": state, "started": started, "elapsed_s": now - started,
            "eta_s": progress.eta_s() if progress else None,
            "progress": progress.to_dict() if progress else None}


def _progress(t: optuna.trial.FrozenTrial, run_dir: str | None) -> Progress | None:
    """The newest of the work folder's file (when this machine sees it) and the user attribute.

    The driver records the folder it gave the trial; a ``run_dir`` given here stands in for the
    run folder it lies in (the same run seen under another path, as from another machine).
    """
    candidates = []
    recorded = t.user_attrs.get("job_work_dir")
    folders = [Path(recorded)] if recorded else []
    if recorded and run_dir:
        folders.append(Path(run_dir) / "trials" / Path(recorded).name)
    for folder in folders:
        record = read_progress(progress_path(folder))
        if record is not None and record.trial == t.number:
            candidates.append(record)
    if isinstance(t.user_attrs.get("progress"), dict):
        with contextlib.suppress(TypeError):
            candidates.append(Progress.from_dict(t.user_attrs["progress"]))
    return max(candidates, key=lambda p: p.updated_at, default=None)


def _config(attrs: dict[str, Any]) -> dict[str, Any]:
    try:
        return json.loads(attrs.get("config", "{}"))
    except ValueError:
        return {}


def _workers(config: dict[str, Any]) -> int:
    """Trials the study runs side by side, from the configuration saved with it."""
    s = config.get("study", {})
    return tally.jobs_at_once(str(s.get("executor", "")), workers=int(s.get("workers", 1)),
                        n_trials=int(s.get("n_trials", 1)),
                        max_in_flight=int(config.get("slurm", {}).get("max_in_flight", 1)))


def _slurm_state(job_id: str) -> str:
    """The job's Slurm state (RUNNING, PENDING, ...) when ``squeue`` answers, else empty."""
    if not shutil.which("squeue"):
        return ""
    try:
        out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else ""


def gather(storage: str, study_name: str | None = None,
           run_dir: str | None = None) -> list[dict[str, Any]]:
    """Every study of ``storage`` (or only ``study_name``)."""
    from search.storage import open_storage, resolve_study_names

    opened = open_storage(storage, create=False)
    names = resolve_study_names(opened, None if study_name is None else [study_name])
    now = time.time()
    return [study_status(optuna.load_study(study_name=n, storage=opened), now, run_dir)
            for n in names]


# -- printing ------------------------------------------------------------------------------------


def render(statuses: list[dict[str, Any]], now: float | None = None) -> RenderableType:
    """The studies table, then each study's board (the header and its running trials)."""
    from rich.console import Group
    from rich.table import Table

    now = time.time() if now is None else now
    table = Table(box=None, pad_edge=False, header_style="bold")
    counts = ("complete", "pruned", "failed", "running", "left")
    for name in ("study", "domain", "preset", *counts, "best"):
        table.add_column(name, no_wrap=True, justify="right" if name in counts else "left")
    for s in statuses:
        best = "-" if not s["best"] else f"#{s['best']['trial']} {s['best']['value']:.4f}"
        table.add_row(s["study"], s["domain"], s["preset"], str(s["complete"]), str(s["pruned"]),
                      str(s["failed"]), str(s["running"]), str(s["left"]), best)
    parts: list[Any] = [table]
    for s in statuses:
        if s["trials"] or s["baselines"]:
            parts += ["", board_lib.render(_snapshot(s, now))]
    return Group(*parts)


def _snapshot(s: dict[str, Any], now: float) -> board_lib.Snapshot:
    rows = tuple(board_lib.Row(label=f"#{r['trial']}", setting=r["setting"], started=r["started"],
                               progress=(Progress.from_dict(r["progress"]) if r["progress"]
                                         else None),
                               where=" ".join(x for x in (r["where"], r["state"]) if x))
                 for r in s["trials"])
    if s["baselines"]:
        b = s["baselines"]
        progress = Progress.from_dict(b["progress"]) if b["progress"] else None
        rows = (board_lib.baseline_row(b["seeds"], b["started"], progress, b["state"],
                                       estimate_s=b["estimate_s"], now=now), *rows)
    return board_lib.Snapshot(study=s["study"], now=now, started=s["started"],
                              complete=s["complete"], pruned=s["pruned"], failed=s["failed"],
                              running=s["running"], left=s["left"], rows=rows,
                              best=s["best_text"], projected_end=s["projected_end"],
                              projection_note=s.get("projection_note", ""))


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    if args.run_dir and not args.storage and Path(args.run_dir).is_file():  # the journal itself
        args.storage, args.run_dir = args.run_dir, str(Path(args.run_dir).parent)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        if args.watch is not None and not 0 < args.watch < math.inf:
            raise ConfigError(f"--watch {args.watch:g}: give seconds > 0")
        storage = resolve_storage(args.run_dir, args.storage)
        statuses = gather(storage, args.study, args.run_dir)
    except (ConfigError, StorageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json and not args.watch:
        print(json.dumps({"storage": storage, "studies": statuses}, indent=2, default=str))
        return 0
    from rich.console import Console

    console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    if not args.watch:
        console.print(render(statuses))
        return 0
    try:
        while True:
            statuses = gather(storage, args.study, args.run_dir)
            if args.json:
                print(json.dumps({"storage": storage, "studies": statuses}, default=str),
                      flush=True)
            else:
                if console.is_terminal:
                    console.clear()
                console.print(f"{time.strftime('%H:%M:%S')}  {storage}")
                console.print(render(statuses))
            time.sleep(args.watch)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
