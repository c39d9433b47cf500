"""A scratch run stopped mid-way (a killed job, the end of a session) resumes from its stage
checkpoint and ends exactly where an uninterrupted run ends; a damaged checkpoint is reported,
set aside and the run starts over. Tiny preset, the built-in code corpus, 8 steps of 512 tokens,
a checkpoint every 2 steps."""

from __future__ import annotations

from pathlib import Path

import pytest

from search import trial as trial_lib
from search.config import config_from_dict

_STEP = 512


class _Killed(Exception):
    """Stands for the job being killed: nothing after it runs, no checkpoint is written."""


def _context(cache: Path) -> trial_lib.TrialContext:
    study = {"name": "s", "domain": "code", "preset": "tiny", "seeds": [0], "cache_dir": str(cache)}
    return trial_lib.make_context(config_from_dict(
        {"study": study, "budget": {"nca_tokens": 2048, "domain_tokens": 8 * _STEP}}))


def _stopped_after(context: trial_lib.TrialContext, run: trial_lib.ScratchRun, step: int) -> Path:
    """Run the scratch run until ``step``, then kill it; returns its stage checkpoint."""

    def progress(tokens: int, total: int) -> None:
        if tokens == step * _STEP:
            raise _Killed

    with pytest.raises(_Killed):
        trial_lib.scratch_baseline(context, run, 0, progress=progress)
    partial = trial_lib.baseline_path(context, run, 0).with_suffix(".partial.pt")
    assert partial.is_file()
    return partial


def _resumed(context: trial_lib.TrialContext, run: trial_lib.ScratchRun
             ) -> tuple[trial_lib.Baseline, list[int]]:
    steps: list[int] = []
    done = trial_lib.scratch_baseline(context, run, 0, progress=lambda t, _: steps.append(t))
    return done, steps


def test_a_stopped_scratch_run_resumes_and_ends_as_an_uninterrupted_one(tmp_path):
    cold = _context(tmp_path / "cold")
    run = trial_lib.study_scratch_runs(cold)[0]
    want = trial_lib.scratch_baseline(cold, run, 0)
    context = _context(tmp_path / "cache")
    assert trial_lib.scratch_share_trained(context, run, 0) == 0.0
    partial = _stopped_after(context, run, 5)
    assert trial_lib.scratch_share_trained(context, run, 0) == 0.5  # the estimate's view
    got, steps = _resumed(context, run)
    assert trial_lib.scratch_share_trained(context, run, 0) == 1.0
    assert steps[0] == 5 * _STEP  # from the checkpoint at step 4, not from the start
    assert got.final_loss == want.final_loss and got.curve == want.curve
    assert not partial.exists() and not list(partial.parent.glob("*.partial.pt*"))


def test_a_damaged_stage_checkpoint_is_set_aside_and_the_run_starts_over(tmp_path, capsys):
    cold = _context(tmp_path / "cold")
    run = trial_lib.study_scratch_runs(cold)[0]
    want = trial_lib.scratch_baseline(cold, run, 0)
    context = _context(tmp_path / "cache")
    partial = _stopped_after(context, run, 5)
    data = bytearray(partial.read_bytes())
    data[len(data) // 2] ^= 0x01
    partial.write_bytes(bytes(data))
    assert trial_lib.scratch_share_trained(context, run, 0) == 0.0, "the run starts over"
    got, steps = _resumed(context, run)
    warning = capsys.readouterr().err
    assert "stage checkpoint" in warning and "damaged" in warning, warning
    assert steps[0] == _STEP and got.final_loss == want.final_loss and got.curve == want.curve
    assert (partial.parent / ".corrupt").is_dir()
