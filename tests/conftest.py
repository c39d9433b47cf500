"""Shared fixtures: paths to the shared corpora, a real PostgreSQL server on loopback, and one
real reference run of the smoke study whose cache other tests share."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # a module that imports this one
    from tests.faults._harness import Paths

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The small real corpora (web, math, code) next to the repository."""
    if not (SHARED_DATA / "code" / "train.jsonl").is_file():
        pytest.skip(f"shared corpora not found at {SHARED_DATA}")
    return SHARED_DATA


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_url():
    """A throwaway PostgreSQL server (Debian's binaries) on 127.0.0.1, trust auth."""
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not bins:
        pytest.skip("PostgreSQL server binaries not installed (apt-get install postgresql)")
    bindir = Path(bins[-1]).parent
    root = Path(tempfile.mkdtemp(prefix="ncasearch-pg-"))
    data, port = root / "data", _free_port()
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres:
        shutil.chown(root, "postgres")
    subprocess.run([*as_postgres, bindir / "initdb", "-D", data, "--auth=trust", "-U", "postgres"],
                   check=True, capture_output=True)
    subprocess.run([*as_postgres, bindir / "pg_ctl", "-D", data, "-l", root / "log", "-w",
                    "-t", "30", "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1",
                    "start"],
                   check=True, capture_output=True)
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    try:
        yield url
    finally:
        subprocess.run([*as_postgres, bindir / "pg_ctl", "-D", data, "-m", "immediate", "stop"],
                       capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)


@dataclass(frozen=True)
class Reference:
    """The smoke study run once, undamaged (tests/faults/_harness: 2 trials, seed 0): every
    fault's numbers are compared with it, and tests that need a study's corpus, scratch
    baselines and NCA data but not their first computation share its cache
    (``_harness.link_cache``)."""

    root: Paths
    values: dict[str, list[float]]
    """setting JSON -> objective values of its COMPLETE trial."""
    wall_s: float


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    from tests.faults import _harness

    paths = _harness.Paths(tmp_path_factory.mktemp("reference"))
    start = time.time()
    result = _harness.cli(paths)
    assert result.returncode == 0, result.stderr
    study = _harness.load(paths)
    _harness.check_study(study)
    return Reference(paths, _harness.values_by_setting(study), time.time() - start)
