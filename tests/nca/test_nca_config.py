"""Configs: validation with one-line messages, derived values, immutability."""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil

import pytest

import nca
from nca.config import Band, NCAConfig, Stage
from nca.curriculum import Curriculum
from nca.spec import DataSpec


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"alphabet": 1}, "alphabet=1"),
    ({"alphabet": 16}, "alphabet=16"),
    ({"grid": 13}, "multiple of patch=2"),
    ({"temperature": 0.0}, "temperature=0.0"),
    ({"temperature": float("nan")}, "temperature=nan"),
    ({"burn_in": -1}, "burn_in=-1"),
    ({"dt": 0}, "dt=0"),
    ({"patch": 3, "alphabet": 15}, "alphabet**(patch**2)"),
])
def test_nca_config_rejects_bad_values(kwargs: dict, needle: str) -> None:
    with pytest.raises(ValueError) as err:
        NCAConfig(**kwargs)
    assert needle in str(err.value) and "\n" not in str(err.value)
    assert "accepted" in str(err.value)


def test_nca_config_derived_values() -> None:
    cfg = NCAConfig()
    assert (cfg.vocab_size, cfg.patches_per_frame, cfg.frame_len) == (10_002, 36, 38)
    assert NCAConfig(alphabet=15).vocab_size == 15**4 + 2 <= 2**16
    assert NCAConfig(alphabet=2, patch=1).vocab_size == 4


@pytest.mark.parametrize(("lower", "upper"), [(0.5, 0.5), (0.6, 0.5), (-0.1, 0.5), (0.5, 1.2)])
def test_band_rejects_bad_bounds(lower: float, upper: float) -> None:
    with pytest.raises(ValueError, match=r"accepted: 0 <= lower < upper <= 1"):
        Band(lower, upper)


def test_band_contains_half_open_with_inclusive_one() -> None:
    import numpy as np

    scores = np.array([0.29999, 0.3, 0.35, 0.4, 1.0])
    assert Band(0.3, 0.4).contains(scores).tolist() == [False, True, True, False, False]
    assert Band(0.5, 1.0).contains(scores).tolist() == [False, False, False, False, True]
    with pytest.raises(ValueError, match="not a complexity measure"):
        Band(0.1, 0.2, measure="lz77")


def test_curriculum_validation() -> None:
    cfg = NCAConfig()
    with pytest.raises(ValueError, match="not a curriculum family"):
        Curriculum(family="spiral", stages=(Stage(nca=cfg, band=Band(0.5, 1.0)),))
    with pytest.raises(ValueError, match="sum to 1"):
        Curriculum(family="mixture", stages=(Stage(nca=cfg, band=Band(0.5, 1.0), share=0.5),))
    with pytest.raises(ValueError, match="exactly 1 stage"):
        Curriculum(family="constant", stages=tuple(Curriculum.mixture(cfg, [Band(0.2, 0.3),
                                                                             Band(0.5, 1)]).stages))
    with pytest.raises(ValueError, match="out of order"):
        Curriculum(family="ascending", stages=(Stage(nca=cfg, band=Band(0.5, 1.0), share=0.5),
                                               Stage(nca=cfg, band=Band(0.2, 0.3), share=0.5)))
    with pytest.raises(ValueError, match="frame length"):
        Curriculum(family="mixture", stages=(
            Stage(nca=cfg, band=Band(0.5, 1.0), share=0.5),
            Stage(nca=NCAConfig(grid=16), band=Band(0.5, 1.0), share=0.5)))


def test_curriculum_constructors_sort_and_share() -> None:
    cfg = NCAConfig()
    bands = [Band(0.5, 1.0), Band(0.2, 0.3), Band(0.3, 0.4)]
    asc = Curriculum.ascending(cfg, bands)
    desc = Curriculum.descending(cfg, bands)
    assert [s.band.lower for s in asc.stages] == [0.2, 0.3, 0.5]
    assert [s.band.lower for s in desc.stages] == [0.5, 0.3, 0.2]
    assert asc.sequence_counts(10) == [4, 3, 3] and sum(asc.sequence_counts(7)) == 7


def test_curriculum_order_families() -> None:
    cfg = NCAConfig()
    asc = Curriculum.ascending(cfg, [Band(0.2, 0.3), Band(0.5, 1.0)], shares=[0.25, 0.75])
    stage, index = asc.order([2, 6])
    assert stage.tolist() == [0, 0, 1, 1, 1, 1, 1, 1] and index.tolist() == [0, 1, 0, 1, 2, 3, 4, 5]
    mix = Curriculum.mixture(cfg, [Band(0.2, 0.3), Band(0.5, 1.0)], shares=[0.25, 0.75])
    stage, index = mix.order([2, 6])
    assert stage.tolist() == [1, 0, 1, 1, 1, 0, 1, 1]  # at (m + 0.5) / count, ties by stage
    for j, c in enumerate([2, 6]):  # each stage keeps its own order
        assert index[stage == j].tolist() == list(range(c))


def test_mixed_alphabets_share_one_vocabulary() -> None:
    cur = Curriculum(family="mixture", stages=(
        Stage(nca=NCAConfig(alphabet=4), band=Band(0.2, 1.0), share=0.5),
        Stage(nca=NCAConfig(alphabet=10), band=Band(0.5, 1.0), share=0.5)))
    assert cur.vocab_size == 10**4 + 2


def test_data_spec_source_fields(tmp_path) -> None:
    cur = Curriculum.constant(NCAConfig(), Band(0.5, 1.0))
    with pytest.raises(ValueError, match="needs curriculum"):
        DataSpec(source="nca")
    with pytest.raises(ValueError, match="only used with source='nca'"):
        DataSpec(source="dyck", curriculum=cur)
    with pytest.raises(ValueError, match="dyck_k is only used"):
        DataSpec(source="nca", curriculum=cur, dyck_k=4)
    with pytest.raises(ValueError, match="needs text_path"):
        DataSpec(source="text")
    with pytest.raises(ValueError, match="valid: \\['nca', 'dyck', 'text'\\]"):
        DataSpec(source="music")
    with pytest.raises(ValueError, match="sequences_per_rule is only used"):
        DataSpec(source="dyck", sequences_per_rule=4)
    assert DataSpec(source="dyck").to_dict()["dyck_k"] == 8


def test_every_dataclass_in_nca_is_frozen() -> None:
    for info in pkgutil.iter_modules(nca.__path__):
        module = importlib.import_module(f"nca.{info.name}")
        for obj in vars(module).values():
            if dataclasses.is_dataclass(obj) and obj.__module__ == module.__name__:
                assert obj.__dataclass_params__.frozen, f"{obj.__name__} is not frozen"
    with pytest.raises(dataclasses.FrozenInstanceError):
        NCAConfig().alphabet = 4  # type: ignore[misc]
