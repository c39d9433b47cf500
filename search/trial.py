"""The one trial function every executor runs (in process, in a local worker, as a Slurm job).

For each seed: build or fetch the pre-pre-training data (cached by ``nca``), pre-pre-train or
fetch the cached checkpoint, transfer, train on the domain, and score against scratch runs of the
same seed and budget (each computed once and cached, keyed by content: see ``search.plan``):

- the **NCA effect**: % lower final loss than scratch with the *same* downstream recipe (init,
  lr, warmup, anneal, weight decay), which isolates what the NCA stage did;
- the **net effect**: % lower final loss than the *best* scratch run among the matched one and
  every named recipe's (``paper``, ``proxy``), which is the gain a user can bank.

Each seed also records a transfer probe (``lm.probe``: residual stream and gradients at the
first downstream step, NCA arm and scratch) and how many downstream tokens each arm needed to
beat the unigram loss.

A data-parallel trial (``lm.distributed``) runs this function on every rank. Rank 0 alone takes
the cache locks, reads the cache entries and work files whose answers decide what to train (its
answer goes to every rank) and writes them; every rank trains, so all of them meet at the
trainer's collectives. No cache key names the number of ranks: every rank count takes the same
optimiser steps on the same global batches (equal to float rounding, ``lm.trainer``), so a stage
cached by a run of one count serves a run of any other.
"""

from __future__ import annotations

import dataclasses
import fcntl
import functools
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import torch

import nca
import ncaio
from lm import distributed
from lm.checkpoint import load_checkpoint, save_checkpoint
from lm.corpora import DomainCorpus, load_domain
from lm.diagnose import diagnose, unigram_loss
from lm.model import Transformer
from lm.presets import Preset, Stage, build_model, get_preset
from lm.probe import probe
from lm.recipe import init_new_embeddings
from lm.scores import score as lm_score
from lm.scores import tokens_to_reach
from lm.trainer import evaluate as lm_evaluate
from lm.trainer import train as lm_train
from lm.transfer import TransferConfig
from lm.transfer import transfer as lm_transfer
from ncaio import (
    CorruptCacheError,
    content_key,
    quarantine,
    read_intact,
    read_verified_json,
    report_corrupt,
    sha256_bytes,
    sidecar_path,
    verify_file,
    write_verified_json,
)
from search import progress as progress_lib
from search import synthetic
from search.config import StudyConfig
from search.plan import (
    Plan,
    ScratchRun,
    config_dict,
    lm_source_key,
    resolve,
    scratch_runs,
)
from search.record import (
    DOMAINS_RECORD_VERSION,
    RECORD_VERSION,
    DomainRecord,
    SeedRecord,
    TrialRecord,
    split_objective,
)
from search.space import TRANSFERS, Setting, nca_data_spec

Corpus = DomainCorpus | synthetic.SyntheticCorpus
"""A domain's data: a text corpus, or a synthetic domain's (search.synthetic)."""


class TrialPrunedError(Exception):
    """The trial stops early: the pruner said so, or its setting cannot be realised."""


class InfeasibleSettingError(TrialPrunedError):
    """The setting cannot be realised (a band its alphabet cannot reach): no compute was spent,
    so the driver does not count it towards the study's trials."""


class SetupError(ValueError):
    """The study cannot start: unknown preset, missing corpus. One line for the user."""


class Reporter(Protocol):
    """How a trial talks to its Optuna trial (see ``search.jobs``); optional. A reporter may also
    have ``progress(stage, seed_index, tokens, total, val_loss=None, scratch_loss=None)``, told
    every stage change and training step (see ``search.progress``), and ``report_eval(stage,
    seed, domain, tokens, val_loss, scratch_loss)``, told every validation point of a stage the
    trial trains (``nca``, whose scratch_loss is None, or ``domain``; see ``search.tracking``)."""

    def report_curve(self, step: int, point: CurvePoint) -> bool: ...
    def report_seed(self, seed_index: int, point: CurvePoint) -> bool: ...
    def report_domain(self, domain: str, seeds: tuple[SeedRecord, ...]) -> bool: ...
    def set_attr(self, key: str, value: Any) -> None: ...


@dataclass(frozen=True, kw_only=True, slots=True)
class CurvePoint:
    """A validation loss of the NCA arm next to its scratch runs' at the same token count."""

    loss: float
    scratch_loss: float
    """The matched scratch run's."""
    best_scratch_loss: float
    """The lowest among the scratch runs'."""

    def value(self, objective: str) -> float:
        """The point as the objective ``objective`` scores a whole trial (loss or % effect; a
        per-domain or mean objective as its base objective on the stage's domain)."""
        objective = split_objective(objective)[0]
        if objective in ("gain", "nca-effect"):
            return (self.scratch_loss - self.loss) / self.scratch_loss * 100.0
        if objective == "net-effect":
            return (self.best_scratch_loss - self.loss) / self.best_scratch_loss * 100.0
        return self.loss


