"""search.confirm: the finalists, one grid for every arm, the [confirm] section's checks, and the
confirmation phase through the real command line (tiny preset): it runs after the search, runs
alone with --confirm-only, resumes after kill -9 without redoing finished runs, and never reads
the test split during the search."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from search import confirm
from search._proposals import setting_json
from search.config import load_study_config
from search.space import Setting
from search.trial import TrialContext
from tests._cli import refused
from tests.conftest import REPO
from tests.faults._harness import link_cache

CONTEXT = TrialContext(domain="code", data="", tokenizer="byte", preset="tiny", nca_tokens=2048,
                       domain_tokens=4096, seeds=(0, 1), cache_dir="/nonexistent")


def _search(settings_values: list[tuple[Setting, float, str]]) -> optuna.Study:
    study = optuna.create_study(direction="maximize")
    for setting, value, kind in settings_values:
        study.add_trial(create_trial(state=TrialState.COMPLETE, value=value, user_attrs={
            "setting": setting_json(setting), "kind": kind, "net_effect_pct": value,
            "nca_effect_pct": value + 1}))
    return study


def test_finalists_are_the_top_settings_and_the_paper_anchor():
    paper = Setting(band=(0.3, 0.4))
    a, b = Setting(band=(0.2, 0.3), alphabet=4), Setting(band=(0.5, 1.0), alphabet=2)
    # setting a ran twice (a retried trial, say): one finalist
    study = _search([(paper, -1.0, "anchor:paper"), (a, 2.0, "search"), (b, 1.0, "search"),
                     (a, 2.0, "search")])
    found = confirm.finalists(study, load_study_config("code", {"confirm": {"top": 2}}))
    assert [(f.arm, f.why) for f in found] == [("#1", "top 1"), ("#2", "top 2"),
                                                ("#0", "paper anchor")]
    assert found[0].search_effects == {"nca": 3.0, "net": 2.0}


def test_finalists_skip_repeats_and_merge_the_anchor_when_it_is_on_top():
    paper, a = Setting(band=(0.3, 0.4)), Setting(band=(0.2, 0.3), alphabet=4)
    study = optuna.create_study(direction="maximize")
    for setting, value, kind, extra in ((paper, 3.0, "anchor:paper", {}),
                                        (a, 2.0, "search", {}),
                                        (a, 2.0, "search", {"duplicate_of": 1})):
        study.add_trial(create_trial(state=TrialState.COMPLETE, value=value, user_attrs={
            "setting": setting_json(setting), "kind": kind, **extra}))
    found = confirm.finalists(study, load_study_config("code", {"confirm": {"top": 2}}))
    assert [(f.arm, f.why) for f in found] == [("#0", "top 1, paper anchor"), ("#1", "top 2")]


def test_every_arm_runs_the_same_grid_and_a_finalist_keeps_its_nca_stage():
    config = load_study_config("code", {"confirm": {"lr_grid": [0.5, 1, 2]}})
    found = [confirm.Finalist(arm="#4", number=4, setting=Setting(band=(0.2, 0.3), lr=1e-3),
                              search_value=1.0, search_effects={}, why="top 1"),
             confirm.Finalist(arm="#7", number=7, setting=Setting(embed_init="scaled"),
                              search_value=0.5, search_effects={}, why="top 2")]
    runs, plan = confirm.plan_runs(found, config, CONTEXT)
    grids: dict[str, list[float]] = {}
    for run in runs:
        grids.setdefault(run.arm, []).append(run.lr_x)
    assert set(grids) == {"#4", "#7", "scratch:paper", "scratch:proxy", "scratch:matched#7"}
    assert all(sorted(g) == [0.5, 1.0, 2.0] for g in grids.values())  # equal tuning
    lr = 3e-3  # the tiny preset's
    assert {r.setting.lr for r in runs if r.arm == "#4"} == {0.5 * lr, lr, 2 * lr}
    # its NCA stage keeps the lr it was searched with (the recipe's ratio of its own lr 1e-3)
    assert {r.setting.ppt_lr for r in runs if r.arm == "#4"} == {runs[0].setting.ppt_lr}
    by_arm = {f["arm"]: f for f in plan["finalists"]}
    assert by_arm["#4"]["matched"] == "scratch:paper"  # the study's recipe is the paper's
    assert by_arm["#7"]["matched"] == "scratch:matched#7"  # its own embedding init
    assert plan["lr_grid"] == [0.5, 1.0, 2.0] and plan["seeds"] == [1000, 1001, 1002]


@pytest.mark.parametrize("body, needle", [
    ("top = 0", "[confirm] top = 0: expected a value in [1, 20]"),
    ("seeds = [1, 1000]", "overlap the search's seeds"),
    ("lr_grid = [0.5, 0.0]", "[confirm] lr_grid = [0.5, 0.0]"),
    ("lr_grid = [-1.0]", "[confirm] lr_grid = [-1.0]"),
    ("seeds = []", "[confirm] seeds = []"),
    ("top = 2.5", "[confirm] top = 2.5: expected an integer"),
    ("bogus = 1", "unknown key(s) ['bogus'] in [confirm]"),
])
def test_bad_confirm_input_is_refused_before_anything_is_written(tmp_path, capsys, monkeypatch,
                                                                 body, needle):
    from search import run

    monkeypatch.chdir(tmp_path)
    study = tmp_path / "study.toml"
    study.write_text((REPO / "studies" / "code.toml").read_text() + f"\n[confirm]\n{body}\n")
    line = refused(capsys, run.main, ["--study", str(study), "--run-dir", str(tmp_path / "r"),
                                      "--cache-dir", str(tmp_path / "c")], tmp_path)
    assert needle in line, line


def test_confirm_only_without_a_finished_search_is_refused(tmp_path, capsys, monkeypatch):
    from search import run

    monkeypatch.chdir(tmp_path)
    line = refused(capsys, run.main, ["--study", "smoke", "--run-dir", str(tmp_path / "r"),
                                      "--cache-dir", str(tmp_path / "c"), "--confirm-only"],
                   tmp_path)
    assert "has no completed trial to confirm" in line


# -- through the command line (tiny preset) ------------------------------------------------------


def _cmd(tmp_path: Path, *extra: str) -> list[str]:
    study = tmp_path / "smoke-confirm.toml"
    if not study.exists():
        study.write_text((REPO / "studies" / "smoke.toml").read_text().replace(
            "[confirm]\nenabled = false", "[confirm]\nenabled = true\nseeds = [7]\n"
            "lr_grid = [1.0, 2.0]"))
    return [sys.executable, "-m", "search.run", "--study", str(study), "--run-dir",
            str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache"), "--n-trials", "2",
            "--seeds", "0", *extra]


def _run(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_cmd(tmp_path, *extra), cwd=REPO, capture_output=True, text=True,
                          timeout=900, check=False)


def _confirm_trials(tmp_path: Path) -> list[optuna.trial.FrozenTrial]:
    from search.storage import open_storage

    storage = open_storage(str(tmp_path / "run" / "journal.log"), create=False)
    return optuna.load_study(study_name="smoke.confirm", storage=storage).get_trials()


def _storage(tmp_path: Path):
    from search.storage import open_storage

    return open_storage(str(tmp_path / "run" / "journal.log"), create=False)


@pytest.mark.slow
def test_a_confirmation_killed_with_kill_9_resumes_without_redoing_finished_runs(tmp_path,
                                                                                  reference):
    # The search is the reference run's (same study, seeds and trials): its seeds are read back.
    link_cache(reference.root, tmp_path / "cache", seeds=True)
    first = _run(tmp_path, "--no-confirm")
    assert first.returncode == 0, first.stderr
    proc = subprocess.Popen(_cmd(tmp_path, "--confirm-only"), cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 600
    done: list[optuna.trial.FrozenTrial] = []
    while time.time() < deadline and proc.poll() is None:
        try:
            trials = _confirm_trials(tmp_path)
        except (KeyError, ValueError):
            trials = []
        done = [t for t in trials if t.state == TrialState.COMPLETE]
        if done and any(t.state == TrialState.RUNNING for t in trials):
            break
        time.sleep(0.3)
    assert proc.poll() is None and done, "the confirmation ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its workers
    proc.communicate()
    stamps = {t.number: t.datetime_complete for t in done}
    again = _run(tmp_path, "--confirm-only")
    assert again.returncode == 0, again.stderr
    trials = _confirm_trials(tmp_path)
    assert {t.number: t.datetime_complete for t in trials if t.number in stamps} == stamps
    finished = [(t.user_attrs["arm"], t.user_attrs["lr_x"]) for t in trials
                if t.state == TrialState.COMPLETE]
    assert len(finished) == len(set(finished))  # no arm and grid point ran twice
    assert not [t for t in trials if t.state == TrialState.RUNNING]


def test_a_search_never_reads_the_test_split(tmp_path, monkeypatch):
    """A search trial and its scratch runs touch no test-split data: reading it fails."""
    from lm.corpora import DomainCorpus
    from search import trial as trial_lib
    from search.trial import make_context

    config = load_study_config("smoke", {"study": {"cache_dir": str(tmp_path),
                                                   "seeds": [0]}})
    context = make_context(config)
    corpus = trial_lib._corpus(context)

    class Sealed:
        def __getattr__(self, name):
            raise AssertionError(f"the search read the test split ({name})")

    sealed = DomainCorpus(domain=corpus.domain, key=corpus.key, tokenizer=corpus.tokenizer,
                          train=corpus.train, val=corpus.val, test=Sealed(),  # type: ignore
                          manifest=corpus.manifest)
    monkeypatch.setattr(trial_lib, "_corpus", lambda ctx: sealed)
    outcome = trial_lib.run_trial(Setting(band=(0.2, 0.3), alphabet=2), context)
    assert outcome.seeds[0].record.test_loss is None
