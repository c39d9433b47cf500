"""One driver per study: a live holder refuses others, a dead or expired one is taken over.

Real processes hold and contend for the study through `search.driver_lock` on a real journal;
the full CLI (two and four `python -m search.run` at once) is in tests/faults.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import optuna
import pytest

from search.driver_lock import HOLDER_ATTR, Holder, StudyBusyError, acquire_study
from search.storage import open_storage
from tests.conftest import REPO

_TAKE = """
import sys, time
from search.driver_lock import acquire_study, StudyBusyError
from search.storage import open_storage
path = sys.argv[1]
try:
    lock = acquire_study(open_storage(path), path, "s", ["minimize"])
except StudyBusyError as exc:
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(2)
print("held", flush=True)
time.sleep(float(sys.argv[2]))
lock.release()
"""


def _take(path, hold_s):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", _TAKE, str(path), str(hold_s)], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _holder(path):
    storage = open_storage(str(path))
    study_id = storage.get_study_id_from_name("s")
    return Holder.from_attr(storage.get_study_system_attrs(study_id).get(HOLDER_ATTR))


def test_second_process_refuses_naming_the_holder_then_takes_over_a_killed_one(tmp_path):
    path = tmp_path / "journal.log"
    first = _take(path, 60)
    assert first.stdout.readline() == "held\n", first.stderr.read()
    second = _take(path, 0)
    _, err = second.communicate(timeout=60)
    assert second.returncode == 2
    assert err.count("\n") == 1 and f"{socket.gethostname()}:{first.pid} since " in err, err
    assert "stop it or wait" in err and "lease until" in err
    first.send_signal(signal.SIGKILL)
    first.wait()
    third = _take(path, 0)
    out, err = third.communicate(timeout=60)
    assert third.returncode == 0 and out == "held\n", err
    assert f"process {first.pid} is gone; taking it over" in err and err.count("\n") == 1
    assert _holder(path) is None  # released on a clean exit


def test_racing_processes_let_exactly_one_hold(tmp_path):
    path = tmp_path / "journal.log"
    procs = [_take(path, 8) for _ in range(4)]
    codes = [p.wait(timeout=120) for p in procs]
    assert sorted(codes) == [0, 2, 2, 2], [p.stderr.read() for p in procs]


def test_expired_lease_of_another_host_is_taken_over(tmp_path, capsys):
    path = tmp_path / "journal.log"
    storage = open_storage(str(path))
    study = optuna.create_study(storage=storage, study_name="s")
    past = time.time() - 500
    gone = Holder("elsewhere", 1, past - 100, past)
    storage.set_study_system_attr(study._study_id, HOLDER_ATTR, gone.to_attr())
    lock = acquire_study(storage, str(path), "s", ["minimize"])
    assert "its lease expired at" in capsys.readouterr().err and lock.holder.is_me()
    live = Holder("elsewhere", 1, time.time(), time.time() + 100)
    storage.set_study_system_attr(study._study_id, HOLDER_ATTR, live.to_attr())
    with pytest.raises(StudyBusyError, match="taken over by elsewhere:1"):
        lock.renew()  # a driver whose lease lapsed stops instead of running alongside
    with pytest.raises(StudyBusyError, match="is driven by elsewhere:1"):
        acquire_study(storage, str(path), "s", ["minimize"])
