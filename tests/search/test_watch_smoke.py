"""Watching a real study: the dry run's estimate, the live board under a terminal, search.status
while it runs and after, and the time budget (the `smoke` study: tiny preset, real training)."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import threading
import time

import optuna
import pytest
from optuna.trial import TrialState

from tests.conftest import REPO

# A loaded 2-core machine can stretch the "1 minute" smoke study many times over.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]")
_HEADER = re.compile(r"study smoke: (\d+) complete, (\d+) pruned, (\d+) failed, (\d+) running, "
                     r"(\d+) left; elapsed \S+; projected end ")


def _env():
    return {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "220", "LINES": "40"}


def _cmd(tmp_path, *extra, run="run"):
    return [sys.executable, "-m", "search.run", "--study", "smoke", "--run-dir",
            str(tmp_path / run), "--cache-dir", str(tmp_path / "cache"), *extra]


def _seconds(text: str) -> float:
    m = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text)
    assert m and text, text
    h, mi, s = (int(x or 0) for x in m.groups())
    return 3600 * h + 60 * mi + s


def _status(tmp_path, *extra):
    return subprocess.run([sys.executable, "-m", "search.status", str(tmp_path / "run"), *extra],
                          cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120,
                          check=False)


def _run_in_pty(argv: list[str], timeout_s: float) -> tuple[int, str]:
    """Run ``argv`` with a pseudo-terminal as stdin/stdout/stderr (as a user's shell does)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: a 220x40 terminal, then the command
        fcntl.ioctl(1, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 220, 0, 0))
        os.chdir(REPO)
        os.execvpe(argv[0], argv, _env())
    chunks, deadline = [], time.time() + timeout_s
    while time.time() < deadline:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if not ready:
            continue
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    else:
        os.kill(pid, 9)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode(errors="replace")


@pytest.fixture(scope="module")
def watched(tmp_path_factory):
    """A dry run on a fresh folder, then the study itself under a pty, with search.status
    polled from another process while it runs."""
    tmp_path = tmp_path_factory.mktemp("watch")
    dry = subprocess.run(_cmd(tmp_path, "--dry-run"), cwd=REPO, env=_env(), capture_output=True,
                         text=True, timeout=1200, check=False)
    assert dry.returncode == 0, dry.stderr
    mid: list[dict] = []
    done = threading.Event()

    def poll() -> None:
        """``search.status --json --watch`` left running beside the study, as a user would: one
        Python start, then a look every 0.3 s (the training stages of this study last seconds
        in all)."""
        while not done.is_set() and not mid:
            if not (tmp_path / "run" / "journal.log").is_file():
                time.sleep(0.2)
                continue
            watch = subprocess.Popen(
                [sys.executable, "-m", "search.status", str(tmp_path / "run"), "--json",
                 "--watch", "0.3"], cwd=REPO, env=_env(), stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL, text=True)
            try:
                for line in watch.stdout:  # one JSON document per look; ends if status exits
                    studies = json.loads(line)["studies"]
                    if any(_training(t) for s in studies for t in s["trials"]):
                        mid.append(studies[0])
                    if mid or done.is_set():
                        break
            finally:
                watch.kill()
                watch.wait()
            time.sleep(0.2)  # status exited early (the study not yet written): look again

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    t0 = time.time()
    code, screen = _run_in_pty(_cmd(tmp_path), timeout_s=2000)
    measured = time.time() - t0
    done.set()
    poller.join(timeout=120)
    (tmp_path / "screen.txt").write_text(screen)  # what the terminal got, to read on a failure
    return tmp_path, dry.stdout, code, _ANSI.sub("", screen), measured, mid


def _training(row: dict) -> bool:
    """A status row of a trial in one of its training stages."""
    return bool(row["progress"]) and row["progress"]["stage"] in ("nca", "domain")


def _study(tmp_path, run="run"):
    from search.storage import open_storage

    storage = open_storage(str(tmp_path / run / "journal.log"), create=False)
    return optuna.load_study(study_name="smoke", storage=storage)


