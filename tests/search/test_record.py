"""The trial record: one schema written by the search, read by the reports, built by the
synthetic studies; every committed journal still reads."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import optuna
import pytest

from search.record import OBJECTIVES, RECORD_VERSION, SeedRecord, TrialRecord, seeds_objective

ROOT = Path(__file__).resolve().parents[2]


def _record(**overrides) -> TrialRecord:
    seeds = tuple(SeedRecord(
        seed=s, loss=2.0 + s / 10, scratch_loss=2.2, gain_pct=9.0 - s, net_gain_pct=-1.0 - s,
        best_scratch_loss=2.0, best_scratch_recipe="proxy",
        scratch_losses={"matched": 2.2, "proxy": 2.0}, speedup=None if s else 1.5,
        curve=((0, 5.0), (100, 2.0 + s / 10)), scratch_curve=((0, 5.0), (100, 2.2)),
        probe={"nca": {"residual_rms": 1.0}}) for s in (0, 1))
    record = TrialRecord(seeds=seeds, source="nca", band=(0.3, 0.4), alphabet=10,
                         recipe={"name": "paper"}, nca_tokens=131_072, domain_tokens=819_200,
                         tokens=950_272, bpb=3.0, complexity_mean=0.35, acceptance_rate=0.2,
                         upstream={"val_loss": 6.0}, wall_s=12.0, device="cpu")
    return dataclasses.replace(record, **overrides)


def test_attrs_round_trip_to_the_same_record():
    record = _record()
    again = TrialRecord.from_attrs(record.to_attrs())
    assert again == record
    assert again.version == RECORD_VERSION


def test_objectives_are_means_over_seeds_and_unknown_names_are_refused():
    record = _record()
    assert record.objective("loss") == pytest.approx(2.05)
    assert record.objective("nca-effect") == record.objective("gain") == pytest.approx(8.5)
    assert record.objective("net-effect") == pytest.approx(-1.5)
    assert record.objective("speedup") == pytest.approx(0.75)  # a seed that never reached: 0
    assert record.objective("compute") == 950_272
    with pytest.raises(ValueError, match="objective 'tokens': expected one of loss"):
        record.objective("tokens")
    assert set(OBJECTIVES) == {"loss", "gain", "nca-effect", "net-effect", "speedup", "compute"}


def test_seeds_so_far_are_scored_as_a_trial_is():
    record = _record()
    assert seeds_objective(record.seeds[:1], "nca-effect") == pytest.approx(9.0)
    for name in ("loss", "nca-effect", "net-effect", "speedup"):
        assert seeds_objective(record.seeds, name) == record.objective(name)
    with pytest.raises(ValueError, match="'compute' is not measured per seed"):
        seeds_objective(record.seeds, "compute")


def test_a_trial_without_results_has_no_record_and_a_record_needs_a_seed():
    assert TrialRecord.from_attrs({"kind": "search", "pruned_reason": "x"}) is None
    with pytest.raises(ValueError, match="at least one seed"):
        _record(seeds=())


def test_version_1_reads_with_the_matched_scratch_as_the_best():
    attrs = {k: v for k, v in _record().to_attrs().items()
             if k not in ("net_effects_pct", "net_effect_pct", "best_scratch_losses",
                          "best_scratch_recipes", "scratch_losses_by_recipe", "probes",
                          "record_version", "recipe", "nca_tokens", "domain_tokens")}
    record = TrialRecord.from_attrs(attrs)
    assert record is not None and record.version == 1
    for s in record.seeds:
        assert s.net_gain_pct == s.gain_pct and s.best_scratch_loss == s.scratch_loss
        assert s.best_scratch_recipe == "matched" and s.probe is None


def test_every_attribute_is_documented():
    """docs/interfaces.md §4 lists every key the record writes."""
    table = (ROOT / "docs" / "interfaces.md").read_text()
    documented = set(re.findall(r"`([a-z_]+)`", table))
    missing = set(_record().to_attrs()) - documented
    assert not missing, f"undocumented record keys: {sorted(missing)}"


def test_the_trial_outcome_is_stored_as_its_record():
    from lm.recipe import get_recipe
    from search.plan import Plan
    from search.space import setting_from_params
    from search.trial import SeedResult, TrialOutcome

    seed = SeedResult(record=SeedRecord(
        seed=3, loss=2.0, scratch_loss=2.2, gain_pct=9.09, speedup=1.2,
        curve=((0, 5.0), (10, 2.0)), scratch_curve=((0, 5.0), (10, 2.2)),
        best_scratch_loss=2.1, best_scratch_recipe="proxy", net_gain_pct=4.76,
        scratch_losses={"matched": 2.2, "proxy": 2.1}, probe=None), bpb=2.9, tokens=123,
        upstream={"val_loss": 6.0}, data_stats={"complexity_mean": 0.33})
    plan = Plan(recipe=get_recipe("paper", "code"), nca_tokens=23, domain_tokens=100,
                domain_lr=2e-3)
    setting = setting_from_params({"source": "nca", "band": "0.3-0.4", "alphabet": 10})
    outcome = TrialOutcome(setting=setting, plan=plan, seeds=[seed], wall_s=1.0, device="cpu")
    attrs = outcome.record().to_attrs()
    assert TrialRecord.from_attrs(attrs) == outcome.record()
    assert attrs["net_effects_pct"] == [4.76] and attrs["best_scratch_recipes"] == ["proxy"]
    assert attrs["band"] == [0.3, 0.4] and attrs["complexity_mean"] == 0.33
    assert attrs["recipe"]["embed_init"] == "reference" and attrs["tokens"] == 123
    assert attrs["scratch_losses_by_recipe"] == [{"matched": 2.2, "proxy": 2.1}]
    # the seed's work file (JSON: curves come back as lists) reads back to the same seed
    assert SeedResult.from_json(json.loads(json.dumps(dataclasses.asdict(seed)))) == seed
    with pytest.raises(TypeError, match="no seed record"):
        SeedResult.from_json({"seed": 3, "loss": 2.0, "bpb": 2.9})  # an older, flat work file


def test_synthetic_trials_are_records_with_the_search_objectives():
    from analysis.synthetic import synthetic_trial

    trial = synthetic_trial(domain="code", params={"source": "nca", "band_lower": 0.3},
                            kind="search", seeds=[0, 1], rng=np.random.default_rng(0),
                            objectives=("loss", "compute"))
    record = TrialRecord.from_attrs(trial.user_attrs)
    assert record is not None and len(record.seeds) == 2
    assert trial.values == [record.objective("loss"), record.objective("compute")]


@pytest.mark.parametrize("journal", sorted(
    p for p in (ROOT / "studies" / "results").rglob("journal.log")))
def test_every_committed_trial_reads(journal: Path):
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
        str(journal), lock_obj=optuna.storages.journal.JournalFileOpenLock(str(journal))))
    read = 0
    for summary in optuna.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            record = TrialRecord.from_attrs(t.user_attrs)
            assert record is not None, (journal, t.number)
            assert [s.loss for s in record.seeds] == t.user_attrs["losses"]
            read += 1
    assert read > 0


# -- several domains (issue 15) ------------------------------------------------------------------


def _multi() -> TrialRecord:
    from search.record import DOMAINS_RECORD_VERSION, DomainRecord

    code, math = _record(), _record()
    worse = tuple(dataclasses.replace(s, loss=s.loss + 1, net_gain_pct=s.net_gain_pct - 10)
                  for s in math.seeds)
    domains = {"code": DomainRecord(seeds=code.seeds, bpb=3.0, recipe={"name": "paper"}),
               "math": DomainRecord(seeds=worse, bpb=4.0, recipe={"name": "paper", "x": 1})}
    return _record(domains=domains, version=DOMAINS_RECORD_VERSION)


def test_a_one_domain_record_writes_exactly_the_version_2_keys():
    attrs = _record().to_attrs()
    assert "domains" not in attrs and "by_domain" not in attrs
    assert attrs["record_version"] == RECORD_VERSION == 2


def test_a_multi_domain_record_round_trips_and_scores_each_domain():
    record = _multi()
    attrs = record.to_attrs()
    assert attrs["record_version"] == 3 and attrs["domains"] == ["code", "math"]
    assert attrs["by_domain"]["math"]["losses"] == [3.0, 3.1] and attrs["losses"] == [2.0, 2.1]
    assert TrialRecord.from_attrs(attrs) == record
    assert record.objective("net-effect:code") == record.objective("net-effect") == -1.5
    assert record.objective("net-effect:math") == pytest.approx(-11.5)
    assert record.objective("mean-net-effect") == pytest.approx(-6.5)
    assert record.objective("loss:math") == pytest.approx(3.05)
    assert _record().objective("mean-loss") == _record().objective("loss")
    with pytest.raises(ValueError, match="'web': the trial ran on code, math"):
        record.objective("loss:web")
    with pytest.raises(ValueError, match="mean-compute"):
        record.objective("mean-compute")


def test_every_multi_domain_attribute_is_documented():
    table = (ROOT / "docs" / "interfaces.md").read_text()
    documented = set(re.findall(r"`([a-z_]+)`", table))
    attrs = _multi().to_attrs()
    keys = set(attrs) | set(attrs["by_domain"]["code"])
    assert not keys - documented, f"undocumented record keys: {sorted(keys - documented)}"
