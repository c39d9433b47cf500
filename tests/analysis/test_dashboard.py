"""optuna-dashboard serves what a trial records: study, trials, user attributes, artifacts.

Starts the real ``optuna-dashboard`` on loopback against ``served_study`` (see conftest.py),
checks its JSON API, then drives headless Chromium to the study's trial list.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sysconfig
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import optuna
import pytest
from PIL import Image

from analysis.dashboard import dashboard_command
from analysis.frame import load_studies
from search.record import TrialRecord

READY_TIMEOUT_S = 60.0
CHROMIUM_TIMEOUT_S = 90.0
SECTION_4_KEYS = ("kind", "seeds", "losses", "scratch_losses", "gain_pct", "gains_pct", "curves",
                  "scratch_curves", "band", "alphabet", "source", "upstream", "wall_s")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dashboard_exe() -> str | None:
    beside = Path(sysconfig.get_path("scripts")) / "optuna-dashboard"
    return str(beside) if beside.is_file() else shutil.which("optuna-dashboard")


def _get(url: str, timeout: float = 10.0) -> tuple[bytes, str]:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read(), r.headers.get("Content-Type", "")


def _stop(proc: subprocess.Popen) -> None:
    """Stop a process started with start_new_session=True, and its children."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


DOMAINS_STUDY = "domains-synthetic"
DOMAIN_OBJECTIVES = ("net-effect:code", "net-effect:math", "net-effect:web")


@pytest.fixture(scope="module")
def dashboard(served_study, tmp_path_factory):
    """Base URL of a dashboard on 127.0.0.1 serving ``served_study`` with its artifacts, and a
    synthetic three-domain study (``DOMAINS_STUDY``) written into the same journal."""
    from analysis.synthetic import create_synthetic_study
    from tests.analysis.conftest import journal_storage

    create_synthetic_study(journal_storage(served_study.journal), DOMAINS_STUDY, n_search=6,
                           domains=("code", "math", "web"), objectives=DOMAIN_OBJECTIVES)
    exe = _dashboard_exe()
    if exe is None:
        pytest.skip("optuna-dashboard is not installed")
    port = _free_port()
    cmd = dashboard_command(served_study.journal, served_study.artifact_dir, port=port)
    log = tmp_path_factory.mktemp("dashboard") / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([exe, *cmd[1:]], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"optuna-dashboard exited ({proc.returncode}): {log.read_text()}")
            try:
                _get(f"{base}/api/meta", timeout=2)
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    pytest.fail(f"optuna-dashboard not ready after {READY_TIMEOUT_S:.0f} s: "
                                f"{log.read_text()[-2000:]}")
                time.sleep(0.2)
        yield base
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def study_detail(dashboard, served_study):
    body, _ = _get(f"{dashboard}/api/studies")
    summaries = json.loads(body)["study_summaries"]
    (summary,) = [s for s in summaries if s["study_name"] == served_study.study_name]
    detail, _ = _get(f"{dashboard}/api/studies/{summary['study_id']}")
    return summary, json.loads(detail)


def _attrs(items: list[dict]) -> dict[str, object]:
    """The API sends attribute values as text (JSON for non-strings)."""
    out = {}
    for item in items:
        try:
            out[item["key"]] = json.loads(item["value"])
        except json.JSONDecodeError:
            out[item["key"]] = item["value"]
    return out


def test_api_serves_study_trials_and_user_attributes(study_detail, served_study):
    summary, detail = study_detail
    assert _attrs(summary["user_attrs"])["domain"] == "code"
    assert detail["artifacts"] == [] and summary["directions"] == ["minimize"]
    (rec,) = load_studies(served_study.journal, [served_study.study_name])
    assert [t["number"] for t in detail["trials"]] == [t.number for t in rec.trials]
    for served, stored in zip(detail["trials"], rec.trials, strict=True):
        attrs = _attrs(served["user_attrs"])
        assert set(SECTION_4_KEYS) <= set(attrs), set(SECTION_4_KEYS) - set(attrs)
        assert attrs["kind"] == stored.user_attrs["kind"]
        assert attrs["losses"] == stored.user_attrs["losses"]
        assert served["values"] == stored.values and served["state"] == "Complete"


