"""The analysis report of one or more studies: CSVs, Markdown and HTML with figures.

Run:
    python -m analysis.report --storage runs/code.journal --out reports/code
    python -m analysis.report --storage sqlite:///s.db --study code --study web --out r \\
        --artifact-dir runs/artifacts

Python:
    >>> a = analyze("runs/code.journal")              # doctest: +SKIP
    >>> a.settings.head()                             # doctest: +SKIP
    >>> write_report(a, Path("reports/code"))         # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from optuna.storages import BaseStorage

from analysis import sections
from analysis.confirmation import confirmed_table, power_table
from analysis.document import Block, FigureBlock, render_html, render_markdown
from analysis.frame import StudyRecord, _records, load_for_command, seeds_frame, trials_frame
from analysis.paper import band_table, cross_domain_table
from analysis.pareto import pareto_table
from analysis.plots import FigureSkipped
from analysis.stats import seed_noise, setting_stats
from ncaio import atomic_write, atomic_write_bytes
from ncaio.cli import OneLineParser
from search.storage import StorageError

__all__ = ["Analysis", "analyze", "main", "pareto_fronts", "write_report"]

log = logging.getLogger(__name__)
_DPI = 110


@dataclass(frozen=True, kw_only=True, slots=True)
class Analysis:
    """Everything the report shows, as DataFrames (for notebooks) plus the study records."""

    records: tuple[StudyRecord, ...]
    """The studies read."""
    trials: pd.DataFrame
    """One row per trial (:func:`analysis.frame.trials_frame`)."""
    seeds: pd.DataFrame
    """One row per (setting, seed) (:func:`analysis.frame.seeds_frame`)."""
    settings: pd.DataFrame
    """One row per setting with statistics (:func:`analysis.stats.setting_stats`) and the
    upstream diagnostic of its latest trial."""
    noise: pd.DataFrame
    """Seed noise per study (:func:`analysis.stats.seed_noise`)."""
    cross_domain: pd.DataFrame
    """One row per study and domain next to the paper
    (:func:`analysis.paper.cross_domain_table`)."""
    bands: pd.DataFrame
    """Each study's (per domain) paper-band anchors with their effects, our best band and the
    paper's (:func:`analysis.paper.band_table`)."""
    pareto: pd.DataFrame
    """The Pareto front of each multi-objective multi-domain study with its per-domain effects
    (:func:`analysis.pareto.pareto_table`); empty when there is none."""
    confirmed: pd.DataFrame
    """Each confirmed study's finalists on fresh seeds and the test split, against equally
    tuned scratch (:func:`analysis.confirmation.confirmed_table`); empty when none was."""
    power: pd.DataFrame
    """Each study's seed noise and what its seeds could detect
    (:func:`analysis.confirmation.power_table`)."""

    @property
    def domains(self) -> tuple[str, ...]:
        """Every domain the studies trained on, in study order."""
        names = (d for r in self.records for d in (r.domains or (r.domain,)) if d)
        return tuple(dict.fromkeys(names))


