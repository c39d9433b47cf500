"""What NCA pre-pre-training does at proxy scale: the evidence report across domains.

Reads the studies that ``studies/evidence.toml`` (cpu-proxy) and ``studies/fidelity.toml``
(tiny) wrote, one journal per study under ``--run-dir`` (``<run-dir>/evidence-<domain>/`` and
``<run-dir>/fidelity-<domain>/``, as ``python -m search.run --name`` lays them out), and writes
under ``--out``:

- ``<domain>/``: the full report of ``evidence-<domain>`` (:mod:`analysis.report`);
- ``settings.csv``: every evaluated setting of every domain (anchors and sampled), with its gain,
  CI, paired test, Holm-corrected p, verdict and the upstream-learned diagnostic;
- ``cross_domain.csv``: best band and best setting per domain next to the paper;
- ``knobs.csv``: each single-knob anchor against the band 30-40% anchor, paired by seed;
- ``fidelity.csv``: the four bands' gains at both model sizes, and their Spearman correlation;
- ``summary.md``: those tables, with the seed noise of each domain.

    python -m analysis.evidence --run-dir runs --out studies/results
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

from analysis.document import Block, Heading, Para, Table, render_markdown
from analysis.frame import StudyRecord, load_studies
from analysis.paper import PAPER_BAND_LABELS, band_anchors
from analysis.report import Analysis, analyze, write_report
from analysis.stats import NOISE, holm, paired_test
from ncaio import atomic_write_bytes
from ncaio.cli import OneLineParser, check_output_folder
from search.storage import StorageError

__all__ = ["DOMAINS", "fidelity_table", "knob_effects", "main", "settings_table",
           "spearman_by_domain", "trials_table"]

DOMAINS = ("code", "math", "web")


def settings_table(a: Analysis) -> pd.DataFrame:
    """Every setting of every study, anchors first, with the numbers a reader checks."""
    s = a.settings.copy()
    s["anchor"] = ~s["label"].astype(str).str.startswith("#")
    cols = ["domain", "label", "describe", "n_seeds", "gain_mean", "ci_low", "ci_high",
            "ppl_gain_mean", "test", "p_value", "p_holm", "verdict", "speedup_mean",
            "upstream_val_loss", "upstream_unigram_loss", "upstream_learned"]
    s = s.sort_values(["domain", "anchor", "gain_mean"], ascending=[True, False, False])
    return s[[c for c in cols if c in s]].reset_index(drop=True)


def trials_table(a: Analysis) -> pd.DataFrame:
    """Every trial of every study, finished or not, with why it stopped: nothing is left out."""
    t = a.trials.copy()
    note = pd.Series("", index=t.index, dtype=object)
    for col in ("fail_reason", "pruned_reason"):
        if col in t:
            note = note.where(t[col].isna() | (note != ""), t[col].astype(str).str[:90])
    if "retried" in t:
        note = note.where(~t["retried"].fillna(False).astype(bool), note + " (retried)")
    t["note"] = note
    cols = ["domain", "number", "kind", "describe", "state", "gain_pct", "duration_s", "note"]
    return t[[c for c in cols if c in t]].sort_values(["domain", "number"]).reset_index(drop=True)


def knob_effects(seeds: pd.DataFrame, base: str = "band-30-40", alpha: float = 0.05
                 ) -> pd.DataFrame:
    """Each single-knob anchor against the anchor it varies, paired by seed, per domain.

    ``delta`` is the knob anchor's gain minus the base anchor's gain on the same seed (both in %
    of that seed's scratch loss), so a positive delta means the knob removed some of the harm.
    ``p_holm`` corrects the paired tests for the number of knobs tried in the domain, and the
    verdict uses it. With several domains, rows ``all`` pool each knob's seed pairs over them
    (the same seed shares its NCA checkpoint across domains, so those pairs are not fully
    independent: read ``all`` as a summary, the per-domain rows as the tests).
    """
    named = seeds[~seeds["label"].astype(str).str.startswith("#")]
    bands = set(band_anchors(named)["label"])
    deltas = {}  # (domain, knob) -> per-seed delta, and the knob's mean gain
    for domain, d in named.groupby("domain", sort=True):
        ref = d[d["label"].str.contains(base, regex=False)].set_index("seed")["gain_pct"]
        for label, k in d[~d["label"].isin(bands)].groupby("label", sort=False):
            delta = (k.set_index("seed")["gain_pct"] - ref).dropna()
            if not delta.empty:
                deltas[(domain, label)] = (delta.to_numpy(), k["gain_pct"].mean())
    if len({d for d, _ in deltas}) > 1:
        for knob in dict.fromkeys(k for _, k in deltas):
            parts = [v for (_, k), v in deltas.items() if k == knob]
            deltas[("all", knob)] = (np.concatenate([p[0] for p in parts]),
                                     float(np.mean([p[1] for p in parts])))
    rows = []
    for (domain, label), (delta, gain) in deltas.items():
        t = paired_test(delta, alpha)
        rows.append({"domain": domain, "knob": label, "vs": base, "n": t.n, "gain": gain,
                     "delta": t.mean, "ci_low": t.ci_low, "ci_high": t.ci_high,
                     "p": t.p_value})
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    # Several knobs per domain: a verdict must survive the correction for picking among them.
    table["p_holm"] = np.nan
    for idx in table.groupby("domain").groups.values():
        table.loc[idx, "p_holm"] = holm(table.loc[idx, "p"].to_numpy())
    significant = table["p_holm"] < alpha
    table["verdict"] = np.where(significant & (table["delta"] > 0), "helps",
                                np.where(significant & (table["delta"] < 0), "hurts", NOISE))
    return table


def fidelity_table(small: Analysis, large: Analysis) -> pd.DataFrame:
    """The band anchors' mean gains at both model sizes, one row per (domain, band)."""
    def gains(a: Analysis, size: str) -> pd.DataFrame:
        s = band_anchors(a.settings)
        return s[["domain", "band", "gain_mean", "n_seeds"]].rename(
            columns={"gain_mean": f"gain_{size}", "n_seeds": f"seeds_{size}"})

    merged = gains(small, "small").merge(gains(large, "large"), on=["domain", "band"])
    order = {b: i for i, b in enumerate(PAPER_BAND_LABELS)}
    merged = merged.sort_values(["domain", "band"], key=lambda c: c.map(order) if c.name == "band"
                                else c)
    return merged.reset_index(drop=True)


def spearman_by_domain(fidelity: pd.DataFrame) -> pd.DataFrame:
    """Spearman rank correlation of the band gains between model sizes, per domain and pooled.

    With four bands per domain the correlation takes only a few values (a perfect one has
    two-sided p = 0.083), so the pooled row over all domains carries most of the information.
    """
    rows = []
    groups = [(d, g) for d, g in fidelity.groupby("domain", sort=True)] + [("all", fidelity)]
    for name, g in groups:
        if len(g) < 3:
            rows.append({"domain": name, "n": len(g), "spearman": np.nan, "p": np.nan})
            continue
        res = sps.spearmanr(g["gain_small"], g["gain_large"])
        rows.append({"domain": name, "n": len(g), "spearman": float(res.statistic),
                     "p": float(res.pvalue)})
    return pd.DataFrame(rows)


def _read(run_dir: Path, kind: str, domains: Sequence[str]) -> list[StudyRecord]:
    records = []
    for d in domains:
        journal = run_dir / f"{kind}-{d}" / "journal.log"
        if not journal.is_file():
            raise StorageError(f"no journal at {str(journal)!r}: run "
                               f"`python -m search.run --study {kind} --domain {d} ... "
                               f"--name {kind}-{d}` first")
        records += load_studies(journal)
    return records


def _summary(big: Analysis, trials: pd.DataFrame, settings: pd.DataFrame, knobs: pd.DataFrame,
             fidelity: pd.DataFrame, rho: pd.DataFrame, command: str) -> list[Block]:
    noise = big.noise.drop(columns="domain").round(4)  # one study per domain: its name says it
    return [
        Heading(text="Evidence: NCA pre-pre-training at proxy scale"),
        Para(text=f"Generated by `{command}` from the studies of `studies/evidence.toml` "
                  "(cpu-proxy) and `studies/fidelity.toml` (tiny). Gains are % of scratch's final "
                  "validation loss, paired by seed; positive is better than scratch."),
        Heading(text="Across domains, next to the paper", level=2),
        Table(frame=big.cross_domain),
        Heading(text="Every setting (anchors first, then sampled)", level=2),
        Table(frame=settings.round(4)),
        Heading(text="Every trial", level=2),
        Para(text="Anchors, sampled trials, pruned and infeasible proposals, and attempts lost "
                  "to a stopped driver (retried in the same work folder)."),
        Table(frame=trials.round(2)),
        Heading(text="Single knobs against the band 30-40% anchor (paired by seed)", level=2),
        Para(text="`delta`: the knob's gain minus the base anchor's gain on the same seed, in "
                  "points of %; positive means the knob removed harm."),
        Table(frame=knobs.round(4)),
        Heading(text="Seed noise", level=2),
        Para(text="Scratch loss over seeds, and the within-setting SD of per-seed gains (pooled)."),
        Table(frame=noise),
        Heading(text="Proxy fidelity: band gains at tiny vs cpu-proxy", level=2),
        Table(frame=fidelity.round(3)),
        Table(frame=rho.round(3)),
    ]


def _parser() -> OneLineParser:
    p = OneLineParser(prog="python -m analysis.evidence",
                                description=__doc__.split("\n")[0])
    p.add_argument("--run-dir", type=Path, default=Path("runs"),
                   help="folder holding evidence-<domain>/ and fidelity-<domain>/ (default runs)")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--domains", nargs="+", default=list(DOMAINS), choices=DOMAINS)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns 0, or 2 with a one-line error when a study is missing."""
    args = _parser().parse_args(argv)
    try:
        check_output_folder(args.out, "--out")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        large = _read(args.run_dir, "evidence", args.domains)
        small = _read(args.run_dir, "fidelity", args.domains)
    except StorageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from optuna.artifacts import FileSystemArtifactStore

    for record in large:
        artifacts = args.run_dir / record.name / "artifacts"
        store = FileSystemArtifactStore(str(artifacts)) if artifacts.is_dir() else None
        write_report(analyze([record]), args.out / str(record.domain), artifact_store=store,
                     source=str(args.run_dir / record.name / "journal.log"))
    big, tiny = analyze(large), analyze(small)
    settings = settings_table(big)
    knobs = knob_effects(big.seeds)
    fidelity = fidelity_table(tiny, big)
    rho = spearman_by_domain(fidelity)
    for name, frame in [("settings", settings), ("cross_domain", big.cross_domain),
                        ("knobs", knobs), ("fidelity", fidelity)]:
        atomic_write_bytes(args.out / f"{name}.csv", frame.to_csv(index=False).encode())
    command = "python -m analysis.evidence " + " ".join(
        ["--run-dir", str(args.run_dir), "--out", str(args.out)])
    text = render_markdown(_summary(big, trials_table(big), settings, knobs, fidelity, rho,
                                    command))
    atomic_write_bytes(args.out / "summary.md", text.encode())
    print(f"wrote {args.out / 'summary.md'} and {len(large)} domain reports")
    return 0


if __name__ == "__main__":
    sys.exit(main())
