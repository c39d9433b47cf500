"""Live progress: the record, the rate-limited atomic writer, the trainer hook, the reporter."""

from __future__ import annotations

import json
import os

import numpy as np
import optuna
import pytest

from search.progress import (
    Progress,
    ProgressWriter,
    across_domains,
    domain_stage_tokens,
    read_progress,
    tokens_left,
)


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_progress_round_trips_through_json():
    p = Progress(trial=3, seed_index=1, n_seeds=2, stage="domain", tokens=4096, total=16384,
                 tokens_per_s=2048.0, tokens_left=12288, val_loss=2.5, scratch_loss=2.6,
                 host="h", pid=7, updated_at=5.0)
    assert Progress.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    assert p.fraction == 0.25 and p.eta_s() == 6.0 and p.label == "domain stage"


def test_reader_returns_none_for_missing_or_torn_files(tmp_path):
    assert read_progress(tmp_path / "progress.json") is None
    (tmp_path / "progress.json").write_text('{"trial": 1, "stage"')
    assert read_progress(tmp_path / "progress.json") is None


def test_writer_rate_limits_within_a_stage_and_writes_stage_changes_at_once(tmp_path):
    clock = _Clock()
    path = tmp_path / "w" / "progress.json"
    writer = ProgressWriter(path, trial=4, n_seeds=2, every_s=2.0, clock=clock)
    assert writer.update("nca", 0, 512, 8192) is not None  # first call: a stage change
    clock.now += 1.0
    assert writer.update("nca", 0, 1024, 8192) is None  # within 2 s: skipped
    assert read_progress(path).tokens == 512
    clock.now += 1.5
    written = writer.update("nca", 0, 2048, 8192, tokens_left=6144)
    assert written is not None and read_progress(path) == written
    assert written.tokens_per_s == pytest.approx((2048 - 512) / 2.5)
    assert written.eta_s() == pytest.approx(6144 / written.tokens_per_s)
    clock.now += 0.1
    changed = writer.update("transfer", 0, 0, 0, tokens_left=100)
    assert changed is not None and changed.stage == "transfer"
    # A new stage without a throughput of its own keeps the last one for its ETA.
    assert changed.tokens_per_s == written.tokens_per_s
    assert [p.name for p in path.parent.iterdir()] == ["progress.json"], "temp files left over"


def test_validation_losses_are_written_at_once_and_kept(tmp_path):
    clock = _Clock()
    writer = ProgressWriter(tmp_path / "p.json", trial=1, n_seeds=1, clock=clock)
    writer.update("domain", 0, 0, 100)
    clock.now += 0.1
    assert writer.update("domain", 0, 50, 100, val_loss=2.0, scratch_loss=2.2) is not None
    clock.now += 5
    later = writer.update("domain", 0, 60, 100)
    assert (later.val_loss, later.scratch_loss) == (2.0, 2.2)
    assert writer.update("domain", 1, 0, 100).val_loss is None, "a new seed starts afresh"