@dataclass(frozen=True, kw_only=True, slots=True)
class TrialContext:
    """What every trial of a study shares: domain, data, preset, recipe, budgets, seeds, caches."""

    domain: str
    data: str
    tokenizer: str
    preset: str
    nca_tokens: int
    """Default pre-pre-training tokens (a Setting's nonzero nca_tokens overrides it)."""
    recipe: str = "paper"
    """The study's recipe (a Setting's ``recipe`` overrides it)."""
    nca_fraction: float = 0.0
    """Default NCA budget as a fraction of the domain budget; 0 = use nca_tokens."""
    domain_tokens: int
    seeds: tuple[int, ...]
    cache_dir: str
    device: str = "cpu"
    domains: tuple[tuple[str, str], ...] = ()
    """``(domain, data)`` of every domain of a multi-domain study, in order (``domain`` and
    ``data`` are then the first's); empty for one domain."""
    corpus_keys: tuple[str, ...] = ()
    """Content key of each domain's corpus tokens, in domain order (``make_context`` reads them):
    the work folders and finished seeds are keyed by what the data holds, not where it lies."""
    evaluate_test: bool = False
    """Score every finished model on the test split too: the confirmation phase's context (a
    search never reads the test split)."""

    def to_dict(self) -> dict[str, Any]:
        """As a dict; a one-domain context has no ``domains`` key (its keys stay as before)."""
        out = dataclasses.asdict(self)
        if not self.domains:
            del out["domains"]
        return out

    def per_domain(self) -> tuple[TrialContext, ...]:
        """One one-domain context per domain, in order (just this one for one domain)."""
        if not self.domains:
            return (self,)
        keys: list[tuple[str, ...]] = [(k,) for k in self.corpus_keys] or [()] * len(self.domains)
        return tuple(dataclasses.replace(self, domain=d, data=data, domains=(), corpus_keys=k)
                     for (d, data), k in zip(self.domains, keys, strict=True))


def make_context(config: StudyConfig) -> TrialContext:
    """Resolve the study's preset, recipe, budgets and device; check the corpus can be read.

    Raises:
        SetupError: unknown preset or unreadable domain data.
    """
    s = config.study
    name = s.preset
    if name == "auto":
        name = "gpu-proxy" if torch.cuda.is_available() else "cpu-proxy"
    try:
        preset = get_preset(name)
    except ValueError as exc:
        raise SetupError(str(exc)) from None
    _check_budgets(config, preset)
    _check_split(config, preset)
    context = TrialContext(
        domain=s.domain, data=s.domain_data[0][1], tokenizer=s.tokenizer, preset=name,
        recipe=s.recipe or preset.recipe,
        nca_tokens=config.budget.nca_tokens or preset.nca_tokens,
        nca_fraction=config.budget.nca_fraction,
        domain_tokens=config.budget.domain_tokens or preset.domain_tokens,
        seeds=tuple(s.seeds), cache_dir=str(config.cache_dir),
        device="cuda" if torch.cuda.is_available() else "cpu",
        domains=s.domain_data if s.multi_domain else (),
    )
    keys = tuple(_corpus_content_key(one) for one in context.per_domain())
    return dataclasses.replace(context, corpus_keys=keys)


def _check_budgets(config: StudyConfig, preset: Preset) -> None:
    """The domain stage must take at least as many optimiser steps as it has evaluations: a
    budget below that trains nothing worth scoring (the NCA stage takes one step at least).

    Raises:
        SetupError: the study's domain budget is below that floor for its preset.
    """
    domain = config.budget.domain_tokens or preset.domain_tokens
    least = preset.batch_tokens * preset.evals_per_stage
    if domain < least:
        raise SetupError(f"[budget] domain_tokens = {domain}: the {preset.name} preset needs at "
                         f"least {least} ({preset.evals_per_stage} steps of "
                         f"{preset.batch_tokens} tokens)")


def _check_split(config: StudyConfig, preset: Preset) -> None:
    """A data-parallel study's ranks must share every optimiser step's sequences evenly
    (``lm.trainer.step_rows``), in both stages of the preset.

    Raises:
        SetupError: a stage's sequences per step are not a multiple of the ranks.
    """
    ranks = config.ranks
    stages: tuple[tuple[Stage, int], ...] = (("domain", preset.seq_len),
                                             ("nca", preset.nca_seq_len))
    for stage, seq_len in stages:
        cfg = preset.train_config(stage, seq_len=seq_len, seed=0)
        rows = cfg.batch_size * cfg.grad_accum
        if rows % ranks:
            raise SetupError(f"{ranks} ranks per trial: the {preset.name} preset's {stage} stage "
                             f"takes {rows} sequences per step, which do not split evenly; use "
                             f"a number of ranks that divides {rows}")


@dataclass(frozen=True, kw_only=True, slots=True)
class Baseline:
    """A scratch run's validation curve (cached as JSON)."""

    curve: list[tuple[int, float]]
    final_loss: float
    test_loss: float | None = None
    """Its loss on the test split (a confirmation context's run only)."""


