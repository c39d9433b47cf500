"""Experiment tracking: a study's trials mirrored into MLflow, where ML users already look.

One experiment per study (named after it); in it, one **parent run per trial** (its setting as
params; its loss, NCA effect, net effect and speedup as metrics; its state as the run's status
and a ``state`` tag; its figures as artifacts) and one **child run per seed and stage** (``nca``:
the NCA stage, ``domain``: each domain stage) with the validation curve as step metrics, tokens as
the step (``val_loss``), the matched scratch run's curve beside it (``scratch_val_loss``), and the
seed's scores. A confirmation phase logs into the same experiment, its runs tagged
``phase=confirmation`` with their ``arm`` and ``lr_x``.

The workers log (``search.jobs``), each with its own ``MlflowClient`` and explicit run ids (no
global active run, so processes and threads never interfere); the driver only creates the
experiment (:func:`start`). Runs are found again by tags, never duplicated: a retried trial
continues its first attempt's parent run (keyed by storage, study and ``origin``), a resumed stage
its child run, and a step already logged is not logged again. Tracking never stops a study: the
first failed call in a process prints one warning and turns tracking off in that process (the
driver then stops handing it to new trials).

MLflow is an optional extra (``pip install -e ".[track]"``), imported only when tracking is on.

Example:
    >>> from search.tracking import parse_track
    >>> parse_track("mlflow:http://127.0.0.1:5000")
    'http://127.0.0.1:5000'
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from ncaio import content_key
from search._toml import ConfigError

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from search.config import StudyConfig
    from search.record import SeedRecord
    from search.space import Setting
    from search.trial import TrialOutcome

__all__ = ["INSTALL_HINT", "TrackingConfig", "TrialTracker", "from_config", "open_trial",
           "parse_track", "require_mlflow", "setting_params", "shown_uri", "start", "stopped",
           "ui_command"]

INSTALL_HINT = 'pip install -e ".[track]"'
ACCEPTED = ("mlflow or mlflow:URI (URI: file:PATH, sqlite:///PATH, http(s)://HOST:PORT, "
            "postgresql://..., mysql://..., mssql://..., or a folder)")
_SCHEMES = ("file", "sqlite", "http", "https", "postgresql", "mysql", "mssql")
_DATABASES = ("postgresql", "mysql", "mssql")
PHASES = ("search", "confirmation")
DEFAULT_FOLDER = "mlflow"
"""The default store's folder under the run folder: ``mlflow.db`` (SQLite) and ``artifacts/``.
SQLite, not MLflow's folder store, which MLflow 3 keeps in maintenance mode (it refuses to open
one unless ``MLFLOW_ALLOW_FILE_STORE=true``, which this module sets when a ``file:`` URI is asked
for by name)."""
_CLIENT_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
               "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
"""MLflow's defaults retry a request 7 times with growing pauses and wait 120 s for an answer:
minutes of stalled training for a server that is down. A set variable wins."""
_BATCH = 1000
"""Most metrics one ``log_batch`` call takes (MLflow's limit)."""
_MAX_RUNS = 50_000
"""Most runs one search returns (MLflow's limit); a trial has seeds x stages children."""
_TAG_CHARS = 5000
"""Longest tag value kept (MLflow's limit is 8000)."""
_KEY = "run_key"
"""The tag that finds a run again: ``<storage>:<study>:<origin>[/seed<s>/<stage>]``."""

_OFF = threading.Event()
"""Set after the first failed tracking call: this process tracks nothing more."""

T = TypeVar("T")


# -- what to track, and where --------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class TrackingConfig:
    """Where a study mirrors its trials (``--track``); it travels to the workers in each trial's
    payload, so it holds absolute paths only."""

    uri: str
    """MLflow tracking URI: ``sqlite:////abs/mlflow.db``, ``file:///abs/folder``,
    ``http://HOST:PORT``, or a database server's."""
    experiment: str
    """The experiment's name: the search study's (its confirmation logs into it too)."""
    storage_key: str
    """Key of the study's Optuna storage: run keys start with it, so studies of one name in two
    storages never share a run on one tracking server."""
    artifacts: str = ""
    """Artifact root of a new experiment (a local database's folder beside it); empty = the
    store's own (a folder store's, a server's)."""
    experiment_id: str = ""
    """Set by :func:`start` in the driver; the workers log into this experiment."""
    phase: str = "search"
    """``search`` or ``confirmation``: a tag on every run."""

    def __post_init__(self) -> None:
        if not self.uri or parse_track(f"mlflow:{self.uri}") is None:
            raise ConfigError(f"tracking URI {self.uri!r}: expected {ACCEPTED}")
        if not self.experiment or not self.storage_key:
            raise ConfigError("tracking needs an experiment name and a storage key; got "
                              f"{self.experiment!r}, {self.storage_key!r}")
        if self.phase not in PHASES:
            raise ConfigError(f"tracking phase {self.phase!r} is not one of {', '.join(PHASES)}")


def parse_track(text: str) -> str | None:
    """The tracking URI ``--track TEXT`` (or ``[study] track``) names: None when empty (off),
    ``""`` for ``mlflow`` (the default store under the run folder), URI for ``mlflow:URI``.

    Raises:
        ConfigError: anything else; the line names the value and what is accepted.
    """
    if not text:
        return None
    backend, sep, uri = text.partition(":")
    if backend != "mlflow" or (sep and not _uri_ok(uri)):
        raise ConfigError(f"track {text!r} (--track or [study] track): expected {ACCEPTED}")
    return uri


def _uri_ok(uri: str) -> bool:
    parts = urlsplit(uri)
    scheme = parts.scheme.split("+")[0]
    if not parts.scheme:
        return bool(uri.strip())  # a folder
    if scheme in ("http", "https"):
        return bool(parts.hostname)
    if scheme == "sqlite":
        return uri.startswith("sqlite:///") and len(uri) > len("sqlite:///")
    if scheme == "file":
        return bool(parts.path)
    return scheme in _DATABASES and bool(parts.hostname)


def from_config(config: StudyConfig) -> TrackingConfig | None:
    """The study's tracking, resolved against its run folder; None when it is off."""
    uri = parse_track(config.study.track)
    if uri is None:
        return None
    run_dir = config.run_dir.resolve()
    resolved = _absolute(uri, run_dir)
    storage = config.storage_url
    if not urlsplit(storage).scheme:  # a journal file: the same file wherever it is named from
        storage = str(Path(storage).resolve())
    return TrackingConfig(uri=resolved, experiment=config.study.name,
                          storage_key=content_key(storage, length=8),
                          artifacts=_artifact_root(resolved, run_dir))


def _absolute(uri: str, run_dir: Path) -> str:
    """``uri`` with its local path made absolute: Slurm jobs may start in another folder."""
    if not uri:
        return f"sqlite:///{run_dir / DEFAULT_FOLDER / 'mlflow.db'}"
    parts = urlsplit(uri)
    if not parts.scheme:
        return Path(uri).resolve().as_uri()
    if parts.scheme == "file":
        return Path(parts.path).resolve().as_uri()
    if parts.scheme == "sqlite":
        return f"sqlite:///{Path(uri.removeprefix('sqlite:///')).resolve()}"
    return uri


def _artifact_root(uri: str, run_dir: Path) -> str:
    """Where a new experiment keeps artifacts: beside a SQLite file, in the run folder for a
    database server without a tracking server (MLflow's default would be the current folder),
    the store's own for a folder store or a tracking server."""
    scheme = urlsplit(uri).scheme.split("+")[0]
    if scheme == "sqlite":
        return Path(uri.removeprefix("sqlite:///")).parent.joinpath("artifacts").as_uri()
    if scheme in _DATABASES:
        return (run_dir / DEFAULT_FOLDER / "artifacts").as_uri()
    return ""


def require_mlflow() -> None:
    """Raises:
    ConfigError: MLflow is not installed; the line says how to install it."""
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise ConfigError(f"--track mlflow needs the mlflow package: {INSTALL_HINT}") from None


# -- failing safe -------------------------------------------------------------------------------


def stopped() -> bool:
    """True once a tracking call failed in this process (it then tracks nothing more)."""
    return _OFF.is_set()


def _guarded(uri: str, call: Callable[[], T]) -> T | None:
    """``call()``, or None when tracking is off or the call failed (then off, after one
    warning): a mirror of the study must never stop it."""
    if _OFF.is_set():
        return None
    try:
        return call()
    except Exception as exc:  # noqa: BLE001 - whatever the tracker raises, training goes on
        if not _OFF.is_set():
            _OFF.set()
            print(f"warning: tracking to {shown_uri(uri)} stopped: {_reason(exc)}; the study "
                  "goes on", file=sys.stderr, flush=True)
        return None


def _reason(exc: BaseException) -> str:
    """The root cause of ``exc``, on one line: MLflow wraps a refused connection in three
    layers of retry messages."""
    root = exc
    for _ in range(20):  # a chain is a few links long; a cycle must not hang the warning
        cause = root.__cause__ or root.__context__
        if cause is None:
            break
        root = cause
    lines = str(root).strip().splitlines() or [""]
    return f"{type(root).__name__}: {lines[0][:200]}"


def shown_uri(uri: str) -> str:
    """``uri`` without a password (a database's or a server's)."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def ui_command(uri: str) -> str:
    """How to look at a study's runs: its server's address, or the ``mlflow ui`` command that
    serves a local store (a folder store needs MLflow's opt-in, see ``DEFAULT_FOLDER``)."""
    scheme = urlsplit(uri).scheme
    if scheme in ("http", "https"):
        return f"open {shown_uri(uri)}"
    allow = "MLFLOW_ALLOW_FILE_STORE=true " if scheme == "file" else ""
    return f"{allow}mlflow ui --backend-store-uri {shown_uri(uri)}"


def _client(uri: str) -> MlflowClient:
    """A client on ``uri`` that gives up fast (``_CLIENT_ENV``), quiet below warnings (MLflow's
    INFO lines would interleave with the board)."""
    for name, value in _CLIENT_ENV.items():
        os.environ.setdefault(name, value)
    if urlsplit(uri).scheme == "file":  # asked for by name: MLflow 3 refuses it otherwise
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def start(config: TrackingConfig) -> TrackingConfig | None:
    """Create (or find) the study's experiment, in the driver, once: the config the workers get,
    with its id; None (after one warning) when the tracker cannot be reached."""

    def experiment() -> str:
        client = _client(config.uri)
        found = client.get_experiment_by_name(config.experiment)
        if found is None:
            try:
                return client.create_experiment(config.experiment,
                                                artifact_location=config.artifacts or None)
            except Exception:  # another driver created it meanwhile, or a real failure
                found = client.get_experiment_by_name(config.experiment)
                if found is None:
                    raise
        if found.lifecycle_stage == "deleted":  # its name is taken until it is restored
            client.restore_experiment(found.experiment_id)
        return str(found.experiment_id)

    got = _guarded(config.uri, experiment)
    return dataclasses.replace(config, experiment_id=got) if got else None


def setting_params(setting: Setting) -> dict[str, str]:
    """A setting as MLflow params: every field, a string as it is, anything else as JSON."""
    return {k: v if isinstance(v, str) else json.dumps(v)
            for k, v in dataclasses.asdict(setting).items()}


# -- one trial's runs ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Child:
    """A child run, and the steps of each curve it holds (None: not read yet)."""

    run_id: str
    steps: dict[str, set[int] | None] = field(default_factory=dict)
    fresh: bool = True
    """Created by this process: it holds nothing yet, so no history needs reading."""


def open_trial(config: TrackingConfig, *, study: str, number: int, attrs: Mapping[str, Any],
               setting: Setting, domain: str) -> TrialTracker | None:
    """The tracker of trial ``number`` of ``study`` (its user attributes ``attrs``), with its
    parent run open; None when tracking is off or the tracker cannot be reached."""
    return _guarded(config.uri, lambda: TrialTracker(
        config, _client(config.uri), study=study, number=number, attrs=attrs, setting=setting,
        domain=domain))


class TrialTracker:
    """One trial's runs, in its worker: the parent run, and a child run per seed and stage.

    Every public method is safe to call whatever the tracker does: a failure turns tracking off
    in the process (one warning) and the method returns.
    """

    def __init__(self, config: TrackingConfig, client: MlflowClient, *, study: str, number: int,
                 attrs: Mapping[str, Any], setting: Setting, domain: str) -> None:
        self._config, self._client = config, client
        self._domain = domain
        origin = int(attrs.get("origin", number))
        self._key = f"{config.storage_key}:{study}:{origin}"
        confirm = {k: str(attrs[k]) for k in ("arm", "lr_x") if k in attrs}
        self._tags = {"phase": config.phase, "study": study, **confirm}
        name = (f"{confirm['arm']} lr x{float(confirm['lr_x']):g}" if "lr_x" in confirm
                else f"#{origin} {setting.describe()}")
        self._parent = self._open_parent(name, setting, {
            "trial": str(number), "origin": str(origin), "attempt": str(attrs.get("attempt", 0)),
            "kind": str(attrs.get("kind", "")), "state": "running"})
        self._index: dict[str, str] | None = None
        self._children: dict[str, _Child] = {}
        self._current = ""

    @property
    def parent_run_id(self) -> str:
        return self._parent

    def log_eval(self, stage: str, seed: int, domain: str, tokens: int, val_loss: float,
                 scratch_loss: float | None) -> None:
        """A validation point of a stage the trial trains: ``val_loss`` (and the matched scratch
        run's at the same tokens) at step ``tokens`` of the seed's ``stage`` child run."""
        curves = {"val_loss": [(tokens, val_loss)]}
        if scratch_loss is not None:
            curves["scratch_val_loss"] = [(tokens, scratch_loss)]
        self._call(lambda: self._log_curves(self._enter(seed, stage, domain), curves))

    def log_artifact(self, path: Path) -> None:
        """Attach a file (a figure, the config) to the parent run."""
        self._call(lambda: self._client.log_artifact(self._parent, str(path)))

    def log_outcome(self, outcome: TrialOutcome, objectives: Mapping[str, float]) -> None:
        """A completed trial's results: every seed's curves (the points not logged live: seeds
        finished by an earlier attempt, read from another study, or not trained at all) and
        scores on its child runs, the trial's scores on the parent run."""
        self._call(lambda: self._log_outcome(outcome, objectives))

    def finish(self, state: str, reason: str = "") -> None:
        """Close the runs: ``complete`` (FINISHED), ``pruned`` (KILLED) or ``failed``; any other
        state (a full disk) leaves them open for the attempt that resumes the trial."""
        self._call(lambda: self._finish(state, reason))

    # -- internals (each runs under ``_call``) ----------------------------------------------------

    def _call(self, what: Callable[[], Any]) -> None:
        _guarded(self._config.uri, what)

    def _open_parent(self, name: str, setting: Setting, tags: dict[str, str]) -> str:
        """The trial's parent run, found by its key (a retried trial continues its first
        attempt's) or created with the setting as params."""
        from mlflow.entities import Param, RunTag

        c, exp = self._client, self._config.experiment_id
        found = c.search_runs([exp], filter_string=f"tags.{_KEY} = '{self._key}'", max_results=1)
        if found:
            run_id = found[0].info.run_id
            c.update_run(run_id, status="RUNNING")
        else:
            run_id = c.create_run(exp, run_name=name, tags={_KEY: self._key}).info.run_id
            c.log_batch(run_id, params=[Param(k, v) for k, v in setting_params(setting).items()])
        c.log_batch(run_id, tags=[RunTag(k, v) for k, v in (self._tags | tags).items()])
        return run_id

    def _child(self, seed: int, stage: str, domain: str) -> _Child:
        """The child run of ``seed``'s ``stage`` (on ``domain``): found, or created."""
        key = f"{self._key}/seed{seed}/{stage}" + (f":{domain}" if domain else "")
        if key in self._children:
            return self._children[key]
        if self._index is None:  # the children earlier attempts left, read once
            runs = self._client.search_runs(
                [self._config.experiment_id], filter_string=f"tags.parent_key = '{self._key}'",
                max_results=_MAX_RUNS)
            self._index = {r.data.tags[_KEY]: r.info.run_id for r in runs if _KEY in r.data.tags}
        if key in self._index:
            child = _Child(self._index[key], fresh=False)
            self._client.update_run(child.run_id, status="RUNNING")
        else:
            tags = self._tags | {_KEY: key, "parent_key": self._key,
                                 "mlflow.parentRunId": self._parent, "seed": str(seed),
                                 "stage": stage, "domain": domain}
            name = f"seed {seed} {domain or stage}"
            child = _Child(self._client.create_run(self._config.experiment_id, run_name=name,
                                                   tags=tags).info.run_id)
        self._children[key] = child
        return child

    def _enter(self, seed: int, stage: str, domain: str) -> _Child:
        """The child run a live point goes to; the previous stage's run is closed when a new
        stage starts."""
        child = self._child(seed, stage, domain)
        if self._current and self._current != child.run_id:
            self._client.set_terminated(self._current, status="FINISHED")
        self._current = child.run_id
        return child

    def _log_curves(self, child: _Child, curves: Mapping[str, Iterable[tuple[int, float]]]
                    ) -> None:
        """Log the points of ``curves`` (metric -> (tokens, value)) the run does not hold yet."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = []
        for key, points in curves.items():
            steps = child.steps.get(key)
            if steps is None:  # a run an earlier attempt made: what it holds, read once
                steps = set() if child.fresh else {
                    m.step for m in self._client.get_metric_history(child.run_id, key)}
                child.steps[key] = steps
            for tokens, value in points:
                if int(tokens) not in steps:
                    steps.add(int(tokens))
                    metrics.append(Metric(key, float(value), now, int(tokens)))
        self._log_metrics(child.run_id, metrics)

    def _log_values(self, run_id: str, values: Mapping[str, float | None]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._log_metrics(run_id, [Metric(k, float(v), now, 0) for k, v in values.items()
                                   if v is not None])

    def _log_metrics(self, run_id: str, metrics: list[Any]) -> None:
        for start in range(0, len(metrics), _BATCH):
            self._client.log_batch(run_id, metrics=metrics[start:start + _BATCH])

    def _log_outcome(self, outcome: TrialOutcome, objectives: Mapping[str, float]) -> None:
        by_domain = {name: seeds for name, (_, seeds) in outcome.by_domain.items()}
        for domain, seeds in (by_domain or {self._domain: outcome.seeds}).items():
            for result in seeds:
                child = self._child(result.record.seed, "domain", domain)
                s = result.record
                self._log_curves(child, {"val_loss": s.curve, "scratch_val_loss": s.scratch_curve})
                self._log_values(child.run_id, _seed_scores(s))
                if result.shared:
                    self._client.set_tag(child.run_id, "shared", "true")
        for result in outcome.seeds if outcome.setting.source != "none" else ():
            if result.upstream:  # the NCA stage's own losses (it may have come from the cache)
                child = self._child(result.record.seed, "nca", "")
                self._log_values(child.run_id, {
                    ("final_val_loss" if k == "val_loss" else k): float(v)
                    for k, v in result.upstream.items() if isinstance(v, (int, float))})
        record = outcome.record()
        attrs = record.to_attrs()
        values: dict[str, float | None] = {
            "loss": record.objective("loss"), "nca_effect_pct": attrs["nca_effect_pct"],
            "net_effect_pct": attrs["net_effect_pct"], "speedup": attrs["speedup"],
            "bpb": record.bpb, "tokens": float(record.tokens), "wall_s": record.wall_s}
        tests = [t for t in attrs.get("test_losses", []) if t is not None]
        if tests:
            values["test_loss"] = sum(tests) / len(tests)
        for domain in record.domains:
            one = record.for_domain(domain)
            values |= {f"{domain}/loss": one.objective("loss"),
                       f"{domain}/nca_effect_pct": one.objective("nca-effect"),
                       f"{domain}/net_effect_pct": one.objective("net-effect")}
        values |= {f"objective/{name}": value for name, value in objectives.items()}
        self._log_values(self._parent, values)

    def _finish(self, state: str, reason: str) -> None:
        status = {"complete": "FINISHED", "pruned": "KILLED", "failed": "FAILED"}.get(state)
        if status is None:
            return
        for child in self._children.values():
            self._client.set_terminated(
                child.run_id, status=status if child.run_id == self._current else "FINISHED")
        self._client.set_tag(self._parent, "state", state)
        if reason:
            self._client.set_tag(self._parent, "reason", reason[:_TAG_CHARS])
        self._client.set_terminated(self._parent, status=status)


def _seed_scores(s: SeedRecord) -> dict[str, float | None]:
    """A seed's scores, as its domain stage's child run shows them."""
    return {"final_loss": s.loss, "scratch_loss": s.scratch_loss,
            "best_scratch_loss": s.best_scratch_loss, "nca_effect_pct": s.gain_pct,
            "net_effect_pct": s.net_gain_pct, "speedup": s.speedup, "test_loss": s.test_loss}
