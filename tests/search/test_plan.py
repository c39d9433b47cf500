"""Recipes and budgets resolved per setting; scratch runs keyed by what their domain stage
depends on, and by nothing of the NCA stage."""

from __future__ import annotations

import dataclasses

import pytest

from search.plan import resolve, scratch_runs
from search.space import Setting
from search.trial import TrialContext, baseline_path


@pytest.fixture(scope="module")
def context(tmp_path_factory) -> TrialContext:
    return TrialContext(domain="code", data="", tokenizer="byte", preset="tiny",
                        nca_tokens=8192, domain_tokens=16384, seeds=(0,),
                        cache_dir=str(tmp_path_factory.mktemp("cache")))


def _key(context, setting, seed=0, label="matched"):
    runs = {r.label: r for r in scratch_runs(resolve(setting, context), context)}
    return baseline_path(context, runs[label], seed).name


@pytest.mark.parametrize("change", [
    {"recipe": "proxy"}, {"embed_init": "scaled"}, {"lr": 1e-3}, {"warmup": 0.2},
    {"domain_tokens": 32768}, {"embed_std": 0.1},
])
def test_the_matched_baseline_key_changes_with_each_downstream_field(context, change):
    assert _key(context, Setting(**change)) != _key(context, Setting())


@pytest.mark.parametrize("change", [
    {"nca_schedule": "cosine"}, {"nca_lr_ratio": 0.9}, {"nca_fraction": 0.5},
    {"nca_tokens": 999}, {"ppt_lr": 1e-3}, {"band": (0.2, 0.3)}, {"alphabet": 4},
    {"transfer": "attention-only"}, {"source": "dyck"}, {"block_scale": 0.5},
])
def test_the_baseline_key_ignores_nca_only_fields(context, change):
    assert _key(context, Setting(**change)) == _key(context, Setting())


def test_key_changes_with_seed_device_and_the_recipe_fields_themselves(context):
    assert _key(context, Setting(), seed=1) != _key(context, Setting())
    gpu = dataclasses.replace(context, device="cuda")
    assert _key(gpu, Setting()) != _key(context, Setting())
    paper = resolve(Setting(), context)
    for field in ("min_lr_ratio", "weight_decay", "beta2"):
        changed = dataclasses.replace(paper, recipe=paper.recipe.replace(**{field: 0.5}))
        runs = scratch_runs(changed, context)
        assert baseline_path(context, runs[0], 0) != baseline_path(
            context, scratch_runs(paper, context)[0], 0), field


def test_the_named_scratch_runs_do_not_follow_the_trials_overrides(context):
    base, tuned = Setting(), Setting(lr=1e-3, warmup=0.3, embed_init="scaled")
    for label in ("paper", "proxy"):
        assert _key(context, tuned, label=label) == _key(context, base, label=label)
    assert _key(context, base, label="matched") == _key(context, base, label="paper")


def test_budget_precedence(context):
    assert resolve(Setting(), context).nca_tokens == 8192
    assert resolve(Setting(nca_fraction=0.25), context).nca_tokens == 4096
    assert resolve(Setting(nca_fraction=0.25, nca_tokens=100), context).nca_tokens == 100
    study_fraction = dataclasses.replace(context, nca_fraction=0.5)
    assert resolve(Setting(domain_tokens=1000), study_fraction).nca_tokens == 500


def test_nca_lr_comes_from_the_recipe_ratio_unless_fixed(context):
    assert resolve(Setting(), context).nca_lr == pytest.approx(0.5 * 3e-3)  # paper, code
    assert resolve(Setting(recipe="proxy"), context).nca_lr == pytest.approx(3e-3)
    assert resolve(Setting(ppt_lr=1e-4), context).nca_lr == pytest.approx(1e-4)


def test_one_byte_of_the_corpus_changes_the_key(tmp_path):
    corpus = tmp_path / "c.jsonl"
    doc = '{"text": "def f(x):\\n    return x + %d\\n"}\n'
    corpus.write_text("".join(doc % i for i in range(400)))
    ctx = TrialContext(domain="code", data=str(corpus), tokenizer="byte", preset="tiny",
                       nca_tokens=1, domain_tokens=1024, seeds=(0,), cache_dir=str(tmp_path / "c"))
    before = _key(ctx, Setting())
    corpus.write_text("".join(doc % i for i in range(400)).replace("+ 7\\n", "- 7\\n"))
    ctx2 = dataclasses.replace(ctx, cache_dir=str(tmp_path / "c2"))  # a fresh corpus cache
    assert _key(ctx2, Setting()) != before


def test_a_preset_field_or_an_lm_source_line_changes_both_cached_keys(context, monkeypatch):
    """Editing ``lm/presets.py`` or ``lm/trainer.py`` must not reuse old baselines or
    pre-pre-trained checkpoints; with nothing changed the keys, hence the cache hits, stay."""
    import lm.presets
    import search.trial as trial_lib

    def keys():
        return _key(context, Setting()), trial_lib.pretraining_paths(Setting(), context, 0)[1]

    before = keys()
    assert keys() == before  # nothing changed: the same cache entries
    tiny = lm.presets.PRESETS["tiny"]
    monkeypatch.setitem(lm.presets.PRESETS, "tiny", dataclasses.replace(tiny, lr=tiny.lr * 2))
    after_preset = keys()
    assert after_preset[0] != before[0] and after_preset[1] != before[1]
    monkeypatch.setitem(lm.presets.PRESETS, "tiny", tiny)
    monkeypatch.setattr(trial_lib, "lm_source_key", lambda: "a-trainer-line-changed")
    after_source = keys()
    assert after_source[0] != before[0] and after_source[1] != before[1]
