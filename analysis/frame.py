"""Read studies once and turn their trials into tidy DataFrames.

``trials_frame`` has one row per trial: the columns of ``study.trials_dataframe()`` (``number``,
``state``, ``value`` or ``values_<name>``, ``datetime_*``, ``params_<name>``) joined with the §4
user attributes as scalar columns. ``seeds_frame`` has one row per (setting, domain, seed) with the
loss, the scratch loss of the same seed and the gains, which is what the statistics need. A
*setting* is one parameter assignment within a study; trials that repeat it pool their seeds.

A multi-domain study (issue 15) reads as one study per domain: its seeds frame has a row per
domain, scored from ``TrialRecord.for_domain`` against that domain's scratch runs, so every table
keyed by ``(study, domain)`` treats each domain as a one-domain study would be treated. A
one-domain study has one domain (its ``domain`` attribute), so its rows are as they always were.

Example:
    >>> records = load_studies("runs/code.journal")         # doctest: +SKIP
    >>> trials, seeds = trials_frame(records), seeds_frame(records)   # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
import optuna
import pandas as pd
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from ncaio.cli import check_output_folder
from search.record import CONFIRMS_ATTR, TrialRecord
from search.storage import StorageError, open_storage, resolve_study_names

__all__ = ["SCRATCH_SOURCES", "StudyRecord", "band_label", "domain_key", "load_studies",
           "seeds_frame", "setting_text", "trials_frame"]

_PER_SEED_KEYS = ("seeds", "losses", "scratch_losses", "gains_pct", "speedups", "curves",
                  "scratch_curves", "net_effects_pct", "best_scratch_losses",
                  "best_scratch_recipes", "scratch_losses_by_recipe", "probes")
# Attribute names that collide with derived columns (``band`` is the label, ``setting`` the id).
_RENAMED = {"band": "band_attr", "speedup": "speedup_mean", "setting": "setting_json"}
SCRATCH_SOURCES = ("none", "scratch")
"""``source`` values of a setting without pre-pre-training (the search writes ``none``)."""
_DICT_KEYS = ("upstream",)  # dict-valued attributes; None there means "no such stage"

Source = Union[str, "os.PathLike[str]", BaseStorage, Sequence["StudyRecord"]]


@dataclass(frozen=True, kw_only=True, slots=True)
class StudyRecord:
    """One study read from storage, with its trials (read once, not deep-copied)."""

    name: str
    """Study name."""
    domain: str | None
    """The study's ``domain`` user attribute (code, math, web), if set; a multi-domain study's
    first domain."""
    domains: tuple[str, ...] = ()
    """A multi-domain study's domains in order (its ``domains`` user attribute); empty for a
    one-domain study."""
    preset: str | None
    """The study's ``preset`` user attribute, if set."""
    config: dict[str, Any]
    """The resolved study configuration (``config`` user attribute, JSON), or empty."""
    directions: tuple[str, ...]
    """``minimize``/``maximize`` per objective."""
    metric_names: tuple[str, ...]
    """Objective names: ``study.metric_names``, else the search's ``objectives`` study attribute,
    else ``value`` (one objective) or ``0``, ``1``, ... (the frame's ``values_<name>``)."""
    trials: tuple[FrozenTrial, ...]
    """All trials, in number order."""
    study: optuna.Study
    """The loaded study (for importances)."""
    storage: BaseStorage
    """The storage it was read from (for artifact metadata)."""
    confirms: str | None = None
    """A confirmation study's search study (``search.record.CONFIRMS_ATTR``); None for a search."""

    @property
    def is_multi_objective(self) -> bool:
        """True when the study has more than one objective."""
        return len(self.directions) > 1

    @property
    def is_multi_domain(self) -> bool:
        """True when each trial trains on several domains."""
        return len(self.domains) > 1


def load_for_command(storages: Sequence[str], out: os.PathLike[str],
                     study_names: Sequence[str] | None = None) -> list[StudyRecord]:
    """The named studies (default: all) across the journals an analysis command was given,
    after checking its output folder can be written (so a refusal comes before anything is read
    or written).

    Raises:
        ValueError: If ``out`` is not a writable folder.
        search.storage.StorageError: If a storage cannot be opened, or a name is in none of them.
    """
    check_output_folder(out, "--out")
    records = [r for s in storages for r in load_studies(s)]
    if study_names is None:
        return records
    missing = sorted(set(study_names) - {r.name for r in records})
    if missing:
        found = ", ".join(sorted(r.name for r in records)) or "none"
        raise StorageError(f"no study named {missing[0]!r} in {', '.join(storages)}; "
                           f"found: {found}")
    return [r for r in records if r.name in set(study_names)]


