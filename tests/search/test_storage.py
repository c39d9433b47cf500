"""The one storage opener: what it accepts, what reading never creates, and journal repair
against Optuna's real JournalFileBackend (a torn last record never spreads)."""

from __future__ import annotations

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from search.storage import StorageError, check_storage, open_storage

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


def test_a_read_only_open_leaves_a_torn_journal_for_the_next_writer(tmp_path, capsys):
    path, data, last = _journal(tmp_path)
    path.write_bytes(data[: last + 10])
    study = optuna.load_study(study_name="s", storage=open_storage(str(path), create=False))
    assert len(study.get_trials()) == 4  # Optuna's reader skips the torn record
    assert path.read_bytes() == data[: last + 10] and capsys.readouterr().err == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["journal.log"]


def test_an_opened_storage_is_returned_as_is(tmp_path):
    storage = open_storage(str(tmp_path / "j.log"))
    assert open_storage(storage) is storage and open_storage(storage, create=False) is storage


def test_reading_creates_nothing(tmp_path):
    for spec, match in [(tmp_path / "a" / "journal.log", "neither an existing journal file"),
                        (f"sqlite:///{tmp_path / 'b.db'}", "no such SQLite file")]:
        with pytest.raises(StorageError, match=match):
            open_storage(spec, create=False)
    assert list(tmp_path.iterdir()) == []


def test_writing_creates_the_journal_and_its_folder(tmp_path):
    path = tmp_path / "run" / "journal.log"
    optuna.create_study(study_name="s", storage=open_storage(path))
    assert path.is_file()


def test_an_sqlite_file_path_opens_as_sqlite_not_as_a_journal(tmp_path):
    db = tmp_path / "s.db"
    optuna.create_study(study_name="s", storage=open_storage(f"sqlite:///{db}")).ask()
    before = db.read_bytes()
    for create in (False, True):
        study = optuna.load_study(study_name="s", storage=open_storage(db, create=create))
        assert len(study.get_trials()) == 1
    assert not list(tmp_path.glob("*.torn-*")) and db.read_bytes()[:16] == before[:16]


@pytest.mark.parametrize("spec, workers, match", [
    ("sqlite:///{tmp}/x.db", 2, "SQLite locks under concurrent writers"),
    ("ftp://host/x", 1, "unknown URL scheme"),
    ("{tmp}", 1, "is a folder"),
    ("postgresql://nobody@127.0.0.1:1/none", 1, "cannot open storage 'postgresql://nobody"),
])
def test_bad_storage_is_one_line_naming_what_was_typed(tmp_path, spec, workers, match):
    spec = spec.format(tmp=tmp_path)
    for check in (lambda: open_storage(spec, workers=workers),
                  lambda: check_storage(spec, workers=workers)):
        with pytest.raises(StorageError, match=match) as info:
            check()
        assert "\n" not in str(info.value) and "StorageInternalError" not in str(info.value)
    assert not (tmp_path / "x.db").exists()


def test_bare_postgresql_urls_use_psycopg3_when_installed(monkeypatch):
    import importlib.util

    from search import storage

    have = importlib.util.find_spec("psycopg") is not None
    url = "postgresql://u@h/db"
    assert storage._with_installed_pg_driver(url) == (
        "postgresql+psycopg://u@h/db" if have else url)
    assert storage._with_installed_pg_driver("postgresql+psycopg2://u@h/db") == "postgresql+psycopg2://u@h/db"
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert storage._with_installed_pg_driver(url) == url


def test_postgresql_write_then_read(postgres_url):
    import importlib.util

    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is None:
        pytest.skip("no PostgreSQL driver installed (psycopg or psycopg2)")
    study = optuna.create_study(study_name="pg-rw", storage=open_storage(postgres_url, workers=4))
    study.tell(study.ask(), 1.0)
    read = optuna.load_study(study_name="pg-rw", storage=open_storage(postgres_url, create=False))
    assert [t.values for t in read.get_trials()] == [[1.0]]
