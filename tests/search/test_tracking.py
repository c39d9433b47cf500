"""Tracking into MLflow (search.tracking): the `--track` values, a retried trial's runs, and the
smoke study tracked into real MLflow stores (a folder, a SQLite database, a `mlflow server` on
loopback, and one that is down), read back with `MlflowClient`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from lm.presets import get_preset
from search import tracking
from search._proposals import setting_from_json
from search.config import load_study_config
from search.record import TrialRecord
from search.space import Setting
from tests._cli import refused
from tests.conftest import REPO
from tests.faults._harness import link_cache

try:
    import mlflow
except ImportError:  # the values and the refusals are checked without it
    mlflow = None
needs_mlflow = pytest.mark.skipif(mlflow is None, reason="MLflow is the optional extra: pip "
                                  "install -e \".[track]\" (the test extra installs it)")

SERVER_WAIT_S = 120.0
"""Longest wait for `mlflow server` to answer (it creates its database first: ~25 s here)."""


@pytest.fixture(autouse=True)
def _tracking_on():
    """Each test starts with tracking on in this process (a failure turns it off for good)."""
    tracking._OFF.clear()
    yield
    tracking._OFF.clear()


# -- what --track accepts -----------------------------------------------------------------------


@pytest.mark.parametrize("text, uri", [
    ("", None), ("mlflow", ""), ("mlflow:sqlite:///runs/m.db", "sqlite:///runs/m.db"),
    ("mlflow:http://127.0.0.1:5000", "http://127.0.0.1:5000"), ("mlflow:file:/tmp/mlruns",
                                                                "file:/tmp/mlruns"),
    ("mlflow:mlruns", "mlruns"), ("mlflow:postgresql+psycopg://u@db:5432/m",
                                  "postgresql+psycopg://u@db:5432/m"),
])
def test_track_values_accepted(text, uri):
    assert tracking.parse_track(text) == uri


@pytest.mark.parametrize("text", ["wandb", "mlflow:", "mlflow:ftp://host/x", "mlflow:http://",
                                  "mlflow:localhost:5000", "mlflow:sqlite:", "MLflow"])
def test_track_values_refused_name_the_value_and_what_is_accepted(text):
    with pytest.raises(ValueError) as err:
        tracking.parse_track(text)
    assert repr(text) in str(err.value) and "mlflow:URI" in str(err.value)


def test_default_store_is_sqlite_in_the_run_folder(tmp_path):
    config = load_study_config("smoke", {"study": {"run_dir": str(tmp_path / "run"),
                                                   "track": "mlflow"}})
    got = tracking.from_config(config)
    assert got is not None and got.experiment == "smoke"
    assert got.uri == f"sqlite:///{tmp_path / 'run' / 'mlflow' / 'mlflow.db'}"
    assert got.artifacts == (tmp_path / "run" / "mlflow" / "artifacts").as_uri()
    relative = load_study_config("smoke", {"study": {"track": "mlflow:file:rel/mlruns"}})
    assert tracking.from_config(relative).uri == (Path.cwd() / "rel" / "mlruns").as_uri()
    assert tracking.from_config(load_study_config("smoke")) is None


def test_bad_track_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch):
    from search import run

    monkeypatch.chdir(tmp_path)
    line = refused(capsys, run.main, ["--study", "smoke", "--run-dir", str(tmp_path / "r"),
                                      "--cache-dir", str(tmp_path / "c"), "--track", "wandb"],
                   tmp_path)
    assert "'wandb'" in line and "mlflow:URI" in line


def test_track_without_mlflow_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    from search import run

    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "mlflow", None)  # what `import mlflow` meets without it
    line = refused(capsys, run.main, ["--study", "smoke", "--run-dir", str(tmp_path / "r"),
                                      "--cache-dir", str(tmp_path / "c"), "--track", "mlflow"],
                   tmp_path)
    assert line == 'error: --track mlflow needs the mlflow package: pip install -e ".[track]"'


# -- one trial's runs, on a real store ------------------------------------------------------------


def _runs(uri: str, experiment: str) -> list[mlflow.entities.Run]:
    client = mlflow.MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment!r} in {uri}"
    return client.search_runs([found.experiment_id], max_results=1000)


def _history(uri: str, run: mlflow.entities.Run, key: str) -> list[tuple[int, float]]:
    points = mlflow.MlflowClient(uri).get_metric_history(run.info.run_id, key)
    return sorted((m.step, m.value) for m in points)


@needs_mlflow
def test_a_retried_trial_continues_its_runs_without_duplicates(tmp_path):
    """Attempt 1 dies mid-stage; the retry (another trial number, same origin) resumes the stage
    at its last checkpoint, so it logs that point again: one parent, one child, each step once."""
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    config = tracking.start(tracking.TrackingConfig(uri=uri, experiment="unit", storage_key="k"))
    assert config is not None and config.experiment_id
    setting = Setting(band=(0.3, 0.4))
    first = tracking.open_trial(config, study="unit", number=3, attrs={"kind": "search"},
                                setting=setting, domain="code")
    assert first is not None
    for tokens, loss in ((0, 5.0), (10, 4.0)):
        first.log_eval("domain", 0, "code", tokens, loss, loss + 0.5)
    retry = tracking.open_trial(config, study="unit", number=5, setting=setting, domain="code",
                                attrs={"kind": "search", "origin": 3, "attempt": 1})
    assert retry is not None and retry.parent_run_id == first.parent_run_id
    for tokens, loss in ((10, 4.0), (20, 3.5)):
        retry.log_eval("domain", 0, "code", tokens, loss, loss + 0.5)
    retry.finish("pruned", "pruned at 20 downstream tokens of seed 0")

    runs = _runs(uri, "unit")
    parents = [r for r in runs if "parent_key" not in r.data.tags]
    children = [r for r in runs if "parent_key" in r.data.tags]
    assert len(parents) == 1 and len(children) == 1
    parent, child = parents[0], children[0]
    assert parent.data.tags["trial"] == "5" and parent.data.tags["attempt"] == "1"
    assert parent.data.tags["state"] == "pruned" and parent.info.status == "KILLED"
    assert parent.data.params == tracking.setting_params(setting)
    assert parent.data.params["band"] == "[0.3, 0.4]"
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert child.info.status == "KILLED"
    assert _history(uri, child, "val_loss") == [(0, 5.0), (10, 4.0), (20, 3.5)]
    assert _history(uri, child, "scratch_val_loss") == [(0, 5.5), (10, 4.5), (20, 4.0)]
    assert not tracking.stopped()


@needs_mlflow
def test_a_confirmation_run_is_tagged_with_its_phase_arm_and_lr(tmp_path):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    config = tracking.start(tracking.TrackingConfig(uri=uri, experiment="unit", storage_key="k",
                                                    phase="confirmation"))
    assert config is not None
    tracker = tracking.open_trial(config, study="unit.confirm", number=0, setting=Setting(),
                                  domain="code", attrs={"kind": "confirm:#1", "arm": "#1",
                                                        "lr_x": 0.5})
    assert tracker is not None
    tracker.finish("complete")
    (run,) = _runs(uri, "unit")
    assert run.data.tags["phase"] == "confirmation" and run.data.tags["arm"] == "#1"
    assert run.data.tags["lr_x"] == "0.5" and run.info.run_name == "#1 lr x0.5"
    assert run.data.tags["study"] == "unit.confirm" and run.info.status == "FINISHED"


@needs_mlflow
def test_an_unreachable_tracker_warns_once_and_turns_tracking_off(capsys):
    config = tracking.TrackingConfig(uri=f"http://127.0.0.1:{_closed_port()}", experiment="x",
                                     storage_key="k", experiment_id="1")
    assert tracking.start(config) is None
    assert tracking.open_trial(config, study="x", number=0, attrs={}, setting=Setting(),
                               domain="code") is None
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"warning: tracking to {config.uri} stopped: ")
    assert err[0].endswith("; the study goes on") and tracking.stopped()


# -- the smoke study, tracked ---------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _study(run_dir: Path, cache_dir: Path, track: str, *extra: str
           ) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "search.run", "--study", "smoke", "--run-dir", str(run_dir),
           "--cache-dir", str(cache_dir), "--n-trials", "2", "--seeds", "0", "--track", track,
           *extra]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600,
                          check=False)


def _trials(run_dir: Path) -> list[optuna.trial.FrozenTrial]:
    from search.storage import open_storage

    storage = open_storage(str(run_dir / "journal.log"), create=False)
    return optuna.load_study(study_name="smoke", storage=storage).get_trials()


def _check_store(uri: str, run_dir: Path, *, trained: bool) -> None:
    """One parent run per trial that ran, with its setting as params and its scores; a child run
    per seed and stage, whose curves hold one point per evaluation done."""
    runs = _runs(uri, "smoke")
    parents = [r for r in runs if "parent_key" not in r.data.tags]
    by_origin = {int(r.data.tags["origin"]): r for r in parents}
    assert len(by_origin) == len(parents), "a trial has two parent runs"
    ran = [t for t in _trials(run_dir) if "job_work_dir" in t.user_attrs]
    assert sorted(by_origin) == sorted(t.user_attrs.get("origin", t.number) for t in ran)
    nca_points = get_preset("tiny").evals_per_stage + 1 if trained else 0
    for t in ran:
        parent = by_origin[t.number]
        assert parent.data.params == tracking.setting_params(
            setting_from_json(t.user_attrs["setting"]))
        state = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned"}[t.state]
        assert parent.data.tags["state"] == state
        assert parent.data.tags["kind"] == t.user_attrs["kind"]
        if t.state != TrialState.COMPLETE:
            continue
        assert parent.info.status == "FINISHED"
        for key in ("nca_effect_pct", "net_effect_pct"):
            assert parent.data.metrics[key] == pytest.approx(t.user_attrs[key], rel=1e-12)
        record = TrialRecord.from_attrs(t.user_attrs)
        assert record is not None
        mine = {(r.data.tags["seed"], r.data.tags["stage"]): r for r in runs
                if r.data.tags.get("parent_key") == parent.data.tags["run_key"]}
        assert set(mine) == {(str(s.seed), stage) for s in record.seeds
                             for stage in ("nca", "domain")}
        for s in record.seeds:
            domain, nca = mine[str(s.seed), "domain"], mine[str(s.seed), "nca"]
            assert domain.data.tags["mlflow.parentRunId"] == parent.info.run_id
            assert _history(uri, domain, "val_loss") == pytest.approx(list(s.curve), rel=1e-12)
            assert _history(uri, domain, "scratch_val_loss") == pytest.approx(
                list(s.scratch_curve), rel=1e-12)
            assert domain.data.metrics["nca_effect_pct"] == pytest.approx(s.gain_pct, rel=1e-12)
            assert len(_history(uri, nca, "val_loss")) == nca_points
            assert "final_val_loss" in nca.data.metrics
            assert (domain.data.tags.get("shared") == "true") is not trained
        names = {a.path for a in mlflow.MlflowClient(uri).list_artifacts(parent.info.run_id)}
        assert {"curve.png", "config.json"} <= names, names


@pytest.fixture(scope="module")
def sqlite_study(tmp_path_factory, reference):
    """The smoke study, trained (the reference run's corpus, scratch runs and NCA data are
    shared, its NCA checkpoints and seeds are not), tracked into a SQLite database by its
    workers as it trains; later studies reuse its cache (their seeds are read back)."""
    root = tmp_path_factory.mktemp("tracked")
    link_cache(reference.root, root / "cache", skip=("ppt",))
    uri = f"sqlite:///{root / 'mlflow.db'}"
    result = _study(root / "run", root / "cache", f"mlflow:{uri}")
    return root, uri, result


@pytest.mark.slow
@needs_mlflow
def test_smoke_study_tracked_into_sqlite(sqlite_study):
    root, uri, result = sqlite_study
    assert result.returncode == 0, result.stderr[-3000:]
    assert "warning" not in result.stderr, result.stderr
    assert f"tracking:  mlflow ui --backend-store-uri {uri}" in result.stdout
    _check_store(uri, root / "run", trained=True)


@pytest.mark.slow
@needs_mlflow
def test_smoke_study_tracked_into_a_folder(sqlite_study, tmp_path, monkeypatch):
    root, _, _ = sqlite_study
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 reads a folder on request
    uri = (tmp_path / "mlruns").as_uri()
    result = _study(tmp_path / "run", root / "cache", f"mlflow:file:{tmp_path / 'mlruns'}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "mlruns").is_dir()
    _check_store(uri, tmp_path / "run", trained=False)


@pytest.mark.slow
@needs_mlflow
def test_smoke_study_tracked_with_the_inline_executor(sqlite_study, tmp_path):
    """The trials run in the driver's process: it logs them, into the default store."""
    root, _, _ = sqlite_study
    result = _study(tmp_path / "run", root / "cache", "mlflow", "--executor", "inline")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "warning" not in result.stderr, result.stderr
    _check_store(f"sqlite:///{tmp_path / 'run' / 'mlflow' / 'mlflow.db'}", tmp_path / "run",
                 trained=False)


