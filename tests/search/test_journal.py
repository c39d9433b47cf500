"""search.journal: damaged records in the middle of a journal are named and set aside, and trial
ids stay aligned where a damaged record created a trial."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from search import journal
from search.storage import StorageError, open_storage


def _journal(path: Path) -> list[list[float]]:
    study = optuna.create_study(study_name="s", storage=JournalStorage(
        JournalFileBackend(str(path))))
    for i in range(3):
        trial = study.ask()
        trial.set_user_attr("i", i)
        study.tell(trial, float(i))
    return [t.values for t in study.get_trials()]


def _damage(path: Path, index: int) -> bytes:
    lines = path.read_bytes().split(b"\n")
    original = lines[index]
    lines[index] = original[:10] + b"\xff\x00" + original[12:]
    path.write_bytes(b"\n".join(lines))
    return original


def _create_records(path: Path) -> list[int]:
    return [i for i, line in enumerate(path.read_bytes().split(b"\n")) if b'"op_code":4' in line]


def test_a_damaged_record_is_named_by_the_opener(tmp_path):
    path = tmp_path / "journal.log"
    _journal(path)
    index = _create_records(path)[1] + 1  # the record after trial 1's creation
    _damage(path, index)
    with pytest.raises(StorageError, match=f"record {index} .* is damaged: not UTF-8.*--repair"):
        open_storage(path, create=False)


def test_repair_keeps_every_intact_record_and_aligns_trial_ids(tmp_path):
    path = tmp_path / "journal.log"
    values = _journal(path)
    created = _create_records(path)[1]
    _damage(path, created)  # trial 1's creation
    (damaged,) = journal.scan(path)
    assert damaged.index == created and damaged.created_trial
    found, side = journal.repair(path)
    assert found == [damaged] and side is not None and b"\xff\x00" in side.read_bytes()
    study = optuna.load_study(study_name="s", storage=open_storage(path, create=False))
    trials = study.get_trials()
    # every later record still reaches its own trial: values and attributes of 0 and 2 are
    # whole, and trial 1 keeps what its later records set (its value, its "i")
    assert [t.values for t in trials] == values
    assert [t.user_attrs.get("i") for t in trials] == [0, 1, 2]
    assert "journal_repair" in trials[1].user_attrs
    assert journal.repair(path) == ([], None)  # nothing left to repair


def test_a_damaged_record_that_created_nothing_is_only_set_aside(tmp_path):
    path = tmp_path / "journal.log"
    values = _journal(path)
    index = _create_records(path)[2] + 1  # trial 2's user attribute
    _damage(path, index)
    (damaged,) = journal.scan(path)
    assert not damaged.created_trial
    journal.repair(path)
    trials = optuna.load_study(study_name="s", storage=open_storage(path, create=False)
                               ).get_trials()
    assert [t.values for t in trials] == values and "i" not in trials[2].user_attrs