@dataclass(kw_only=True, slots=True)
class SeedResult:
    """One seed of one setting on one domain, and the seed's work file (a retried trial resumes
    from it): ``record`` is what the study stores of the seed; the rest is what the trial's record
    takes from its seeds as a whole."""

    record: SeedRecord
    bpb: float
    """Final loss in bits per byte of the domain's text."""
    upstream: dict[str, Any] | None = None
    """The NCA stage's own losses (None for scratch)."""
    data_stats: dict[str, Any] = field(default_factory=dict)
    """The NCA data's manifest statistics (complexity, acceptance rate)."""
    tokens: int = 0
    """Training tokens of the seed, NCA + domain."""
    key: str = ""
    """What was computed (setting, study, seed): a resumed seed is reused only if it matches."""
    shared: bool = False
    """Read back from the finished seed of another study (``shared_seed_path``), not trained."""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SeedResult:
        """Read back ``dataclasses.asdict(result)``.

        Raises:
            TypeError: not a seed's work file of this version.
        """
        if not isinstance(data.get("record"), dict):
            raise TypeError("it has no seed record")
        return cls(**{**data, "record": SeedRecord.from_dict(data["record"])})


@dataclass(kw_only=True, slots=True)
class TrialOutcome:
    """All seeds of one trial; :meth:`record` is what the study stores."""

    setting: Setting
    plan: Plan
    seeds: list[SeedResult]
    wall_s: float
    device: str
    by_domain: dict[str, tuple[Plan, list[SeedResult]]] = field(default_factory=dict)
    """Every domain's plan and seeds of a multi-domain trial, in study order (``plan`` and
    ``seeds`` are then the first's); empty for one domain."""

    @property
    def shared_seeds(self) -> int:
        """Seeds (on each domain) read back from another study's finished ones, not trained."""
        stages = [seeds for _, seeds in self.by_domain.values()] or [self.seeds]
        return sum(r.shared for seeds in stages for r in seeds)

    def record(self) -> TrialRecord:
        """What the trial stores (``search.record``): the seeds as records, the setting as run."""
        first = self.seeds[0]
        domains = {name: DomainRecord(seeds=tuple(r.record for r in seeds),
                                      bpb=statistics.fmean(r.bpb for r in seeds),
                                      recipe=dataclasses.asdict(plan.recipe))
                   for name, (plan, seeds) in self.by_domain.items()}
        # The NCA stage ran once for all domains; each domain stage ran once per domain.
        tokens = first.tokens + sum(plan.domain_tokens for plan, _ in self.by_domain.values())
        tokens -= self.plan.domain_tokens if self.by_domain else 0
        return TrialRecord(
            seeds=tuple(r.record for r in self.seeds), source=self.setting.source,
            band=self.setting.band, alphabet=self.setting.alphabet,
            recipe=dataclasses.asdict(self.plan.recipe), nca_tokens=self.plan.nca_tokens,
            domain_tokens=self.plan.domain_tokens, tokens=tokens,
            bpb=statistics.fmean(r.bpb for r in self.seeds),
            complexity_mean=first.data_stats.get("complexity_mean"),
            acceptance_rate=first.data_stats.get("acceptance_rate"), upstream=first.upstream,
            wall_s=self.wall_s, device=self.device, domains=domains,
            version=DOMAINS_RECORD_VERSION if domains else RECORD_VERSION,
        )


# -- the trial -----------------------------------------------------------------------------------


def run_trial(setting: Setting, context: TrialContext, reporter: Reporter | None = None,
              work_dir: Path | None = None) -> TrialOutcome:
    """Evaluate ``setting`` on every seed of the study (and every domain of a multi-domain one).

    Seed by seed, the NCA data and the pre-pre-trained checkpoint are built or fetched once, then
    transferred and trained on each domain in turn, each paired with that domain's scratch runs
    of the same seed and downstream recipe. The NCA stage follows the first domain's recipe.

    Args:
        setting: what to evaluate.
        context: the study's shared settings.
        reporter: where intermediate losses go (and whether to prune).
        work_dir: where the trial keeps finished seeds (one file per domain and seed) and the
            checkpoint of the stage in progress, so a requeued or retried trial resumes at the
            domain and seed it had reached instead of starting over.

    Raises:
        TrialPrunedError: the pruner stopped it.
        InfeasibleSettingError: the setting cannot be realised.
    """
    start = time.time()
    stages = context.per_domain()
    plans = [resolve(setting, one) for one in stages]
    results: list[list[SeedResult]] = [[] for _ in stages]
    for index, seed in enumerate(context.seeds):
        upstream = _Upstream(setting=setting, plan=plans[0], context=stages[0], seed=seed)
        for d, one in enumerate(stages):
            result = _domain_seed(setting, plans[d], context, one, seed, index, upstream,
                                  reporter, work_dir, share=(d, len(stages)))
            results[d].append(result)
            seed_record = result.record
            point = CurvePoint(loss=seed_record.loss, scratch_loss=seed_record.scratch_loss,
                               best_scratch_loss=seed_record.best_scratch_loss)
            if reporter and reporter.report_seed(index * len(stages) + d, point):
                raise TrialPrunedError(f"pruned after seed {seed}{_on(one, context)} "
                                       "(paired test vs scratch)")
            seeds_so_far = tuple(r.record for r in results[d])
            if reporter and reporter.report_domain(one.domain, seeds_so_far):
                raise TrialPrunedError(f"pruned after seed {seed} on {one.domain}: worse than "
                                       "the completed trials' median on every objective")
    by_domain = ({one.domain: (plan, seeds)
                  for one, plan, seeds in zip(stages, plans, results, strict=True)}
                 if context.domains else {})
    return TrialOutcome(setting=setting, plan=plans[0], seeds=results[0],
                        wall_s=time.time() - start, device=context.device, by_domain=by_domain)


