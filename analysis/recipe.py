"""The recipe search's published answer (issue 29): is any NCA recipe bankable at this scale?

Reads the recipe-search studies (``studies/recipe-search.toml``, one per domain) with their
confirmations and writes under ``--out``, besides the report of ``analysis.report`` (every trial,
the confirmed table with verdicts and the search's own estimates, power):

- ``importance.csv``: each knob's PED-ANOVA importance for the study's objective (Optuna 5's
  default evaluator), per study;
- ``probes.csv``: the transfer probe of each confirmed finalist at its chosen learning rate on
  the fresh seeds (residual stream and token identity at the first downstream step, both arms);
- ``figures/net_vs_embed_and_share.png``: every completed trial's net effect against the new
  embedding's scale, coloured by the NCA share.

    python -m analysis.recipe --storage studies/results/recipe/runs/code/journal.log \\
        --out studies/results/recipe
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
from matplotlib.figure import Figure
from optuna.trial import TrialState

from analysis.confirmation import confirmed_table
from analysis.frame import StudyRecord, load_for_command
from analysis.report import analyze, write_report
from ncaio import atomic_write_bytes
from ncaio.cli import OneLineParser
from search.record import TrialRecord
from search.storage import StorageError

__all__ = ["importance_table", "main", "net_figure", "probe_table"]

_PROBES = ("residual_rms", "token_r2", "mean_direction_share")


def importance_table(records: Sequence[StudyRecord]) -> pd.DataFrame:
    """PED-ANOVA importance of each searched knob for each search study's first objective."""
    rows = []
    for rec in records:
        done = sum(t.state == TrialState.COMPLETE for t in rec.trials)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # experimental; small regimes
            try:
                imp = optuna.importance.get_param_importances(rec.study)
            except (ValueError, RuntimeError):
                continue
        rows += [{"study": rec.name, "knob": k, "importance": v, "trials": done}
                 for k, v in imp.items()]
    return pd.DataFrame(rows, columns=["study", "knob", "importance", "trials"])


def probe_table(confirms: Sequence[StudyRecord]) -> pd.DataFrame:
    """Each confirmed finalist's transfer probe at its chosen grid point, mean over seeds."""
    rows = []
    for rec in confirms:
        chosen = confirmed_table(rec)
        if chosen.empty:
            continue
        picks = set(zip(chosen["finalist"], chosen["lr_x"], strict=True))
        for t in rec.trials:
            key = (t.user_attrs.get("arm"), t.user_attrs.get("lr_x"))
            record = TrialRecord.from_attrs(t.user_attrs)
            if key not in picks or record is None:
                continue
            probes = [s.probe for s in record.seeds if isinstance(s.probe, dict)]
            row = {"study": rec.confirms, "finalist": key[0], "lr_x": key[1],
                   "seeds": len(probes)}
            for arm in ("nca", "scratch"):
                for f in _PROBES:
                    values = [p[arm][f] for p in probes if isinstance(p.get(arm), dict)
                              and p[arm].get(f) is not None]
                    row[f"{arm}_{f}"] = float(np.mean(values)) if values else np.nan
            rows.append(row)
    return pd.DataFrame(rows)


def net_figure(records: Sequence[StudyRecord]) -> Figure:
    """Net effect against embed_std (log), coloured by the NCA share, one panel per study."""
    fig = Figure(figsize=(5.4 * max(1, len(records)), 4.0), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, max(1, len(records))))
    for ax, rec in zip(axes, records, strict=False):
        points = [(t.params.get("embed_std"), t.params.get("nca_fraction"),
                   t.user_attrs.get("net_effect_pct"), t.user_attrs.get("kind", ""))
                  for t in rec.trials if t.state == TrialState.COMPLETE
                  and "duplicate_of" not in t.user_attrs]
        points = [p for p in points if p[0] is not None and p[2] is not None]
        if points:
            x, share, y, _ = zip(*points, strict=True)
            dots = ax.scatter(x, y, c=[s if s is not None else np.nan for s in share],
                              cmap="viridis", norm="log", s=28, edgecolor="k", lw=0.3)
            fig.colorbar(dots, ax=ax, label="NCA tokens / downstream")
        ax.axhline(0, color="k", lw=0.6)
        ax.set_xscale("log")
        ax.set_xlabel("new embedding's init std (embed_std)")
        ax.set_ylabel("net effect, % lower loss than the best scratch (search seeds, val)")
        ax.set_title(f"{rec.name}: {len(points)} completed trials", fontsize=9)
    return fig


def main(argv: Sequence[str] | None = None) -> int:
    p = OneLineParser(prog="python -m analysis.recipe", description=__doc__.splitlines()[0])
    p.add_argument("--storage", action="append", required=True,
                   help="a recipe-search journal; repeat for several domains")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    args = p.parse_args(argv)
    try:
        records = load_for_command(args.storage, args.out)
    except (ValueError, StorageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    searches = [r for r in records if r.confirms is None]
    confirms = [r for r in records if r.confirms is not None]
    analysis = analyze(records)
    write_report(analysis, args.out, source=", ".join(args.storage), render_nca=False)
    for name, frame in (("importance", importance_table(searches)),
                        ("probes", probe_table(confirms))):
        atomic_write_bytes(args.out / f"{name}.csv", frame.to_csv(index=False).encode())
    net_figure(searches).savefig(args.out / "figures" / "net_vs_embed_and_share.png", dpi=110)
    print(f"wrote {args.out}: {len(searches)} search(es), {len(confirms)} confirmation(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
