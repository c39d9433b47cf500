"""Where NCA pre-pre-training helps: a regime map over recipe, downstream budget and NCA share.

Reads studies whose trials vary the recipe (``paper``, ``proxy``), the downstream budget and the
NCA budget (``studies/regime.toml``, ``studies/regime-long.toml``) and writes under ``--out``:

- ``cells.csv``: one row per cell (recipe x downstream tokens x NCA fraction) with the NCA
  effect (vs scratch of the same recipe and seed) and the net effect (vs the best scratch recipe
  at the same budget and seed), each with its 95% t-interval, paired test and Holm-corrected p
  over the cells, the scratch losses, and the transfer probe (NCA arm vs scratch at step 0);
- ``seeds.csv``: every seed of every cell;
- ``sign_flip.csv``: per recipe and NCA fraction, a line effect = a + b * log10(downstream
  tokens) fitted to the seeds, and the budget where it crosses zero with a bootstrap interval
  (seeds resampled within each budget) or why it is not identified (a slope indistinguishable
  from 0, or, with three or more budgets, a line that does not fit them);
- ``figures/``: heat maps of both effects (one panel per recipe) and the effects against
  log budget with the fitted lines; ``regime.md`` with all of it.

    python -m analysis.regime --storage runs/regime/journal.log \\
        --storage runs/regime-long/journal.log --out studies/results/regime
"""

from __future__ import annotations

import math
import sys
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis.document import Block, FigureBlock, Heading, Para, Table, render_markdown
from analysis.frame import load_studies, seeds_frame
from analysis.report import _atomic_write
from analysis.stats import holm, lack_of_fit_p, paired_test
from ncaio.cli import OneLineParser, check_output_folder
from search.storage import StorageError

__all__ = ["CELL_KEYS", "cell_table", "main", "regime_seeds", "sign_flips"]

CELL_KEYS = ("recipe", "domain_tokens", "nca_fraction")
_PROBES = ("residual_rms", "mean_direction_share", "token_r2", "grad_norm_embedding",
           "grad_norm_blocks")
_BOOTSTRAP = 2000
_ALPHA = 0.05


def _tokens(n: float) -> str:
    """``0.8M``, ``16k``: budgets as people say them."""
    return f"{n / 1e6:.1f}M" if n >= 1e5 else f"{n / 1e3:.0f}k"


def regime_seeds(seeds: pd.DataFrame) -> pd.DataFrame:
    """The seeds of NCA settings, with their cell: recipe, downstream tokens, NCA fraction."""
    d = seeds[seeds["source"].eq("nca") & seeds["gain_pct"].notna()].copy()
    d["recipe"] = d["recipe_name"].fillna("proxy (legacy)")
    d["domain_tokens"] = d["domain_tokens"].astype("Int64")
    d["nca_fraction"] = (d["nca_tokens"] / d["domain_tokens"].astype(float)).round(3)
    return d.reset_index(drop=True)


def cell_table(d: pd.DataFrame) -> pd.DataFrame:
    """One row per cell: both effects with intervals, tests and Holm over cells; probes."""
    rows = []
    for key, g in d.groupby(list(CELL_KEYS), sort=True):
        row = dict(zip(CELL_KEYS, key))
        row["n_seeds"] = len(g)
        for name, column in (("nca", "gain_pct"), ("net", "net_gain_pct")):
            t = paired_test(g[column].to_numpy(dtype=float))
            row.update({f"{name}_effect": t.mean, f"{name}_ci_low": t.ci_low,
                        f"{name}_ci_high": t.ci_high, f"{name}_p": t.p_value})
        row["scratch_loss"] = g["scratch_loss"].mean()
        row["best_scratch_loss"] = g["best_scratch_loss"].mean()
        row["best_scratch"] = "/".join(sorted(set(g["best_scratch_recipe"].dropna())))
        row["loss"] = g["loss"].mean()
        for arm in ("nca", "scratch"):
            for f in _PROBES:
                row[f"{arm}_{f}"] = g.get(f"{arm}_{f}", pd.Series(dtype=float)).mean()
        row["tokens_to_unigram"] = g.get("tokens_to_unigram", pd.Series(dtype=float)).mean()
        row["trials"] = ",".join(str(n) for n in sorted(set(g["number"])))
        rows.append(row)
    cells = pd.DataFrame(rows)
    if cells.empty:
        return cells
    for name in ("nca", "net"):
        cells.insert(cells.columns.get_loc(f"{name}_p") + 1, f"{name}_p_holm",
                     holm(cells[f"{name}_p"].to_numpy()))
    return cells


