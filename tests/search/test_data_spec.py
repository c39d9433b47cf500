"""One Setting -> NCA data mapping (search.space): the trial, its artifacts and the report's
pictures all use it, and it keeps the NCA cache keys of existing settings."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

import nca
from ncaio import content_key
from search import artifacts, trial
from search.space import Setting, nca_data_spec, setting_from_params

CONTEXT = trial.TrialContext(domain="code", data="", tokenizer="gpt2", preset="cpu-proxy",
                             nca_tokens=1000, domain_tokens=1000, seeds=(3,), cache_dir="/tmp/x")

# content_key(spec.to_dict()) as the code before issue 13 built it: the part of every NCA
# dataset key (nca.dataset_key) that comes from the setting. A change rebuilds every cache.
PINNED = [
    ({"band": "0.3-0.4", "alphabet": 10}, "9fe4ad495d564e23a109"),
    ({"band": "0.3-0.4", "alphabet": 10, "band_kind": "quantile"}, "8a84706d1eb0748bd459"),
    ({"band": "0.2-0.5", "alphabet": 4, "curriculum": "ascending", "curriculum_stages": 3,
      "grid": 16, "temperature": 0.01, "identity_bias": 1.5}, "c33d52f75ddbc304827a"),
]


@pytest.mark.parametrize(("params", "key"), PINNED)
def test_spec_of_a_setting_is_what_the_old_code_built(params: dict, key: str) -> None:
    spec = nca_data_spec(setting_from_params(params))
    assert content_key(spec.to_dict()) == key


def test_band_03_04_alphabet_10_spec_in_full() -> None:
    spec = nca_data_spec(setting_from_params({"band": "0.3-0.4", "alphabet": 10}))
    assert json.dumps(spec.to_dict(), sort_keys=True) == (
        '{"curriculum": {"family": "constant", "stages": [{"band": {"kind": "absolute", '
        '"lower": 0.3, "measure": "gzip", "upper": 0.4}, "nca": {"alphabet": 10, "burn_in": 10, '
        '"dt": 1, "grid": 12, "identity_bias": 0.0, "patch": 2, "score_frames": 10, '
        '"temperature": 0.0001}, "share": 1.0}]}, "min_val_sequences": 32, "profile_rules": 4096, '
        '"sequences_per_rule": 1, "source": "nca", "val_fraction": 0.05}')


@pytest.mark.parametrize("params", [p for p, _ in PINNED])
def test_trial_builds_the_spec_of_the_one_mapping(params: dict) -> None:
    setting = setting_from_params(params)
    spec = trial.data_spec(setting, CONTEXT)
    assert spec == nca_data_spec(setting)
    assert (nca.dataset_key(spec, 4096, 0, 64)
            == nca.dataset_key(nca_data_spec(setting), 4096, 0, 64))
    stage = spec.curriculum.stages[0]
    assert stage.nca == setting.nca_config() and stage.band.kind == setting.nca_band().kind


def _capture(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    import nca.trajectories

    calls: list[tuple] = []

    def fake(config, band, n_rules, n_frames, *args):
        calls.append((config, band))
        return "fake", np.zeros((n_rules, n_frames, 4, 4), dtype=np.int64)

    monkeypatch.setattr(nca.trajectories, "band_trajectories", fake)
    return calls


SETTINGS = [Setting(band=(0.3, 0.4), alphabet=10),
            Setting(band=(0.2, 0.5), alphabet=4, grid=16, temperature=0.01, identity_bias=1.5,
                    curriculum="ascending")]


@pytest.mark.parametrize("setting", SETTINGS)
def test_artifact_gif_draws_the_settings_nca_config_and_band(setting: Setting, tmp_path,
                                                             monkeypatch) -> None:
    calls = _capture(monkeypatch)
    artifacts._nca_gif(setting, CONTEXT, tmp_path / "nca.gif")
    assert calls == [(setting.nca_config(), setting.nca_band())]
    assert (tmp_path / "nca.gif").is_file()


@pytest.mark.parametrize("setting", SETTINGS)
def test_report_picture_draws_the_settings_nca_config_and_band(setting: Setting,
                                                               monkeypatch) -> None:
    from analysis.trajectories import _render_with_nca

    calls = _capture(monkeypatch)
    row = pd.Series({"label": "#1", "band_lower": setting.band[0], "band_upper": setting.band[1]})
    stored = json.loads(json.dumps(dataclasses.asdict(setting)))  # the trial's `setting` attr
    _render_with_nca(row, stored)
    assert calls == [(setting.nca_config(), setting.nca_band())]


def test_setting_leaves_its_nca_fields_to_nca() -> None:
    for kwargs, needle in [({"alphabet": 16}, "NCAConfig.alphabet=16 is invalid"),
                           ({"grid": 5}, "NCAConfig.grid=5 is invalid"),
                           ({"temperature": 0.0}, "NCAConfig.temperature=0.0 is invalid"),
                           ({"band": (0.4, 0.3)}, "Band(0.4, 0.3) is invalid")]:
        with pytest.raises(ValueError, match=needle.replace("(", r"\(").replace(")", r"\)")):
            Setting(**kwargs)
    with pytest.raises(ValueError, match="source 'dyck' has no NCA data"):
        nca_data_spec(Setting(source="dyck"))
