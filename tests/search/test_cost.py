"""The cost estimate's arithmetic and the time budget (the calibration itself runs in
tests/search/test_watch_smoke.py, on the real smoke study)."""

from __future__ import annotations

import datetime
import json

import optuna
import pytest

from search import cost, status
from search.config import load_study_config
from search.trial import TrialContext


def _cal(**kw):
    base = {"preset": "tiny", "host": "h", "threads": 1, "startup_s": 2.0, "data_s": 1.0,
            "domain_step_s": 0.01, "domain_eval_s": 0.1, "nca_step_s": {2: 0.01, 4: 0.01, 10: 0.05},
            "nca_eval_s": {2: 0.1, 4: 0.1, 10: 0.2}, "diagnose_s": 0.5, "artifacts_s": 3.0}
    return cost.Calibration(**{**base, **kw})


def _setup(tmp_path):
    config = load_study_config("smoke", {"study": {"run_dir": str(tmp_path / "run"),
                                                   "cache_dir": str(tmp_path / "cache")}})
    context = TrialContext(domain="code", data="", tokenizer="byte", preset="tiny",
                           nca_tokens=8192, domain_tokens=16384, seeds=(0, 1),
                           cache_dir=str(tmp_path / "cache"))
    return config, context


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("45m", 2700),
                                               ("2h", 7200), ("1h30m", 5400), ("1d", 86400)])
def test_parse_duration(text, seconds):
    assert cost.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "2 hours", "h", "1h30", "-5m"])
def test_parse_duration_refuses_what_it_cannot_read(text):
    with pytest.raises(ValueError):
        cost.parse_duration(text)


def test_estimate_adds_baselines_and_runs_trials_workers_at_a_time(tmp_path):
    config, context = _setup(tmp_path)
    cal = _cal()
    p = cost.plan(config, context)
    assert (p.nca_steps, p.domain_steps, p.domain_evals) == (16, 32, 5)
    est = cost.estimate(config, context, cal)
    anchor = cost.trial_s(cal, p, 10)  # the paper anchor first, with its own alphabet
    sampled = (cost.trial_s(cal, p, 2) + cost.trial_s(cal, p, 4)) / 2
    # two distinct scratch runs per seed: paper (the matched one) and proxy
    assert est.baseline_seeds == (0, 1) and est.baseline_s == pytest.approx(
        2 * cost.baseline_s(cal, p))
    assert est.total_s == pytest.approx(est.baseline_s + (anchor + 3 * sampled) / 2)
    assert est.source == "calibration" and est.trials_left == 4
    slower = cost.estimate(config, context, _cal(parallel_slowdown=2.0))
    assert slower.total_s == pytest.approx(2 * est.total_s)


