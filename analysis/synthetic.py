"""Synthetic studies that follow the trial record of docs/interfaces.md §4.

These are made-up numbers, not results: they exist so the report, its benchmark and the dashboard
tests can run before (and independently of) a real search. Every trial records the same user
attributes a real trial does, with a simple generative model behind them: a per-domain preferred
complexity band (like the paper's: code best at 30-40%, math and web at 50%+), seed noise on the
scratch baseline and on the transfer, and power-law validation curves pinned to the final losses.

A multi-domain study (``domains=[...]``) records version-3 trials: each trial is scored on every
domain against that domain's scratch runs, two per seed (the matched recipe and ``paper``), so
its net effect differs from its NCA effect.

Example:
    >>> study = create_synthetic_study(None, "demo", domain="code", n_search=4)
    >>> len(study.trials), study.trials[1].user_attrs["kind"]
    (10, 'anchor:paper')
    >>> multi = create_synthetic_study(None, "multi", domains=["code", "math"], n_search=2,
    ...                                objectives=["net-effect:code", "net-effect:math"])
    >>> multi.trials[1].user_attrs["kind"], multi.trials[1].user_attrs["domains"]
    ('anchor:band-20-30', ['code', 'math'])
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from search.record import (
    DOMAINS_RECORD_VERSION,
    RECORD_VERSION,
    DomainRecord,
    SeedRecord,
    TrialRecord,
    objective_direction,
    split_objective,
)

__all__ = ["PAPER_BANDS", "SEARCH_SPACE", "add_with_artifacts", "create_synthetic_study",
           "synthetic_best_band", "synthetic_trial", "synthetic_trials"]

PAPER_BANDS: dict[str, tuple[float, float]] = {
    "band-20-30": (0.2, 0.3),
    "band-30-40": (0.3, 0.4),
    "band-40-50": (0.4, 0.5),
    "band-50-100": (0.5, 1.0),
}
"""The paper's four complexity bands (gzip ratio, lower and upper) keyed by anchor name: the
bands of ``nca.PAPER_BANDS``, which analysis does not import at module level (tests pin them)."""

SEARCH_SPACE: dict[str, optuna.distributions.BaseDistribution] = {
    "source": CategoricalDistribution(["nca", "none"]),
    "band_lower": FloatDistribution(0.1, 0.7),
    "band_width": FloatDistribution(0.05, 0.5),
    "alphabet": IntDistribution(2, 15),
    "nca_tokens": IntDistribution(100_000, 10_000_000, log=True),
    "ppt_lr": FloatDistribution(1e-4, 1e-2, log=True),
    "lr": FloatDistribution(1e-4, 1e-2, log=True),
    "transfer": CategoricalDistribution(["full", "attention-only"]),
}
"""The synthetic search space, with the search's parameter names (``source = none`` is
scratch; the band is ``band_lower`` plus ``band_width``)."""


_PAPER_BAND = {"code": "band-30-40", "math": "band-50-100", "web": "band-50-100"}
_PREFERRED_BAND = {"code": 0.35, "math": 0.62, "web": 0.65}
_SCRATCH_LOSS = {"code": 1.47, "math": 1.30, "web": 1.62}
_ARTIFACTS = {"curve.png": "image/png", "nca_sample.gif": "image/gif",
              "config.json": "application/json"}
_TOKENS_PER_EVAL = 100_000
_DOMAIN_TOKENS = 2_000_000
_N_EVALS = 20


def _curve(final: float, start: float, rng: np.random.Generator) -> list[list[float]]:
    """A decreasing power-law validation curve that ends exactly at ``final``."""
    tokens = np.arange(1, _N_EVALS + 1, dtype=np.float64) * _TOKENS_PER_EVAL
    shape = tokens**-0.6
    loss = final + (start - final) * (shape - shape[-1]) / (shape[0] - shape[-1])
    loss[:-1] += rng.normal(0.0, 0.003, _N_EVALS - 1)
    return [[int(t), float(v)] for t, v in zip(tokens, loss, strict=True)]


def _speedup(curve: list[list[float]], target: float) -> float | None:
    """Total tokens / tokens at which ``curve`` first reaches ``target`` (None if never)."""
    tokens = np.array([p[0] for p in curve])
    loss = np.array([p[1] for p in curve])
    reached = np.flatnonzero(loss <= target)
    return None if reached.size == 0 else float(tokens[-1] / tokens[reached[0]])


def _true_gain_pct(domain: str, setting: dict[str, Any]) -> float:
    """The synthetic effect: best near the domain's preferred band, mild alphabet and lr terms."""
    if setting["source"] == "none":
        return 0.0
    lo, hi = setting["band"]
    band_term = 2.5 - 60.0 * (0.5 * (lo + min(hi, 0.8)) - _PREFERRED_BAND[domain]) ** 2
    alphabet_term = -0.08 * abs(setting["alphabet"] - 8)
    lr_term = -0.8 * abs(math.log10(setting["lr"] / 1e-3))
    return band_term + alphabet_term + lr_term


