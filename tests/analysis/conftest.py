"""Fixtures for the analysis tests: synthetic studies shaped like the search's (§4), and a real
``smoke`` study (``served_study``) that the dashboard tests look at."""

from __future__ import annotations

import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest

from analysis.synthetic import create_synthetic_study
from tests.conftest import REPO

optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def journal_storage(path: Path) -> optuna.storages.JournalStorage:
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))


@pytest.fixture(scope="session")
def synthetic_journal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A journal with studies code, math, web (loss objective) and code-mo (loss + compute)."""
    path = tmp_path_factory.mktemp("journal") / "studies.journal"
    storage = journal_storage(path)
    for i, domain in enumerate(("code", "math", "web")):
        create_synthetic_study(storage, domain, domain=domain, n_search=24, seed=i)
    create_synthetic_study(storage, "code-mo", domain="code", n_search=24, seed=9,
                           objectives=("loss", "compute"))
    return path


@dataclass(frozen=True)
class ServedStudy:
    """A study in a journal file, with its trials' artifacts in a FileSystemArtifactStore."""

    journal: Path
    artifact_dir: Path
    study_name: str


@pytest.fixture(scope="session")
def served_study(tmp_path_factory: pytest.TempPathFactory) -> ServedStudy:
    """A real ``smoke`` study (2 trials, in process), whose trials uploaded their artifacts."""
    root = tmp_path_factory.mktemp("served")
    cmd = [sys.executable, "-m", "search.run", "--study", "smoke", "--n-trials", "2",
           "--executor", "inline", "--run-dir", str(root / "run"),
           "--cache-dir", str(root / "cache")]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return ServedStudy(journal=root / "run" / "journal.log",
                       artifact_dir=root / "run" / "artifacts", study_name="smoke")
