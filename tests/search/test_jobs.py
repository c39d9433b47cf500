"""The worker side of a trial: the reporter that connects it to its Optuna trial."""

from __future__ import annotations

import optuna

from search.config import PrunerSection
from search.jobs import TrialPayload, _OptunaReporter
from search.space import Setting
from search.trial import CurvePoint, TrialContext


def _reporter(tmp_path, storage, trial_id, prunable):
    context = TrialContext(domain="code", data="", tokenizer="byte", preset="tiny", nca_tokens=1,
                           domain_tokens=1, seeds=(0,), cache_dir=str(tmp_path))
    payload = TrialPayload(storage=storage, study_name="s", trial_id=trial_id, setting=Setting(),
                           context=context, objectives=("loss",), prunable=prunable,
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

    assert _reporter(tmp_path, storage, search._trial_id, prunable=True).report_curve(0, CurvePoint(loss=5.0, scratch_loss=5.0, best_scratch_loss=5.0))
    assert not _reporter(tmp_path, storage, anchor._trial_id, prunable=False).report_curve(0, CurvePoint(loss=5.0, scratch_loss=5.0, best_scratch_loss=5.0))
    # The anchor's value still reaches Optuna, where the median pruner reads it.
    reported = study.get_trials(deepcopy=False)[anchor.number].intermediate_values
    assert reported == {0: 5.0}