def _on(one: TrialContext, context: TrialContext) -> str:
    """`` on math`` in a multi-domain trial's messages; nothing for one domain."""
    return f" on {one.domain}" if context.domains else ""


def _domain_seed(setting: Setting, plan: Plan, context: TrialContext, one: TrialContext,
                 seed: int, index: int, upstream: _Upstream, reporter: Reporter | None,
                 work_dir: Path | None, share: tuple[int, int]) -> SeedResult:
    """Seed ``seed`` on the domain of ``one``: read back when the work folder holds it finished,
    otherwise trained (from the seed's shared upstream checkpoint) and saved there."""
    key = seed_key(setting, context, seed, domain=one.domain if context.domains else "")
    stem = f"{one.domain}-seed{seed}" if context.domains else f"seed{seed}"
    done_path = work_dir / f"{stem}.json" if work_dir else None
    done = _on_main(lambda: _finished_seed(done_path, key), "the finished-seed check") \
        if done_path else None
    if done is not None:
        return done
    shared = shared_seed_path(setting, plan, one, upstream.context, seed)
    result = _on_main(lambda: read_intact(shared, _read_shared_seed, "shared finished seed"),
                      "the shared-seed check") if shared else None
    if result is not None:
        result.shared = True
    else:
        scratch = {run.label: scratch_baseline(one, run, seed) for run in scratch_runs(plan, one)}
        ckpt = work_dir / f"{stem}.pt" if work_dir else None
        result = _run_seed(setting, plan, one, _corpus(one), seed, index, scratch, reporter, ckpt,
                           upstream=upstream, share=share)
        if shared:
            _write_on_main(shared, dataclasses.asdict(result))
    result.key = key
    if done_path:
        _write_on_main(done_path, dataclasses.asdict(result))
    return result


def shared_seed_path(setting: Setting, plan: Plan, context: TrialContext,
                     upstream: TrialContext, seed: int) -> Path | None:
    """Where a finished seed is shared between studies (``<cache>/seeds``), so that a setting
    another study already ran on the same domain, budget and recipe is not trained again: keyed
    by everything its result depends on (the pre-pre-trained checkpoint's key, the transfer, the
    downstream stage, the scratch runs it is scored against, which cover the corpus' tokens, the
    device and the ``lm`` code), and by the code of this module, the plan and the record.
    ``upstream`` is the context whose recipe the NCA stage follows (the first domain's). None for
    a scratch setting."""
    if setting.source == "none":
        return None
    preset = get_preset(context.preset)
    _, ppt = pretraining_paths(setting, upstream, seed)
    transfer = dataclasses.asdict(_transfer_config(setting, plan, seed))
    key = content_key({
        "ppt": ppt.stem, "seed": seed, "record": RECORD_VERSION, "search": _search_source_key(),
        "transfer": transfer,
        "downstream": config_dict(plan.domain_config(preset, seed, _corpus(context).train.seq_len)),
        "scratch": {run.label: baseline_path(context, run, seed).stem
                    for run in scratch_runs(plan, context)},
    })
    return Path(context.cache_dir) / "seeds" / f"{context.domain}-{key}.json"


@cache
def _search_source_key() -> str:
    """The code that trains, scores and stores a seed beyond ``lm``: this module, the plan and
    the record."""
    here = Path(__file__).resolve().parent
    return ncaio.source_key([here / "trial.py", here / "plan.py", here / "record.py"])


def _read_shared_seed(path: Path) -> SeedResult:
    try:
        return SeedResult.from_json(read_verified_json(path))
    except TypeError as exc:
        raise CorruptCacheError(path, str(exc)) from None


@dataclass(kw_only=True, slots=True)
class _Upstream:
    """A seed's pre-pre-trained checkpoint: fetched on first use, then shared by every domain
    (a seed whose domains are all finished never fetches it)."""

    setting: Setting
    plan: Plan
    context: TrialContext
    seed: int
    value: tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any], int] | None = None

    def get(self, tell: Callable[..., None] | None,
            on_eval: Callable[[int, float], None] | None = None
            ) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any], int]:
        if self.value is None:
            self.value = _pretrained(self.setting, self.plan, self.context, self.seed, tell=tell,
                                     on_eval=on_eval)
        return self.value