def test_an_anchor_another_study_finished_costs_only_its_start_and_artifacts(tmp_path):
    from search import trial as trial_lib
    from search.plan import resolve
    from search.space import setting_from_params

    config, context = _setup(tmp_path)
    cal = _cal()
    p = cost.plan(config, context)
    before = cost.estimate(config, context, cal)
    paper = setting_from_params({"source": "nca", "band": "0.3-0.4", "alphabet": 10})
    # As a study sharing the cache leaves them (only their presence counts).
    for seed in context.seeds:
        path = trial_lib.shared_seed_path(paper, resolve(paper, context), context, context, seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
    after = cost.estimate(config, context, cal)
    assert cost.trial_s(cal, p, 10, 1.0) == pytest.approx(cal.startup_s + cal.artifacts_s)
    assert before.total_s - after.total_s == pytest.approx(
        (cost.trial_s(cal, p, 10) - cost.trial_s(cal, p, 10, 1.0)) / 2)  # 2 workers
    assert cost.cached_parts(config, context)["anchor seeds finished"] == (2, 2)


def test_a_multi_domain_trial_costs_one_nca_stage_and_a_domain_stage_per_domain(tmp_path):
    import dataclasses

    config, one = _setup(tmp_path)
    multi = dataclasses.replace(one, domains=(("code", ""), ("math", "m"), ("web", "w")))
    cal = _cal()
    p1, p3 = cost.plan(config, one), cost.plan(config, multi)
    assert (p1.domains, p3.domains) == (1, 3)
    assert p3.tokens_per_trial == 2 * (8192 + 3 * 16384)
    domain_s = (cal.diagnose_s + p1.domain_steps * cal.domain_step_s
                + p1.domain_evals * cal.domain_eval_s)
    assert cost.seed_s(cal, p3, 10) == pytest.approx(cost.seed_s(cal, p1, 10) + 2 * domain_s)


def test_a_resumed_study_is_estimated_from_its_own_trials(tmp_path):
    config, context = _setup(tmp_path)
    start = datetime.datetime(2026, 1, 1)
    trials = []
    for seconds in (30, 50):
        t = optuna.trial.create_trial(value=1.0)
        t.datetime_start, t.datetime_complete = start, start + datetime.timedelta(seconds=seconds)
        trials.append(t)
    est = cost.estimate(config, context, None, _FakeStudy(trials))
    assert est.source == "finished trials" and est.trial_s == 40.0
    assert est.trials_done == 2 and est.total_s == pytest.approx(40.0)  # 2 left, 2 workers


class _FakeStudy:
    def __init__(self, trials):
        self._trials = trials

    def get_trials(self, deepcopy=False, states=None):
        return [t for t in self._trials if states is None or t.state in states]


def test_time_budget_refuses_a_trial_that_would_end_past_it():
    budget = cost.TimeBudget(budget_s=100.0, trial_s=30.0, started=0.0)
    study = _FakeStudy([])
    assert budget.allows(study, now=70.0) and not budget.stopped
    assert not budget.allows(study, now=71.0)
    assert budget.stopped == ("time budget 1m40s: stopped sampling; the next trial (about 30s) "
                              "would end at 1m41s > 1m40s")


def test_a_cached_calibration_is_used_only_when_readable_current_and_complete(tmp_path):
    config, context = _setup(tmp_path)
    path = cost.calibration_path(config, context, cost.trial_threads(config))
    assert cost.cached_calibration(config, context) is None  # none yet: nothing is measured
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(_cal().to_dict()))
    assert cost.cached_calibration(config, context) == _cal()
    for damaged in ("{not json", json.dumps(_cal(version=cost.CALIBRATION_VERSION - 1).to_dict()),
                    # the study's 4 and 10 missing:
                    json.dumps(_cal(nca_step_s={2: 0.01}).to_dict())):
        path.write_text(damaged)
        assert cost.cached_calibration(config, context) is None


@pytest.mark.parametrize(("study", "threads"), [
    ({"workers": 2, "n_trials": 10}, 4),   # two trials side by side share the 8 cores
    ({"workers": 2, "n_trials": 1}, 8),    # one trial: no core left idle
    ({"workers": 3, "n_trials": 2}, 4),
    ({"workers": 2, "n_trials": 1, "threads": 3}, 3),  # set by hand
])
def test_a_local_trial_gets_the_cores_of_the_trials_that_run_at_once(tmp_path, monkeypatch,
                                                                      study, threads):
    monkeypatch.setattr("search.config.os.sched_getaffinity", lambda pid: set(range(8)))
    config = load_study_config("smoke", {"study": {"executor": "local", **study}})
    assert cost.trial_threads(config, cores=8) == threads
    assert config.trials_at_once == min(study["workers"], study["n_trials"])
    # search.status reads the same from the configuration saved with the study
    assert status._workers(json.loads(config.to_json())) == config.trials_at_once


def test_baseline_phase_prices_only_what_is_left_of_each_seed(tmp_path, monkeypatch):
    """A resumed phase: seed 0's first scratch run cached, seed 1's stopped half way (its stage
    checkpoint; tests/search/test_resumable_baseline.py reads a real one). Two workers, a job per
    seed: seed 1's 1.5 runs left bound the phase, and 1.5 of its 4 runs were trained before; one
    worker trains the 2.5 runs left one after another."""
    from search import trial as trial_lib

    config, context = _setup(tmp_path)
    cal = _cal()
    first, _ = {run.plan: None for run in trial_lib.study_scratch_runs(context)}  # paper, proxy
    trained = {(0, first): 1.0, (1, first): 0.5}
    monkeypatch.setattr(trial_lib, "scratch_share_trained",
                        lambda one, run, seed: trained.get((seed, run.plan), 0.0))
    run_s = cost.baseline_s(cal, cost.plan(config, context, cost.Setting()))
    est = cost.estimate(config, context, cal)
    assert est.baseline_s == pytest.approx(1.5 * run_s) and est.baseline_trained == 0.375
    one = cost.estimate(load_study_config("smoke", {"study": {
        "workers": 1, "run_dir": str(tmp_path / "run"), "cache_dir": str(tmp_path / "cache")}}),
        context, cal)
    assert one.baseline_s == pytest.approx(2.5 * run_s)


def test_trials_at_once_on_slurm_is_its_limit_of_jobs_in_flight():
    slurm = load_study_config("smoke", {"study": {"executor": "slurm", "n_trials": 1},
                                        "slurm": {"max_in_flight": 5}})
    assert slurm.trials_at_once == 5
    assert status._workers(json.loads(slurm.to_json())) == 5