def synthetic_best_band(domain: str) -> str:
    """The anchor (a key of :data:`PAPER_BANDS`) with the highest true effect on ``domain``: what
    a report on enough seeds must find."""
    return max(PAPER_BANDS, key=lambda name: _true_gain_pct(
        domain, _setting(_anchor_params(PAPER_BANDS[name]))))


def _setting(params: dict[str, Any]) -> dict[str, Any]:
    """The search's ``setting`` (every knob, fixed ones included) from the parameters."""
    lo = params.get("band_lower", 0.5)
    return {"source": params.get("source", "nca"), "alphabet": params.get("alphabet", 10),
            "band": [lo, min(1.0, lo + params.get("band_width", 0.5))], "band_kind": "absolute",
            "nca_tokens": params.get("nca_tokens", 0), "ppt_lr": params.get("ppt_lr", 0.0),
            "lr": params.get("lr", 1e-3), "transfer": params.get("transfer", "full")}


def _seed_records(domain: str, setting: dict[str, Any], seeds: list[int],
                  rng: np.random.Generator, recipes: tuple[str, ...] = ("matched",)
                  ) -> tuple[SeedRecord, ...]:
    """Per-seed results: losses, gains, speedups and curves, against the scratch run of each
    recipe (the first is the matched one; the others' losses are a few % off it)."""
    is_scratch = setting["source"] == "none"
    true_gain = _true_gain_pct(domain, setting)
    scratch = [_SCRATCH_LOSS[domain] * (1 + 0.03 * np.random.default_rng([s, 7]).standard_normal())
               for s in seeds]
    gains = [0.0 if is_scratch else true_gain + rng.normal(0.0, 1.0) for _ in seeds]
    losses = [sc * (1 - g / 100) for sc, g in zip(scratch, gains, strict=True)]
    scratch_curves = [_curve(sc, 5.55, np.random.default_rng([s, 8]))
                      for sc, s in zip(scratch, seeds, strict=True)]
    curves = scratch_curves if is_scratch else [_curve(lo, 5.2, rng) for lo in losses]
    runs = [_scratch_runs(sc, domain, s, recipes) for sc, s in zip(scratch, seeds, strict=True)]
    return tuple(SeedRecord(
        seed=s, loss=float(lo), scratch_loss=float(sc), gain_pct=float(g),
        net_gain_pct=_net_gain(float(lo), float(g), by_recipe),
        best_scratch_loss=min(by_recipe.values()),
        best_scratch_recipe=min(by_recipe, key=by_recipe.__getitem__),
        scratch_losses=by_recipe, speedup=_speedup(c, sc),
        curve=tuple((int(t), v) for t, v in c), scratch_curve=tuple((int(t), v) for t, v in scc),
        probe=None) for s, lo, sc, g, c, scc, by_recipe in zip(seeds, losses, scratch, gains,
                                                               curves, scratch_curves, runs,
                                                               strict=True))


def _scratch_runs(matched: float, domain: str, seed: int, recipes: tuple[str, ...]
                  ) -> dict[str, float]:
    """Final loss of each scratch recipe on ``domain`` and ``seed``: the same in every trial of
    the study."""
    runs = {recipes[0]: float(matched)}
    where = sorted(_PREFERRED_BAND).index(domain)
    for i, name in enumerate(recipes[1:]):
        noise = np.random.default_rng([seed, 9, i, where]).standard_normal()
        runs[name] = float(matched * (1 + 0.02 * noise))
    return runs


def _net_gain(loss: float, gain: float, by_recipe: dict[str, float]) -> float:
    """% lower loss than the best scratch run; the NCA effect itself when the matched run is
    the best (exactly, as a one-recipe trial records it)."""
    best = min(by_recipe.values())
    if best == next(iter(by_recipe.values())):
        return gain
    return 100.0 * (best - loss) / best


