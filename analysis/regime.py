"""Where NCA pre-pre-training helps: a regime map over recipe, downstream budget and NCA share.

Reads studies whose trials vary the recipe (``paper``, ``proxy``), the downstream budget and the
NCA budget (``studies/regime.toml``, ``studies/regime-long.toml``) and writes under ``--out``:

- ``cells.csv``: one row per cell (recipe x downstream tokens x NCA fraction) with the NCA
  effect (vs scratch of the same recipe and seed) and the net effect (vs the best scratch recipe
  at the same budget and seed), each with its 95% t-interval, paired test and Holm-corrected p
  over the cells, the scratch losses, and the transfer probe (NCA arm vs scratch at step 0);
- ``seeds.csv``: every seed of every cell;
- ``sign_flip.csv``: per recipe and NCA fraction, a line effect = a + b * log10(downstream
  tokens) fitted to the seeds (the slope's t-interval), and the budget where it crosses zero
  with Fieller's interval, or why it is not identified (a slope indistinguishable from 0, or,
  with three or more budgets, a line that does not fit them);
- ``figures/``: heat maps of both effects (one panel per recipe) and the effects against
  log budget with the fitted lines; ``regime.md`` with all of it.

    python -m analysis.regime --storage runs/regime/journal.log \\
        --storage runs/regime-long/journal.log --out studies/results/regime
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from analysis.document import Block, FigureBlock, Heading, Para, Table, render_markdown
from analysis.frame import load_for_command, seeds_frame
from analysis.stats import holm, lack_of_fit_p, line_fit, paired_test
from ncaio import atomic_write_bytes
from ncaio.cli import OneLineParser
from search.storage import StorageError

__all__ = ["CELL_KEYS", "cell_table", "main", "regime_seeds", "sign_flips"]

CELL_KEYS = ("recipe", "domain_tokens", "nca_fraction")
_PROBES = ("residual_rms", "mean_direction_share", "token_r2", "grad_norm_embedding",
           "grad_norm_blocks")
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
        row = dict(zip(CELL_KEYS, key, strict=True))
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


def sign_flips(d: pd.DataFrame) -> pd.DataFrame:
    """Per recipe and NCA fraction with two or more budgets: the fitted line of each effect
    against log10(downstream tokens) and the budget where it crosses zero.

    The slope's interval is the least-squares t-interval and the crossing's Fieller's interval
    (``stats.line_fit``: the stated coverage at 3 seeds per budget, where a bootstrap over seeds
    is too narrow). A crossing is only reported when the slope's interval excludes zero
    (otherwise the data cannot place it) and, with three or more budgets, the lack-of-fit test
    does not reject the line (``stats.lack_of_fit_p``: otherwise a bend would be reported as a
    crossing).
    """
    rows = []
    for (recipe, fraction), g in d.groupby(["recipe", "nca_fraction"], sort=True):
        budgets = sorted(g["domain_tokens"].dropna().unique())
        if len(budgets) < 2:
            continue
        x = np.log10(g["domain_tokens"].to_numpy(dtype=float))
        for name, column in (("nca", "gain_pct"), ("net", "net_gain_pct")):
            rows.append({"recipe": recipe, "nca_fraction": fraction, "effect": name,
                         "budgets": ", ".join(_tokens(b) for b in budgets),
                         **_fit_and_cross(x, g[column].to_numpy(dtype=float))})
    return pd.DataFrame(rows)


def _fit_and_cross(x: np.ndarray, y: np.ndarray) -> dict[str, object]:
    fit = line_fit(x, y)
    lo, hi = fit.slope_ci
    fit_p = lack_of_fit_p(x, y)
    out: dict[str, object] = {"slope_per_decade": fit.slope, "slope_ci_low": lo,
                              "slope_ci_high": hi, "intercept": fit.intercept,
                              "lack_of_fit_p": fit_p}
    why = ""
    if fit_p < _ALPHA:  # a bend (say, down then up) a line would turn into a false crossing
        why = f"not identified: a line does not fit the budgets (lack-of-fit p = {fit_p:.2g})"
    elif lo <= 0 <= hi:
        why = "not identified: the slope's interval includes 0"
    if why:
        out.update(flip_tokens=np.nan, flip_low=np.nan, flip_high=np.nan, flip=why)
        return out
    flip, (c_lo, c_hi) = fit.crossing, fit.crossing_ci
    text = f"{_tokens(10 ** flip)} tokens [{_tokens(10 ** c_lo)}, {_tokens(10 ** c_hi)}]"
    if not x.min() <= flip <= x.max():  # a line through two budgets says little beyond them
        text += (f", extrapolated {'below' if flip < x.min() else 'above'} the measured "
                 f"{_tokens(10 ** x.min())}-{_tokens(10 ** x.max())}")
    out.update(flip_tokens=10 ** flip, flip_low=10 ** c_lo, flip_high=10 ** c_hi, flip=text)
    return out


# -- figures -------------------------------------------------------------------------------------


def heat_maps(cells: pd.DataFrame, path: Path) -> Figure:
    """Both effects by downstream budget (x) and NCA fraction (y), one panel per recipe, each
    recipe on a colour scale of its own (the proxy recipe's -38% would wash out every paper
    cell); a cell that was not run is hatched and says so, not painted as zero."""
    recipes = sorted(cells["recipe"].unique())
    fig = Figure(figsize=(4.6 * len(recipes), 6.8), layout="constrained")
    axes = fig.subplots(2, len(recipes), squeeze=False)
    budgets = sorted(cells["domain_tokens"].unique())
    fractions = sorted(cells["nca_fraction"].unique())
    for row, name in enumerate(("nca", "net")):
        for col, recipe in enumerate(recipes):
            ax = axes[row][col]
            c = cells[cells["recipe"] == recipe]
            limit = max(0.5, float(np.nanmax(np.abs(c[f"{name}_effect"].to_numpy()))))
            grid = np.full((len(fractions), len(budgets)), np.nan)
            for _, r in c.iterrows():
                i, j = fractions.index(r["nca_fraction"]), budgets.index(r["domain_tokens"])
                grid[i, j] = r[f"{name}_effect"]
                dark = abs(r[f"{name}_effect"]) > 0.6 * limit
                ax.text(j, i, f"{r[f'{name}_effect']:+.1f}%\n[{r[f'{name}_ci_low']:+.1f}, "
                              f"{r[f'{name}_ci_high']:+.1f}]", ha="center", va="center",
                        fontsize=8, color="white" if dark else "black")
            ax.set_facecolor("0.85")
            image = ax.imshow(np.ma.masked_invalid(grid), cmap="RdBu", vmin=-limit, vmax=limit,
                              origin="lower", aspect="auto")
            for i, j in zip(*np.nonzero(np.isnan(grid)), strict=True):
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="//",
                                       edgecolor="0.6", lw=0))
                ax.text(j, i, "not run", ha="center", va="center", fontsize=8, color="0.35")
            fig.colorbar(image, ax=ax, shrink=0.8, label="% lower loss")
            ax.set_xticks(range(len(budgets)), [_tokens(b) for b in budgets])
            ax.set_yticks(range(len(fractions)), [f"{f:.0%}" for f in fractions])
            ax.set_title(f"{'NCA' if name == 'nca' else 'net'} effect, recipe {recipe}",
                         fontsize=9)
            ax.set_xlabel("downstream tokens")
            ax.set_ylabel("NCA tokens / downstream")
    fig.savefig(path, dpi=110)
    return fig


def budget_plot(d: pd.DataFrame, flips: pd.DataFrame, path: Path) -> Figure:
    """Each effect against log10 downstream tokens: seeds as dots, fitted lines per series over
    the measured budgets only (dotted through the budgets' means where a line does not fit
    them); where a crossing lies beyond them, a dashed grey line marks the extrapolation to it."""
    fig = Figure(figsize=(10, 4), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, (name, column) in zip(axes, (("nca", "gain_pct"), ("net", "net_gain_pct")),
                                  strict=True):
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
                _fitted_line(ax, fit.iloc[0], x, color)
        ax.axhline(0, color="k", lw=0.6)
        ax.set_xscale("log")
        ax.set_xlabel("downstream tokens")
        ax.set_ylabel(f"{'NCA' if name == 'nca' else 'net'} effect, % lower loss")
        ax.legend(fontsize=7)
    fig.savefig(path, dpi=110)
    return fig


def _fitted_line(ax: Axes, f: pd.Series, x: np.ndarray, color: str) -> None:
    """The fit over the measured budgets; a dashed grey extension to an extrapolated crossing."""
    def line(xs: np.ndarray) -> np.ndarray:
        return np.asarray(f["intercept"] + f["slope_per_decade"] * np.log10(xs))

    xs = np.geomspace(x.min(), x.max(), 50)
    ax.plot(xs, line(xs), color=color, lw=1)
    flip = f["flip_tokens"]
    if np.isfinite(flip) and not x.min() <= flip <= x.max():
        edge = x.min() if flip < x.min() else x.max()
        ext = np.geomspace(min(flip, edge), max(flip, edge), 20)
        labels = [drawn.get_label() for drawn in ax.get_lines()]
        ax.plot(ext, line(ext), color="0.5", lw=1, ls="--", label=(
            "_extrapolated" if "extrapolated to a crossing" in labels
            else "extrapolated to a crossing"))


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
                                     zip(cells["nca_residual_rms"], cells["scratch_residual_rms"],
                                         strict=True)],
        "token R² nca/scratch": [f"{a:.2f} / {b:.2f}" for a, b in
                                 zip(cells["nca_token_r2"], cells["scratch_token_r2"],
                                     strict=True)],
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
                  "fitted to the seeds by least squares: the slope with its t-interval, the "
                  "crossing with Fieller's interval (both of stated 95% coverage at 3 seeds per "
                  "budget). With two or three budgets this is a rough extrapolation, not a "
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
        records = load_for_command(args.storage, args.out, args.study)
    except (ValueError, StorageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    d = regime_seeds(seeds_frame(records))
    if d.empty:
        print(f"error: no finished NCA trial in {', '.join(args.storage)}", file=sys.stderr)
        return 2
    cells, flips = cell_table(d), sign_flips(d)
    figures_dir = args.out / "figures"
    figures_dir.mkdir(parents=True, exist_ok=True)
    heat_maps(cells, figures_dir / "regime_heat.png")
    budget_plot(d, flips, figures_dir / "regime_budget.png")
    figures = [
        FigureBlock(caption="Both effects by downstream budget and NCA share, per recipe "
                            "(each on its own colour scale; hatched: not run)",
                    path="figures/regime_heat.png"),
        FigureBlock(caption="Effects against downstream budget: seeds, and the fitted lines "
                            "over the measured budgets (dashed grey: extrapolated to a crossing)",
                    path="figures/regime_budget.png"),
    ]
    for name, frame in (("cells", cells), ("seeds", d), ("sign_flip", flips)):
        atomic_write_bytes(args.out / f"{name}.csv", frame.to_csv(index=False).encode())
    command = "python -m analysis.regime " + " ".join(
        f"--storage {s}" for s in args.storage) + f" --out {args.out}"
    atomic_write_bytes(args.out / "regime.md",
                  render_markdown(_blocks(cells, flips, figures, command)).encode())
    print(f"wrote {args.out / 'regime.md'}: {len(cells)} cells, {len(d)} seeds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