def test_scratch_runs_at_another_budget_are_priced_in_the_trials(tmp_path):
    """A study whose trials train at another downstream budget than its default setting (a
    regime grid's other cells) trains those scratch runs in its trials, not in the baseline
    phase; cached, they cost nothing."""
    from search import trial as trial_lib
    from search.plan import resolve, scratch_runs
    from search.space import Setting

    config = load_study_config("smoke", {
        "study": {"run_dir": str(tmp_path / "run"), "cache_dir": str(tmp_path / "cache")},
        "space": {"domain_tokens": 32768}})
    context = trial_lib.make_context(config)
    cal = _cal()
    default, probe = cost.plan(config, context, Setting()), cost.plan(config, context)
    assert (default.domain_tokens, probe.domain_tokens) == (16384, 32768)
    cold = cost.estimate(config, context, cal)
    # two seeds, one round of 2 workers, two distinct scratch runs each (paper, proxy)
    assert cold.baseline_s == pytest.approx(2 * cost.baseline_s(cal, default))
    paper = cost._probe_setting(config)
    own = [trial_lib.baseline_path(context, run, seed) for seed in context.seeds
           for run in scratch_runs(resolve(paper, context), context)]
    for path in own:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    cached = cost.estimate(config, context, cal)
    assert (cold.trial_s - cached.trial_s) * cold.trials_left == pytest.approx(
        4 * cost.baseline_s(cal, probe))  # 2 seeds x 2 distinct runs (matched is paper's)


def test_a_grid_is_priced_cell_by_cell(tmp_path):
    """The regime grid's trials differ up to fourfold in tokens (0.8M or 3.3M downstream, NCA 4%
    or 16%): each cell is priced at its own plan, and the scratch runs of the budgets and recipes
    the baseline phase does not train are priced once, spread over the trials."""
    import itertools
    import statistics

    from search import trial as trial_lib

    config = load_study_config("regime", {"study": {
        "preset": "tiny", "seeds": [0], "run_dir": str(tmp_path / "run"),
        "cache_dir": str(tmp_path / "cache")}})
    context = trial_lib.make_context(config)
    cal = _cal()
    cells = cost._sampled_settings(config)
    assert sorted((s.recipe, s.domain_tokens, s.nca_fraction) for s in cells) == sorted(
        itertools.product(["paper", "proxy"], [819200, 3276800], [0.04, 0.16]))
    cell_s = [cost.trial_s(cal, cost.plan(config, context, s), s.alphabet) for s in cells]
    own = cost._own_scratch_s(context, cal, cost._planned(config, context, cells))
    assert own > 0  # the 3.3M scratch runs: not the default setting's
    est = cost.estimate(config, context, cal)
    assert est.trial_s == pytest.approx(statistics.mean(cell_s) + own / 8)
    assert est.total_s == pytest.approx(est.baseline_s + 8 * est.trial_s / 2)


def test_a_searched_lr_gives_every_sampled_trial_its_own_scratch_runs(tmp_path):
    """lr is in the scratch run's key: each sampled trial trains a matched scratch run per seed."""
    def estimate(space):
        config = load_study_config("smoke", {"study": {
            "run_dir": str(tmp_path / "run"), "cache_dir": str(tmp_path / "cache")},
            "space": space})
        from search import trial as trial_lib

        context = trial_lib.make_context(config)
        return cost.estimate(config, context, _cal()), cost.plan(config, context)

    fixed, probe = estimate({})  # the preset's lr: the baseline phase's scratch runs serve
    ranged, _ = estimate({"lr": {"low": 1e-3, "high": 4e-3, "log": True}})
    # 3 sampled trials (after the paper anchor) x 2 seeds, over the 4 trials; the range's
    # bounds are not priced as scratch runs on top
    assert (ranged.trial_s - fixed.trial_s) * 4 == pytest.approx(
        3 * 2 * cost.baseline_s(_cal(), probe))


def test_side_by_side_slowdown_starts_its_processes_together_and_fails_loudly():
    """The calibration's side-by-side measurement: real processes that start timing when all are
    ready (no fixed wait); one that cannot start is an error, not a number."""
    slowdown = cost._parallel_slowdown(2, 1, n=50)
    assert isinstance(slowdown, float) and slowdown >= 1.0
    with pytest.raises(RuntimeError, match="did not start"):
        cost._parallel_slowdown(2, 0, n=50)  # torch.set_num_threads(0) fails in each copy