def test_writer_never_raises_into_training(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    writer = ProgressWriter(blocker / "progress.json", trial=2, n_seeds=1, every_s=0.0)
    for step in range(3):
        assert writer.update("nca", 0, step, 10) is None
    assert len([r for r in caplog.records if "cannot be written" in r.message]) == 1


def test_tokens_left_counts_later_stages_and_seeds():
    kw = {"nca_tokens": 100, "domain_tokens": 1000}
    assert tokens_left("data", 0, 2, 0, 0, **kw) == 2200
    assert tokens_left("nca", 0, 2, 40, 100, **kw) == 60 + 1000 + 1100
    assert tokens_left("transfer", 1, 2, 0, 0, **kw) == 1000
    assert tokens_left("domain", 1, 2, 400, 1000, **kw) == 600


def test_a_seeds_domain_stages_are_told_as_one():
    told = []
    tell = across_domains(lambda stage, **kw: told.append((stage, kw)), 1, 3, 100)
    tell("domain", tokens=40, total=100, val_loss=2.0)
    tell("transfer", tokens=0, total=0)
    assert told == [("domain", {"tokens": 140, "total": 300, "val_loss": 2.0}),
                    ("transfer", {"tokens": 0, "total": 0})]
    assert domain_stage_tokens(100, 3) == 300

    def alone(stage, **kw):
        return None
    assert across_domains(alone, 0, 1, 100) is alone


def test_trainer_reports_tokens_after_every_step(tiny_corpus):
    from lm.presets import build_model, get_preset
    from lm.trainer import train

    preset = get_preset("tiny")
    train_ds, val_ds = tiny_corpus
    cfg = preset.train_config("domain", seq_len=train_ds.seq_len, seed=0, total_tokens=2048)
    seen: list[tuple[int, int]] = []
    result = train(build_model(preset, train_ds.vocab_size, seed=0), train_ds, val_ds, cfg,
                   progress=lambda n, total: seen.append((n, total)))
    assert len(seen) == result.steps and seen[-1] == (result.tokens_seen, result.tokens_seen)
    assert [n for n, _ in seen] == sorted({n for n, _ in seen})


@pytest.fixture
def tiny_corpus():
    from lm.data import TokenArrayDataset

    rng = np.random.default_rng(0)
    return (TokenArrayDataset(rng.integers(0, 64, (64, 65)), 64),
            TokenArrayDataset(rng.integers(0, 64, (8, 65)), 64))


def test_reporter_writes_the_file_and_a_rate_limited_user_attribute(tmp_path, monkeypatch):
    from search.config import PrunerSection
    from search.jobs import TrialPayload, _OptunaReporter
    from search.space import Setting
    from search.trial import TrialContext

    storage = f"{tmp_path / 'journal.log'}"
    from search.storage import open_storage

    study = optuna.create_study(study_name="s", storage=open_storage(storage))
    trial = study.ask()
    context = TrialContext(domain="code", data="", tokenizer="byte", preset="tiny",
                           nca_tokens=100, domain_tokens=1000, seeds=(0, 1),
                           cache_dir=str(tmp_path))
    payload = TrialPayload(storage=storage, study_name="s", trial_id=trial._trial_id,
                           setting=Setting(band=(0.2, 0.3), alphabet=2), context=context,
                           pruner=PrunerSection(), objectives=("loss",),
                           work_dir=str(tmp_path / "trial"))
    reporter = _OptunaReporter(payload)
    on_disk = read_progress(tmp_path / "trial" / "progress.json")
    assert on_disk.stage == "starting" and on_disk.trial == trial.number
    assert on_disk.pid == os.getpid() and on_disk.tokens_left == 2200
    reporter.progress("nca", 0, 50, 100)
    assert read_progress(tmp_path / "trial" / "progress.json").stage == "nca"

    def attr():
        return study.trials[trial.number].user_attrs["progress"]

    assert attr()["stage"] == "starting", "the attribute waits 10 s between updates"
    monkeypatch.setattr("search.jobs.PROGRESS_ATTR_EVERY_S", 0.0)  # as if 10 s had passed
    reporter.progress("domain", 0, 500, 1000, val_loss=2.0, scratch_loss=2.1)
    assert attr()["stage"] == "domain" and attr()["val_loss"] == 2.0
    assert attr()["tokens_left"] == 500 + 1100


def test_status_reads_the_work_folder_the_driver_recorded(tmp_path):
    """search.status shows the worker's file (written every 2 s and at each stage change), not
    the user attribute (every 10 s), from the folder the driver recorded, or from that folder's
    name under the run folder it is given (the run seen under another path)."""
    from search import status
    from search.progress import progress_path

    study = optuna.create_study()
    trial = study.ask()
    old = Progress(trial=trial.number, seed_index=0, n_seeds=2, stage="starting", tokens=0,
                   total=0, updated_at=1000.0)
    study._storage.set_trial_user_attr(trial._trial_id, "progress", old.to_dict())
    recorded = tmp_path / "run" / "trials" / "00000-abc"
    study._storage.set_trial_user_attr(trial._trial_id, "job_work_dir", str(recorded))

    def stage(run_dir=None):
        (row,) = status.study_status(study, now=1010.0, run_dir=run_dir)["trials"]
        return row["progress"]["stage"]

    assert stage() == "starting", "no file yet: the attribute"
    ProgressWriter(progress_path(recorded), trial=trial.number, n_seeds=2,
                   clock=lambda: 1005.0).update("domain", 0, 10, 100)
    assert stage() == "domain"
    moved = tmp_path / "elsewhere"
    (moved / "trials").mkdir(parents=True)
    recorded.rename(moved / "trials" / recorded.name)
    assert stage() == "starting" and stage(str(moved)) == "domain"


def test_status_shows_the_baseline_phase_its_driver_published():
    """Before any trial, search.status shows the phase the driver publishes: a row with its
    progress and ETA (the driver's estimate of the phase until it has a rate), in the projected
    end with the driver's estimate of a trial; flagged when the driver went quiet; gone after."""
    from rich.console import Console

    from search import status
    from search.progress import BASELINE_PHASE_ATTR

    study = optuna.create_study()
    record = Progress(trial=-1, seed_index=0, n_seeds=3, stage="scratch", tokens=1000,
                      total=6000, tokens_per_s=50.0, tokens_left=5000, updated_at=1000.0)
    phase = {"running": True, "seeds": [0, 1, 2], "started": 900.0, "updated_at": 1000.0,
             "progress": record.to_dict()}
    study.set_user_attr(BASELINE_PHASE_ATTR, phase)
    study.set_user_attr("config", json.dumps({"study": {"n_trials": 1, "executor": "local"}}))

    seen = status.study_status(study, now=1010.0)
    baselines = seen["baselines"]
    assert baselines["eta_s"] == 100.0 and baselines["elapsed_s"] == 110.0
    assert baselines["state"] == "" and seen["projected_end"] is None, "no trial time known"
    assert seen["started"] == 900.0, "the study's elapsed time counts its baseline phase"
    console = Console(width=200, record=True)
    console.print(status.render([seen], now=1010.0))
    text = console.export_text()
    assert "baselines" in text and "1.0k/6.0k" in text, text

    study.set_user_attr(status.ESTIMATED_TRIAL_ATTR, 600.0)  # the driver's, until trials end
    assert status.study_status(study, now=1010.0)["projected_end"] == 1010.0 + 100.0 + 600.0
    quiet = status.study_status(study, now=1000.0 + status.STALE_S + 60)["baselines"]
    assert quiet["state"] == "no word from its driver for 6m00s"
    early = {**phase, "progress": None}  # before the phase's first progress record
    study.set_user_attr(BASELINE_PHASE_ATTR, early)
    assert status.study_status(study, now=1010.0)["projected_end"] == 1010.0 + 300.0 + 600.0, \
        "no rate yet and no estimate: counted as half a trial"
    study.set_user_attr(status.ESTIMATED_BASELINE_ATTR, 2000.0)
    seen = status.study_status(study, now=1010.0)
    assert seen["baselines"]["eta_s"] == 2000.0 - 110.0, "what is left of the driver's estimate"
    assert seen["projected_end"] == 1010.0 + 1890.0 + 600.0
    console = Console(width=200, record=True)
    console.print(status.render([seen], now=1010.0))
    assert "31m30s" in console.export_text(), "the row shows that ETA"
    study.set_user_attr(BASELINE_PHASE_ATTR, {**phase, "running": False})
    assert status.study_status(study, now=1010.0)["baselines"] is None
