"""The live board: what it shows, its plain-line form for logs, and the projection of the end."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from search import board as board_lib
from search.board import PlainBoard, Row, Snapshot, project_end, render
from search.progress import Progress


def _progress(stage="domain", tokens=8192, total=16384, **kw):
    base = {"trial": 3, "seed_index": 0, "n_seeds": 2, "stage": stage, "tokens": tokens,
            "total": total, "tokens_per_s": 2048.0, "tokens_left": 8192, "val_loss": 2.413,
            "scratch_loss": 2.45, "host": "h", "pid": 1, "updated_at": 100.0}
    return Progress(**{**base, **kw})


def _snap(now, rows, **kw):
    base = {"study": "smoke", "now": now, "started": 0.0, "complete": 1, "pruned": 2, "failed": 0,
                "running": len(rows), "left": 3, "rows": tuple(rows), "best": "#1 3.8055 (nca)",
                "projected_end": None}
    return Snapshot(**{**base, **kw})


def test_header_counts_elapsed_end_and_best():
    text = _snap(125.0, [], projected_end=185.0).header()
    assert text.startswith("study smoke: 1 complete, 2 pruned, 0 failed, 0 running, 3 left; "
                           "elapsed 2m05s; projected end ")
    assert "(in 1m00s)" in text and text.endswith("best #1 3.8055 (nca)")


def test_board_table_shows_stage_tokens_rate_losses_and_eta():
    row = Row(label="#3", setting="nca band=0.30-0.40 n=10", started=70.0, progress=_progress(),
              where="pid 42")
    console = Console(record=True, width=200, file=io.StringIO())
    console.print(render(_snap(100.0, [row])))
    text = console.export_text()
    assert "3 left" in text
    line = next(x for x in text.splitlines() if x.startswith("#3"))
    for part in ("nca band=0.30-0.40 n=10", "domain stage, seed 1/2", "8.2k/16.4k", "(50%)",
                 "2.0k/s", "2.413 (scratch 2.450)", "30s", "4s", "pid 42"):
        assert part in line, (part, line)


def test_plain_board_prints_stage_changes_at_once_and_heartbeats_at_its_rate():
    out = io.StringIO()
    board = PlainBoard(out=out, heartbeat_s=10.0)

    def row(p):
        return Row(label="#3", setting="s", started=0.0, progress=p)

    board.show(_snap(1.0, [row(_progress(stage="nca", tokens=10, total=100))]))
    board.show(_snap(2.0, [row(_progress(stage="nca", tokens=20, total=100))]))  # same stage
    board.show(_snap(3.0, [row(_progress(stage="domain"))]))
    board.show(_snap(12.0, [row(_progress(stage="domain"))]))  # 9 s since the change: quiet
    board.show(_snap(13.5, [row(_progress(stage="domain"))]))  # 10.5 s: a heartbeat
    lines = out.getvalue().splitlines()
    assert lines[0] == "[search] #3 NCA stage, seed 1/2"
    assert lines[1].startswith("[search] study smoke: 1 complete, 2 pruned")
    assert lines[2] == "[search] #3 domain stage, seed 1/2"
    assert lines[3].startswith("[search] study smoke:"), "the study's heartbeat, 11 s after"
    assert lines[4] == ("[search] #3 domain stage, seed 1/2: 8.2k/16.4k tokens (50%), "
                        "2.0k tokens/s, val 2.413 (scratch 2.450), elapsed 14s, eta 4s")
    assert len(lines) == 5


def test_projected_end():
    assert project_end(0.0, [30.0, 10.0], left=3, workers=2, trial_s=100.0) == 30.0 + 2 * 100.0
    assert project_end(0.0, [None], left=0, workers=2, trial_s=100.0) == 50.0
    assert project_end(0.0, [None], left=2, workers=2, trial_s=None) is None
    assert project_end(0.0, [], left=0, workers=2, trial_s=None) is None


@pytest.mark.parametrize(("seconds", "text"), [(42, "42s"), (185, "3m05s"), (7620, "2h07m"),
                                               (None, "-")])
def test_durations(seconds, text):
    assert board_lib.fmt_duration(seconds) == text


def test_driver_feeds_the_plain_board_from_workers_progress_files(tmp_path):
    """Real driver, real worker processes and files; the trial is a staged stand-in."""
    from search.driver import Driver, DriverEvents
    from search.executors import LocalExecutor
    from search.study import open_study
    from tests.search import _fakes
    from tests.search.test_driver import _config, _context

    cfg = _config(tmp_path, n_trials=2)
    cfg.cache_dir.mkdir(parents=True)
    context = _context(cfg)
    study = open_study(cfg, context)
    out = io.StringIO()
    board = PlainBoard(out=out, heartbeat_s=0.5)
    driver = Driver(config=cfg, study=study, executor=LocalExecutor(tmp_path / "w"),
                    context=context, max_in_flight=2, trial_fn=_fakes.staged_trial,
                    baseline_fn=_fakes.fake_baseline,
                    events=DriverEvents(on_tick=board.tick, on_message=board.message))
    driver.run()
    lines = out.getvalue().splitlines()
    for number in (0, 1):
        changes = [x.split(" ", 2)[2] for x in lines
                   if re.fullmatch(rf"\[search\] #{number} [^:]+", x)]
        stages = [c.rsplit(",", 1)[0] for c in changes]
        # Each stage lasts longer than a tick, so every one is seen, in order, for both seeds.
        assert [s for s in stages if s != "starting"] == [
            "NCA data", "NCA stage", "transfer", "domain stage"] * 2, changes
        assert "seed 2/2" in changes[-1]
    beat = re.compile(r"\[search\] #\d (NCA stage|domain stage), seed \d/2: [\d.k]+/[\d.k]+ tokens "
                      r"\(\d+%\), [\d.k]+ tokens/s(, val \d\.\d{3} \(scratch \d\.\d{3}\))?, "
                      r"elapsed \d+s, eta (\d+s|-)")
    assert any(beat.fullmatch(x) for x in lines), lines
    assert any(re.match(r"\[search\] study t: \d complete, 0 pruned, 0 failed, \d running, "
                        r"\d left; elapsed \d+s; projected end ", x) for x in lines), lines
    # The dashboard's copy: the user attribute, written by the worker at its own (low) rate.
    assert all(t.user_attrs["progress"]["trial"] == t.number for t in study.get_trials())


def test_quiet_board_keeps_only_finished_trial_lines():
    out = io.StringIO()
    board = board_lib.make_board("quiet", out=out)
    board.message("computing scratch baselines for seeds [0, 1]")
    board.trial_line("#0   anchor:paper ... COMPLETE     48s")
    assert out.getvalue() == "#0   anchor:paper ... COMPLETE     48s\n"


def test_auto_board_is_plain_when_stdout_is_not_a_terminal():
    assert type(board_lib.make_board("auto", out=io.StringIO(), heartbeat_s=5)) is PlainBoard


def test_a_board_that_cannot_draw_never_stops_the_study(caplog):
    class Broken:  # a driver whose storage fails: reading it raises
        @property
        def study(self):
            raise OSError("journal unreadable")

    board = board_lib.make_board("plain", out=io.StringIO())
    board.tick(Broken())
    board.tick(Broken())
    assert len([r for r in caplog.records if "could not be drawn" in r.message]) == 1


def test_baseline_phase_counts_every_scratch_run_of_its_seeds(tmp_path):
    """A baseline job trains every scratch run of its seed (recipes, domains): the phase's total is
    the jobs' own, so its tokens never pass it."""
    import time

    from search import jobs
    from search.progress import ProgressWriter
    from search.trial import TrialContext

    context = TrialContext(domain="code", data="", tokenizer="byte", preset="tiny",
                           nca_tokens=1, domain_tokens=1000, seeds=(0, 1),
                           cache_dir=str(tmp_path), domains=(("code", ""), ("math", "m")))
    started = time.time()
    for seed in (0, 1):  # each job: 3 runs of 1000 tokens, 1.5 done
        path = jobs.baseline_progress_path(context, seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        ProgressWriter(path, trial=-1, n_seeds=2).update("scratch", seed, 1500, 3000,
                                                         tokens_left=1500)
    progress = jobs.baseline_phase_progress(context, (0, 1), started)
    assert progress is not None and (progress.tokens, progress.total) == (3000, 6000)


def test_baseline_phase_counts_finished_and_waiting_seeds(tmp_path):
    """One job at a time (a one-trial study): seed 0 finished, seed 1 half done, seed 2 waiting.
    The phase's ETA (the board's and search.status' row) is what is left of the phase at the
    running job's rate, not what is left of the job."""
    import time

    from search import jobs
    from search import trial as trial_lib
    from search.progress import ProgressWriter
    from search.trial import TrialContext

    context = TrialContext(domain="code", data="", tokenizer="byte", preset="tiny",
                           nca_tokens=1, domain_tokens=1000, seeds=(0, 1, 2),
                           cache_dir=str(tmp_path))
    started = time.time()
    for seed, done in ((0, 1800), (1, 1000)):  # 2000 tokens a job, in 20 s
        path = jobs.baseline_progress_path(context, seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        times = iter([started, started + 20.0])
        writer = ProgressWriter(path, trial=-1, n_seeds=3, clock=times.__next__)
        writer.update("scratch", seed, 0, 2000, tokens_left=2000)
        writer.update("scratch", seed, done, 2000, tokens_left=2000 - done)
    for run in trial_lib.study_scratch_runs(context):  # seed 0's last write came before its end
        trial_lib.baseline_path(context, run, 0).write_text("{}")
    assert jobs.baseline_cached(context, 0) and not jobs.baseline_cached(context, 1)
    progress = jobs.baseline_phase_progress(context, (0, 1, 2), started)
    assert (progress.tokens, progress.total, progress.tokens_left) == (3000, 6000, 3000)
    assert progress.tokens_per_s == 50.0 and progress.eta_s() == 60.0


def test_projected_end_prices_a_baseline_phase_without_a_rate_as_estimated():
    """Before its first progress record the scratch-baseline phase has no ETA: the end is its
    estimate (what is left of ``baseline_s``), then the trials; not half a trial (which made a
    13.1M-token study's first line read 35 min where the phase alone took 43)."""
    import time
    from types import SimpleNamespace

    import optuna

    started = time.time() - 60.0
    driver = SimpleNamespace(
        study=optuna.create_study(), running=list, finished_count=lambda: 0, max_in_flight=1,
        config=SimpleNamespace(study=SimpleNamespace(n_trials=1)), baseline_phase_seeds=(0,),
        baseline_started=started, baseline_progress=lambda: None)
    snap = board_lib.snapshot(driver, started, trial_s=1400.0, baseline_s=2600.0)
    assert snap.rows[0].label == "baselines"
    assert snap.rows[0].eta_s() == pytest.approx(2600.0 - 60.0, abs=2.0), "the row shows it too"
    assert snap.projected_end - snap.now == pytest.approx(2600.0 - 60.0 + 1400.0, abs=2.0)
    without = board_lib.snapshot(driver, started, trial_s=1400.0)
    assert without.rows[0].eta_s() is None
    assert without.projected_end - without.now == pytest.approx(700.0 + 1400.0, abs=2.0)