def _domain_names(domain: str | None, domains: Sequence[str]) -> tuple[str, ...]:
    """``(domain,)`` or ``domains``, checked: exactly one of them, every name synthetic."""
    if bool(domain) == bool(domains):
        raise ValueError(f"give domain or domains; got domain={domain!r}, domains={domains!r}")
    if len(domains) == 1:
        raise ValueError(f"domains {list(domains)!r}: a multi-domain study needs two or more; "
                         "give domain for one")
    names = tuple(domains) or (str(domain),)
    bad = [d for d in names if d not in _PREFERRED_BAND]
    if bad or len(set(names)) != len(names):
        raise ValueError(f"domains {list(names)!r}: each once, from {sorted(_PREFERRED_BAND)}")
    return names


def _check_objectives(objectives: Sequence[str], domains: tuple[str, ...]) -> None:
    """Objective names as a study on ``domains`` may use them (``search.record``)."""
    try:
        parsed = [split_objective(o) for o in objectives]
    except ValueError as e:
        raise ValueError(f"objectives {list(objectives)!r} invalid: {e}") from None
    wrong = [o for o, (_, d, mean) in zip(objectives, parsed, strict=True)
             if (d and d not in domains) or ((d or mean) and len(domains) == 1)]
    if wrong or not objectives:
        raise ValueError(f"objectives {list(objectives)!r} invalid for domains {list(domains)}")


def synthetic_trial(
    *,
    domain: str | None = None,
    params: dict[str, Any],
    kind: str,
    seeds: list[int],
    rng: np.random.Generator,
    objectives: Sequence[str] = ("loss",),
    domains: Sequence[str] = (),
) -> optuna.trial.FrozenTrial:
    """One completed trial whose user attributes are a ``search.record.TrialRecord``.

    Args:
        domain: ``code``, ``math`` or ``web`` (a one-domain trial).
        params: Values for keys of :data:`SEARCH_SPACE` (those the trial sampled).
        kind: ``search`` or ``anchor:<name>``.
        seeds: Seeds evaluated; the scratch baseline of seed ``s`` is the same in every trial.
        rng: Source of the transfer noise.
        objectives: Objective names (``search.record``), in the study's order.
        domains: Instead of ``domain``: a multi-domain trial (version-3 record) on these.

    Returns:
        A frozen trial ready for ``study.add_trial``.
    """
    names = _domain_names(domain, domains)
    setting = _setting(params)
    recipes = ("matched", "paper") if domains else ("matched",)
    per_domain = {d: _seed_records(d, setting, seeds, rng, recipes) for d in names}
    seed_records = per_domain[names[0]]
    n, (lo, hi) = setting["alphabet"], setting["band"]
    ppt_val = 4.0 + 4.0 * rng.uniform() + 0.3 * (lo - 0.3)
    unigram = ppt_val + rng.uniform(-0.8, 1.5)
    is_scratch = setting["source"] == "none"
    nca_tokens = 0 if is_scratch else (setting["nca_tokens"] or 1_000_000)
    record = TrialRecord(
        seeds=seed_records, source=setting["source"], band=(lo, hi), alphabet=n, recipe=None,
        nca_tokens=nca_tokens, domain_tokens=_DOMAIN_TOKENS,
        tokens=nca_tokens + _DOMAIN_TOKENS * len(names), bpb=_bpb(seed_records),
        complexity_mean=None if is_scratch else lo + (min(hi, 0.9) - lo) * rng.uniform(),
        acceptance_rate=None if is_scratch else float(rng.uniform(0.05, 0.9)),
        upstream=None if is_scratch else {
            "val_loss": ppt_val, "unigram_loss": unigram, "uniform_loss": math.log(n**4 + 2),
            "accuracy": float(rng.uniform(0.05, 0.6)), "learned": bool(ppt_val < unigram)},
        wall_s=float(rng.uniform(60, 900)), device="cpu",
        version=DOMAINS_RECORD_VERSION if domains else RECORD_VERSION,
        domains={d: DomainRecord(seeds=r, bpb=_bpb(r), recipe=None) for d, r in per_domain.items()}
        if domains else {},
    )
    attrs = {**record.to_attrs(), "kind": kind, "setting": json.dumps(setting, sort_keys=True),
             "describe": "scratch" if is_scratch else f"nca band={lo:.2f}-{hi:.2f} n={n}"}
    return optuna.trial.create_trial(
        values=[record.objective(o) for o in objectives], params=params,
        distributions={k: SEARCH_SPACE[k] for k in params}, user_attrs=attrs,
    )


