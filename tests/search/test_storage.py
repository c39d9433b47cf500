"""Journal repair against Optuna's real JournalFileBackend: a torn last record never spreads."""

from __future__ import annotations

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from search.storage import open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _journal(tmp_path):
    """A real journal of a small study; the last record is a trial's user attribute."""
    path = tmp_path / "journal.log"
    study = optuna.create_study(study_name="s", storage=open_storage(str(path)))
    for i in range(3):
        trial = study.ask()
        trial.suggest_float("x", 0, 1)
        study.tell(trial, float(i))
    study.ask().set_user_attr("setting", '{"alphabet": 4, "band": [0.2, 0.3]}')
    data = path.read_bytes()
    return path, data, data.rstrip(b"\n").rfind(b"\n") + 1


def _summary(path):
    study = optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend(str(path))))
    return [(t.number, t.state, t.params, t.values, t.user_attrs) for t in study.get_trials()]


def test_optuna_alone_destroys_a_journal_with_a_torn_record(tmp_path):
    """Why the repair exists: the real backend appends onto the fragment, then cannot read."""
    path, data, last = _journal(tmp_path)
    path.write_bytes(data[: last + 10])
    backend = JournalFileBackend(str(path))
    assert len(list(backend.read_logs(0))) == data[:last].count(b"\n")  # reads fine...
    for name in ("t", "u"):  # the first append is glued onto the fragment, the second follows it
        backend.append_logs([{"op_code": 0, "worker_id": "w", "study_name": name,
                              "directions": [1]}])
    with pytest.raises(ValueError):
        list(JournalFileBackend(str(path)).read_logs(0))


def test_journal_cut_at_every_byte_of_its_last_record_is_repaired(tmp_path, capsys):
    path, data, last = _journal(tmp_path)
    whole = tmp_path / "whole.log"
    whole.write_bytes(data[:last])
    want = _summary(whole)
    for cut in range(last + 1, len(data)):  # every torn length, the record without "\n" included
        for side in tmp_path.glob("journal.log.torn-*"):
            side.unlink()
        path.write_bytes(data[:cut])
        storage = open_storage(str(path))
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "torn record" in err, (cut, err)
        assert path.read_bytes() == data[:last], cut
        (side,) = tmp_path.glob("journal.log.torn-*")
        assert side.read_bytes() == data[last:cut]
        study = optuna.load_study(study_name="s", storage=storage)
        study.tell(study.ask(), 9.0)
        got = _summary(path)
        assert got[: len(want)] == want and len(got) == len(want) + 1, cut
        assert got[-1][1] == optuna.trial.TrialState.COMPLETE and got[-1][3] == [9.0]


def test_whole_journal_is_left_alone(tmp_path, capsys):
    path, data, _ = _journal(tmp_path)
    open_storage(str(path))
    assert path.read_bytes() == data and capsys.readouterr().err == ""
    assert not list(tmp_path.glob("*.torn-*"))


def test_a_whole_line_that_is_not_a_record_is_moved_aside(tmp_path, capsys):
    path, data, _ = _journal(tmp_path)
    path.write_bytes(data + b'{"op_code": 5, "trial\n')
    open_storage(str(path))
    assert "torn record" in capsys.readouterr().err and path.read_bytes() == data