def load_studies(
    storage: str | os.PathLike[str] | BaseStorage, study_names: Sequence[str] | None = None
) -> list[StudyRecord]:
    """Read the named studies (default: all) from a journal file, database URL or storage.

    Raises:
        search.storage.StorageError: If the storage cannot be opened or a name is unknown.
    """
    opened = open_storage(storage, create=False)
    records = []
    for name in resolve_study_names(opened, study_names):
        study = optuna.load_study(study_name=name, storage=opened)
        directions = tuple(d.name.lower() for d in study.directions)
        attrs = study.user_attrs
        names = study.metric_names or attrs.get("objectives")
        if not isinstance(names, list) or len(names) != len(directions):
            names = ["value"] if len(directions) == 1 else [str(i) for i in range(len(directions))]
        records.append(StudyRecord(
            name=name, domain=attrs.get("domain"), domains=_domains(attrs.get("domains")),
            preset=attrs.get("preset"),
            config=_json_dict(attrs.get("config")),
            directions=directions, metric_names=tuple(names),
            trials=tuple(study.get_trials(deepcopy=False)), study=study, storage=opened,
            confirms=attrs.get(CONFIRMS_ATTR) if isinstance(attrs.get(CONFIRMS_ATTR), str)
            else None,
        ))
    return records


def _domains(value: Any) -> tuple[str, ...]:
    """The ``domains`` study attribute as a tuple (anything but a list of names: none)."""
    if not isinstance(value, list) or not all(isinstance(d, str) for d in value):
        return ()
    return tuple(value)


def _json_dict(text: Any) -> dict[str, Any]:
    try:
        value = json.loads(text) if isinstance(text, str) else None
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _records(source: Source, study_names: Sequence[str] | None) -> list[StudyRecord]:
    if isinstance(source, (list, tuple)) and all(isinstance(r, StudyRecord) for r in source):
        if study_names is None:
            return list(source)
        return [r for r in source if r.name in set(study_names)]
    return load_studies(source, study_names)  # type: ignore[arg-type]


def domain_key(frame: pd.DataFrame) -> pd.Series:
    """The ``domain`` column with a study without one as ``""``: group by ``["study",
    domain_key(frame)]`` to treat each domain of a multi-domain study as a study (pandas drops
    missing keys from groups, and would drop a study whose domain is not set)."""
    return frame["domain"].fillna("").astype(str).rename("domain")


def band_label(lower: float, upper: float, kind: str = "absolute") -> str:
    """The paper's way of naming a band: ``30-40%``, or ``50%+`` when it is open above.

    Quantile bands (of an alphabet's complexity profile) read ``q0.30-0.40`` instead. A label for
    reports (rounded), not the canonical ``str(nca.Band)``; ``nca.bands.parse_band`` reads both.
    """
    if kind == "quantile":
        return f"q{lower:.2f}-{upper:.2f}"
    if upper >= 0.995:
        return f"{lower * 100:.0f}%+"
    return f"{lower * 100:.0f}-{upper * 100:.0f}%"


def setting_text(row: Any) -> str:
    """``30-40%, n=10`` for an NCA setting, the source otherwise (a settings/trials row)."""
    band, alphabet = row.get("band"), row.get("alphabet")
    if pd.isna(band) or band is None:
        return str(row.get("source") or row.get("label"))
    return f"{band}, n={alphabet:.0f}" if pd.notna(alphabet) else str(band)


def _parse_band_text(text: Any) -> tuple[float, float] | None:
    """A ``band`` parameter (``0.3-0.4``) of a trial stored without its ``setting`` JSON."""
    from nca.bands import parse_band  # lazily: only old trials need it, and nca imports torch

    try:
        band = parse_band(str(text))
    except ValueError:
        return None
    return band.lower, band.upper


def _nominal_band(setting: dict[str, Any], p: dict[str, Any], a: dict[str, Any]
                  ) -> tuple[float, float] | None:
    """From the ``setting`` JSON, else the ``band`` attribute, else the parameters."""
    for band in (setting.get("band"), a.get("band")):
        if isinstance(band, (list, tuple)) and len(band) == 2 and None not in band:
            return float(band[0]), float(band[1])
    if "band" in p:
        return _parse_band_text(p["band"])
    if "band_lower" in p:
        lo = float(p["band_lower"])
        if "band_upper" in p:
            return lo, float(p["band_upper"])
        return lo, min(1.0, lo + float(p.get("band_width", 0.1)))
    return None