def seed_key(setting: Setting, context: TrialContext, seed: int, domain: str = "") -> str:
    """Identity of one seed's work (on ``domain`` of a multi-domain study): a finished seed
    found in a work folder must carry it."""
    study = {k: v for k, v in context.to_dict().items() if k not in ("cache_dir", "seeds")}
    identity = {"setting": dataclasses.asdict(setting), "study": study, "seed": seed,
                "record": RECORD_VERSION}
    if domain:
        identity.update(domain=domain, record=DOMAINS_RECORD_VERSION)
    return content_key(identity)


def _finished_seed(path: Path, key: str) -> SeedResult | None:
    """The finished seed saved at ``path`` if it is intact and this work; anything else is set
    aside (kept for inspection) and the seed recomputed."""
    try:
        data = read_verified_json(path)
        result = SeedResult.from_json(data)
        if result.key != key:
            raise CorruptCacheError(path, "it holds the work of another setting or study")
    except FileNotFoundError:
        return None
    except (CorruptCacheError, TypeError) as exc:
        error = exc if isinstance(exc, CorruptCacheError) else CorruptCacheError(path, str(exc))
        report_corrupt(error, "finished seed")
        _discard_stage_checkpoint(path.with_suffix(".pt"))
        return None
    return result


def _discard_stage_checkpoint(path: Path) -> None:
    """A stage checkpoint next to a foreign seed is foreign too: set it aside, never resume it."""
    if path.exists():
        quarantine(path)


@contextmanager
def _stage_checkpoint(entry: Path) -> Iterator[Path]:
    """The checkpoint of a stage whose result is the cache entry ``entry`` (written inside the
    block): a job stopped mid-stage resumes from it instead of starting over (a scratch run at
    13M tokens outlasts a session here); removed once ``entry`` is written."""
    partial = _partial_path(entry)
    _resumable(partial)
    yield partial
    if distributed.is_main():  # every rank is past reading it: the stage trained to its end
        partial.unlink(missing_ok=True)
        sidecar_path(partial).unlink(missing_ok=True)


def _partial_path(entry: Path) -> Path:
    return entry.with_suffix(".partial.pt")


def _resumable(path: Path | None) -> Path | None:
    """``path`` for the trainer to resume from; a damaged stage checkpoint is set aside first
    (by rank 0), so the stage restarts instead of failing the trial on every retry."""
    if path is not None and path.exists() and distributed.is_main():
        try:
            verify_file(path)
        except CorruptCacheError as exc:
            report_corrupt(exc, "stage checkpoint")
    return path


def _run_seed(setting: Setting, plan: Plan, context: TrialContext, corpus: Corpus,
              seed: int, index: int, scratch: dict[str, Baseline], reporter: Reporter | None,
              checkpoint: Path | None, *, upstream: _Upstream,
              share: tuple[int, int]) -> SeedResult:
    """Transfer the seed's upstream checkpoint to ``context``'s domain and train it there.

    ``share`` is ``(d, n)``: this is domain ``d`` of the ``n`` a seed trains on. Its curve
    reports at the trial's steps ``(index * n + d) * points`` onwards (seed-major), and its
    progress continues the seed's earlier domain stages, as one stage of ``n`` times the tokens."""
    d, n = share
    stage = index * n + d
    matched = scratch["matched"]
    best_label = min(scratch, key=lambda label: scratch[label].final_loss)
    best = scratch[best_label]
    preset = get_preset(context.preset)
    stats: dict[str, Any] = {}
    probes: dict[str, Any] | None = None
    if setting.source == "none":
        curve, ppt_upstream, tokens = matched.curve, None, plan.domain_tokens
        test_loss = matched.test_loss
    else:
        # Live progress (search.progress) goes through the reporter's optional progress method.
        progress = getattr(reporter, "progress", None)
        tell = progress_lib.across_domains(functools.partial(progress, seed_index=index), d, n,
                                            plan.domain_tokens) if progress else None
        evals = getattr(reporter, "report_eval", None)
        state, ppt_upstream, stats, ppt_tokens = upstream.get(
            tell, (lambda t, v: evals("nca", seed, "", t, v, None)) if evals else None)
        if tell:
            tell("transfer", tokens=0, total=0)
        model, _ = lm_transfer(state, corpus.vocab_size, _transfer_config(setting, plan, seed))
        probes = {"nca": probe(model, corpus.train, device=context.device).as_dict(),
                  "scratch": probe(_scratch_model(context, corpus, plan, seed), corpus.train,
                                   device=context.device).as_dict()}
        n_points = preset.evals_per_stage + 1

        def callback(tokens_seen: int, val_loss: float) -> None:
            k = min(n_points - 1, round(tokens_seen / max(1, plan.domain_tokens) * (n_points - 1)))
            point = CurvePoint(loss=val_loss, scratch_loss=_at(matched.curve, k, val_loss),
                               best_scratch_loss=_at(best.curve, k, val_loss))
            if tell:  # scratch was evaluated at the same token counts (same budget and config)
                tell("domain", tokens=tokens_seen, total=plan.domain_tokens, val_loss=val_loss,
                     scratch_loss=point.scratch_loss)
            if evals:
                evals("domain", seed, context.domain, tokens_seen, val_loss, point.scratch_loss)
            if reporter and reporter.report_curve(stage * n_points + k, point):
                raise TrialPrunedError(f"pruned at {tokens_seen} downstream tokens of seed {seed}")

        cfg = plan.domain_config(preset, seed, corpus.train.seq_len)
        curve = lm_train(model, corpus.train, corpus.val, cfg, device=context.device,
                         callback=callback, checkpoint_path=_resumable(checkpoint),
                         checkpoint_every_tokens=cfg.eval_every_tokens,
                         progress=_stage_progress(tell, "domain")).curve
        tokens = ppt_tokens + plan.domain_tokens
        test_loss = _test_loss(model, context)
        unigram = _unigram_loss(context)
        probes.update(unigram_loss=unigram, tokens_to_unigram=tokens_to_reach(curve, unigram),
                      scratch_tokens_to_unigram=tokens_to_reach(matched.curve, unigram))
    scores = lm_score(curve, matched.curve, corpus.bytes_per_token)
    assert scores.gain_pct is not None  # scored against the matched scratch curve
    record = SeedRecord(
        seed=seed, loss=scores.final_loss, scratch_loss=matched.final_loss,
        gain_pct=scores.gain_pct, speedup=scores.speedup, curve=tuple(curve),
        scratch_curve=tuple(matched.curve), best_scratch_loss=best.final_loss,
        best_scratch_recipe=best_label,
        net_gain_pct=(best.final_loss - scores.final_loss) / best.final_loss * 100.0,
        scratch_losses={label: b.final_loss for label, b in scratch.items()}, probe=probes,
        test_loss=test_loss)
    return SeedResult(record=record, bpb=scores.bpb, upstream=ppt_upstream, data_stats=stats,
                      tokens=tokens)


