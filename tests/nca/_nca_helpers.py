"""Helpers shared by the nca tests."""

from __future__ import annotations

from nca.config import Band, NCAConfig
from nca.curriculum import Curriculum
from nca.spec import DataSpec

TOP_BAND = Band(0.5, 1.0)


def small_spec(band: Band = TOP_BAND, alphabet: int = 10, **kw: object) -> DataSpec:
    """An NCA spec with a small profile, for fast builds."""
    cur = Curriculum.constant(NCAConfig(alphabet=alphabet), band)
    kw.setdefault("profile_rules", 512)
    kw.setdefault("min_val_sequences", 4)
    return DataSpec(source="nca", curriculum=cur, **kw)  # type: ignore[arg-type]
