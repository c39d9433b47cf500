"""The conventions CI checks: ruff (style, imports, bugbear) and mypy (types) on every package.

Both tools are pinned in the ``test`` extra, so a new release cannot turn CI red on its own.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("nca", "lm", "search", "analysis", "ncaio")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=900, check=False)


def test_ruff_is_clean():
    result = _run("ruff", "check", *PACKAGES, "tests")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def test_mypy_is_clean():
    result = _run("mypy", *PACKAGES)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
