"""What a study will cost before it runs: a short calibration of this machine, and the estimate.

``calibrate`` measures, on this machine and at the torch threads a trial will get, what a trial
spends its time on: a worker process starting, building one seed's NCA data, an optimiser step
and an evaluation of the NCA and domain stages (real preset shapes, the real corpus), the
upstream diagnostic, and the dashboard artifacts. It takes seconds and is cached per machine in
``<cache_dir>/calibration/`` (keyed by preset, hostname, threads and token budgets).

``estimate`` turns it into the study's wall time: scratch baselines, then the trials left, as many
at once as there are workers. A resumed study uses the mean duration of its own finished trials
instead. Pruned trials end early, so for a fresh study the figure is an upper bound.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import json
import math
import re
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from optuna.trial import TrialState

from lm.model import Transformer
from ncaio import atomic_write_json
from search import trial as trial_lib
from search.config import StudyConfig
from search.plan import resolve, scratch_runs
from search.record import SeedRecord
from search.space import Setting, setting_from_params

__all__ = ["Calibration", "Estimate", "TimeBudget", "calibrate", "estimate", "parse_duration",
           "rank_speedup", "trial_threads"]

CALIBRATION_VERSION = 2
"""Bump when what ``calibrate`` measures changes, so cached calibrations are redone (2: the
machine's busy share is measured first)."""
BUSY_LIMIT = 0.25
"""Share of the CPUs other work may use while a calibration is measured for it to be trusted:
a busier one is kept but measured again by the next dry run."""
_MIN_TIMED_S = 0.5
_DEFAULT_ALPHABET = 10


@dataclass(frozen=True, kw_only=True, slots=True)
class Calibration:
    """Seconds of each part of a trial on one machine, for one preset and budget."""

    preset: str
    host: str
    threads: int
    startup_s: float
    """A fresh worker process importing the trial code."""
    data_s: float
    """Building one seed's NCA data (rule search and generation) at the study's NCA budget."""
    domain_step_s: float
    domain_eval_s: float
    nca_step_s: dict[int, float]
    """Seconds per NCA-stage optimiser step, by alphabet (the vocabulary sets the output layer)."""
    nca_eval_s: dict[int, float]
    diagnose_s: float
    artifacts_s: float
    parallel_slowdown: float = 1.0
    """How much slower each of the study's concurrent local workers computes than one alone
    (shared cores, hyperthreads, memory bandwidth); the parts above were timed alone."""
    measured_at: float = 0.0
    busy_share: float = 0.0
    """Share of the machine's CPU time other processes used just before it was measured: above
    ``BUSY_LIMIT`` the figures are slow, so the next dry run measures again, and a running
    study's projection follows its own measured rates where they differ (search.board)."""
    version: int = CALIBRATION_VERSION

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        data = dict(data)
        for name in ("nca_step_s", "nca_eval_s"):
            data[name] = {int(k): float(v) for k, v in data[name].items()}
        return cls(**data)


@dataclass(frozen=True, kw_only=True, slots=True)
class Plan:
    """The work of a study, in steps and evaluations per stage."""

    seeds: int
    nca_tokens: int
    domain_tokens: int
    domain_steps: int
    domain_evals: int
    nca_steps: int
    nca_evals: int
    domains: int = 1
    """Domain stages per seed: one per domain of the study (each timed as the first domain's:
    the preset's shapes are the same, only the text differs)."""
    ranks: int = 1
    """Data-parallel processes of each trial (``StudyConfig.ranks``)."""

    @property
    def tokens_per_trial(self) -> int:
        return self.seeds * (self.nca_tokens + self.domains * self.domain_tokens)

    @property
    def speedup(self) -> float:
        """How much faster an optimiser step is on ``ranks`` processes than on one, as the
        estimate assumes (``rank_speedup``); evaluations and data builds run on rank 0 alone."""
        return rank_speedup(self.ranks)


RANK_EFFICIENCY = 0.9
"""Parallel efficiency the estimate assumes per doubling of a trial's ranks (4 ranks: 0.81, so
3.2x; 8 ranks: 0.73, so 5.8x). Not measured: the calibration times one process, and this machine
has no GPUs to time NCCL on; data-parallel training of a model this size usually does better on
one node and worse across nodes."""


def rank_speedup(ranks: int) -> float:
    """Optimiser steps per second on ``ranks`` data-parallel processes over one process's:
    ``ranks x RANK_EFFICIENCY ** log2(ranks)``."""
    return ranks * RANK_EFFICIENCY ** math.log2(ranks) if ranks > 1 else 1.0


@dataclass(frozen=True, kw_only=True, slots=True)
class Estimate:
    """The study's projected wall time and how it was reached."""

    trials_total: int
    trials_done: int
    workers: int
    baseline_seeds: tuple[int, ...]
    """Seeds whose scratch baselines still have to be computed."""
    baseline_s: float
    baseline_trained: float = 0.0
    """Share of those seeds' scratch training done before (cached runs, a stopped job's stage
    checkpoint): ``baseline_s`` prices only the rest."""
    trial_s: float
    """Mean seconds of one trial."""
    total_s: float
    source: str
    """``calibration`` or ``finished trials`` (a resumed study)."""
    domain_rate: float | None = None
    """Domain-stage tokens/s of one worker (evaluations included, workers side by side) that
    ``trial_s`` assumes; None when it comes from finished trials."""
    confirm_s: float = 0.0
    """The confirmation phase after the search (``confirm_s``; 0 when it is off), not in
    ``total_s``."""

    @property
    def trials_left(self) -> int:
        return max(0, self.trials_total - self.trials_done)


def trial_threads(config: StudyConfig, cores: int | None = None) -> int:
    """Torch threads each trial process gets (what ``search.run`` gives a local worker, each of
    a trial's ranks): the machine's cores shared by the processes that run at once, so a study
    of fewer trials than workers leaves no core idle."""
    if config.study.threads:
        return config.study.threads
    if config.study.executor == "local":  # each rank of each trial running at once gets a share
        import os

        return max(1, (cores or os.cpu_count() or 1) // (config.trials_at_once * config.ranks))
    if config.study.executor == "slurm":
        return max(1, config.slurm.cpus_per_task)
    return torch.get_num_threads()


def plan(config: StudyConfig, context: trial_lib.TrialContext, setting: Setting | None = None
         ) -> Plan:
    """What one trial of ``setting`` trains (default: the study's first NCA anchor, else its
    fixed space)."""
    from lm.presets import get_preset

    preset = get_preset(context.preset)
    trial_plan = resolve(setting or _probe_setting(config), context)
    nca_len = preset.nca_seq_len + 1
    text = trial_plan.domain_config(preset, 0, preset.seq_len)
    nca = trial_plan.nca_config(preset, 0, nca_len)
    return Plan(seeds=len(context.seeds), nca_tokens=trial_plan.nca_tokens,
                domain_tokens=trial_plan.domain_tokens,
                domain_steps=_steps(text, preset.seq_len), domain_evals=preset.evals_per_stage + 1,
                nca_steps=_steps(nca, nca_len), nca_evals=preset.evals_per_stage + 1,
                domains=len(context.per_domain()), ranks=config.ranks)


def _steps(cfg: Any, seq_len: int) -> int:
    return max(1, cfg.total_tokens // (cfg.batch_size * cfg.grad_accum * (seq_len - 1)))


# -- calibration ---------------------------------------------------------------------------------


def calibration_path(config: StudyConfig, context: trial_lib.TrialContext, threads: int) -> Path:
    budget = f"n{context.nca_tokens}-d{context.domain_tokens}"
    name = f"{context.preset}-{socket.gethostname()}-t{threads}-{budget}.json"
    return Path(context.cache_dir) / "calibration" / name


def cached_calibration(config: StudyConfig, context: trial_lib.TrialContext) -> Calibration | None:
    """This machine's cached calibration for the study, or None where there is none that is
    readable, current and covers the study's NCA alphabets (it costs nothing: no measurement)."""
    path = calibration_path(config, context, trial_threads(config))
    try:
        cal = Calibration.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError, KeyError):
        return None  # absent, unreadable or older: measured again when needed
    if cal.version == CALIBRATION_VERSION and set(_alphabets(config)) <= set(cal.nca_step_s):
        return cal
    return None


def calibrate(config: StudyConfig, context: trial_lib.TrialContext, *,
              refresh: bool = False) -> tuple[Calibration, bool]:
    """This machine's calibration for the study's preset; (calibration, True when cached). A
    cached one measured on a busy machine is measured again (and replaced, unless the machine
    is busy again)."""
    cal = None if refresh else cached_calibration(config, context)
    if cal is not None and cal.busy_share <= BUSY_LIMIT:
        return cal, True
    threads = trial_threads(config)
    path = calibration_path(config, context, threads)
    busy = busy_share()
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        cal = dataclasses.replace(_measure(config, context, threads), busy_share=busy)
    finally:
        torch.set_num_threads(previous)
    atomic_write_json(path, cal.to_dict())  # a busy one too, marked: better than none
    return cal, False


def busy_share(sample_s: float = 1.0) -> float:
    """Share of all CPUs' time spent busy over ``sample_s`` seconds while this process sleeps
    (``/proc/stat``): the work of other processes. 0 where ``/proc/stat`` is not readable."""

    def times() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields[:8]), idle  # guest time is already counted in user time

    try:
        total0, idle0 = times()
        time.sleep(sample_s)
        total1, idle1 = times()
    except (OSError, ValueError, IndexError):
        return 0.0
    total = total1 - total0
    return max(0.0, 1.0 - (idle1 - idle0) / total) if total > 0 else 0.0


def _measure(config: StudyConfig, context: trial_lib.TrialContext, threads: int) -> Calibration:
    from lm.presets import build_model, get_preset

    preset = get_preset(context.preset)
    corpus = trial_lib._corpus(context)
    trial_plan = resolve(_probe_setting(config), context)
    domain_cfg = trial_plan.domain_config(preset, 0, corpus.train.seq_len)
    model = build_model(preset, corpus.vocab_size, seed=0)
    domain_step, domain_eval = _time_stage(model, corpus.train, corpus.val, domain_cfg)
    nca_step, nca_eval, diag = {}, {}, 0.0
    for alphabet in _alphabets(config):
        vocab = alphabet ** 4 + 2  # 2x2 patches of the alphabet, plus start and end tokens
        train_ds, val_ds = _random_tokens(vocab, preset.nca_seq_len + 1)
        cfg = trial_plan.nca_config(preset, 0, preset.nca_seq_len + 1)
        nca_model = build_model(preset, vocab, seed=0)
        nca_step[alphabet], nca_eval[alphabet] = _time_stage(nca_model, train_ds, val_ds, cfg)
        # _timed calls the lambda at once, so it sees this iteration's model and data
        diag = max(diag, _timed(lambda: _diagnose(nca_model, train_ds, val_ds))[1])  # noqa: B023
    with tempfile.TemporaryDirectory(prefix="ncasearch-calibrate-") as tmp:
        setting = _probe_setting(config)
        data_s = _timed(lambda: _build_data(setting, context, Path(tmp)))[1]
        artifacts_s = _timed(lambda: _write_artifacts(setting, context, Path(tmp)))[1]
    # every rank of every local trial running at once computes side by side
    workers = config.trials_at_once * config.ranks if config.study.executor == "local" else 1
    return Calibration(preset=context.preset, host=socket.gethostname(), threads=threads,
                       startup_s=_startup_s(), data_s=data_s, domain_step_s=domain_step,
                       domain_eval_s=domain_eval, nca_step_s=nca_step, nca_eval_s=nca_eval,
                       diagnose_s=diag, artifacts_s=artifacts_s,
                       parallel_slowdown=_parallel_slowdown(workers, threads),
                       measured_at=time.time())


def _timed(fn: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def _time_stage(model: Transformer, train_ds: Any, val_ds: Any, cfg: Any) -> tuple[float, float]:
    """Seconds per optimiser step (after one warm-up step) and per evaluation."""
    from lm.trainer import evaluate, make_optimizer, train_step

    device = torch.device("cpu")
    model.train()
    opt = make_optimizer(model, cfg)

    def step(i: int) -> None:
        train_step(model, opt, train_ds, cfg, i, device, None)
        opt.step()
        opt.zero_grad(set_to_none=True)

    step(0)
    n, t0 = 0, time.perf_counter()
    while n < 3 or (time.perf_counter() - t0 < _MIN_TIMED_S and n < 50):
        n += 1
        step(n)
    step_s = (time.perf_counter() - t0) / n
    eval_bs = cfg.eval_batch_size or cfg.batch_size
    _, eval_s = _timed(lambda: evaluate(model, val_ds, n_sequences=cfg.eval_sequences,
                                        batch_size=eval_bs))
    return step_s, eval_s


def _random_tokens(vocab: int, seq_len: int) -> tuple[Any, Any]:
    from lm.data import TokenArrayDataset

    rng = np.random.default_rng(0)
    return (TokenArrayDataset(rng.integers(0, vocab, (256, seq_len)), vocab),
            TokenArrayDataset(rng.integers(0, vocab, (64, seq_len)), vocab))


def _diagnose(model: torch.nn.Module, train_ds: Any, val_ds: Any) -> None:
    from lm.diagnose import diagnose

    diagnose(model, train_ds, val_ds)


def _alphabets(config: StudyConfig) -> list[int]:
    """The alphabets the study's NCA stages will use: the anchors' and the space's."""
    anchors = [s.alphabet for s in _anchor_settings(config) if s.source == "nca"]
    return sorted(set(anchors) | set(_space_alphabets(config)))


def _space_alphabets(config: StudyConfig) -> list[int]:
    """What sampled trials may use: the choices, a range's bounds, or the fixed value."""
    spec = config.space_map.get("alphabet")
    if spec is None:
        return [_DEFAULT_ALPHABET]
    if spec.fixed is not None:
        return [int(spec.fixed)]
    if spec.choices:
        return [int(c) for c in spec.choices]
    return [int(v) for v in (spec.low, spec.high) if v is not None]


def _probe_setting(config: StudyConfig) -> Setting:
    """The study's first anchor (or its fixed knobs): the data whose build time is measured."""
    fixed = {p.name: p.fixed for p in config.space if not p.searched}
    for anchor in config.anchors:
        setting = setting_from_params({**fixed, **dict(anchor.params)})
        if setting.source == "nca":
            return setting
    return setting_from_params({**fixed, "source": "nca", "band": "0.3-0.4",
                                "alphabet": _DEFAULT_ALPHABET})


def _build_data(setting: Setting, context: trial_lib.TrialContext, cache: Path) -> None:
    import nca
    from lm.presets import get_preset

    seq_len = get_preset(context.preset).nca_seq_len
    nca.build(trial_lib.data_spec(setting, context), resolve(setting, context).nca_tokens,
              cache_dir=cache, seed=0, seq_len=seq_len)


def _write_artifacts(setting: Setting, context: trial_lib.TrialContext, tmp: Path) -> None:
    """The dashboard files every finished trial renders (curves, an NCA GIF), on fake curves."""
    from search import artifacts

    curve = ((0, 5.0), (context.domain_tokens, 4.0))
    seeds = [trial_lib.SeedResult(record=SeedRecord(
        seed=s, loss=4.0, scratch_loss=4.1, gain_pct=1.0, net_gain_pct=1.0, best_scratch_loss=4.1,
        best_scratch_recipe="matched", scratch_losses={"matched": 4.1}, speedup=None, curve=curve,
        scratch_curve=curve, probe=None), bpb=1.0) for s in context.seeds]
    outcome = trial_lib.TrialOutcome(setting=setting, plan=resolve(setting, context), seeds=seeds,
                                     wall_s=0.0, device="cpu")
    out = tmp / "artifacts"
    out.mkdir()
    artifacts.write_artifacts(outcome, dataclasses.replace(context, cache_dir=str(tmp)), out)


def _startup_s() -> float:
    """A spawned worker starts a fresh interpreter and imports the trial code."""
    code = "import search.jobs, search.artifacts, lm.trainer"
    _, seconds = _timed(lambda: subprocess.run([sys.executable, "-c", code], check=True,
                                               capture_output=True))
    return seconds


_MATMULS = """
import sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
a = torch.randn(256, 256)
a @ a
print("ready", flush=True)
sys.stdin.readline()
t0 = time.perf_counter()
for _ in range(int(sys.argv[2])):
    a @ a
print(time.perf_counter() - t0)
"""


def _parallel_slowdown(workers: int, threads: int, n: int = 400) -> float:
    """The same matmul loop timed in one process, then in ``workers`` processes started
    together: the ratio is what running trials side by side costs each of them."""
    if workers <= 1:
        return 1.0

    def run(copies: int) -> float:
        procs = [subprocess.Popen([sys.executable, "-c", _MATMULS, str(threads), str(n)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                 for _ in range(copies)]
        pipes = [(p.stdin, p.stdout) for p in procs if p.stdin and p.stdout]
        # every copy has imported torch and warmed up before any starts: they run together
        if [out.readline().strip() for _, out in pipes] != ["ready"] * copies:
            for p in procs:
                p.kill()
                p.wait()
            raise RuntimeError("a calibration process did not start")
        for into, _ in pipes:
            into.write("go\n")
            into.flush()
        return max(float(p.communicate()[0]) for p in procs)

    return max(1.0, run(workers) / run(1))


# -- the estimate --------------------------------------------------------------------------------


def seed_s(cal: Calibration, p: Plan, alphabet: int) -> float:
    """One seed of one trial: data, NCA stage, then per domain diagnostic and domain stage."""
    step = cal.nca_step_s.get(alphabet) or max(cal.nca_step_s.values())
    evals = cal.nca_eval_s.get(alphabet) or max(cal.nca_eval_s.values())
    domain = (cal.diagnose_s + p.domain_steps * cal.domain_step_s / p.speedup
              + p.domain_evals * cal.domain_eval_s)
    return cal.data_s + p.nca_steps * step / p.speedup + p.nca_evals * evals + p.domains * domain


def trial_s(cal: Calibration, p: Plan, alphabet: int, finished: float = 0.0) -> float:
    """One trial in a worker running side by side with the study's other workers; ``finished``
    is the share of its seeds (on each domain) that a study sharing the cache already finished,
    which are only read back."""
    alone = cal.startup_s + p.seeds * seed_s(cal, p, alphabet) * (1.0 - finished) + cal.artifacts_s
    return alone * cal.parallel_slowdown


def baseline_s(cal: Calibration, p: Plan) -> float:
    alone = (cal.startup_s + p.domain_steps * cal.domain_step_s / p.speedup
             + p.domain_evals * cal.domain_eval_s)
    return alone * cal.parallel_slowdown


def domain_rate(cal: Calibration, p: Plan) -> float:
    """Domain-stage tokens/s of one worker beside the study's others, evaluations included (as
    ``search.progress`` measures it)."""
    stage_s = p.domain_steps * cal.domain_step_s / p.speedup + p.domain_evals * cal.domain_eval_s
    return p.domain_tokens / (stage_s * cal.parallel_slowdown)


def confirm_s(config: StudyConfig, context: trial_lib.TrialContext, cal: Calibration) -> float:
    """The confirmation phase's wall time (``search.confirm``), before its finalists are known:
    ``top`` finalists and a paper anchor besides them, each with its NCA stage once per seed,
    and the named scratch recipes, every arm at every grid point on every fresh seed, scored on
    test too (four evaluations' worth); its jobs run ``trials_at_once`` side by side."""
    if not config.confirm.enabled:
        return 0.0
    from lm.recipe import RECIPES

    p = plan(config, context)
    c = config.confirm
    n_final = c.top + any(a.name == "paper" for a in config.anchors)
    alphabet = _probe_setting(config).alphabet
    nca = (cal.data_s
           + p.nca_steps * (cal.nca_step_s.get(alphabet) or max(cal.nca_step_s.values()))
           / p.speedup
           + p.nca_evals * (cal.nca_eval_s.get(alphabet) or max(cal.nca_eval_s.values()))
           + cal.diagnose_s)
    domain = p.domains * (p.domain_steps * cal.domain_step_s / p.speedup
                          + (p.domain_evals + 4) * cal.domain_eval_s)
    runs = (n_final + len(RECIPES)) * len(c.lr_grid)
    seeds = len(c.seeds)
    alone = (n_final * seeds * nca + runs * seeds * domain
             + runs * (cal.startup_s + cal.artifacts_s))
    return alone * cal.parallel_slowdown / max(1, config.trials_at_once)


def estimate(config: StudyConfig, context: trial_lib.TrialContext, cal: Calibration | None,
             study: optuna.Study | None = None) -> Estimate:
    """The study's wall time from ``cal``, or from its own finished trials when it has some."""
    from search import jobs
    from search.tally import counts_towards_n_trials, mean_trial_s

    workers = config.trials_at_once
    trials = study.get_trials(deepcopy=False) if study is not None else []
    done = sum(counts_towards_n_trials(t) for t in trials)
    left = max(0, config.study.n_trials - done)
    todo = tuple(s for s in context.seeds if not jobs.baseline_cached(context, s))
    measured = mean_trial_s(trials)
    if measured is not None:
        per = [measured] * left
        source = "finished trials"
    else:
        if cal is None:
            raise ValueError("no finished trials to go by: a calibration is needed")
        finished = [f / n if n else 0.0 for f, n in _anchor_seeds_finished(config, context)]
        anchors = _planned(config, context, _anchor_settings(config))
        sampled = _planned(config, context, _sampled_settings(config))
        per = _per_trial(config, context, cal, anchors, sampled, range(done, done + left), finished)
        if per:  # the scratch runs trials train themselves, spread over them
            own = _own_scratch_s(context, cal, [*anchors, *sampled])
            per = [t + own / len(per) for t in per]
        source = "calibration"
    trained, base = _baseline_phase(config, context, cal, todo, workers)
    rate = domain_rate(cal, plan(config, context)) if cal is not None else None
    # Trials run `workers` at a time; the longest one bounds a study shorter than that.
    trials_wall = max(max(per, default=0.0), sum(per) / max(1, workers))
    mean = sum(per) / len(per) if per else (measured or 0.0)
    return Estimate(trials_total=config.study.n_trials, trials_done=done, workers=workers,
                    baseline_seeds=todo, baseline_s=base, baseline_trained=trained, trial_s=mean,
                    total_s=base + trials_wall, source=source,
                    domain_rate=rate if source == "calibration" else None,
                    confirm_s=confirm_s(config, context, cal) if cal is not None else 0.0)


def _baseline_phase(config: StudyConfig, context: trial_lib.TrialContext,
                    cal: Calibration | None, todo: tuple[int, ...], workers: int
                    ) -> tuple[float, float]:
    """(share already trained, seconds) of the baseline phase: a job per seed, ``workers`` at a
    time in seed order, each training what is left of every distinct scratch run of its seed
    (matched, paper, proxy) on every domain, at the study's default setting."""
    if not todo or cal is None:
        return 0.0, 0.0
    runs = [(one, run) for one in context.per_domain()
            for run in {r.plan: r for r in trial_lib.study_scratch_runs(one)}.values()]
    left = [sum(1.0 - trial_lib.scratch_share_trained(one, run, seed) for one, run in runs)
            for seed in todo]
    run_s = baseline_s(cal, plan(config, context, Setting()))
    free = [0.0] * max(1, workers)  # when each worker is next free
    for seed_left in left:
        heapq.heappush(free, heapq.heappop(free) + seed_left * run_s)
    return 1.0 - sum(left) / (len(runs) * len(todo)), max(free)


def _own_scratch_s(context: trial_lib.TrialContext, cal: Calibration,
                   planned: list[tuple[Setting, Plan]]) -> float:
    """The scratch runs trials train themselves: those of the ``planned`` settings (the anchors and
    what sampled trials may train) that the baseline phase does not compute (another budget,
    recipe or lr than the default setting's) and that are not cached. The first trial that needs
    one trains it, once per seed; later ones read it back."""
    stages = context.per_domain()
    phase = {trial_lib.baseline_path(one, run, seed) for one in stages for seed in context.seeds
             for run in trial_lib.study_scratch_runs(one)}
    own: dict[Path, Plan] = {}
    for setting, p in planned:
        need = {trial_lib.baseline_path(one, run, seed) for one in stages for seed in context.seeds
                for run in scratch_runs(resolve(setting, one), one)}
        own |= {path: p for path in need - phase if not path.is_file()}
    return sum(baseline_s(cal, p) for p in own.values())


def _planned(config: StudyConfig, context: trial_lib.TrialContext, settings: list[Setting]
             ) -> list[tuple[Setting, Plan]]:
    return [(s, plan(config, context, s)) for s in settings]


_COST_KNOBS = ("alphabet", "domain_tokens", "nca_fraction", "nca_tokens", "recipe", "embed_init",
               "embed_std", "lr", "warmup")
"""The searched knobs that change what a trial trains: its tokens, its NCA vocabulary, the scratch
runs it is scored against."""
_SCRATCH_KNOBS = ("embed_init", "embed_std", "lr", "warmup")
"""Searched over a range, each of these gives every sampled trial a matched scratch run of its
own."""


def _sampled_settings(config: StudyConfig) -> list[Setting]:
    """What a sampled trial may train, for its cost: the probe setting with each combination of
    the searched cost knobs' values (a range's bounds). A grid's cells, when it searches only
    these knobs."""
    values: dict[str, list[Any]] = {}
    for name in _COST_KNOBS:
        spec = config.space_map.get(name)
        if spec is None or not spec.searched or (name in _SCRATCH_KNOBS and not spec.choices):
            continue  # a ranged scratch knob costs a matched scratch run per trial (_per_trial)
        values[name] = list(spec.choices or [v for v in (spec.low, spec.high) if v is not None])
    probe = _probe_setting(config)
    integer = {"alphabet", "domain_tokens", "nca_tokens"}
    out = []
    for combo in itertools.product(*values.values()):
        cell: dict[str, Any] = {k: int(v) if k in integer else v
                                for k, v in zip(values, combo, strict=True)}
        out.append(dataclasses.replace(probe, **cell))
    return out


def _per_trial(config: StudyConfig, context: trial_lib.TrialContext, cal: Calibration,
               anchors: list[tuple[Setting, Plan]], sampled: list[tuple[Setting, Plan]],
               numbers: range, finished: list[float]) -> list[float]:
    """Trials ``numbers``: anchors run first, each at its own plan, less their ``finished`` seeds;
    sampled trials average what they may train."""
    sampled_s = [trial_s(cal, p, s.alphabet) for s, p in sampled]
    if any((spec := config.space_map.get(n)) is not None and spec.searched and not spec.choices
           for n in _SCRATCH_KNOBS):  # a matched scratch run per seed and domain, shared by none
        probe = plan(config, context)
        sampled_s = [t + len(context.seeds) * probe.domains * baseline_s(cal, probe)
                     for t in sampled_s]
    out = []
    for i in numbers:
        if i < len(anchors):
            a, p = anchors[i]
            out.append(trial_s(cal, p, a.alphabet, finished[i]) if a.source != "none"
                       else cal.startup_s)
        else:
            out.append(sum(sampled_s) / len(sampled_s))
    return out


# -- the time budget -----------------------------------------------------------------------------

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``45m``, ``2h``, ``1h30m``, ``1d`` -> seconds.

    Raises:
        ValueError: anything else.
    """
    text = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)([smhd])", text)
    if not parts or "".join(f"{n}{u}" for n, u in parts) != text:
        raise ValueError(f"{text!r} is not a duration; examples: 90s, 45m, 2h, 1h30m")
    return sum(float(n) * _UNITS[u] for n, u in parts)


@dataclass(kw_only=True)
class TimeBudget:
    """Stops sampling when the next trial, projected to take ``trial_s``, would end past the
    budget; the projection follows the study's own finished trials once it has some."""

    budget_s: float
    trial_s: float
    started: float = dataclasses.field(default_factory=time.time)
    stopped: str = ""
    """Why sampling stopped (empty while it goes on)."""

    def allows(self, study: optuna.Study, now: float | None = None) -> bool:
        from search.board import fmt_duration
        from search.tally import mean_trial_s

        now = time.time() if now is None else now
        per = mean_trial_s(study.get_trials(deepcopy=False, states=(
            TrialState.COMPLETE, TrialState.PRUNED))) or self.trial_s
        end = now - self.started + per
        if end <= self.budget_s:
            return True
        self.stopped = (f"time budget {fmt_duration(self.budget_s)}: stopped sampling; the next "
                        f"trial (about {fmt_duration(per)}) would end at "
                        f"{fmt_duration(end)} > {fmt_duration(self.budget_s)}")
        return False


# -- what the cache already holds ----------------------------------------------------------------


def cached_parts(config: StudyConfig,
                 context: trial_lib.TrialContext) -> dict[str, tuple[int, int]]:
    """(cached, needed) of what a trial reuses: scratch baselines, and the anchors' NCA data,
    pre-pre-trained checkpoints and finished seeds (on each domain, shared by any study that ran
    them: ``search.trial.shared_seed_path``). Sampled settings are not known before they are
    sampled."""
    from search import jobs

    out = {"scratch baselines": (sum(jobs.baseline_cached(context, s) for s in context.seeds),
                                 len(context.seeds))}
    first = context.per_domain()[0]
    data = ckpt = needed = 0
    for setting in _anchor_settings(config):
        if setting.source == "none":
            continue
        for seed in context.seeds:
            needed += 1
            data_dir, ckpt_path = trial_lib.pretraining_paths(setting, first, seed)
            data += (data_dir / "manifest.json").is_file()
            ckpt += ckpt_path.is_file()
    if needed:
        out["anchor NCA data"] = (data, needed)
        out["anchor NCA checkpoints"] = (ckpt, needed)
        finished = _anchor_seeds_finished(config, context)
        out["anchor seeds finished"] = (sum(f for f, _ in finished), sum(n for _, n in finished))
    return out


def _anchor_seeds_finished(config: StudyConfig, context: trial_lib.TrialContext
                           ) -> list[tuple[int, int]]:
    """Per anchor: (its seeds, on each domain, that a study sharing the cache already finished;
    seeds x domains). A scratch anchor has none to finish."""
    stages = context.per_domain()
    out = []
    for setting in _anchor_settings(config):
        if setting.source == "none":
            out.append((0, 0))
            continue
        paths = [trial_lib.shared_seed_path(setting, resolve(setting, one), one, stages[0], seed)
                 for seed in context.seeds for one in stages]
        out.append((sum(p is not None and p.is_file() for p in paths), len(paths)))
    return out


def _anchor_settings(config: StudyConfig) -> list[Setting]:
    fixed = {s.name: s.fixed for s in config.space if not s.searched}
    return [setting_from_params({**fixed, **dict(a.params)}) for a in config.anchors]