def _stage_progress(tell: Callable[..., None] | None, stage: str
                    ) -> Callable[[int, int], None] | None:
    """The trainer's per-step progress callback for ``stage``, when anyone listens."""
    if tell is None:
        return None
    return lambda tokens, total: tell(stage, tokens=tokens, total=total)


def _at(curve: list[tuple[int, float]], k: int, default: float) -> float:
    return curve[k][1] if k < len(curve) else default


# -- scratch baselines ---------------------------------------------------------------------------


def baseline_path(context: TrialContext, run: ScratchRun, seed: int) -> Path:
    """Where the scratch run ``run`` of ``seed`` is cached: keyed by everything it depends on."""
    preset = get_preset(context.preset)
    corpus = _corpus(context)
    cfg = run.plan.domain_config(preset, seed, corpus.train.seq_len)
    key = content_key({
        "train": config_dict(cfg), "embed_init": run.plan.recipe.embed_init,
        "embed_std": run.plan.recipe.embed_std,
        "model": dataclasses.asdict(preset.model_config(corpus.vocab_size)),
        "corpus": _corpus_content_key(context), "device": context.device, "lm": lm_source_key(),
    } | ({"test": True} if context.evaluate_test else {}))
    return Path(context.cache_dir) / "baselines" / f"{context.domain}-{key}.json"


def scratch_baseline(context: TrialContext, run: ScratchRun, seed: int,
                     progress: Callable[[int, int], None] | None = None) -> Baseline:
    """The scratch run ``run`` of ``seed``: computed once, then read from the cache (verified;
    a damaged entry is set aside and recomputed)."""
    path = baseline_path(context, run, seed)
    with _locked(path):
        data = _on_main(lambda: read_intact(path, _read_baseline, "scratch baseline"),
                        "the scratch-baseline check")
        if data is None:
            corpus = _corpus(context)
            preset = get_preset(context.preset)
            model = _scratch_model(context, corpus, run.plan, seed)
            cfg = run.plan.domain_config(preset, seed, corpus.train.seq_len)
            with _stage_checkpoint(path) as partial:
                result = lm_train(model, corpus.train, corpus.val, cfg, device=context.device,
                                  checkpoint_path=partial,
                                  checkpoint_every_tokens=cfg.eval_every_tokens, progress=progress)
                data = {"key": path.stem, "curve": result.curve,
                        "final_loss": result.final_val_loss,
                        "test_loss": _test_loss(model, context)}
                _write_on_main(path, data)
    return Baseline(curve=[tuple(p) for p in data["curve"]], final_loss=data["final_loss"],
                    test_loss=data.get("test_loss"))


def _test_loss(model: Transformer, context: TrialContext) -> float | None:
    """The model's loss on the test split when ``context`` asks for it (a confirmation), else
    None: a search never reads the test split."""
    if not context.evaluate_test:
        return None
    preset = get_preset(context.preset)
    return lm_evaluate(model, _corpus(context).test, n_sequences=preset.test_sequences,
                       batch_size=preset.micro_batch_tokens // (preset.seq_len - 1) or 1,
                       device=context.device)