def _bpb(seeds: tuple[SeedRecord, ...]) -> float:
    return float(np.mean([r.loss for r in seeds])) / math.log(2)


def _random_params(rng: np.random.Generator) -> dict[str, Any]:
    return {
        "source": "nca", "band_lower": float(rng.uniform(0.1, 0.7)),
        "band_width": float(rng.uniform(0.05, 0.5)), "alphabet": int(rng.integers(2, 16)),
        "nca_tokens": int(np.exp(rng.uniform(np.log(1e5), np.log(1e7)))),
        "ppt_lr": float(np.exp(rng.uniform(np.log(1e-4), np.log(1e-2)))),
        "lr": float(np.exp(rng.uniform(np.log(3e-4), np.log(3e-3)))),
        "transfer": str(rng.choice(["full", "attention-only"])),
    }


def _anchor_params(band: tuple[float, float]) -> dict[str, Any]:
    return {"source": "nca", "band_lower": band[0], "band_width": band[1] - band[0],
            "alphabet": 10, "nca_tokens": 1_000_000, "ppt_lr": 1e-3, "lr": 1e-3,
            "transfer": "full"}


def synthetic_trials(
    *,
    domain: str | None = None,
    n_search: int,
    seed: int,
    anchor_seeds: tuple[int, ...] = (0, 1, 2),
    search_seeds: tuple[int, ...] = (0,),
    objectives: Sequence[str] = ("loss",),
    domains: Sequence[str] = (),
) -> list[optuna.trial.FrozenTrial]:
    """Scratch, the paper's setting, the four paper bands at n = 10, then ``n_search`` searched.

    A multi-domain study has no ``paper`` anchor (the paper's best band differs by domain): its
    four band anchors are the paper's settings.

    Args:
        domain: ``code``, ``math`` or ``web``.
        n_search: Number of randomly sampled ``search`` trials.
        seed: Seed of the synthetic noise.
        anchor_seeds: Seeds evaluated by each anchor.
        search_seeds: Seeds evaluated by each searched trial.
        objectives: Objective names (``search.record``): ``NAME:DOMAIN`` and ``mean-NAME`` only
            with ``domains``.
        domains: Instead of ``domain``: several domains, each trial trained on every one.
    """
    names = _domain_names(domain, domains)
    _check_objectives(objectives, names)
    rng = np.random.default_rng(seed)
    anchors = [("anchor:scratch", {"source": "none", "lr": 1e-3, "transfer": "full"})]
    if not domains:
        anchors.append(("anchor:paper", _anchor_params(PAPER_BANDS[_PAPER_BAND[names[0]]])))
    anchors += [(f"anchor:{name}", _anchor_params(band)) for name, band in PAPER_BANDS.items()]
    trials = [synthetic_trial(domain=domain, domains=domains, params=p, kind=k,
                              seeds=list(anchor_seeds), rng=rng, objectives=objectives)
              for k, p in anchors]
    trials += [synthetic_trial(domain=domain, domains=domains, params=_random_params(rng),
                               kind="search", seeds=list(search_seeds), rng=rng,
                               objectives=objectives)
               for _ in range(n_search)]
    return trials