def _describe_setting(study: str, t: FrozenTrial) -> dict[str, Any]:
    """Setting id, source, band and alphabet of a trial.

    The id hashes the ``setting`` user attribute (the search's canonical JSON of everything a
    trial runs, fixed values included) when present, otherwise the parameters.
    """
    p, a = t.params, t.user_attrs
    text = a.get("setting")
    setting = json.loads(text) if isinstance(text, str) and text.startswith("{") else {}
    if not setting:
        canon = {k: (float(f"{v:.10g}") if isinstance(v, float) else v) for k, v in p.items()}
        text = json.dumps(sorted(canon.items()), default=str)
    source = setting.get("source", p.get("source", a.get("source")))
    info: dict[str, Any] = {
        "setting": hashlib.sha1(f"{study}\0{text}".encode()).hexdigest()[:10],
        "source": source, "band": None, "band_lower": None, "band_upper": None, "alphabet": None,
    }
    if source is not None and source != "nca":  # scratch, Dyck, text: no NCA band or alphabet
        return info
    band = _nominal_band(setting, p, a)
    if band is not None:
        kind = setting.get("band_kind", p.get("band_kind", "absolute"))
        info.update(band=band_label(*band, kind), band_lower=band[0], band_upper=band[1])
        if kind == "quantile":  # not on the gzip-ratio axis
            info.update(band_lower=None, band_upper=None)
    alphabet = setting.get("alphabet", p.get("alphabet", a.get("alphabet")))
    info["alphabet"] = int(alphabet) if alphabet is not None else None
    return info


def _flat_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """Scalar user attributes as columns; dicts one level deep; per-seed lists left out."""
    row: dict[str, Any] = {}
    for key, value in attrs.items():
        if key in _PER_SEED_KEYS or (value is None and key in _DICT_KEYS):
            continue
        name = _RENAMED.get(key, key)
        if isinstance(value, dict):
            row.update({f"{name}_{k}": v for k, v in value.items()
                        if not isinstance(v, (list, dict))})
        elif isinstance(value, (list, tuple)):
            if len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
                row[f"{name}_lower"], row[f"{name}_upper"] = value
            else:
                row[name] = json.dumps(value)
        else:
            row[name] = value
    return row


def _trial_row(rec: StudyRecord, t: FrozenTrial) -> dict[str, Any]:
    row: dict[str, Any] = {"study": rec.name, "domain": rec.domain, "preset": rec.preset,
                           "number": t.number, "state": t.state.name}
    values = t.values if t.values is not None else [None] * len(rec.directions)
    if rec.is_multi_objective:
        row.update({f"values_{n}": v for n, v in zip(rec.metric_names, values, strict=True)})
    else:
        row["value"] = values[0]
    start, end = t.datetime_start, t.datetime_complete
    row["datetime_start"], row["datetime_complete"] = start, end
    row["duration_s"] = (end - start).total_seconds() if start and end else None
    row.update({f"params_{k}": v for k, v in t.params.items()})
    a = t.user_attrs
    row.update(_flat_attrs(a))
    row.update(_describe_setting(rec.name, t))
    losses, scratch = a.get("losses") or [], a.get("scratch_losses") or []
    row["n_seeds"] = len(a.get("seeds") or losses)
    row["loss_mean"] = float(np.mean(losses)) if losses else None
    row["scratch_loss_mean"] = float(np.mean(scratch)) if scratch else None
    return row


