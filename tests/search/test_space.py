"""Search space: sampling, conditional parameters, band parsing."""

from __future__ import annotations

import optuna
import pytest

from search._toml import ConfigError
from search.config import config_from_dict
from search.space import Setting, parse_space, sample, setting_from_params


def _space(table):
    return config_from_dict({"study": {"name": "s", "domain": "code"}, "space": table}).space_map


def test_band_parameter_reads_every_spelling_of_nca_bands():
    for text in ("0.3-0.4", "0.3:0.4", "30-40%", "band-30-40", "gzip[0.3, 0.4)"):
        setting = setting_from_params({"band": text})
        assert (setting.band, setting.band_kind) == ((0.3, 0.4), "absolute"), text
    quantile = setting_from_params({"band": "q0.8-1.0"})
    assert (quantile.band, quantile.band_kind) == ((0.8, 1.0), "quantile")
    assert setting_from_params({"band": "q0.8-1", "band_kind": "quantile"}) == quantile
    for bad in ("0.4-0.3", "0.5", "x-y", "0.5-1.5"):
        with pytest.raises(ValueError, match=f"band '{bad}' is invalid; accepted: "):
            setting_from_params({"band": bad})
    with pytest.raises(ValueError, match="quantile band but band_kind is 'absolute'"):
        setting_from_params({"band": "q0.8-1.0", "band_kind": "absolute"})
    with pytest.raises(ValueError, match="change band; accepted: a gzip band"):
        setting_from_params({"band": "change[0.1, 0.2)"})


def test_conditional_parameters_only_when_they_apply():
    space = _space({
        "source": {"choices": ["nca", "none", "dyck"]},
        "band": {"choices": ["0.2-0.3", "0.5-1.0"]},
        "curriculum": {"choices": ["constant", "ascending"]},
        "curriculum_stages": {"low": 2, "high": 4},
        "dyck_k": {"low": 2, "high": 16},
        "lr": {"low": 1e-4, "high": 1e-2, "log": True},
    })
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(40):
        trial = study.ask()
        setting = sample(trial, space)
        params = set(trial.params)
        seen.add(setting.source)
        if setting.source != "nca":
            assert not params & {"band", "curriculum", "curriculum_stages"}
        if setting.source != "dyck":
            assert "dyck_k" not in params
        if setting.source == "nca" and setting.curriculum == "constant":
            assert "curriculum_stages" not in params
        study.tell(trial, 0.0)
    assert seen == {"nca", "none", "dyck"}


def test_band_lower_width_keeps_lower_below_upper():
    space = _space({"band_lower": {"low": 0.0, "high": 0.95},
                    "band_width": {"low": 0.05, "high": 0.5}})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(50):
        trial = study.ask()
        lo, hi = sample(trial, space).band
        assert 0 <= lo < hi <= 1
        study.tell(trial, 0.0)


def test_setting_validation():
    with pytest.raises(ValueError, match="alphabet"):
        Setting(alphabet=1)
    with pytest.raises(ValueError, match="curriculum"):
        setting_from_params({"curriculum": "ascending", "curriculum_stages": 1})
    assert setting_from_params({"band": "0.3-0.4"}).band == (0.3, 0.4)


@pytest.mark.parametrize(
    "value, needle",
    [
        ({"low": 1, "high": 4}, "[space.alphabet] low = 1"),
        ({"low": 4, "high": 16}, "[space.alphabet] high = 16"),
        ({"choices": [4, 99]}, "alphabet = 99"),
    ],
)
def test_every_bound_and_choice_is_validated(value, needle):
    with pytest.raises(ConfigError) as info:
        parse_space({"alphabet": value})
    assert needle in str(info.value) and "an integer in [2, 15]" in str(info.value)


@pytest.mark.parametrize(
    "table, needle",
    [
        ({"lr": float("nan")}, "nan"),
        ({"lr": float("inf")}, "inf"),
        ({"lr": {"low": 1e-4, "high": float("inf")}}, "inf"),
        ({"ppt_lr": {"choices": [1e-3, float("nan")]}}, "nan"),
        ({"lr": {"low": -1e-3, "high": 1e-3}}, "low = -0.001"),
        ({"lr": {"low": 0.0, "high": 1e-3, "log": True}}, "log"),
        ({"band_lower": {"low": 0.1, "high": 1.2}}, "high = 1.2"),
        ({"band_width": {"low": 0.1, "high": 1.5}}, "band_width"),
        ({"band_width": 2.0}, "band_width"),
        ({"temperature": {"low": 0.0, "high": 1.0}}, "temperature"),
    ],
)
def test_bad_ranges_and_non_finite_numbers_are_refused(table, needle):
    with pytest.raises(ConfigError) as info:
        parse_space(table)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_valid_ranges_pass():
    specs = parse_space({"alphabet": {"low": 2, "high": 15}, "lr": {"low": 1e-4, "high": 1e-2,
                         "log": True}, "band_lower": {"low": 0.0, "high": 0.9}})
    assert specs["alphabet"].distribution().high == 15