def sign_flips(d: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Per recipe and NCA fraction with two or more budgets: the fitted line of each effect
    against log10(downstream tokens) and the budget where it crosses zero.

    The interval comes from resampling seeds within each budget; a crossing is only reported
    when the slope's bootstrap interval excludes zero (otherwise the data cannot place it) and,
    with three or more budgets, the lack-of-fit test does not reject the line (``stats.
    lack_of_fit_p``: otherwise a bend would be reported as a crossing).
    """
    rows = []
    for (recipe, fraction), g in d.groupby(["recipe", "nca_fraction"], sort=True):
        budgets = sorted(g["domain_tokens"].dropna().unique())
        if len(budgets) < 2:
            continue
        x = np.log10(g["domain_tokens"].to_numpy(dtype=float))
        for name, column in (("nca", "gain_pct"), ("net", "net_gain_pct")):
            y = g[column].to_numpy(dtype=float)
            # A stream of draws per series: adding seeds to one never moves another's interval.
            rng = np.random.default_rng([seed, zlib.crc32(f"{recipe}/{fraction}/{name}".encode())])
            rows.append({"recipe": recipe, "nca_fraction": fraction, "effect": name,
                         "budgets": ", ".join(_tokens(b) for b in budgets),
                         **_fit_and_cross(x, y, rng)})
    return pd.DataFrame(rows)


def _fit_and_cross(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> dict[str, object]:
    slope, intercept = np.polyfit(x, y, 1)
    groups = [np.flatnonzero(x == v) for v in np.unique(x)]
    slopes, crossings = [], []
    for _ in range(_BOOTSTRAP):
        idx = np.concatenate([rng.choice(g, size=g.size) for g in groups])
        b, a = np.polyfit(x[idx], y[idx], 1)
        slopes.append(b)
        crossings.append(-a / b if b != 0 else np.nan)
    lo, hi = np.percentile(slopes, [2.5, 97.5])
    fit_p = lack_of_fit_p(x, y)
    out: dict[str, object] = {"slope_per_decade": slope, "slope_ci_low": lo,
                              "slope_ci_high": hi, "intercept": intercept,
                              "lack_of_fit_p": fit_p}
    why = ""
    if fit_p < _ALPHA:  # a bend (say, down then up) a line would turn into a false crossing
        why = f"not identified: a line does not fit the budgets (lack-of-fit p = {fit_p:.2g})"
    elif lo <= 0 <= hi:
        why = "not identified: the slope's interval includes 0"
    if why:
        out.update(flip_tokens=np.nan, flip_low=np.nan, flip_high=np.nan, flip=why)
        return out
    c_lo, c_hi = np.nanpercentile(crossings, [2.5, 97.5])
    flip = -intercept / slope
    text = f"{_tokens(10 ** flip)} tokens [{_tokens(10 ** c_lo)}, {_tokens(10 ** c_hi)}]"
    if not x.min() <= flip <= x.max():  # a line through two budgets says little beyond them
        text += (f", extrapolated {'below' if flip < x.min() else 'above'} the measured "
                 f"{_tokens(10 ** x.min())}-{_tokens(10 ** x.max())}")
    out.update(flip_tokens=10 ** flip, flip_low=10 ** c_lo, flip_high=10 ** c_hi, flip=text)
    return out


# -- figures -------------------------------------------------------------------------------------


def heat_maps(cells: pd.DataFrame, path: Path) -> Path:
    """Both effects by downstream budget (x) and NCA fraction (y), one panel per recipe."""
    recipes = sorted(cells["recipe"].unique())
    fig = Figure(figsize=(4.2 * len(recipes), 6.4), layout="constrained")
    axes = fig.subplots(2, len(recipes), squeeze=False)
    budgets = sorted(cells["domain_tokens"].unique())
    fractions = sorted(cells["nca_fraction"].unique())
    limit = max(1.0, float(np.nanmax(np.abs(cells[["nca_effect", "net_effect"]].to_numpy()))))
    for row, name in enumerate(("nca", "net")):
        for col, recipe in enumerate(recipes):
            ax = axes[row][col]
            grid = np.full((len(fractions), len(budgets)), np.nan)
            c = cells[cells["recipe"] == recipe]
            for _, r in c.iterrows():
                i, j = fractions.index(r["nca_fraction"]), budgets.index(r["domain_tokens"])
                grid[i, j] = r[f"{name}_effect"]
                dark = abs(r[f"{name}_effect"]) > 0.6 * limit
                ax.text(j, i, f"{r[f'{name}_effect']:+.1f}%\n[{r[f'{name}_ci_low']:+.1f}, "
                              f"{r[f'{name}_ci_high']:+.1f}]", ha="center", va="center",
                        fontsize=8, color="white" if dark else "black")
            ax.imshow(grid, cmap="RdBu", vmin=-limit, vmax=limit, origin="lower", aspect="auto")
            ax.set_xticks(range(len(budgets)), [_tokens(b) for b in budgets])
            ax.set_yticks(range(len(fractions)), [f"{f:.0%}" for f in fractions])
            ax.set_title(f"{'NCA' if name == 'nca' else 'net'} effect, recipe {recipe}",
                         fontsize=9)
            ax.set_xlabel("downstream tokens")
            ax.set_ylabel("NCA tokens / downstream")
    fig.savefig(path, dpi=110)
    return path


def budget_plot(d: pd.DataFrame, flips: pd.DataFrame, path: Path) -> Path:
    """Each effect against log10 downstream tokens: seeds as dots, fitted lines per series
    (dotted through the budgets' means where a line does not fit them)."""
    fig = Figure(figsize=(10, 4), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, (name, column) in zip(axes, (("nca", "gain_pct"), ("net", "net_gain_pct"))):
        for i, ((recipe, fraction), g) in enumerate(d.groupby(["recipe", "nca_fraction"])):
            color = f"C{i}"
            x = g["domain_tokens"].to_numpy(dtype=float)
            ax.scatter(x, g[column], s=14, color=color, label=f"{recipe}, NCA {fraction:.0%}")
            fit = flips[(flips["recipe"] == recipe) & (flips["nca_fraction"] == fraction)
                        & (flips["effect"] == name)] if len(flips) else flips
            if len(fit) and fit.iloc[0]["lack_of_fit_p"] < _ALPHA:  # no line: join the means
                means = g.groupby("domain_tokens")[column].mean()
                ax.plot(means.index.astype(float), means.to_numpy(), color=color, lw=1, ls=":")
            elif len(fit):
                f = fit.iloc[0]
                xs = np.geomspace(x.min(), x.max() * 4, 50)
                ax.plot(xs, f["intercept"] + f["slope_per_decade"] * np.log10(xs), color=color,
                        lw=1)
        ax.axhline(0, color="k", lw=0.6)
        ax.set_xscale("log")
        ax.set_xlabel("downstream tokens")
        ax.set_ylabel(f"{'NCA' if name == 'nca' else 'net'} effect, % lower loss")
        ax.legend(fontsize=7)
    fig.savefig(path, dpi=110)
    return path


# -- the report ----------------------------------------------------------------------------------


def _summary_table(cells: pd.DataFrame) -> pd.DataFrame:
    def effect(r: pd.Series, name: str) -> str:
        lo, hi = r[f"{name}_ci_low"], r[f"{name}_ci_high"]
        interval = "" if math.isnan(lo) else f" [{lo:+.1f}, {hi:+.1f}]"
        return f"{r[f'{name}_effect']:+.2f}{interval} (Holm p {r[f'{name}_p_holm']:.3g})"

    return pd.DataFrame({
        "recipe": cells["recipe"],
        "downstream": cells["domain_tokens"].astype(float).map(_tokens),
        "NCA share": cells["nca_fraction"].map("{:.0%}".format),
        "seeds": cells["n_seeds"],
        "NCA effect % [95% CI]": [effect(r, "nca") for _, r in cells.iterrows()],
        "net effect % [95% CI]": [effect(r, "net") for _, r in cells.iterrows()],
        "scratch loss": cells["scratch_loss"].round(4),
        "best scratch": cells["best_scratch"],
        "residual RMS nca/scratch": [f"{a:.3f} / {b:.3f}" for a, b in
                                     zip(cells["nca_residual_rms"], cells["scratch_residual_rms"])],
        "token R² nca/scratch": [f"{a:.2f} / {b:.2f}" for a, b in
                                 zip(cells["nca_token_r2"], cells["scratch_token_r2"])],
    })


def _blocks(cells: pd.DataFrame, flips: pd.DataFrame, figures: list[FigureBlock],
            command: str) -> list[Block]:
    return [
        Heading(text="Regime map: where NCA pre-pre-training helps"),
        Para(text=f"Regenerate with `{command}`. **NCA effect**: % lower final validation loss "
                  "than scratch with the same downstream recipe and seed (what the NCA stage "
                  "did). **Net effect**: % lower than the best scratch recipe (paper, proxy or "
                  "matched) at the same budget and seed (what a user can bank). Intervals are "
                  "95% t-intervals over seeds; p-values are paired tests, Holm-corrected over "
                  "the cells."),
        Table(frame=_summary_table(cells)),
        *figures,
        Heading(text="Where the sign flips", level=2),
        Para(text="A line effect = a + b log10(downstream tokens) per recipe and NCA share, "
                  "fitted to the seeds; the crossing's interval resamples seeds within each "
                  "budget. With two or three budgets this is a rough extrapolation, not a "
                  "measurement. With three or more, `lack_of_fit_p` tests whether a line fits "
                  "at all (the budgets' means around it against the seeds' spread within "
                  "each); below 0.05 no crossing is given."),
        Table(frame=flips.round(3) if len(flips) else pd.DataFrame({"note": [
            "fewer than two budgets per recipe and NCA share: no line to fit"]})),
    ]


def _parser() -> OneLineParser:
    p = OneLineParser(prog="python -m analysis.regime",
                                description=__doc__.split("\n")[0])
    p.add_argument("--storage", action="append", required=True,
                   help="journal file or database URL; repeat for several")
    p.add_argument("--study", action="append", help="study names (default: all)")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns 0, or 2 with one line when a storage cannot be read or holds no
    finished NCA trial."""
    args = _parser().parse_args(argv)
    try:
        check_output_folder(args.out, "--out")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        records = [r for s in args.storage for r in load_studies(s, args.study)]
    except StorageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    d = regime_seeds(seeds_frame(records))
    if d.empty:
        print(f"error: no finished NCA trial in {', '.join(args.storage)}", file=sys.stderr)
        return 2
    cells, flips = cell_table(d), sign_flips(d)
    figures_dir = args.out / "figures"
    figures_dir.mkdir(parents=True, exist_ok=True)
    figures = [
        FigureBlock(caption="Both effects by downstream budget and NCA share, per recipe",
                    path=str(heat_maps(cells, figures_dir / "regime_heat.png")
                             .relative_to(args.out))),
        FigureBlock(caption="Effects against downstream budget, seeds and fitted lines",
                    path=str(budget_plot(d, flips, figures_dir / "regime_budget.png")
                             .relative_to(args.out))),
    ]
    for name, frame in (("cells", cells), ("seeds", d), ("sign_flip", flips)):
        _atomic_write(args.out / f"{name}.csv", frame.to_csv(index=False).encode())
    command = "python -m analysis.regime " + " ".join(
        f"--storage {s}" for s in args.storage) + f" --out {args.out}"
    _atomic_write(args.out / "regime.md",
                  render_markdown(_blocks(cells, flips, figures, command)).encode())
    print(f"wrote {args.out / 'regime.md'}: {len(cells)} cells, {len(d)} seeds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
