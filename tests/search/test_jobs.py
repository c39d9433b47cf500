"""The worker side of a trial: the reporter that connects it to its Optuna trial."""

from __future__ import annotations

import optuna

from search.config import PrunerSection
from search.jobs import TrialPayload, _OptunaReporter
from search.space import Setting
from search.trial import CurvePoint, TrialContext


def _reporter(tmp_path, storage, trial_id, prunable, objectives=("loss",)):
    context = TrialContext(domain="code", data="", tokenizer="byte", preset="tiny", nca_tokens=1,
                           domain_tokens=1, seeds=(0,), cache_dir=str(tmp_path),
                           domains=(("code", ""), ("math", "")) if len(objectives) > 1 else ())
    payload = TrialPayload(storage=storage, study_name="s", trial_id=trial_id, setting=Setting(),
                           context=context, objectives=objectives, prunable=prunable,
                           pruner=PrunerSection(name="median", n_startup_trials=1,
                                                n_warmup_steps=0))
    return _OptunaReporter(payload)


def test_anchors_report_their_curve_but_are_never_pruned(tmp_path):
    storage = str(tmp_path / "journal.log")
    from search.storage import open_storage

    study = optuna.create_study(study_name="s", storage=open_storage(storage))
    good = study.ask()
    good.report(1.0, 0)
    study.tell(good, 1.0)
    search, anchor = study.ask(), study.ask()

    assert _reporter(tmp_path, storage, search._trial_id, prunable=True).report_curve(
        0, CurvePoint(loss=5.0, scratch_loss=5.0, best_scratch_loss=5.0))
    assert not _reporter(tmp_path, storage, anchor._trial_id, prunable=False).report_curve(
        0, CurvePoint(loss=5.0, scratch_loss=5.0, best_scratch_loss=5.0))
    # The anchor's value still reaches Optuna, where the median pruner reads it.
    reported = study.get_trials(deepcopy=False)[anchor.number].intermediate_values
    assert reported == {0: 5.0}


def test_multi_objective_trials_follow_the_first_domain_rule(tmp_path):
    """Optuna refuses intermediate values with several objectives: the reporter reports none and
    prunes by search._first_domain's rule, reading the completed trials from the storage."""
    from search.storage import open_storage
    from tests.search.test_first_domain import COMPLETED, _seed

    storage = str(tmp_path / "journal.log")
    objectives = ("net-effect:code", "net-effect:math")
    study = optuna.create_study(study_name="s", storage=open_storage(storage),
                                directions=["maximize", "maximize"])
    for record in COMPLETED:  # median net effect on code, seed 0: 0.0
        done = study.ask()
        for key, value in record.to_attrs().items():
            done.set_user_attr(key, value)
        study.tell(done, [record.objective(o) for o in objectives])
    search, anchor = study.ask(), study.ask()
    reporter = _reporter(tmp_path, storage, search._trial_id, True, objectives)
    point = CurvePoint(loss=5.0, scratch_loss=5.0, best_scratch_loss=5.0)
    assert not reporter.report_curve(0, point) and not reporter.report_seed(0, point)
    assert study.get_trials(deepcopy=False)[search.number].intermediate_values == {}
    assert reporter.report_domain("code", (_seed(0, 1.5, -6.0),))
    assert not reporter.report_domain("code", (_seed(0, 1.5, 1.0),))
    assert not reporter.report_domain("math", (_seed(0, 9.0, -90.0),))  # not the first domain
    anchor_reporter = _reporter(tmp_path, storage, anchor._trial_id, False, objectives)
    assert not anchor_reporter.report_domain("code", (_seed(0, 1.5, -6.0),))