def scratch_share_trained(context: TrialContext, run: ScratchRun, seed: int) -> float:
    """Share of the scratch run ``run`` of ``seed`` already trained (for the estimate): 1 when
    cached, its stage checkpoint's tokens at the last evaluation when a stopped job left one."""
    path = baseline_path(context, run, seed)
    if path.is_file():
        return 1.0
    partial = _partial_path(path)
    if not partial.is_file():
        return 0.0
    try:
        state = load_checkpoint(partial)
    except ValueError:  # damaged, or replaced while read: the job sets it aside or resumes
        return 0.0
    tokens = state["curve"][-1][0] if state["curve"] else 0
    return min(1.0, tokens / state["train_config"]["total_tokens"])


def _read_baseline(path: Path) -> dict[str, Any]:
    data = read_verified_json(path)
    if data.get("key") != path.stem:
        raise CorruptCacheError(path, "it is the entry of another key")
    return dict(data)


def study_scratch_runs(context: TrialContext) -> list[ScratchRun]:
    """The scratch runs of the study's default setting (computed before any trial)."""
    return scratch_runs(resolve(Setting(), context), context)


def _scratch_model(context: TrialContext, corpus: Corpus, plan: Plan, seed: int
                   ) -> Transformer:
    model = build_model(context.preset, corpus.vocab_size, seed=seed)
    init_new_embeddings(model, plan.recipe.embed_init, seed, plan.recipe.embed_std)
    return model


def _transfer_config(setting: Setting, plan: Plan, seed: int) -> TransferConfig:
    """How the setting's NCA arm is transferred: its strategy, the recipe's new embedding, its
    block scale."""
    groups = TRANSFERS[setting.transfer]
    return TransferConfig(seed=seed, embed_init=plan.recipe.embed_init,
                          embed_std=plan.recipe.embed_std, out_scale=setting.block_scale or 1.0,
                          reinit=groups.get("reinit", ()), freeze=groups.get("freeze", ()))


# -- pre-pre-training ----------------------------------------------------------------------------


def _pretrained(setting: Setting, plan: Plan, context: TrialContext, seed: int,
                tell: Callable[..., None] | None = None,
                on_eval: Callable[[int, float], None] | None = None
                ) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any], int]:
    """The pre-pre-trained weights for ``setting`` and ``seed``, from the cache when possible;
    ``on_eval(tokens, val_loss)`` hears each validation point when it is trained here."""
    preset = get_preset(context.preset)
    tokens = plan.nca_tokens
    if tell:
        tell("data", tokens=0, total=0)
    def build() -> nca.BuiltDataset:
        try:
            return nca.build(data_spec(setting, context), tokens,
                             cache_dir=Path(context.cache_dir), seed=seed,
                             seq_len=preset.nca_seq_len)
        except nca.BandUnreachableError as exc:
            raise InfeasibleSettingError(str(exc)) from None

    # rank 0 builds the data (or finds it); the other ranks then read what it built
    built = distributed.main_only(build, "the NCA data")
    if built is None:
        built = build()
    cfg = plan.nca_config(preset, seed, built.train.seq_len)
    path = _ppt_path(plan, context, seed, built.key, built.train.seq_len, built.train.vocab_size)
    with _locked(path):
        saved = _load_on_every_rank(path)
        if saved is None:
            model = build_model(preset, built.train.vocab_size, seed=seed)
            with _stage_checkpoint(path) as partial:
                lm_train(model, built.train, built.val, cfg, device=context.device,
                         checkpoint_path=partial, checkpoint_every_tokens=cfg.eval_every_tokens,
                         progress=_stage_progress(tell, "nca"), callback=on_eval)
                diag = diagnose(model, built.train, built.val, device=context.device)
                saved = {"model": model.state_dict(), "upstream": dataclasses.asdict(diag)}
                distributed.main_only(lambda: save_checkpoint(path, saved),
                                      "the pre-pre-trained checkpoint")
    stats = {k: built.manifest.get(k) for k in ("complexity_mean", "acceptance_rate")}
    return saved["model"], saved["upstream"], stats, tokens


def _ppt_path(plan: Plan, context: TrialContext, seed: int, data_key: str, seq_len: int,
              vocab_size: int) -> Path:
    """The cached checkpoint of an NCA stage: keyed by its data, config, model, device, code."""
    preset = get_preset(context.preset)
    key = content_key({"data": data_key,
                       "train": config_dict(plan.nca_config(preset, seed, seq_len)),
                       "model": dataclasses.asdict(preset.model_config(vocab_size)),
                       "device": context.device, "lm": lm_source_key()})
    return Path(context.cache_dir) / "ppt" / f"{key}.pt"