def create_synthetic_study(
    storage: str | optuna.storages.BaseStorage | None,
    name: str,
    *,
    domain: str | None = None,
    n_search: int,
    seed: int = 0,
    objectives: Sequence[str] = ("loss",),
    anchor_seeds: tuple[int, ...] = (0, 1, 2),
    search_seeds: tuple[int, ...] = (0,),
    domains: Sequence[str] = (),
    artifact_store: Any | None = None,
    workdir: Path | None = None,
) -> optuna.Study:
    """A study shaped like one ``search.run`` makes, filled by :func:`synthetic_trials`.

    Args:
        storage: Storage or URL for ``optuna.create_study`` (None: in memory).
        name: Study name.
        domain: ``code``, ``math`` or ``web``.
        n_search: Searched trials on top of the anchors.
        seed: Seed of the synthetic noise.
        objectives: Objective names (``("loss",)`` like the search's default); with
            ``domains`` also ``NAME:DOMAIN`` and ``mean-NAME``.
        anchor_seeds: Seeds evaluated by each anchor.
        search_seeds: Seeds evaluated by each searched trial.
        domains: Instead of ``domain``: a multi-domain study on these, in order.
        artifact_store: When given, each trial also gets the three artifacts a live trial
            uploads (see :func:`add_with_artifacts`); slower, meant for small studies.
        workdir: Scratch directory for those files (required with ``artifact_store``).
    """
    trials = synthetic_trials(domain=domain, domains=domains, n_search=n_search, seed=seed,
                              anchor_seeds=anchor_seeds, search_seeds=search_seeds,
                              objectives=objectives)
    names = _domain_names(domain, domains)
    directions: list[Any] = [objective_direction(o) for o in objectives]
    study = optuna.create_study(storage=storage, study_name=name, directions=directions)
    study.set_user_attr("domain", names[0])
    if domains:
        study.set_user_attr("domains", list(names))
    study.set_user_attr("preset", "synthetic")
    study.set_user_attr("objectives", list(objectives))
    if domains:  # as the search names them; one-domain studies keep Optuna's values_0, ...
        with warnings.catch_warnings():  # experimental since Optuna 3.2
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(objectives))
    study.set_user_attr("config", json.dumps({"synthetic": True, "domain": names[0]}
                                             | ({"domains": list(names)} if domains else {})))
    if artifact_store is None:
        study.add_trials(trials)
    elif workdir is None:
        raise ValueError("workdir is required when artifact_store is given; got None")
    else:
        add_with_artifacts(study, trials, artifact_store=artifact_store, workdir=workdir)
    return study


def _ca_gif(path: Path, alphabet: int, seed: int, n_frames: int = 12, size: int = 16) -> None:
    """A made-up cellular automaton (random totalistic rule, torus) written as a GIF."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    table = rng.integers(0, alphabet, size=(alphabet, 4 * alphabet))
    grid = rng.integers(0, alphabet, size=(size, size))
    palette = (np.linspace(0, 255, alphabet)[:, None] * np.array([[0.9, 0.5, 0.2]]) + 25)
    frames = []
    for _ in range(n_frames):
        frames.append(Image.fromarray(np.kron(palette[grid], np.ones((8, 8, 1))).astype(np.uint8)))
        total = sum(np.roll(grid, shift, axis) for shift in (-1, 1) for axis in (0, 1))
        grid = table[grid, total]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=200, loop=0)


def _curve_png(path: Path, record: TrialRecord) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.5), layout="constrained")
    ax = fig.subplots()
    for seed in record.seeds:
        ax.plot(*np.asarray(seed.curve).T, label=f"seed {seed.seed}")
        ax.plot(*np.asarray(seed.scratch_curve).T, ls="--", c="grey")
    ax.set(xscale="log", xlabel="tokens", ylabel="validation loss", title="synthetic trial")
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=80)


def _upload_all(t: optuna.Trial, store: Any, workdir: Path) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    record = TrialRecord.from_attrs(t.user_attrs)
    assert record is not None, "a synthetic trial always has results"
    _curve_png(workdir / "curve.png", record)
    setting = json.loads(t.user_attrs["setting"])
    _ca_gif(workdir / "nca_sample.gif", int(setting["alphabet"]), seed=t.number)
    (workdir / "config.json").write_text(json.dumps({"setting": setting, "synthetic": True}))
    for name, mimetype in _ARTIFACTS.items():
        optuna.artifacts.upload_artifact(study_or_trial=t, artifact_store=store,
                                         file_path=str(workdir / name), mimetype=mimetype)


def add_with_artifacts(
    study: optuna.Study,
    trials: Sequence[optuna.trial.FrozenTrial],
    *,
    artifact_store: Any,
    workdir: Path,
) -> None:
    """Add ``trials`` the way a live search does: running, artifacts uploaded, then told.

    Optuna refuses artifacts on finished trials, so each trial is enqueued, asked, given a
    validation-curve PNG, an NCA sample GIF and a config JSON, and then told its values.

    Args:
        study: Target study.
        trials: Completed trials from :func:`synthetic_trial`.
        artifact_store: e.g. ``optuna.artifacts.FileSystemArtifactStore(dir)``.
        workdir: Scratch directory for the files before upload.
    """
    for done in trials:
        study.enqueue_trial(done.params, user_attrs=done.user_attrs)
        running = study.ask(fixed_distributions=done.distributions)
        _upload_all(running, artifact_store, workdir)
        study.tell(running, done.values)