def analyze(storage: str | os.PathLike[str] | BaseStorage | Sequence[StudyRecord],
            study_names: Sequence[str] | None = None, *, alpha: float = 0.05) -> Analysis:
    """Read the studies once and compute every table of the report.

    Args:
        storage: Journal file path, database URL, opened storage, or studies already read
            (:func:`analysis.frame.load_studies`, e.g. from several storages).
        study_names: Studies to include (default: all in the storage).
        alpha: Significance level of the verdicts.

    Raises:
        search.storage.StorageError: Unknown storage or study name (one-line message).
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1); got {alpha!r}")
    everything = _records(storage, study_names)
    records = [r for r in everything if r.confirms is None]
    trials = trials_frame(records)
    seeds = seeds_frame(records, trials=trials)
    settings = _with_upstream(setting_stats(seeds, alpha), trials)
    return Analysis(records=tuple(records), trials=trials, seeds=seeds, settings=settings,
                    noise=seed_noise(seeds) if not seeds.empty else pd.DataFrame(),
                    cross_domain=cross_domain_table(settings, alpha) if not settings.empty
                    else pd.DataFrame(), bands=band_table(settings),
                    pareto=pareto_fronts(records, trials),
                    confirmed=_confirmed([r for r in everything if r.confirms], alpha),
                    power=power_table(seeds, alpha) if not seeds.empty else pd.DataFrame())


def _confirmed(confirms: Sequence[StudyRecord], alpha: float) -> pd.DataFrame:
    """The confirmed tables of the confirmation studies, one after the other."""
    parts = [confirmed_table(r, alpha).assign(study=r.confirms) for r in confirms]
    parts = [p for p in parts if not p.empty]
    if not parts:
        return pd.DataFrame()
    out = pd.concat(parts, ignore_index=True)
    return out[["study", *out.columns.drop("study")]]


def pareto_fronts(records: Sequence[StudyRecord], trials: pd.DataFrame) -> pd.DataFrame:
    """The Pareto tables of the multi-objective multi-domain studies, one after the other (a
    one-domain study's report stays as it was)."""
    parts = [pareto_table(r, trials) for r in records
             if r.is_multi_domain and r.is_multi_objective]
    parts = [p for p in parts if not p.empty]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _with_upstream(settings: pd.DataFrame, trials: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in ("upstream_learned", "upstream_val_loss", "upstream_unigram_loss")
            if c in trials]
    if settings.empty or not cols:
        return settings
    done = trials[trials["state"] == "COMPLETE"]
    latest = done.sort_values("number").drop_duplicates(["study", "setting"], keep="last")
    return settings.merge(latest[["study", "setting", *cols]], on=["study", "setting"],
                          how="left")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "study"


def _figure_saver(out_dir: Path) -> Callable[[str, str, Callable[[], Figure]], FigureBlock]:
    """Returns ``save(name, caption, make)``: draws, writes figures/<name>.png, or notes a skip."""
    (out_dir / "figures").mkdir(parents=True, exist_ok=True)

    def save(name: str, caption: str, make: Callable[[], Figure]) -> FigureBlock:
        try:
            fig = make()
        except FigureSkipped as e:
            log.info("skipped figure %s: %s", name, e)
            return FigureBlock(caption=caption, skipped=str(e))
        rel = f"figures/{_slug(name)}.png"
        target = out_dir / rel
        with atomic_write(target) as f:
            fig.savefig(f, format="png", dpi=_DPI)
        return FigureBlock(caption=caption, path=rel)

    return save


def write_report(analysis: Analysis, out_dir: Path, *, artifact_store: Any | None = None,
                 source: str = "", dashboard_hint: str | None = None,
                 render_nca: bool = True) -> Path:
    """Write trials.csv, seeds.csv, settings.csv, cross_domain.csv, figures/, report.md/html;
    bands.csv too when the studies span several domains, and pareto.csv when a multi-domain
    study is multi-objective.

    Args:
        analysis: From :func:`analyze`.
        out_dir: Output directory (created).
        artifact_store: Where the trials' artifacts live (for the NCA contact sheet).
        source: How the storage was named, shown in the report.
        dashboard_hint: The optuna-dashboard command to show, if any.
        render_nca: Render the best setting's trajectories with nca when no GIF artifact is
            found (a few seconds per study).

    Returns:
        The path of report.md.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = [("trials", analysis.trials), ("seeds", analysis.seeds),
              ("settings", analysis.settings), ("cross_domain", analysis.cross_domain)]
    if len(analysis.domains) > 1:
        tables.append(("bands", analysis.bands))
    if not analysis.pareto.empty:
        tables.append(("pareto", analysis.pareto))
    for name in ("confirmed", "power"):
        frame = getattr(analysis, name)
        if not frame.empty:
            tables.append((name, frame))
    for name, frame in tables:
        atomic_write_bytes(out_dir / f"{name}.csv", frame.to_csv(index=False).encode())
    save = _figure_saver(out_dir)
    blocks: list[Block] = sections.overview(analysis, source, dashboard_hint, save)
    for rec in analysis.records:
        blocks += sections.study_section(analysis, rec, save, artifact_store, render_nca)
    blocks += sections.method_notes()
    md = render_markdown(blocks)
    atomic_write_bytes(out_dir / "report.md", md.encode())
    page = render_html(blocks, out_dir, title="NCA pre-pre-training search report")
    atomic_write_bytes(out_dir / "report.html", page.encode())
    return out_dir / "report.md"


def _parser() -> OneLineParser:
    p = OneLineParser(prog="python -m analysis.report",
                                description=__doc__.split("\n")[0])
    p.add_argument("--storage", required=True, action="append",
                   help="journal file path or database URL (sqlite:///x.db, postgresql://...); "
                        "repeat to report studies from several storages together")
    p.add_argument("--study", action="append", default=None, metavar="NAME",
                   help="study to include; repeat for several (default: every study)")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--artifact-dir", type=Path, default=None,
                   help="FileSystemArtifactStore directory of the trials' artifacts")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")
    p.add_argument("--no-nca-render", action="store_true",
                   help="without GIF artifacts, skip the trajectory sheet instead of rendering "
                        "it with nca (a few seconds per study)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns 0, or 2 with a one-line error for bad input."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    store = None
    if args.artifact_dir is not None:
        if not args.artifact_dir.is_dir():
            print(f"error: --artifact-dir {str(args.artifact_dir)!r} is not a directory",
                  file=sys.stderr)
            return 2
        from optuna.artifacts import FileSystemArtifactStore
        store = FileSystemArtifactStore(str(args.artifact_dir))
    if not 0 < args.alpha < 1:
        print(f"error: --alpha must be in (0, 1); got {args.alpha}", file=sys.stderr)
        return 2
    try:
        records = load_for_command(args.storage, args.out, args.study)
    except (ValueError, StorageError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    analysis = analyze(records, alpha=args.alpha)
    hint = None
    if args.artifact_dir is not None:
        from analysis.dashboard import dashboard_command
        hint = shlex.join(dashboard_command(args.storage[0], args.artifact_dir))
    path = write_report(analysis, args.out, artifact_store=store, source=", ".join(args.storage),
                        dashboard_hint=hint, render_nca=not args.no_nca_render)
    n = len(analysis.trials)
    print(f"wrote {path} and {path.with_suffix('.html')} ({len(analysis.records)} studies, "
          f"{n} trials)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