@pytest.fixture
def mlflow_server(tmp_path):
    """`mlflow server` on a free loopback port, its own SQLite database and artifact folder."""
    port = _closed_port()
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
           "--artifacts-destination", str(tmp_path / "server-artifacts")]
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 - closed below, after the server
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_health(url, proc, tmp_path / "server.log")
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        log.close()


def _wait_for_health(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    import urllib.request

    deadline = time.monotonic() + SERVER_WAIT_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"mlflow server did not answer within {SERVER_WAIT_S:.0f} s: "
                f"{log.read_text()[-2000:]}")


@pytest.mark.slow
@needs_mlflow
def test_smoke_study_tracked_into_an_mlflow_server(sqlite_study, mlflow_server, tmp_path):
    root, _, _ = sqlite_study
    result = _study(tmp_path / "run", root / "cache", f"mlflow:{mlflow_server}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "warning" not in result.stderr, result.stderr
    assert f"tracking:  open {mlflow_server}" in result.stdout
    _check_store(mlflow_server, tmp_path / "run", trained=False)
    assert list((tmp_path / "server-artifacts").rglob("curve.png")), "no artifact reached it"


@pytest.mark.slow
@needs_mlflow
def test_a_study_whose_server_is_down_completes_with_one_warning(sqlite_study, tmp_path):
    root, _, _ = sqlite_study
    url = f"http://127.0.0.1:{_closed_port()}"
    result = _study(tmp_path / "run", root / "cache", f"mlflow:{url}")
    assert result.returncode == 0, result.stderr[-3000:]
    warnings = [line for line in result.stderr.splitlines() if "warning" in line.lower()]
    assert len(warnings) == 1, result.stderr
    assert warnings[0].startswith(f"warning: tracking to {url} stopped: ")
    trials = _trials(tmp_path / "run")
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 2
    assert "tracking:" not in result.stdout, "the closing lines point at runs that are not there"


@pytest.mark.slow
@needs_mlflow
def test_the_dry_run_names_the_tracking_store_and_creates_nothing(sqlite_study, tmp_path):
    root, _, _ = sqlite_study
    cmd = [sys.executable, "-m", "search.run", "--study", "smoke", "--run-dir",
           str(tmp_path / "run"), "--cache-dir", str(root / "cache"), "--track", "mlflow",
           "--dry-run"]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600,
                            check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    store = tmp_path / "run" / "mlflow" / "mlflow.db"
    assert f"  tracking:    MLflow experiment 'smoke' at sqlite:///{store}" in result.stdout
    assert not (tmp_path / "run" / "mlflow").exists()


@pytest.mark.slow
@needs_mlflow
def test_the_confirmation_logs_into_the_study_experiment_tagged_as_such(sqlite_study, tmp_path):
    root, _, _ = sqlite_study
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    # The smallest confirmation that still has every kind of arm (a finalist, the paper anchor,
    # the scratch recipes): one finalist at one grid point, one fresh seed.
    study = tmp_path / "smoke.toml"
    study.write_text((REPO / "studies" / "smoke.toml").read_text().replace(
        "[confirm]\n", "[confirm]\ntop = 1\nlr_grid = [1.0]\n"))
    result = _study(tmp_path / "run", root / "cache", f"mlflow:{uri}", "--study", str(study),
                    "--confirm", "--confirm-seeds", "1000")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "warning" not in result.stderr, result.stderr
    from search.storage import open_storage

    storage = open_storage(str(tmp_path / "run" / "journal.log"), create=False)
    confirm = optuna.load_study(study_name="smoke.confirm", storage=storage).get_trials()
    ran = {t.number: t for t in confirm if "job_work_dir" in t.user_attrs}
    assert ran, "the confirmation ran no trial"
    parents = [r for r in _runs(uri, "smoke") if "parent_key" not in r.data.tags]
    confirmed = {int(r.data.tags["trial"]): r for r in parents
                 if r.data.tags["phase"] == "confirmation"}
    assert sorted(confirmed) == sorted(ran)
    for number, run in confirmed.items():
        attrs = ran[number].user_attrs
        assert run.data.tags["study"] == "smoke.confirm"
        assert run.data.tags["arm"] == str(attrs["arm"])
        assert run.data.tags["lr_x"] == str(attrs["lr_x"])
    assert {r.data.tags["phase"] for r in parents} == {"search", "confirmation"}
