"""One study, several domains (issue 15): each trial pre-pre-trains once per seed and trains on
code, math and web, each against that domain's scratch runs; a resumed trial redoes no finished
domain. Tiny preset, real corpora from ../shared/data, the inline executor."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pandas as pd
import pytest

from search import trial as trial_lib
from search.config import config_from_dict
from search.space import setting_from_params
from search.storage import open_storage
from tests.conftest import REPO

DOMAINS = ("code", "math", "web")
PAPER = {"source": "nca", "band": "0.3-0.4", "alphabet": 10}


def _study(shared_data: Path, cache: Path, **study: object) -> dict:
    data = {d: str(shared_data / d) for d in DOMAINS}
    return {"study": {"name": "domains", "domains": list(DOMAINS), "data": data, "preset": "tiny",
                      "seeds": [0], "cache_dir": str(cache), "executor": "inline", "workers": 1,
                      "n_trials": 1, **study},
            "budget": {"nca_tokens": 2048, "domain_tokens": 4096},
            "space": dict(PAPER)}


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """Corpora and scratch baselines are shared by the tests below (as a study shares them)."""
    return tmp_path_factory.mktemp("cache")


def _context(shared_data: Path, cache: Path) -> trial_lib.TrialContext:
    return trial_lib.make_context(config_from_dict(_study(shared_data, cache)))


def _count(monkeypatch, name: str, fail_on: str = "") -> list[str]:
    """Record the domain of every call to ``search.trial.<name>``; raise once on ``fail_on``."""
    calls: list[str] = []
    real = getattr(trial_lib, name)

    def counted(*args, **kwargs):
        domain = args[2].domain
        calls.append(domain)
        if domain == fail_on and calls.count(domain) == 1:
            raise RuntimeError(f"worker lost during {domain}")
        return real(*args, **kwargs)

    monkeypatch.setattr(trial_lib, name, counted)
    return calls


class _Recorder:
    """A reporter that never prunes and keeps what the trial tells the board."""

    def __init__(self) -> None:
        self.told: list[tuple[str, int, int]] = []
        self.domains: list[str] = []

    def report_curve(self, step, point) -> bool:
        return False

    def report_seed(self, seed_index, point) -> bool:
        return False

    def report_domain(self, domain, seeds) -> bool:
        self.domains.append(domain)
        return False

    def set_attr(self, key, value) -> None:
        pass

    def progress(self, stage, seed_index, tokens, total, val_loss=None, scratch_loss=None):
        self.told.append((stage, tokens, total))


def test_nca_stage_once_per_seed_then_every_domain(shared_data, cache, tmp_path, monkeypatch):
    context = _context(shared_data, cache)
    assert [c.domain for c in context.per_domain()] == list(DOMAINS)
    nca_stages = _count(monkeypatch, "_pretrained")
    reporter = _Recorder()
    outcome = trial_lib.run_trial(setting_from_params(PAPER), context, reporter=reporter,
                                  work_dir=tmp_path)
    assert reporter.domains == list(DOMAINS)  # the pruning rule is asked after each domain
    # The board sees the seed's three domain stages as one of 3 x 4096 tokens.
    domain = [(tokens, total) for stage, tokens, total in reporter.told if stage == "domain"]
    assert {total for _, total in domain} == {3 * 4096}
    assert [t for t, _ in domain] == sorted(t for t, _ in domain) and domain[-1][0] == 3 * 4096
    assert nca_stages == ["code"]  # one seed: one NCA stage, the first domain's recipe
    assert len(list((cache / "ppt").glob("*.pt"))) == 1
    record = outcome.record()
    assert list(record.domains) == list(DOMAINS) and record.version == 3
    for d in DOMAINS:
        assert math.isfinite(record.objective(f"net-effect:{d}"))
        assert list((cache / "baselines").glob(f"{d}-*.json")), f"no scratch runs of {d}"
    losses = {d: record.objective(f"loss:{d}") for d in DOMAINS}
    assert len(set(losses.values())) == 3  # each domain scored on its own data
    assert record.objective("loss") == losses["code"]
    assert record.objective("mean-loss") == pytest.approx(sum(losses.values()) / 3)
    assert record.tokens == 2048 + 3 * 4096
    assert sorted(p.name for p in tmp_path.glob("*.json")) == [
        f"{d}-seed0.json" for d in DOMAINS]


def test_a_resumed_trial_redoes_no_finished_domain(shared_data, cache, tmp_path, monkeypatch):
    context = _context(shared_data, cache)
    setting = setting_from_params(PAPER)
    shutil.rmtree(cache / "seeds", ignore_errors=True)  # what the test above shared: train again
    stages = _count(monkeypatch, "_run_seed", fail_on="math")
    with pytest.raises(RuntimeError, match="worker lost during math"):
        trial_lib.run_trial(setting, context, work_dir=tmp_path)
    assert stages == ["code", "math"]
    again = trial_lib.run_trial(setting, context, work_dir=tmp_path)
    assert stages == ["code", "math", "math", "web"]  # code was not trained again
    assert list(again.record().domains) == list(DOMAINS)


def test_one_domain_context_keeps_its_keys(shared_data, cache):
    one = config_from_dict({**_study(shared_data, cache, domains=["code"],
                                     data={"code": str(shared_data / "code")})})
    context = trial_lib.make_context(one)
    assert "domains" not in context.to_dict() and context.per_domain() == (context,)


def write_study_file(path: Path, shared_data: Path, **study: object) -> Path:
    """A smoke-sized three-domain study file: math and web data in its table, code's given on
    the command line (``--data code=PATH``), two objectives per domain and their mean."""
    raw = _study(shared_data, path.parent, objectives=["net-effect", "mean-net-effect"],
                 **study)["study"]
    path.write_text("\n".join([
        "[study]",
        *(f"{k} = {json.dumps(v)}" for k, v in raw.items() if k not in ("data", "cache_dir")),
        f'data = {{ math = "{shared_data / "math"}", web = "{shared_data / "web"}" }}',
        "[budget]", "nca_tokens = 2048", "domain_tokens = 4096",
        "[space]", *(f"{k} = {json.dumps(v)}" for k, v in PAPER.items()), ""]))
    return path


def check_multi_domain_run(run_dir: Path) -> list[optuna.trial.FrozenTrial]:
    """The study a multi-domain run left: four objectives named on the study, every trial
    complete with a version-3 record whose mean objective is the mean of the three."""
    storage = open_storage(str(run_dir / "journal.log"), create=False)
    loaded = optuna.load_study(study_name="domains", storage=storage)
    names = ["net-effect:code", "net-effect:math", "net-effect:web", "mean-net-effect"]
    assert loaded.metric_names == names and len(loaded.directions) == 4
    assert loaded.user_attrs["domains"] == list(DOMAINS)
    # the study's one setting (its space is fixed): a later proposal of it is a repeat
    trials = [t for t in loaded.get_trials() if "duplicate_of" not in t.user_attrs]
    for trial in trials:
        assert trial.state == optuna.trial.TrialState.COMPLETE, trial.user_attrs
        assert trial.user_attrs["record_version"] == 3
        assert trial.user_attrs["domains"] == list(DOMAINS)
        assert trial.values[3] == pytest.approx(sum(trial.values[:3]) / 3)
    return trials


def test_multi_domain_study_through_the_cli_and_its_report(shared_data, cache, tmp_path):
    """Local workers (the inline executor runs the same trial code in process, tested above)."""
    path = write_study_file(tmp_path / "domains.toml", shared_data, executor="local",
                            n_trials=1, workers=1)
    cmd = [sys.executable, "-m", "search.run", "--study", str(path), "--run-dir",
           str(tmp_path / "run"), "--cache-dir", str(cache), "--quiet",
           "--data", f"code={shared_data / 'code'}"]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(check_multi_domain_run(tmp_path / "run")) == 1
    # Each finished trial's line ends with its net effect on every domain; one table per domain.
    assert re.search(r"\| net code [+-]\d+\.\d\d%, math [+-]\d+\.\d\d%, web [+-]", result.stdout)
    assert [d for d in DOMAINS if f"\n{d}:\n" in result.stdout] == list(DOMAINS), result.stdout
    # The report of the real study: per-domain tables, Pareto front.
    out = tmp_path / "report"
    report = subprocess.run([sys.executable, "-m", "analysis.report", "--storage",
                             str(tmp_path / "run" / "journal.log"), "--out", str(out)],
                            cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert report.returncode == 0, report.stdout + report.stderr
    settings = pd.read_csv(out / "settings.csv")
    assert sorted(settings["domain"]) == sorted(DOMAINS)
    pareto = pd.read_csv(out / "pareto.csv")
    assert len(pareto) >= 1 and {f"net-effect:{d}" for d in DOMAINS} <= set(pareto.columns)
    text = (out / "report.md").read_text()
    assert all(f"Settings on {d}" in text for d in DOMAINS) and "Pareto" in text
