"""A finished seed is shared between studies through the cache: a setting another study already
ran on the same domain, budget and recipe is read back instead of trained again, and reads back
exactly what training it again gives; whatever its result depends on changes the key; a damaged
entry is reported, set aside and recomputed. Tiny preset, the built-in code corpus."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from search import trial as trial_lib
from search.config import config_from_dict
from search.plan import resolve
from search.space import setting_from_params

PAPER = setting_from_params({"source": "nca", "band": "0.3-0.4", "alphabet": 10})


def _context(cache: Path, name: str = "a", **budget: object) -> trial_lib.TrialContext:
    study = {"name": name, "domain": "code", "preset": "tiny", "seeds": [0],
             "cache_dir": str(cache)}
    return trial_lib.make_context(config_from_dict(
        {"study": study, "budget": {"nca_tokens": 2048, "domain_tokens": 4096, **budget}}))


def _calls(monkeypatch) -> list[int]:
    """The seeds ``search.trial._run_seed`` trains from now on."""
    calls: list[int] = []
    real = trial_lib._run_seed

    def counted(*args, **kwargs):
        calls.append(args[5])
        return real(*args, **kwargs)

    monkeypatch.setattr(trial_lib, "_run_seed", counted)
    return calls


def _path(setting, context: trial_lib.TrialContext) -> Path | None:
    return trial_lib.shared_seed_path(setting, resolve(setting, context), context, context, 0)


def test_another_study_reads_the_seed_back_as_training_it_again_gives(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    trained = trial_lib.run_trial(PAPER, _context(cache, "a"), work_dir=tmp_path / "a")
    first = trained.record()
    assert len(list((cache / "seeds").glob("code-*.json"))) == 1 and trained.shared_seeds == 0
    calls = _calls(monkeypatch)
    read_back = trial_lib.run_trial(PAPER, _context(cache, "b"), work_dir=tmp_path / "b")
    again = read_back.record()
    assert calls == [] and again.seeds == first.seeds and again.upstream == first.upstream
    assert read_back.shared_seeds == 1
    assert (tmp_path / "b" / "seed0.json").is_file()  # the work folder holds it as its own
    cold = trial_lib.run_trial(PAPER, _context(tmp_path / "cold")).record()
    assert calls == [0] and cold.seeds == first.seeds  # determinism is what makes sharing sound


def test_the_key_follows_what_the_result_depends_on(tmp_path):
    cache = tmp_path / "cache"
    base = _path(PAPER, _context(cache))
    assert base is not None and base == _path(PAPER, _context(cache, "another-study"))
    changed = [
        _path(PAPER, _context(cache, domain_tokens=8192)),  # the downstream budget
        _path(PAPER, _context(cache, nca_tokens=4096)),  # the NCA stage
        _path(dataclasses.replace(PAPER, band=(0.5, 1.0)), _context(cache)),  # the NCA data
        _path(dataclasses.replace(PAPER, transfer="attention-only"), _context(cache)),
        _path(dataclasses.replace(PAPER, recipe="proxy"), _context(cache)),  # init, schedules
        _path(dataclasses.replace(PAPER, lr=1e-3), _context(cache)),  # downstream and scratch
        _path(dataclasses.replace(PAPER, embed_std=0.1), _context(cache)),  # new embedding
        _path(dataclasses.replace(PAPER, block_scale=0.5), _context(cache)),  # the transfer
    ]
    assert base not in changed and len(set(changed)) == len(changed)
    assert _path(setting_from_params({"source": "none"}), _context(cache)) is None


def test_a_damaged_shared_seed_is_set_aside_and_recomputed(tmp_path, monkeypatch, capsys):
    cache = tmp_path / "cache"
    first = trial_lib.run_trial(PAPER, _context(cache)).record()
    shared = _path(PAPER, _context(cache))
    assert shared is not None
    shared.write_bytes(shared.read_bytes()[:-20])
    calls = _calls(monkeypatch)
    again = trial_lib.run_trial(PAPER, _context(cache)).record()
    assert calls == [0] and again.seeds == first.seeds
    assert "shared finished seed" in capsys.readouterr().err
    assert shared.is_file()  # rewritten
    assert len(list((cache / "seeds" / ".corrupt").glob(f"{shared.name}.*"))) == 1


def test_a_scratch_setting_is_not_shared(tmp_path):
    trial_lib.run_trial(setting_from_params({"source": "none"}), _context(tmp_path / "cache"))
    assert not (tmp_path / "cache" / "seeds").exists()
