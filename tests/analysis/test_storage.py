"""Analysis reads through the one opener (search.storage, create=False): journal files, SQLite,
PostgreSQL, and clear errors."""

from __future__ import annotations

import importlib.util

import pytest

from analysis.frame import load_studies
from analysis.synthetic import create_synthetic_study
from search.storage import StorageError, open_storage, resolve_study_names


def test_journal_file_and_all_study_names(synthetic_journal):
    storage = open_storage(synthetic_journal, create=False)
    assert resolve_study_names(storage) == ["code", "math", "web", "code-mo"]
    assert resolve_study_names(storage, ["web", "code", "web"]) == ["web", "code"]


def test_sqlite_file_path_and_url(tmp_path):
    db = tmp_path / "s.db"
    create_synthetic_study(f"sqlite:///{db}", "code", domain="code", n_search=2)
    for spec in (str(db), f"sqlite:///{db}"):
        (rec,) = load_studies(spec)
        assert rec.name == "code" and len(rec.trials) == 8


@pytest.fixture
def pg_driver() -> None:
    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is None:
        pytest.skip("no PostgreSQL driver installed (psycopg or psycopg2)")


def test_postgresql(pg_driver, postgres_url):
    create_synthetic_study(postgres_url, "pg", domain="math", n_search=2)
    (rec,) = load_studies(postgres_url, ["pg"])
    assert rec.domain == "math" and len(rec.trials) == 8


@pytest.mark.parametrize("make, match", [
    (lambda d: str(d / "missing.journal"), "neither an existing journal file"),
    (lambda d: f"sqlite:///{d / 'missing.db'}", "no such SQLite file"),
    (lambda d: "nosuchdialect://host/db", "unknown URL scheme"),
    (lambda d: str(d), "is a folder"),
])
def test_bad_storage_is_one_line_error(tmp_path, make, match):
    spec = make(tmp_path)
    with pytest.raises(StorageError, match=match) as info:
        open_storage(spec, create=False)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "missing.db").exists(), "SQLite must not create the file"
    assert sorted(tmp_path.iterdir()) == [], "reading creates nothing"


def test_file_that_is_not_a_journal(tmp_path):
    bad = tmp_path / "bad.journal"
    bad.write_text('{"op_code": 99, "worker_id": "x"}\n')
    with pytest.raises(StorageError, match="not an Optuna journal"):
        open_storage(bad, create=False)
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    for create in (False, True):  # not even the torn-record repair touches it
        with pytest.raises(StorageError, match="is a file that is not an Optuna journal"):
            open_storage(text, create=create)
        assert text.read_text() == "hello\n" and sorted(tmp_path.iterdir()) == [bad, text]
    empty = tmp_path / "empty.log"
    empty.write_text("")
    with pytest.raises(StorageError, match="holds no study"):
        resolve_study_names(open_storage(empty, create=False))


def test_public_names_are_the_one_opener():
    import analysis
    import search.storage

    assert analysis.open_storage is search.storage.open_storage
    assert analysis.StorageError is search.storage.StorageError
    assert analysis.resolve_study_names is search.storage.resolve_study_names


def test_unknown_study_lists_valid_names(synthetic_journal):
    with pytest.raises(StorageError, match=r"no study named 'nope'.*valid: \['code', 'math'"):
        load_studies(synthetic_journal, ["code", "nope"])


def test_report_on_unreachable_postgresql_is_one_line_naming_the_url(tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO

    url = "postgresql://nobody@127.0.0.1:1/none"
    proc = subprocess.run([sys.executable, "-m", "analysis.report", "--storage", url, "--out",
                           str(tmp_path / "out")], cwd=REPO, capture_output=True, text=True,
                          check=False, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert url in proc.stderr and "Connection refused" in proc.stderr
    assert "StorageInternalError" not in proc.stderr and not (tmp_path / "out").exists()
