"""The second fault and bad-input probe's cases (issue 26), each reproduced through the real
command lines and now handled: keys by content, a full disk, SIGTERM, files that are not ours,
bad values refused in one line before anything is written, a damaged journal, repeated
proposals, a forecast calibrated on a busy machine, a process limit.

Bad values run the commands' ``main`` in this process (the same code the command line runs,
without a second interpreter's start-up per case); faults that need a real study run it as a
subprocess, like the rest of this suite.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests._cli import refused
from tests.conftest import SHARED_DATA
from tests.faults import _harness as h
from tests.faults._harness import Paths

pytestmark = pytest.mark.slow


# -- helpers ---------------------------------------------------------------------------------------


def _search_run(argv: list[str]) -> int:
    from search import run

    return run.main(argv)


def _study(tmp_path: Path, old: str = "", new: str = "", *, raw: bytes | None = None,
           append: str = "") -> Path:
    """A copy of the smoke study with ``old`` replaced by ``new`` (or given as raw bytes)."""
    path = tmp_path / "study.toml"
    if raw is not None:
        path.write_bytes(raw)
        return path
    text = h.STUDY.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1) + append)
    return path


def _run_args(tmp_path: Path, study: Path, *extra: str) -> list[str]:
    return ["--study", str(study), "--run-dir", str(tmp_path / "run"),
            "--cache-dir", str(tmp_path / "cache"), *extra]


@pytest.fixture
def mount(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """``mount(name, "size=4m")``: a tmpfs under ``tmp_path`` (skipped where mounting is not
    permitted); unmounted after the test."""
    mounted: list[Path] = []

    def make(name: str, options: str) -> Path:
        path = tmp_path / name
        path.mkdir()
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                                capture_output=True, text=True, check=False)
        if result.returncode:
            pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip()[:80]})")
        mounted.append(path)
        return path

    yield make
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def _small_corpus(folder: Path, domain: str = "code", docs: int = 60) -> Path:
    """A small real corpus (the first documents of a shared one), so a tiny trial's files fit
    on a few megabytes."""
    source = SHARED_DATA / domain
    if not (source / "train.jsonl").is_file():
        pytest.skip(f"shared corpora not found at {SHARED_DATA}")
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", docs), ("valid", max(4, docs // 8))):
        lines = (source / f"{split}.jsonl").read_text().splitlines(keepends=True)[:n]
        (folder / f"{split}.jsonl").write_text("".join(lines))
    return folder


def _trials(journal: Path, name: str = "smoke") -> list[optuna.trial.FrozenTrial]:
    from search.storage import open_storage

    return optuna.load_study(study_name=name, storage=open_storage(str(journal),
                                                                   create=False)).get_trials()


# -- 1: keys by content ----------------------------------------------------------------------------


def test_corpus_changed_in_place_gives_new_results(tmp_path, note):
    """#1 a corpus replaced in place at the same path (journal deleted) reused the old results"""
    data = _small_corpus(tmp_path / "data", "code")
    paths = Paths(tmp_path / "user")
    first = h.cli(paths, "--n-trials", "1", "--data", str(data))
    assert first.returncode == 0, first.stderr
    code_loss = _trials(paths.journal)[0].values
    # the probe: same path, web text in the same files, the old journal gone
    _small_corpus(data, "web")
    paths.journal.unlink()
    again = h.cli(paths, "--n-trials", "1", "--data", str(data))
    assert again.returncode == 0, again.stderr
    (trial,) = [t for t in _trials(paths.journal) if t.state == TrialState.COMPLETE]
    assert trial.values != code_loss and "shared_seeds" not in trial.user_attrs
    assert len(list((paths.run / "trials").iterdir())) == 2  # a new work folder, not the old one
    note(f"code loss {code_loss[0]:.4f}, then web {trial.values[0]:.4f}: recomputed")
    # and a study resumed on changed data is refused, not mixed
    _small_corpus(data, "code")
    mixed = h.cli(paths, "--n-trials", "2", "--data", str(data))
    assert mixed.returncode == 2 and "was run on other code data" in h.one_line(mixed.stderr)
    note("a resume on changed data refused")


# -- 2: a full disk --------------------------------------------------------------------------------


def _no_partial_files(root: Path) -> None:
    leftovers = [p for p in root.rglob("*") if p.name.endswith(".tmp") or ".tmp-" in p.name]
    assert not leftovers, leftovers