def test_board_under_a_terminal_shows_each_stage_and_the_counts(watched):
    tmp_path, _, code, screen, _, _ = watched
    assert code == 0, screen[-3000:]
    # The baseline phase has its row, then each stage of a trial shows on some redraw.
    assert "baselines" in screen and "scratch, seeds [0, 1]" in screen
    for stage in ("NCA data, seed 1/2", "NCA stage, seed", "domain stage, seed", "seed 2/2"):
        assert stage in screen, stage
    assert re.search(r"\d+(\.\d)?k/\d+(\.\d)?k +\(\d+%\), [\d.]+k?/s", screen), "tokens and rate"
    assert re.search(r"\d\.\d{3} \(scratch \d\.\d{3}\)", screen), "val loss next to scratch's"
    headers = [tuple(map(int, m.groups())) for m in _HEADER.finditer(screen)]
    assert headers and any(h[3] > 0 for h in headers), "a header with running trials"
    trials = _study(tmp_path).get_trials()
    complete = sum(t.state == TrialState.COMPLETE for t in trials)
    pruned = sum(t.state == TrialState.PRUNED and not t.user_attrs.get("infeasible")
                 for t in trials)
    assert headers[-1] == (complete, pruned, 0, 0, 0), "the last board holds the final counts"
    # Finished trials keep their one-line record, above the board.
    assert len(re.findall(r"#\d+ +(anchor:paper|search) .*(COMPLETE|PRUNED) +\d+s", screen)) >= 4


def test_dry_run_estimate_is_printed_next_to_the_measured_time(watched):
    """The figure the README reports (estimate vs measured, factor 2 on a quiet machine). The
    check is loose on purpose: the calibration and the study run at different moments, and a
    shared machine's load between them is no fault of the estimate."""
    _, dry, _, _, measured, _ = watched
    assert "cached:      scratch baselines 0/2, anchor NCA data 0/2" in dry, dry
    assert "anchor seeds finished 0/2" in dry, dry
    assert "trials:      4; 4 to run" in dry and "seeds:       [0, 1]" in dry, dry
    estimate = _seconds(re.search(r"estimate: +(\S+) on this machine", dry).group(1))
    print(f"\nsmoke study: dry-run estimate {estimate:.0f} s, measured {measured:.0f} s "
          f"(ratio {measured / estimate:.2f})")
    assert estimate / 4 <= measured <= estimate * 4


def test_dry_run_of_the_finished_study_uses_its_own_trials(watched):
    tmp_path = watched[0]
    out = subprocess.run(_cmd(tmp_path, "--dry-run"), cwd=REPO, env=_env(), capture_output=True,
                         text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    assert "4 already finished; 0 to run" in out.stdout, out.stdout
    assert ("scratch baselines 2/2, anchor NCA data 2/2, anchor NCA checkpoints 2/2, "
            "anchor seeds finished 2/2") in out.stdout, out.stdout
    assert "from finished trials" in out.stdout
    assert [p.name for p in (tmp_path / "run").iterdir()] != [], "the real run's folder"


def test_status_while_running_and_after(watched):
    tmp_path, _, _, _, _, mid = watched
    assert mid, "search.status never saw a trial in training"
    row = next(t for t in mid[0]["trials"] if _training(t))
    assert row["progress"]["total"] > 0
    assert re.fullmatch(r"\S+ pid \d+", row["where"]) and row["elapsed_s"] >= 0
    assert mid[0]["running"] >= 1 and mid[0]["n_trials"] == 4
    after = json.loads(_status(tmp_path, "--json").stdout)["studies"][0]
    by_journal = subprocess.run(  # the journal file itself names the same study
        [sys.executable, "-m", "search.status", str(tmp_path / "run" / "journal.log"), "--json"],
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120, check=False)
    same = json.loads(by_journal.stdout)["studies"][0]
    assert {**same, "projected_end": None} == {**after, "projected_end": None}, by_journal.stderr
    trials = _study(tmp_path).get_trials()
    # the driver's estimate (the dry run cached the calibration), for status' projected end
    assert _study(tmp_path).user_attrs["estimated_trial_s"] > 0
    assert _study(tmp_path).user_attrs["estimated_baseline_s"] > 0, "and its baseline phase's"
    assert after["running"] == 0 and after["left"] == 0 and not after["trials"]
    assert after["complete"] == sum(t.state == TrialState.COMPLETE for t in trials)
    assert after["best"]["value"] == pytest.approx(_study(tmp_path).best_value)
    text = _status(tmp_path).stdout
    assert re.search(rf"smoke +code +tiny +{after['complete']} +{after['pruned']} +0 +0 +0 +"
                     rf"#{after['best']['trial']} ", text), text


def test_time_budget_stops_sampling_and_says_so(watched):
    tmp_path = watched[0]
    # Same cache: baselines and calibration are reused, so only the budget decides.
    out = subprocess.run(_cmd(tmp_path, "--time-budget", "3s", run="budget"), cwd=REPO, env=_env(),
                         capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    assert re.search(r"time budget 3s: stopped sampling; the next trial \(about \S+\) would end at",
                     out.stdout), out.stdout
    ran = [t for t in _study(tmp_path, "budget").get_trials() if t.state != TrialState.WAITING]
    assert ran == []  # nothing started (the anchors stay enqueued for the next run)
