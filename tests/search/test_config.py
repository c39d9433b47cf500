"""Study files: loading, overrides, strict keys and validation."""

from __future__ import annotations

import pytest

from search._toml import ConfigError
from search.config import STUDIES_DIR, config_from_dict, load_study_config


@pytest.mark.parametrize("name", ["code", "math", "web", "smoke"])
def test_builtin_studies_load(name):
    cfg = load_study_config(name)
    assert cfg.study.name == name or name == "smoke"
    assert cfg.anchors and cfg.anchors[0].name == "paper"
    assert len(cfg.study.seeds) >= 2


def test_paper_anchor_per_domain():
    bands = {n: dict(load_study_config(n).anchors[0].params)["band"] for n in ("code", "math", "web")}
    assert bands == {"code": "0.3-0.4", "math": "0.5-1.0", "web": "0.5-1.0"}


def test_overrides_apply():
    cfg = load_study_config("smoke", {"study": {"n_trials": 9, "workers": 1}, "sampler": {"seed": 7}})
    assert (cfg.study.n_trials, cfg.study.workers, cfg.sampler.seed) == (9, 1, 7)


@pytest.mark.parametrize(
    "raw, needle",
    [
        ({"study": {"name": "x", "domain": "code", "colour": 1}}, "colour"),
        ({"study": {"name": "x", "domain": "code"}, "sampler": {"nme": "tpe"}}, "nme"),
        ({"study": {"name": "x", "domain": "chess"}}, "chess"),
        ({"study": {"name": "x", "domain": "code"}, "bogus": {}}, "bogus"),
        ({"study": {"name": "x", "domain": "code"}, "space": {"band": "0.5-0.4"}}, "0.5-0.4"),
        ({"study": {"name": "x", "domain": "code"}, "space": {"alphabet": 16}}, "alphabet"),
        ({"study": {"name": "x", "domain": "code"}, "space": {"alphabet": {"low": 9, "high": 3}}}, "low < high"),
        ({"study": {"name": "x", "domain": "code", "objectives": ["fun"]}}, "fun"),
        ({"study": {"name": "x", "domain": "code", "seeds": []}}, "seeds"),
        ({"study": {"name": "x", "domain": "code"}, "anchors": [{"name": "a", "params": {"band": "1-2"}}]}, "1-2"),
    ],
)
def test_bad_config_names_the_value(raw, needle):
    with pytest.raises(ConfigError, match=needle):
        config_from_dict(raw)


def test_unknown_key_lists_valid_ones():
    with pytest.raises(ConfigError) as info:
        config_from_dict({"study": {"name": "x", "domain": "code", "colour": 1}})
    assert "valid keys" in str(info.value) and "n_trials" in str(info.value)


def test_missing_study_file_lists_builtins():
    with pytest.raises(ConfigError, match="smoke"):
        load_study_config("does-not-exist")


def test_resolved_config_is_json():
    import json

    data = json.loads(load_study_config("code").to_json())
    assert data["study"]["domain"] == "code" and STUDIES_DIR.is_dir()