def trials_frame(source: Source, study_names: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per trial, tidy columns (see the module docstring), ordered by study and number.

    Args:
        source: A journal file path, database URL, opened storage, or records from
            :func:`load_studies` (then nothing is read again).
        study_names: Studies to include (default: all).
    """
    rows = [_trial_row(rec, t) for rec in _records(source, study_names) for t in rec.trials]
    frame = pd.DataFrame.from_records(rows)
    if frame.empty:
        return frame
    labels = _setting_labels(frame)
    frame.insert(frame.columns.get_loc("setting") + 1, "label", frame["setting"].map(labels))
    return frame


def _setting_labels(frame: pd.DataFrame) -> dict[str, str]:
    """``band-30-40`` / ``band-50-100 = paper`` for anchors, ``#12`` (first trial) otherwise."""
    labels = "#" + frame.groupby("setting", sort=False)["number"].min().astype(str)
    if "kind" in frame:
        kind = frame["kind"].astype("string")
        is_anchor = kind.str.startswith("anchor:", na=False)
        if is_anchor.any():
            names = kind[is_anchor].str.removeprefix("anchor:")
            joined = names.groupby(frame.loc[is_anchor, "setting"]).agg(
                lambda s: " = ".join(sorted(set(s))))
            labels.update(joined)
    return labels.to_dict()


def seeds_frame(source: Source, study_names: Sequence[str] | None = None,
                trials: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (setting, domain, seed) of completed trials: loss, scratch loss and gains.

    A multi-domain trial gives a row per domain and seed, each as ``TrialRecord.for_domain``
    scores it (against that domain's scratch runs); a one-domain trial's ``domain`` is its
    study's. ``gain_pct`` is the trial's recorded per-seed gain (``gains_pct``), or
    ``100 * (scratch - loss) / scratch`` when absent; ``ppl_gain_pct`` is the perplexity
    reduction ``100 * (1 - exp(loss - scratch))`` for comparison with the paper. When several
    trials evaluate the same setting on the same seed, the latest trial wins.

    Args:
        source: As for :func:`trials_frame`.
        study_names: Studies to include (default: all).
        trials: ``trials_frame`` of the same source, to reuse instead of recomputing.
    """
    records = _records(source, study_names)
    if trials is None:
        trials = trials_frame(records)
    info: dict[tuple[str, int], tuple] = {}
    if len(trials):
        keys = zip(trials["study"], trials["number"], strict=True)
        info = dict(zip(keys, trials.reindex(columns=_TRIAL_KEYS).itertuples(index=False),
                        strict=True))
    rows = []
    for rec in records:
        for t in rec.trials:
            if t.state == TrialState.COMPLETE and (rec.name, t.number) in info:
                base = {"study": rec.name, "domain": rec.domain, "number": t.number,
                        **dict(zip(_TRIAL_KEYS, info[(rec.name, t.number)], strict=True))}
                rows.extend(_seed_rows(t.user_attrs, base))
    columns = ["study", "domain", "number", *_TRIAL_KEYS, "seed", "loss", "scratch_loss",
               "gain_pct", "ppl_gain_pct", "speedup", "best_scratch_loss", "best_scratch_recipe",
               "net_gain_pct", *_PROBE_COLUMNS]
    frame = pd.DataFrame.from_records(rows, columns=columns)
    frame = frame.sort_values(["study", "number"], kind="stable")
    frame = frame.drop_duplicates(["study", "domain", "setting", "seed"], keep="last")
    return frame.reset_index(drop=True)


_TRIAL_KEYS = ("setting", "label", "kind", "describe", "source", "band", "band_lower",
               "band_upper", "alphabet", "recipe_name", "domain_tokens", "nca_tokens")
_PROBE_FIELDS = ("residual_rms", "mean_direction_share", "token_r2", "grad_norm_embedding",
                 "grad_norm_blocks")
_PROBE_COLUMNS = (*(f"{arm}_{f}" for arm in ("nca", "scratch") for f in _PROBE_FIELDS),
                  "unigram_loss", "tokens_to_unigram", "scratch_tokens_to_unigram")


def _seed_rows(a: dict[str, Any], base: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-seed rows of the trial's ``search.record.TrialRecord`` (none when it has no results),
    per domain for a multi-domain record. A one-domain record in a multi-domain study holds its
    first domain's results, which is ``base``'s domain."""
    record = TrialRecord.from_attrs(a)
    if record is None:
        return []
    parts = [(d, record.for_domain(d)) for d in record.domains] or [(base["domain"], record)]
    return [{**base, "domain": domain, "seed": s.seed, "loss": s.loss,
             "scratch_loss": s.scratch_loss, "gain_pct": s.gain_pct,
             "ppl_gain_pct": _ppl_gain_pct(s.loss, s.scratch_loss), "speedup": s.speedup,
             "best_scratch_loss": s.best_scratch_loss,
             "best_scratch_recipe": s.best_scratch_recipe, "net_gain_pct": s.net_gain_pct,
             **_probe_row(s.probe)} for domain, r in parts for s in r.seeds]


def _ppl_gain_pct(loss: float | None, scratch: float | None) -> float | None:
    """The paper's measure: % lower perplexity than scratch."""
    if loss is None or scratch is None:
        return None
    return 100.0 * (1.0 - math.exp(loss - scratch))


def _probe_row(probe: Any) -> dict[str, Any]:
    if not isinstance(probe, dict):
        return {}
    row = {f"{arm}_{f}": (probe.get(arm) or {}).get(f) for arm in ("nca", "scratch")
           for f in _PROBE_FIELDS}
    row.update({k: probe.get(k) for k in
                ("unigram_loss", "tokens_to_unigram", "scratch_tokens_to_unigram")})
    return row