def test_api_serves_a_multi_domain_study_with_its_pareto_front(dashboard, served_study):
    """The dashboard labels each domain's value with the study's metric names and serves the
    Pareto front between domains as the study's best trials."""
    from analysis.pareto import pareto_mask

    body, _ = _get(f"{dashboard}/api/studies")
    (summary,) = [s for s in json.loads(body)["study_summaries"]
                  if s["study_name"] == DOMAINS_STUDY]
    detail = json.loads(_get(f"{dashboard}/api/studies/{summary['study_id']}")[0])
    assert detail["objective_names"] == list(DOMAIN_OBJECTIVES)  # study.metric_names
    assert _attrs(summary["user_attrs"])["domains"] == ["code", "math", "web"]
    (rec,) = load_studies(served_study.journal, [DOMAINS_STUDY])
    done = [t for t in rec.trials if t.state == optuna.trial.TrialState.COMPLETE]
    front = pareto_mask(np.array([t.values for t in done]), rec.directions)
    served = {t["number"] for t in detail["best_trials"]}
    assert served == {t.number for t, on in zip(done, front, strict=True) if on} and len(served) > 1
    stored = {t.number: t for t in rec.trials}
    for trial in detail["trials"]:
        mine = stored[trial["number"]]
        record = TrialRecord.from_attrs(mine.user_attrs)
        assert record is not None and "by_domain" in _attrs(trial["user_attrs"])
        assert trial["values"] == mine.values == [record.objective(o) for o in DOMAIN_OBJECTIVES]


def test_api_serves_every_artifact_byte_for_byte(dashboard, study_detail, served_study):
    summary, detail = study_detail
    store = optuna.artifacts.FileSystemArtifactStore(str(served_study.artifact_dir))
    for trial in detail["trials"]:
        metas = {a["filename"]: a for a in trial["artifacts"]}
        assert set(metas) == {"curve.png", "nca_sample.gif", "config.json"}
        for name, meta in metas.items():
            url = (f"{dashboard}/artifacts/{summary['study_id']}/{trial['trial_id']}/"
                   f"{meta['artifact_id']}")
            body, content_type = _get(url)
            with store.open_reader(meta["artifact_id"]) as f:
                assert body == f.read(), name
            assert content_type.startswith(meta["mimetype"])


def _chromium() -> str:
    exe = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").is_file()
                                       else None)
    if exe is None:
        pytest.skip("chromium is not installed (CI installs Debian's chromium)")
    return exe


def _run_chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    """Headless Chromium, bounded in time; its whole process group is killed on timeout."""
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
           "--window-size=1400,900", "--virtual-time-budget=15000", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=CHROMIUM_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"chromium did not finish within {CHROMIUM_TIMEOUT_S:.0f} s")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def test_chromium_renders_the_trials(dashboard, study_detail, tmp_path):
    summary, detail = study_detail
    url = f"{dashboard}/dashboard/studies/{summary['study_id']}/trials"
    dom = _run_chromium(["--dump-dom", url], tmp_path / "profile-dom")
    html = dom.stdout.decode("utf-8", "replace")
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", re.sub(
        r"<(style|script)[^>]*>.*?</\1>", " ", html, flags=re.DOTALL)))
    n = len(detail["trials"])
    assert f"{n} Trials" in text, text[:500]
    for number in range(n):
        assert f"Trial {number} " in text
    assert "User Attributes" in text and "anchor:paper" in text
    assert "Artifacts" in text and "nca_sample.gif" in text

    shot = tmp_path / "trials.png"
    _run_chromium([f"--screenshot={shot}", url], tmp_path / "profile-shot")
    with Image.open(shot) as im:
        assert im.size == (1400, 900)
        gray = np.asarray(im.convert("L"), dtype=np.float64)
    assert gray.std() > 20, "screenshot is blank"
    assert (gray < 200).mean() > 0.05, "too little drawn on the page"


def test_dashboard_command_and_cli(tmp_path, capsys):
    from analysis.dashboard import main

    assert dashboard_command("runs/j.log", tmp_path, port=9000) == [
        "optuna-dashboard", "runs/j.log", "--artifact-dir", str(tmp_path),
        "--host", "127.0.0.1", "--port", "9000"]
    assert main(["--storage", "runs/j.log", "--artifact-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == (
        f"optuna-dashboard runs/j.log --artifact-dir {tmp_path} --host 127.0.0.1 --port 8080")
    assert main(["--storage", "j", "--artifact-dir", str(tmp_path / "none")]) == 2
    assert main(["--storage", "j", "--port", "0"]) == 2
    assert "port must be in 1..65535" in capsys.readouterr().err
