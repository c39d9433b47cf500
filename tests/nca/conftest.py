"""Fixtures of the nca tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def stream_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache root shared by the session: score streams are deterministic, so tests share them."""
    return tmp_path_factory.mktemp("nca-cache")
