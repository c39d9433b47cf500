"""Faults injected into the real service on the smoke study (tiny preset, 2 trials, seed 0).

For each: the study completes (or refuses cleanly), no trial is left RUNNING, no setting is
counted twice, and the numbers equal the undamaged reference run's (session fixture).
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time

import numpy as np
import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from tests.faults import _harness as h
from tests.faults._harness import Paths

pytestmark = pytest.mark.slow



def _copy_run(reference, tmp_path) -> Paths:
    paths = Paths(tmp_path)
    shutil.copytree(reference.root.run, paths.run,
                    ignore=shutil.ignore_patterns("workers", "*.lock"))
    h.link_cache(reference.root, paths)
    return paths


# -- the journal ---------------------------------------------------------------------------------


def test_torn_journal_is_repaired_on_resume(reference, tmp_path, note):
    """Journal's last record torn mid-write, then the study is resumed (CLI)"""
    paths = _copy_run(reference, tmp_path)
    data = paths.journal.read_bytes()
    last = data.rstrip(b"\n").rfind(b"\n") + 1
    paths.journal.write_bytes(data[: last + (len(data) - last) // 2])
    result = h.cli(paths)
    assert result.returncode == 0, result.stderr
    warning = [line for line in result.stderr.splitlines() if "torn record" in line]
    assert len(warning) == 1, result.stderr
    note(warning[0].split("(")[1].split(")")[0])
    assert h.cli(paths).returncode == 0  # and every later run
    from analysis.frame import load_studies  # what analysis.report reads

    assert [r.name for r in load_studies(str(paths.journal))] == ["smoke"]
    study = h.load(paths)
    h.check_study(study)
    h.assert_same_numbers(study, reference.values)
    note("resumed twice, report reads it, numbers equal")


def test_journal_cut_at_every_byte_of_its_last_record(reference, tmp_path, note):
    """Journal cut at every byte offset of its last record (real JournalFileBackend)"""
    from search.storage import open_storage

    data = reference.root.journal.read_bytes()
    last = data.rstrip(b"\n").rfind(b"\n") + 1
    path = tmp_path / "journal.log"
    (tmp_path / "whole.log").write_bytes(data[:last])
    want = _trials(tmp_path / "whole.log")
    for cut in range(last + 1, len(data)):
        path.write_bytes(data[:cut])
        storage = open_storage(str(path))
        assert path.read_bytes() == data[:last], cut
        study = optuna.load_study(study_name="smoke", storage=storage)
        study.set_user_attr("resumed", cut)  # an append, as a resumed driver makes
        assert _trials(path) == want, cut
    note(f"{len(data) - last - 1} offsets, each repaired to the record boundary and appendable")


def _trials(path):
    storage = JournalStorage(JournalFileBackend(str(path)))
    study = optuna.load_study(study_name="smoke", storage=storage)
    return [(t.number, t.state, t.values, t.user_attrs) for t in study.get_trials()]


# -- drivers ---------------------------------------------------------------------------------------


def test_four_drivers_racing_on_one_study(reference, tmp_path, note):
    """4 drivers started together on one study (same journal, same name)"""
    paths = Paths(tmp_path)
    h.link_cache(reference.root, paths)
    procs = [h.start(paths) for _ in range(4)]
    results = [(p.wait(timeout=600), *p.communicate()) for p in procs]
    codes = sorted(r[0] for r in results)
    assert codes == [0, 2, 2, 2], results
    refusals = [h.one_line(err) for code, _, err in results if code == 2]
    winner = next(p for p, r in zip(procs, results, strict=True) if r[0] == 0)
    holder = f"{socket.gethostname()}:{winner.pid} since "
    assert all("is driven by" in line and holder in line for line in refusals), refusals
    study = h.load(paths)
    h.check_study(study)
    h.assert_same_numbers(study, reference.values)
    note(f"one ran, 3 refused: {refusals[0].split(':', 1)[1].strip()[:60]}...")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_signal_to_a_trial_worker(reference, tmp_path, note, sig):
    """SIGTERM or kill -9 of a worker running a trial"""
    paths = Paths(tmp_path)
    h.link_cache(reference.root, paths)
    proc = h.start(paths)
    pid = h.wait_for(lambda: h.running_trial_pid(paths), proc)
    os.kill(pid, sig)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    study = h.load(paths)
    lost = [t for t in study.get_trials() if t.user_attrs.get("retried")]
    assert len(lost) == 1 and sig.name in lost[0].user_attrs["fail_reason"]
    retries = [t for t in study.get_trials() if t.user_attrs.get("retry_of") == lost[0].number]
    assert len(retries) == 1, [(t.number, t.state.name) for t in study.get_trials()]
    h.check_study(study)
    h.assert_same_numbers(study, reference.values)
    note(f"trial {lost[0].number} lost ({lost[0].user_attrs['fail_reason']}), retried once")


@h.DRIVER_STOP_RACE
def test_ctrl_c_leaves_no_running_trial_and_resume_finishes(reference, tmp_path, note):
    """Ctrl-C in the terminal (SIGINT to the driver and its workers), then the same command"""
    paths = Paths(tmp_path)
    h.link_cache(reference.root, paths)
    # A study run from a terminal takes Ctrl-C; a suite started in the background (``cmd &``)
    # has SIGINT ignored and would hand that on, so the driver is started with the default.
    inherited = signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        proc = h.start(paths, new_session=True)
    finally:
        signal.signal(signal.SIGINT, inherited)
    h.wait_for(lambda: h.running_trial_pid(paths), proc)
    time.sleep(1.0)  # into training: a worker still importing would die of the SIGINT unhandled
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal does on Ctrl-C
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert not h.load(paths).get_trials(states=(optuna.trial.TrialState.RUNNING,))
    result = h.cli(paths)
    assert result.returncode == 0, result.stderr
    study = h.load(paths)
    h.check_study(study)
    h.assert_same_numbers(study, reference.values)
    note("exit 130, nothing left RUNNING; the same command finished the study")


def test_sigkill_to_a_worker_computing_baselines(reference, tmp_path, note):
    """kill -9 of a worker while the scratch baselines are computed"""
    paths = Paths(tmp_path)
    h.link_cache(reference.root, paths, skip=("baselines",))
    proc = h.start(paths)
    workers = h.wait_for(lambda: h.worker_pids(proc.pid), proc)
    os.kill(workers[0], signal.SIGKILL)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    retry = [line for line in out.splitlines() if "scratch baseline" in line and "retrying" in line]
    assert len(retry) == 1 and "SIGKILL" in retry[0], out
    study = h.load(paths)
    h.check_study(study)
    h.assert_same_numbers(study, reference.values)
    note("baseline job retried (attempt 1), study completed")


# -- caches ----------------------------------------------------------------------------------------


def test_damaged_corpus_cache(reference, tmp_path, note):
    """one byte of the cached domain corpus flipped"""
    paths = Paths(tmp_path)
    h.link_cache(reference.root, paths)
    (entry,) = (paths.cache / "corpora").iterdir()
    h.damage(entry / "train.npy")
    result = h.cli(paths)
    assert result.returncode == 0, result.stderr
    warning = h.one_line("\n".join(line for line in result.stderr.splitlines()
                                   if "warning" in line))
    assert "corpus cache" in warning and "train.npy does not match" in warning
    assert (paths.cache / "corpora" / ".corrupt").is_dir()
    study = h.load(paths)
    h.check_study(study)
    h.assert_same_numbers(study, reference.values)
    note("reported in one line, moved to .corrupt/, rebuilt; numbers equal")


@pytest.mark.parametrize("writer", ["json", "checkpoint", "npy"])
def test_enospc_on_a_cache_write(tmp_path, monkeypatch, writer, note):
    """disk full (ENOSPC) while a cache entry is written"""
    import torch

    from lm.checkpoint import load_checkpoint, save_checkpoint
    from ncaio import atomic_write_json as write_json_atomic
    from ncaio import atomic_write_npy

    path = tmp_path / f"entry.{writer}"
    write, read = {
        "json": (lambda v: write_json_atomic(path, {"v": v}),
                 lambda: json.loads(path.read_text())["v"]),
        "checkpoint": (lambda v: save_checkpoint(path, {"v": torch.tensor(v)}),
                       lambda: int(load_checkpoint(path)["v"])),
        "npy": (lambda v: atomic_write_npy(path, np.array([v])), lambda: int(np.load(path)[0])),
    }[writer]
    write(1)
    before = sorted(p.name for p in tmp_path.iterdir())

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as m:
        m.setattr(os, "fsync", full)
        with pytest.raises(OSError) as info:
            write(2)
    assert info.value.errno == errno.ENOSPC
    assert read() == 1 and sorted(p.name for p in tmp_path.iterdir()) == before
    write(3)
    assert read() == 3
    note("old entry intact, no temp file left, next write fine")


# -- bad values ----------------------------------------------------------------------------------


@pytest.mark.parametrize("body, needle", [
    ("alphabet = { low = 1, high = 4 }", "[space.alphabet] low = 1"),
    ("lr = nan", "nan"),
])
def test_search_range_that_used_to_pass_validation(tmp_path, body, needle, note):
    """a [space] value the sampler could propose but no trial can run"""
    text = h.STUDY.read_text().replace('alphabet = { choices = [2, 4] }', body)
    study_file = tmp_path / "study.toml"
    study_file.write_text(text)
    paths = Paths(tmp_path / "user")
    paths.root.mkdir()
    cmd = h.command(paths)
    cmd[cmd.index(str(h.STUDY))] = str(study_file)
    result = subprocess.run(cmd, cwd=paths.root, env=h.env(), capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 2
    line = h.one_line(result.stderr)
    assert needle in line and not paths.run.exists() and not paths.cache.exists()
    note(line[:90])


@pytest.mark.parametrize("flag, value, needle", [
    ("--storage", "{root}", "is a folder"),
    ("--data", "/bin/ls", "not UTF-8 text"),
])
def test_unusable_path_for_search_run(tmp_path, flag, value, needle, note):
    """search.run given an unusable path"""
    paths = Paths(tmp_path)
    value = value.format(root=tmp_path)
    result = h.cli(paths, flag, value)
    assert result.returncode == 2
    line = h.one_line(result.stderr)
    assert needle in line and not paths.run.exists() and not paths.cache.exists()
    note(line[:90])


@pytest.mark.parametrize("args, needle", [
    (["--cache-dir", "/bin/ls"], "is not a folder"),
    (["--device", "cuda"], "is not available"),
    (["--curriculum", "mixture", "--band", "0.2:0.3", "--band", "0.5:1", "--shares", "a,b"],
     "--shares 'a,b' is invalid"),
])
def test_bad_nca_generate_values(tmp_path, capsys, args, needle, note):
    """nca.generate given a bad value"""
    import torch

    from nca import generate

    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    argv = ["--tokens", "1000", "--cache-dir", str(tmp_path / "c"), *args]
    assert generate.main(argv) == 2
    line = h.one_line(capsys.readouterr().err)
    assert needle in line and not (tmp_path / "c").exists()
    note(line[:90])


def test_report_on_unreachable_postgresql(tmp_path, capsys, note):
    """analysis.report on an unreachable PostgreSQL"""
    from analysis import report

    url = "postgresql://nobody@127.0.0.1:1/none"
    assert report.main(["--storage", url, "--out", str(tmp_path / "out")]) == 2
    line = h.one_line(capsys.readouterr().err)
    assert url in line and "StorageInternalError" not in line and not (tmp_path / "out").exists()
    note(line[:90])


# -- verified caches the trial reads (search/trial.py wires ncaio in) ------------------------------


def _context(paths: Paths):
    from search.config import load_study_config
    from search.trial import make_context

    config = load_study_config(str(h.STUDY), {"study": {
        "run_dir": str(paths.run), "cache_dir": str(paths.cache), "seeds": [0]}})
    return make_context(config)


def test_damaged_baseline_json_is_recomputed(reference, tmp_path):
    """a digit of a cached scratch baseline changed (still valid JSON)"""
    from search import trial as trial_lib

    paths = Paths(tmp_path)
    h.link_cache(reference.root, paths)
    context, reference_context = _context(paths), _context(reference.root)
    run = trial_lib.study_scratch_runs(context)[0]
    path = trial_lib.baseline_path(context, run, 0)
    want = trial_lib.scratch_baseline(reference_context, run, 0).final_loss
    text = path.read_text()
    bumped = re.sub(r'("final_loss": \d\.)(\d)', lambda m: m[1] + str((int(m[2]) + 1) % 10), text)
    path.unlink()
    path.write_text(bumped)
    assert trial_lib.scratch_baseline(context, run, 0).final_loss == want
    assert (path.parent / ".corrupt").is_dir()


def test_damaged_ppt_checkpoint_is_recomputed(reference, tmp_path):
    """one byte of every cached pre-pre-trained checkpoint flipped"""
    from search import trial as trial_lib

    paths = Paths(tmp_path)
    h.link_cache(reference.root, paths)
    for ckpt in (paths.cache / "ppt").glob("*.pt"):
        h.damage(ckpt)
    anchor = h.load(reference.root).trials[0]
    outcome = trial_lib.run_trial(h.json_setting(anchor.user_attrs["setting"]), _context(paths))
    assert [s.record.loss for s in outcome.seeds] == anchor.user_attrs["losses"]


def test_work_folder_of_another_setting_is_not_reused(reference, tmp_path):
    """a trial work folder left by another setting (run dir reused with a new journal)"""
    from search import trial as trial_lib

    paths = Paths(tmp_path)
    h.link_cache(reference.root, paths)
    trials = h.load(reference.root).trials
    anchor, other = trials[0], next(t for t in trials[1:] if t.state.name == "COMPLETE")
    work = tmp_path / "work"
    folder = next((reference.root.run / "trials").glob(f"{anchor.number:05d}-*"))
    shutil.copytree(folder, work)
    outcome = trial_lib.run_trial(h.json_setting(other.user_attrs["setting"]), _context(paths),
                                  work_dir=work)
    assert [s.record.loss for s in outcome.seeds] == other.user_attrs["losses"]