def test_cache_on_a_full_disk_stops_then_resumes(tmp_path, mount, note):
    """#2 a cache that fills during a trial (a 4 MB filesystem), then space is freed"""
    data = _small_corpus(tmp_path / "data")
    small = mount("small", "size=4m")
    paths = Paths(tmp_path / "user")
    cache = small / "cache"
    full = h.cli(paths, "--data", str(data), "--cache-dir", str(cache))
    assert full.returncode == 1, full.stderr
    line = h.one_line(full.stderr)
    assert line.startswith("error: disk full: ") and str(cache) in line and "free" in line
    trials = _trials(paths.journal)
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    lost = [t for t in trials if t.state == TrialState.FAIL]
    assert lost and all(t.user_attrs["fail_reason"] == "interrupted (disk full)"
                        and t.user_attrs.get("retried") for t in lost), "not retried"
    _no_partial_files(small)
    subprocess.run(["mount", "-o", "remount,size=64m", str(small)], check=True)
    resumed = h.cli(paths, "--data", str(data), "--cache-dir", str(cache))
    assert resumed.returncode == 0, resumed.stderr
    h.check_study(h.load(paths))
    note(line.removeprefix("error: ")[:70] + "...; resumed and completed")


def test_journal_on_a_full_disk_stops_then_resumes(reference, tmp_path, mount, note):
    """#2 the journal's folder fills (a 64 KB filesystem), then space is freed"""
    tiny = mount("tiny", "size=64k")
    paths = Paths(tmp_path / "user")
    h.link_cache(reference.root, paths)
    run_dir = tiny / "run"
    full = h.cli(paths, "--run-dir", str(run_dir))
    assert full.returncode == 1, full.stderr
    line = h.one_line(full.stderr)
    assert line.startswith("error: disk full: ") and "Traceback" not in full.stderr
    subprocess.run(["mount", "-o", "remount,size=16m", str(tiny)], check=True)
    resumed = h.cli(paths, "--run-dir", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr
    study = optuna.load_study(study_name="smoke", storage=_storage(run_dir / "journal.log"))
    h.check_study(study)
    h.assert_same_numbers(study, reference.values)
    note(line.removeprefix("error: ")[:70] + "...; resumed, numbers equal")


def _storage(path: Path):
    from search.storage import open_storage

    return open_storage(str(path), create=False)


# -- 3: files that are not ours --------------------------------------------------------------------


@pytest.mark.parametrize("content", [b"# Notes\n\nsome text\nlast line", b"one line",
                                     Path("/bin/ls").read_bytes()], ids=["markdown", "one-line",
                                                                         "binary"])
def test_storage_that_is_not_a_journal_is_left_untouched(tmp_path, capsys, monkeypatch, content,
                                                         note):
    """#3 --storage naming an existing file that is not a journal"""
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "notes.md"
    target.write_bytes(content)
    line = refused(capsys, _search_run, _run_args(tmp_path, h.STUDY, "--storage", str(target)),
                    tmp_path)
    assert "is a file that is not an Optuna journal" in line and target.read_bytes() == content
    for main in (_status_main, _report_main):
        argv = ["--storage", str(target)] + (["--out", str(tmp_path / "o")]
                                             if main is _report_main else [])
        assert "not an Optuna journal" in refused(capsys, main, argv, tmp_path)
    note(line[:90])


def _status_main(argv: list[str]) -> int:
    from search import status

    return status.main(argv)


def _report_main(argv: list[str]) -> int:
    from analysis import report

    return report.main(argv)


# -- 4, 5, 7, 8, 9: bad values refused in one line before anything is written ----------------------

_BAD_STUDIES = [  # (id, (old, new) in the smoke study, or raw bytes; what the line names)
    ("#4 n_trials = nan", ("n_trials = 4", "n_trials = nan"),
     "n_trials = nan: expected an integer"),
    ("#4 n_trials = 1e400", ("n_trials = 4", "n_trials = 1e400"), "n_trials = inf"),
    ("#4 n_trials = 4.5", ("n_trials = 4", "n_trials = 4.5"),
     "n_trials = 4.5: expected an integer"),
    ("#4 n_trials = true", ("n_trials = 4", "n_trials = true"), "n_trials = true: expected"),
    ("#5 threads = 100000", ("workers = 2", "workers = 2\nthreads = 100000"),
     "threads = 100000: expected 0 (automatic) to"),
    ("#5 threads = 2.5", ("workers = 2", "workers = 2\nthreads = 2.5"),
     "threads = 2.5: expected an"),
    ("#7 binary study file", Path("/bin/ls").read_bytes(), "not UTF-8 text"),
    ("#7 non-UTF-8 study file", b'[study]\nname = "\xff"\n', "not UTF-8 text"),
    ("#7 study = 5", b"study = 5\n", "[study] = 5: expected a table"),
    ("#7 anchors = 5", b'anchors = 5\n[study]\nname = "a"\ndomain = "code"\n',
     "anchors = 5: expected [[anchors]]"),
    ("#7 anchor params = paper",
     ('params = { source = "nca", band = "0.3-0.4", alphabet = 10 }', 'params = "paper"'),
     "params = 'paper': expected a table"),
    ("#7 domain_tokens = 1e20", ("[sampler]", "[budget]\ndomain_tokens = 1e20\n\n[sampler]"),
     "domain_tokens = 1e+20: expected an integer"),
    ("#7 n_warmup_steps = x", ("n_warmup_steps = 1", 'n_warmup_steps = "x"'),
     "n_warmup_steps = 'x': expected an integer"),
    ("#8 anchor lr = nan", ("alphabet = 10 }", "alphabet = 10, lr = nan }"),
     "lr = nan: expected a finite number"),
    ("#8 n_ei_candidates = 0", ("n_ei_candidates = 24", "n_ei_candidates = 0"),
     "n_ei_candidates = 0: expected a value in [1, "),
    ("#8 domain_tokens = 3", ("[sampler]", "[budget]\ndomain_tokens = 3\n\n[sampler]"),
     "domain_tokens = 3: the tiny preset needs at least"),
    ("#8 domain_tokens = 2^63-1",
     ("[sampler]", "[budget]\ndomain_tokens = 9223372036854775807\n\n[sampler]"),
     "domain_tokens = 9223372036854775807: expected a value in [0, "),
    ("#8 seeds = [true, false]", ("seeds = [0, 1]", "seeds = [true, false]"),
     "expected a list of integers"),
    ("#8 huge seed", ("seeds = [0, 1]", "seeds = [99999999999999]"), "integers in [0, 4294967295]"),
    ("#8 workers = 1.5", ("workers = 2", "workers = 1.5"), "workers = 1.5: expected an integer"),
    ("#8 max_retries = 1.5", ("workers = 2", "workers = 2\nmax_retries = 1.5"),
     "max_retries = 1.5: expected an integer"),
    ("#8 multivariate = yes", ("multivariate = true", 'multivariate = "yes"'),
     "multivariate = 'yes': expected true or false"),
    ("#8 name = 5", ('name = "smoke"', "name = 5"), "name = 5: expected a string"),
    ('#8 name = ""', ('name = "smoke"', 'name = ""'), "name = '': expected 1-100 letters"),
]


@pytest.mark.parametrize("edit, needle", [(e, n) for _, e, n in _BAD_STUDIES],
                         ids=[i for i, _, _ in _BAD_STUDIES])
def test_bad_study_value_is_refused_before_anything_is_written(tmp_path, capsys, monkeypatch,
                                                               edit, needle, note):
    """#4-#8 a study file value of the wrong type or range"""
    monkeypatch.chdir(tmp_path)
    study = _study(tmp_path, raw=edit) if isinstance(edit, bytes) else _study(tmp_path, *edit)
    line = refused(capsys, _search_run, _run_args(tmp_path, study), tmp_path)
    assert needle in line, line
    note(line[:90])


def _empty_file(tmp_path: Path) -> str:
    (tmp_path / "empty.jsonl").write_text("")
    return str(tmp_path / "empty.jsonl")


def _a_file(tmp_path: Path) -> str:
    (tmp_path / "afile").write_text("x")
    return str(tmp_path / "afile")


_BAD_FLAGS = [  # (id, extra flags given the user folder, what the line names)
    ("#8 --heartbeat nan", lambda t: ["--heartbeat", "nan"], "--heartbeat nan: give seconds > 0"),
    ("#8 --n-trials 1e23 --dry-run", lambda t: ["--n-trials", str(10**23), "--dry-run"],
     "n_trials = 100000000000000000000000: expected a value in [1, 100000]"),
    ("#9 --seed -1", lambda t: ["--seed", "-1"], "[sampler] seed = -1: expected a value in [0, "),
    ("#9 --data an empty file", lambda t: ["--data", _empty_file(t)], "has 0 tokens"),
    ("#7 --run-dir a file", lambda t: ["--run-dir", _a_file(t)], "--run-dir"),
    ("#7 --cache-dir a file", lambda t: ["--cache-dir", _a_file(t)], "--cache-dir"),
    ("#7 --cache-dir under a file", lambda t: ["--cache-dir", _a_file(t) + "/cache"],
     "is a file"),
]


@pytest.mark.parametrize("flags, needle", [(f, n) for _, f, n in _BAD_FLAGS],
                         ids=[i for i, _, _ in _BAD_FLAGS])
def test_bad_flag_is_refused_before_anything_is_written(tmp_path, capsys, monkeypatch, flags,
                                                        needle, note):
    """#7-#9 a search.run flag with a bad value"""
    monkeypatch.chdir(tmp_path)
    extra = flags(tmp_path)
    line = refused(capsys, _search_run, _run_args(tmp_path, h.STUDY, *extra), tmp_path)
    assert needle in line, line
    note(line[:90])


def test_read_only_folders_arerefused(tmp_path, capsys, monkeypatch, mount, note):
    """#7 --run-dir, --cache-dir and analysis.report --out on a read-only filesystem"""
    monkeypatch.chdir(tmp_path)
    locked = mount("locked", "ro,size=1m")
    for flag in ("--run-dir", "--cache-dir"):
        line = refused(capsys, _search_run,
                        _run_args(tmp_path, h.STUDY, flag, str(locked / "x")), tmp_path)
        assert f"{flag} '{locked / 'x'}'" in line and "is not writable" in line, line
    journal = Path(__file__).resolve().parents[2] / "studies/results/regime/runs/regime/journal.log"
    line = refused(capsys, _report_main, ["--storage", str(journal), "--out", str(locked / "o")],
                    tmp_path)
    assert "--out" in line and "is not writable" in line
    note(line[:90])


def test_other_commands_refuse_bad_values_in_one_line(tmp_path, capsys, note):
    """#7/#8 nca.generate, analysis.report and search.status given bad values"""
    from nca import generate

    cache = str(tmp_path / "c")
    seen = [
        refused(capsys, generate.main, ["--tokens", "1e30", "--cache-dir", cache], tmp_path),
        refused(capsys, generate.main, ["--tokens", "1000", "--source", "text", "--text",
                                         "/bin/ls", "--cache-dir", cache], tmp_path),
        refused(capsys, _report_main, ["--storage", str(h.STUDY), "--out", _a_file(tmp_path)],
                 tmp_path),
    ]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text("{damaged")
    seen.append(refused(capsys, _status_main, [str(run_dir)], tmp_path))
    seen.append(refused(capsys, _status_main, [str(run_dir), "--watch", "nan"], tmp_path))
    (tmp_path / "empty.log").write_text("")
    seen.append(refused(capsys, _status_main, ["--storage", str(tmp_path / "empty.log")],
                         tmp_path))
    assert "--tokens 1e30 is invalid" in seen[0] and "is not UTF-8 text" in seen[1]
    assert "--out" in seen[2] and "is damaged" in seen[3] and "--watch nan" in seen[4]
    assert "holds no study" in seen[5]  # #11: status on an empty file
    note(f"{len(seen)} refusals, e.g. {seen[1][:60]}")


# -- 6: SIGTERM ------------------------------------------------------------------------------------


@h.DRIVER_STOP_RACE
def test_sigterm_to_the_driver_leaves_nothing_running(reference, tmp_path, note):
    """#6 SIGTERM to the driver (a Slurm time limit or preemption)"""
    paths = Paths(tmp_path)
    h.link_cache(reference.root, paths)
    proc = h.start(paths)
    h.wait_for(lambda: h.running_trial_pid(paths), proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "[search] SIGTERM: in-flight trials were stopped" in err
    trials = h.load(paths).get_trials()
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    stopped = [t for t in trials if t.user_attrs.get("fail_reason") == "interrupted (SIGTERM)"]
    assert stopped and all(t.user_attrs.get("retried") for t in stopped)
    resumed = h.cli(paths)
    assert resumed.returncode == 0, resumed.stderr
    study = h.load(paths)
    h.check_study(study)
    h.assert_same_numbers(study, reference.values)
    note(f"exit 143, {len(stopped)} trial(s) re-enqueued; resumed, numbers equal")


# -- 10, 11: a damaged journal ---------------------------------------------------------------------


def test_damaged_record_mid_journal_is_named_and_repaired(reference, tmp_path, capsys, note):
    """#10 three bytes flipped in a record in the middle of the journal"""
    from search import journal

    paths = Paths(tmp_path)
    shutil.copytree(reference.root.run, paths.run, ignore=shutil.ignore_patterns("workers"))
    h.link_cache(reference.root, paths)
    data = bytearray(paths.journal.read_bytes())
    starts = [0] + [i + 1 for i, b in enumerate(data) if b == ord("\n")][:-1]
    record = len(starts) // 2
    data[starts[record] + 20:starts[record] + 23] = b"\x00\xff}"
    paths.journal.write_bytes(bytes(data))
    for main, argv in ((_status_main, ["--storage", str(paths.journal)]),
                       (_report_main, ["--storage", str(paths.journal),
                                       "--out", str(tmp_path / "o")]),
                       (_search_run, [*h.command(paths)[3:]])):
        line = refused(capsys, main, argv, tmp_path)
        assert f"record {record} (bytes" in line and "--repair" in line, line
    (damaged,) = journal.scan(paths.journal)
    assert damaged.index == record
    assert journal.main([str(paths.journal), "--repair"]) == 0
    side = list(paths.run.glob("journal.log.damaged-*"))
    assert len(side) == 1 and b"\x00\xff}" in side[0].read_bytes()
    intact = [line for i, line in enumerate(bytes(data).split(b"\n")[:-1]) if i != record]
    kept = paths.journal.read_bytes().split(b"\n")[:-1]
    placeholder = [journal.REPAIR_WORKER.encode() in line for line in kept]
    assert [line for line, p in zip(kept, placeholder, strict=True) if not p] == intact
    assert sum(placeholder) == damaged.created_trial
    resumed = h.cli(paths)
    assert resumed.returncode == 0, resumed.stderr
    h.check_study(h.load(paths))
    note(f"record {record} named; repaired keeping every intact record; study resumed")


# -- 12: repeated proposals ------------------------------------------------------------------------


def test_a_repeated_proposal_is_not_counted(reference, tmp_path, note):
    """#12 the sampler proposes a setting already run (a space smaller than n_trials)"""
    # two settings, one of them the anchor's: the sampler can only repeat them
    study_file = _study(tmp_path, 'band = { choices = ["0.2-0.3", "0.5-1.0"] }\nalphabet = { '
                        'choices = [2, 4] }\ntransfer = { choices = ["full", "attention-only"] }',
                        'band = { choices = ["0.2-0.3", "0.3-0.4"] }\nalphabet = 10\n'
                        'transfer = "full"')
    paths = Paths(tmp_path / "user")
    h.link_cache(reference.root, paths)
    cmd = h.command(paths, "--n-trials", "4")
    cmd[cmd.index(str(h.STUDY))] = str(study_file)
    result = subprocess.run(cmd, cwd=tmp_path, env=h.env(), capture_output=True, text=True,
                            timeout=600, check=False)
    assert result.returncode == 0, result.stderr
    assert "repeated settings already scored" in result.stdout
    trials = _trials(paths.journal)
    counted = [t for t in trials if h.counted(t)]
    assert len(counted) == 2 and len({t.user_attrs["setting"] for t in counted}) == 2
    assert all("duplicate_of" in t.user_attrs for t in trials if t not in counted)
    note(f"2 distinct settings counted; {len(trials) - len(counted)} repeats not counted")


# -- 13: a forecast calibrated on a busy machine ---------------------------------------------------


def test_a_calibration_measured_under_load_is_measured_again_and_measured_rates_win(
        tmp_path, monkeypatch, note):
    """#13 a forecast calibrated while other jobs ran"""
    import dataclasses

    from search import board, cost
    from search.config import load_study_config
    from search.progress import Progress
    from search.trial import make_context

    config = load_study_config("smoke", {"study": {"cache_dir": str(tmp_path / "cache")}})
    context = make_context(config)
    slow = cost.Calibration(preset="tiny", host="h", threads=1, startup_s=1.0, data_s=1.0,
                            domain_step_s=1.0, domain_eval_s=1.0, nca_step_s={2: 1.0, 4: 1.0,
                                                                             10: 1.0},
                            nca_eval_s={2: 1.0, 4: 1.0, 10: 1.0}, diagnose_s=1.0,
                            artifacts_s=1.0)
    monkeypatch.setattr(cost, "_measure", lambda *a: slow)
    monkeypatch.setattr(cost, "busy_share", lambda: 0.9)
    cal, cached = cost.calibrate(config, context)
    assert cal.busy_share == 0.9 and not cached
    assert cost.cached_calibration(config, context).busy_share == 0.9  # kept, marked busy
    monkeypatch.setattr(cost, "busy_share", lambda: 0.0)
    assert cost.calibrate(config, context) == (dataclasses.replace(slow, busy_share=0.0), False)
    assert cost.calibrate(config, context)[1], "an idle calibration is used from the cache"
    # the study then trains 10x faster than the calibration said: the projection follows it
    est = cost.estimate(config, context, slow)
    assert est.domain_rate is not None
    running = Progress(trial=0, seed_index=0, n_seeds=1, stage="domain", tokens=1, total=2,
                       tokens_per_s=10 * est.domain_rate)
    rows = [board.Row(label="#0", setting="", started=0.0, progress=running)]
    per, why = board.corrected_trial_s(est.trial_s, est.domain_rate,
                                       board.measured_domain_rate(rows, 2))
    assert per == pytest.approx(est.trial_s / 10) and "10x the calibration's" in why
    assert board.corrected_trial_s(est.trial_s, est.domain_rate, 1.2 * est.domain_rate) == (
        est.trial_s, "")
    note(f"busy calibration measured again; measured 10x rate -> projection {why}")


# -- 14: a process limit ---------------------------------------------------------------------------


class _Refused:
    """A process whose start fails with fork's EAGAIN ``times`` times."""

    def __init__(self, times: int) -> None:
        self.times, self.calls = times, 0

    def start(self) -> None:
        self.calls += 1
        if self.calls <= self.times:
            raise BlockingIOError(errno.EAGAIN, os.strerror(errno.EAGAIN))


def test_worker_start_under_a_process_limit_waits_then_says_what_holds_it(capsys, note):
    """#14 BlockingIOError [Errno 11] starting a worker beside other studies"""
    from search import executors

    waited = _Refused(times=2)
    executors._start_waiting(waited, wait_s=5.0)  # type: ignore[arg-type]
    assert waited.calls == 3
    assert "waiting for the system to allow a new worker process" in capsys.readouterr().err
    with pytest.raises(executors.WorkerStartError) as info:
        executors._start_waiting(_Refused(times=10**6), wait_s=0.6)  # type: ignore[arg-type]
    text = str(info.value)
    assert "refused new processes for 1 s" in text and "Resource temporarily unavailable" in text
    assert executors.task_limits() in text
    note(text[:90])


def test_a_study_stops_in_one_line_when_no_worker_can_start(tmp_path, monkeypatch):
    """#14 the driver stops the study, trials re-enqueued, when workers cannot start"""
    from search import executors
    from search.config import config_from_dict
    from search.driver import Driver, StudyStopped
    from search.study import open_study
    from search.trial import TrialContext
    from tests.search import _fakes

    def refuse(self, fn, payload):
        raise executors.WorkerStartError("cannot start a worker process: refused")

    monkeypatch.setattr(executors.LocalExecutor, "submit", refuse)
    cfg = config_from_dict({"study": {"name": "t", "domain": "code", "n_trials": 2, "seeds": [0],
                                      "run_dir": str(tmp_path / "run"),
                                      "cache_dir": str(tmp_path / "cache")}})
    context = TrialContext(domain="code", data="", tokenizer="byte", preset="tiny", nca_tokens=1,
                           domain_tokens=1, seeds=(0,), cache_dir=str(cfg.cache_dir))
    study = open_study(cfg, context)
    driver = Driver(config=cfg, study=study, executor=executors.LocalExecutor(tmp_path / "w"),
                    context=context, trial_fn=_fakes.fake_trial,
                    baseline_fn=_fakes.fake_baseline)
    monkeypatch.setattr(Driver, "ensure_baselines", lambda self: None)
    with pytest.raises(StudyStopped, match="cannot start a worker process"):
        driver.run()
    trials = study.get_trials()
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert all(t.user_attrs.get("retried") for t in trials if t.state == TrialState.FAIL)


def test_disk_full_errors_are_recognised_in_their_forms():
    """#2 the forms a full disk takes (Python, numpy, torch's serializer)"""
    from search import disk

    assert disk.is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert disk.is_disk_full(OSError("Not enough free space to write 22117860 bytes"))
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as inner:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos") \
                from inner
    except RuntimeError as outer:
        assert disk.is_disk_full(outer)
    assert not disk.is_disk_full(ValueError("a bug"))