def pretraining_paths(setting: Setting, context: TrialContext, seed: int) -> tuple[Path, Path]:
    """Where ``setting``'s NCA data and pre-pre-trained checkpoint of ``seed`` are cached (they
    may not exist yet): the same keys ``run_trial`` uses, computed without building anything."""
    plan, preset = resolve(setting, context), get_preset(context.preset)
    spec = data_spec(setting, context)
    data_key = nca.dataset_key(spec, plan.nca_tokens, seed, preset.nca_seq_len)
    seq_len, vocab_size, _ = nca.layout(spec, preset.nca_seq_len)
    return (Path(context.cache_dir) / "nca" / data_key,
            _ppt_path(plan, context, seed, data_key, seq_len, vocab_size))


def data_spec(setting: Setting, context: TrialContext) -> nca.DataSpec:
    """The NCA (or control) data a setting pre-pre-trains on."""
    if setting.source == "dyck":
        return nca.DataSpec(source="dyck", dyck_k=setting.dyck_k)
    if setting.source == "text":
        # The natural-text control reads the domain's own training text when it is a file (a
        # synthetic domain's names one with text=PATH).
        data = (synthetic.parse(context.domain, context.data).text
                if context.domain in synthetic.SYNTHETIC_DOMAINS else context.data)
        path = Path(data) if data else None
        if path is None or not path.is_file():
            raise InfeasibleSettingError("the text control needs --data pointing at a corpus file")
        return nca.DataSpec(source="text", text_path=path)
    return nca_data_spec(setting)


# -- downstream ----------------------------------------------------------------------------------



@cache
def _corpus(context: TrialContext) -> Corpus:
    """The context's domain corpus, read (verified) once per process: every cache key of a seed
    names its scratch runs, and each of those keys reads it.

    Raises:
        SetupError: the data cannot be read, or its tokens are not the ones the study resolved
            (``corpus_keys``): it was changed under a running or resumed study.
    """
    preset = get_preset(context.preset)
    try:
        if context.domain in synthetic.SYNTHETIC_DOMAINS:
            corpus: Corpus = synthetic.load(context.domain, context.data,
                                            cache_dir=Path(context.cache_dir),
                                            seq_len=preset.nca_seq_len,
                                            n_tokens=context.domain_tokens)
        else:
            corpus = load_domain(context.domain, source=context.data or None,
                                 tokenizer=context.tokenizer, cache_dir=Path(context.cache_dir),
                                 seq_len=preset.seq_len)
    except (ValueError, FileNotFoundError) as exc:
        raise SetupError(str(exc).strip().splitlines()[0]) from None
    if context.corpus_keys and _tokens_key(corpus) != context.corpus_keys[0]:
        raise SetupError(f"the {context.domain} corpus at {context.data or 'its default'!r} "
                         f"changed while the study ran (its tokens' key was "
                         f"{context.corpus_keys[0]}, now {_tokens_key(corpus)}); rerun the "
                         "study so it resolves the data again")
    return corpus


def _tokens_key(corpus: Corpus) -> str:
    """Hash of a corpus' tokens (train, val and test), not of where they came from (a synthetic
    corpus' key already is: the keys of its NCA datasets)."""
    if isinstance(corpus, synthetic.SyntheticCorpus):
        return corpus.key
    digests = [sha256_bytes(np.ascontiguousarray(ds.stream).tobytes())
               for ds in (corpus.train, corpus.val, corpus.test)]
    return content_key({"vocab": corpus.vocab_size, "tokens": digests})


def _corpus_content_key(context: TrialContext) -> str:
    """The content key of the context's corpus: resolved once by ``make_context``."""
    return context.corpus_keys[0] if context.corpus_keys else _tokens_key(_corpus(context))


@cache
def _unigram_loss(context: TrialContext) -> float:
    corpus = _corpus(context)
    return unigram_loss(corpus.train, corpus.val)


# -- cache helpers -------------------------------------------------------------------------------


T = TypeVar("T")


def _on_main(fn: Callable[[], T], what: str) -> T:
    """``fn()`` (a small read that decides what to train) on rank 0, its answer on every rank."""
    return distributed.from_main(fn, what)


def _write_on_main(path: Path, data: dict[str, Any]) -> None:
    """Write a verified JSON file from rank 0 alone (a failure raises on every rank)."""
    distributed.main_only(lambda: write_verified_json(path, data), f"writing {path.name}")


def _load_on_every_rank(path: Path) -> dict[str, Any] | None:
    """The pre-pre-trained checkpoint at ``path`` when rank 0 finds it intact (a damaged one is
    set aside), read by each rank itself: weights are too large to send through the group."""
    mine: list[dict[str, Any] | None] = [None]

    def read() -> bool:
        mine[0] = read_intact(path, load_checkpoint, "pre-pre-trained checkpoint")
        return mine[0] is not None

    if not _on_main(read, "the pre-pre-trained checkpoint check"):
        return None
    return mine[0] if distributed.is_main() else load_checkpoint(path)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise compute-or-read of one cache entry across workers (released if a worker dies).

    Of a data-parallel trial's ranks only rank 0 takes it: the others follow its decisions, and
    would otherwise wait for a lock their own rank 0 holds while it waits for them."""
    if not distributed.is_main():
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(path.suffix + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
