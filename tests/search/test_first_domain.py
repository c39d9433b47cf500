"""The pruning rule of multi-objective studies (search._first_domain): a trial stops when its
first domain is worse than the completed trials' median on every objective it measures."""

from __future__ import annotations

import pytest

from search._first_domain import hopeless, judged_objectives
from search._toml import ConfigError
from search.config import config_from_dict
from search.record import DomainRecord, SeedRecord, TrialRecord


def _seed(seed: int, loss: float, net: float) -> SeedRecord:
    return SeedRecord(seed=seed, loss=loss, scratch_loss=2.0, gain_pct=(2.0 - loss) / 2.0 * 100,
                      net_gain_pct=net, best_scratch_loss=2.0, best_scratch_recipe="matched",
                      scratch_losses={}, speedup=None, curve=(), scratch_curve=(), probe=None)


def _trial(code: list[tuple[float, float]], math: list[tuple[float, float]]) -> TrialRecord:
    def domain(values: list[tuple[float, float]]) -> DomainRecord:
        return DomainRecord(seeds=tuple(_seed(i, *v) for i, v in enumerate(values)), bpb=1.0,
                            recipe=None)
    domains = {"code": domain(code), "math": domain(math)}
    return TrialRecord(seeds=domains["code"].seeds, source="nca", band=(0.3, 0.4), alphabet=10,
                       recipe=None, nca_tokens=1, domain_tokens=1, tokens=2, bpb=1.0,
                       complexity_mean=None, acceptance_rate=None, upstream=None, wall_s=1.0,
                       device="cpu", version=3, domains=domains)


# Completed trials: code seed-0 losses 1.0, 1.2, 1.4 (median 1.2), net effects +5, 0, -5 (0).
COMPLETED = [_trial([(1.0, 5.0), (1.1, 4.0)], [(3.0, 1.0)] * 2),
             _trial([(1.2, 0.0), (1.2, 0.0)], [(3.0, 1.0)] * 2),
             _trial([(1.4, -5.0), (1.3, -4.0)], [(3.0, 1.0)] * 2)]
OBJECTIVES = ("net-effect:code", "net-effect:math", "loss:code")


def test_judged_objectives_are_those_the_first_domain_measures():
    assert judged_objectives(OBJECTIVES, "code") == ("net-effect", "loss")
    assert judged_objectives(("mean-net-effect", "compute"), "code") == ("net-effect",)
    assert judged_objectives(("loss", "compute"), "code") == ("loss",)  # one domain
    assert judged_objectives(("net-effect:math", "compute"), "code") == ()


@pytest.mark.parametrize("seed0, pruned", [
    ((1.5, -6.0), True),    # worse than the median on both: hopeless
    ((1.5, 1.0), False),    # net effect above the median: not hopeless on every objective
    ((1.1, -6.0), False),   # loss below the median
    ((1.2, 0.0), False),    # equal to the median is not worse
])
def test_pruned_only_when_worse_than_the_median_on_every_objective(seed0, pruned):
    assert hopeless([_seed(0, *seed0)], COMPLETED, OBJECTIVES, "code", 3) is pruned


def test_compares_the_same_seeds_of_the_completed_trials():
    # Seeds 0 and 1: the completed means are 1.05, 1.2, 1.35 (median 1.2) and 4.5, 0, -4.5.
    two = [_seed(0, 1.3, -1.0), _seed(1, 1.15, 1.0)]  # mean loss 1.225, net 0.0
    assert not hopeless(two, COMPLETED, ("net-effect:code", "loss:code"), "code", 3)
    worse = [_seed(0, 1.3, -1.0), _seed(1, 1.2, -0.5)]
    assert hopeless(worse, COMPLETED, ("net-effect:code", "loss:code"), "code", 3)


def test_waits_for_startup_trials_and_ignores_unjudged_studies():
    bad = [_seed(0, 9.0, -90.0)]
    assert not hopeless(bad, COMPLETED, OBJECTIVES, "code", 4)  # 3 completed < 4
    assert not hopeless(bad, COMPLETED, ("net-effect:math", "compute"), "code", 1)
    assert hopeless(bad, COMPLETED, ("mean-net-effect",), "code", 1)


def test_one_domain_records_are_their_own_first_domain():
    one = [TrialRecord.from_attrs(t.for_domain("code").to_attrs()) for t in COMPLETED]
    assert hopeless([_seed(0, 1.5, -6.0)], [r for r in one if r], ("loss", "compute"), "code", 3)


def test_only_median_or_none_prune_several_objectives():
    study = {"name": "x", "domain": "code", "objectives": ["loss", "compute"]}
    for name in ("median", "none"):
        config_from_dict({"study": study, "pruner": {"name": name}})
    with pytest.raises(ConfigError, match="hyperband cannot judge a study with several"):
        config_from_dict({"study": study, "pruner": {"name": "hyperband"}})
