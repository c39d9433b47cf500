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
    bands = {n: dict(load_study_config(n).anchors[0].params)["band"]
             for n in ("code", "math", "web")}
    assert bands == {"code": "0.3-0.4", "math": "0.5-1.0", "web": "0.5-1.0"}


def test_overrides_apply():
    cfg = load_study_config("smoke", {"study": {"n_trials": 9, "workers": 1},
                                      "sampler": {"seed": 7}})
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
        ({"study": {"name": "x", "domain": "code"}, "space": {"alphabet": {"low": 9, "high": 3}}},
         "low < high"),
        ({"study": {"name": "x", "domain": "code", "objectives": ["fun"]}}, "fun"),
        ({"study": {"name": "x", "domain": "code", "seeds": []}}, "seeds"),
        ({"study": {"name": "x", "domain": "code"},
          "anchors": [{"name": "a", "params": {"band": "1-2"}}]}, "1-2"),
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


# -- several domains (issue 15) ------------------------------------------------------------------

_MULTI = {"name": "x", "domains": ["code", "math", "web"], "data": {"math": "m.jsonl", "web": "w"}}


def test_domains_table_resolves_in_order():
    s = config_from_dict({"study": _MULTI}).study
    assert s.domain == "code" and s.multi_domain
    assert s.domain_data == (("code", ""), ("math", "m.jsonl"), ("web", "w"))


def test_one_domain_forms_agree():
    plain = config_from_dict({"study": {"name": "x", "domain": "code", "data": "c.jsonl"}}).study
    listed = config_from_dict({"study": {"name": "x", "domains": ["code"],
                                         "data": {"code": "c.jsonl"}}}).study
    assert plain.data == listed.data == "c.jsonl" and not plain.multi_domain
    assert plain.domain_data == listed.domain_data == (("code", "c.jsonl"),)
    assert plain.objectives == ("net-effect",)


def test_multi_domain_objectives_expand_per_domain():
    s = config_from_dict({"study": {**_MULTI, "objectives": ["net-effect", "compute"]}}).study
    assert s.objectives == ("net-effect:code", "net-effect:math", "net-effect:web", "compute")
    assert s.directions == ["maximize"] * 3 + ["minimize"]
    mean = config_from_dict({"study": {**_MULTI, "objectives": ["mean-loss"]}}).study
    assert mean.objectives == ("mean-loss",) and mean.directions == ["minimize"]


def test_cli_data_entry_merges_into_the_table(tmp_path):
    path = tmp_path / "multi.toml"
    path.write_text('[study]\nname = "x"\ndomains = ["code", "math", "web"]\n'
                    'data = { math = "m", web = "w" }\n')
    cfg = load_study_config(str(path), {"study": {"data": {"web": "w2"}}})
    assert cfg.study.domain_data == (("code", ""), ("math", "m"), ("web", "w2"))


@pytest.mark.parametrize(
    "study, needle",
    [
        ({**_MULTI, "domains": ["code", "chess"]}, "'chess' is not one of code, math, web"),
        ({**_MULTI, "domains": ["code", "math", "code"], "data": {"math": "m"}},
         "code more than once"),
        ({**_MULTI, "data": {"math": "m"}}, "'web' has no built-in corpus"),
        ({**_MULTI, "data": {"math": "m", "web": "w", "poetry": "p"}}, "poetry"),
        ({**_MULTI, "data": "one.jsonl"}, "one.jsonl"),
        ({**_MULTI, "domain": "code"}, "not both"),
        ({"name": "x"}, "domain"),
        ({**_MULTI, "objectives": ["net-effect:chess"]}, "net-effect:chess"),
        ({**_MULTI, "objectives": ["mean-compute"]}, "mean-compute"),
        ({"name": "x", "domain": "code", "objectives": ["loss:math"]}, "'math'"),
    ],
)
def test_bad_domains_name_the_value(study, needle):
    with pytest.raises(ConfigError, match=None) as exc:
        config_from_dict({"study": study})
    assert needle in str(exc.value) and "\n" not in str(exc.value)
