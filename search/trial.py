"""The one trial function every executor runs (in process, in a local worker, as a Slurm job).

For each seed: build or fetch the pre-pre-training data (cached by ``nca``), pre-pre-train or
fetch the cached checkpoint (keyed by everything that affects it, so trials differing only in
downstream knobs share it), transfer, train on the domain, and score against the scratch
baseline of the same seed (computed once per domain, preset, budget and seed, and cached).
"""

from __future__ import annotations

import dataclasses
import fcntl
import functools
import hashlib
import itertools
import json
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

import nca
from lm.checkpoint import load_checkpoint, save_checkpoint
from lm.corpora import load_domain
from lm.diagnose import diagnose
from lm.presets import build_model, get_preset
from lm.scores import score as lm_score
from lm.trainer import train as lm_train
from lm.transfer import TransferConfig
from lm.transfer import transfer as lm_transfer
from search._fs import write_json_atomic
from search.space import Setting

CODE_VERSION = "search-trial/1"
"""Bump when a change here alters trial results, so cached checkpoints and baselines are not reused."""


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
    every stage change and training step (see ``search.progress``)."""

    def report_curve(self, step: int, value: float) -> bool: ...
    def report_seed(self, seed_index: int, paired_delta: float) -> bool: ...
    def set_attr(self, key: str, value: Any) -> None: ...


@dataclass(frozen=True, kw_only=True, slots=True)
class TrialContext:
    """What every trial of a study shares: domain, data, preset, budgets, seeds, caches."""

    domain: str
    data: str
    tokenizer: str
    preset: str
    nca_tokens: int
    """Default pre-pre-training tokens (a Setting's nonzero nca_tokens overrides it)."""
    domain_tokens: int
    seeds: tuple[int, ...]
    cache_dir: str
    device: str = "cpu"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def make_context(config: Any) -> TrialContext:
    """Resolve the study's preset, budgets and device; check the corpus can be read.

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
    context = TrialContext(
        domain=s.domain, data=s.data, tokenizer=s.tokenizer, preset=name,
        nca_tokens=config.budget.nca_tokens or preset.nca_tokens,
        domain_tokens=config.budget.domain_tokens or preset.domain_tokens,
        seeds=tuple(s.seeds), cache_dir=str(config.cache_dir),
        device="cuda" if torch.cuda.is_available() else "cpu",
    )
    _corpus(context)
    return context


@dataclass(frozen=True, kw_only=True, slots=True)
class Baseline:
    """A scratch run's validation curve (cached as JSON)."""

    curve: list[tuple[int, float]]
    final_loss: float


@dataclass(kw_only=True, slots=True)
class SeedResult:
    """One seed of one setting, paired with the scratch run of the same seed."""

    seed: int
    loss: float
    scratch_loss: float
    bpb: float
    gain_pct: float
    speedup: float | None
    curve: list[tuple[int, float]]
    scratch_curve: list[tuple[int, float]]
    upstream: dict[str, Any] | None = None
    data_stats: dict[str, Any] = field(default_factory=dict)
    tokens: int = 0


@dataclass(kw_only=True, slots=True)
class TrialOutcome:
    """All seeds of one trial, and the user attributes it records (docs/interfaces.md §4)."""

    setting: Setting
    seeds: list[SeedResult]
    wall_s: float
    device: str

    def objective(self, name: str) -> float:
        if name == "loss":
            return statistics.fmean(r.loss for r in self.seeds)
        if name == "gain":
            return statistics.fmean(r.gain_pct for r in self.seeds)
        if name == "speedup":
            return statistics.fmean(r.speedup or 0.0 for r in self.seeds)
        return float(statistics.fmean(r.tokens for r in self.seeds))

    def attrs(self) -> dict[str, Any]:
        r = self.seeds
        speedups = [x.speedup for x in r]
        reached = [s for s in speedups if s is not None]
        stats = r[0].data_stats
        return {
            "seeds": [x.seed for x in r], "losses": [x.loss for x in r],
            "scratch_losses": [x.scratch_loss for x in r],
            "bpb": statistics.fmean(x.bpb for x in r),
            "gains_pct": [x.gain_pct for x in r], "gain_pct": statistics.fmean(x.gain_pct for x in r),
            "speedups": speedups, "speedup": statistics.fmean(reached) if reached else None,
            "curves": [[list(p) for p in x.curve] for x in r],
            "scratch_curves": [[list(p) for p in x.scratch_curve] for x in r],
            "band": list(self.setting.band), "alphabet": self.setting.alphabet,
            "source": self.setting.source,
            "complexity_mean": stats.get("complexity_mean"),
            "acceptance_rate": stats.get("acceptance_rate"),
            "upstream": r[0].upstream, "tokens": r[0].tokens,
            "wall_s": self.wall_s, "device": self.device, "code_version": CODE_VERSION,
        }


# -- the trial -----------------------------------------------------------------------------------


def run_trial(setting: Setting, context: TrialContext, reporter: Reporter | None = None,
              work_dir: Path | None = None) -> TrialOutcome:
    """Evaluate ``setting`` on every seed of the study.

    Args:
        setting: what to evaluate.
        context: the study's shared settings.
        reporter: where intermediate losses go (and whether to prune).
        work_dir: where the trial keeps finished seeds and the checkpoint of the stage in
            progress, so a requeued or retried trial resumes instead of starting over.

    Raises:
        TrialPrunedError: the pruner stopped it.
        InfeasibleSettingError: the setting cannot be realised.
    """
    start = time.time()
    corpus = _corpus(context)
    results = []
    for index, seed in enumerate(context.seeds):
        done_path = work_dir / f"seed{seed}.json" if work_dir else None
        if done_path and done_path.is_file():
            results.append(SeedResult(**json.loads(done_path.read_text())))
            continue
        baseline = scratch_baseline(context, seed)
        ckpt = work_dir / f"seed{seed}.pt" if work_dir else None
        result = _run_seed(setting, context, corpus, seed, index, baseline, reporter, ckpt)
        if done_path:
            write_json_atomic(done_path, dataclasses.asdict(result))
        results.append(result)
        if reporter and reporter.report_seed(index, result.loss - result.scratch_loss):
            raise TrialPrunedError(f"pruned after seed {seed} (paired test vs scratch)")
    return TrialOutcome(setting=setting, seeds=results, wall_s=time.time() - start,
                        device=context.device)


def _run_seed(setting: Setting, context: TrialContext, corpus: Any, seed: int, index: int,
              baseline: Baseline, reporter: Reporter | None, checkpoint: Path | None) -> SeedResult:
    if setting.source == "none":
        curve, upstream, stats, tokens = baseline.curve, None, {}, context.domain_tokens
    else:
        # Live progress (search.progress) goes through the reporter's optional progress method.
        tell = functools.partial(reporter.progress, seed_index=index) if hasattr(reporter, "progress") else None
        state, upstream, stats, ppt_tokens = _pretrained(setting, context, seed, tell=tell)
        if tell:
            tell("transfer", tokens=0, total=0)
        model, _ = lm_transfer(state, corpus.vocab_size, _transfer_config(setting, seed))
        n_points = _domain_evals(context)

        def callback(tokens_seen: int, val_loss: float) -> None:
            k = min(n_points - 1, round(tokens_seen / max(1, context.domain_tokens) * (n_points - 1)))
            if tell:  # scratch was evaluated at the same token counts (same budget and config)
                tell("domain", tokens=tokens_seen, total=context.domain_tokens, val_loss=val_loss,
                     scratch_loss=dict(baseline.curve).get(tokens_seen))
            if reporter and reporter.report_curve(index * n_points + k, val_loss):
                raise TrialPrunedError(f"pruned at {tokens_seen} downstream tokens of seed {seed}")

        cfg = _domain_config(context, corpus, seed, setting)
        curve = lm_train(model, corpus.train, corpus.val, cfg, device=context.device,
                         callback=callback, checkpoint_path=checkpoint,
                         checkpoint_every_tokens=cfg.eval_every_tokens,
                         progress=(lambda n, t: tell("domain", tokens=n, total=t)) if tell else None).curve
        tokens = ppt_tokens + context.domain_tokens
    scores = lm_score(curve, baseline.curve, corpus.bytes_per_token)
    return SeedResult(
        seed=seed, loss=scores.final_loss, scratch_loss=baseline.final_loss, bpb=scores.bpb,
        gain_pct=scores.gain_pct, speedup=scores.speedup, curve=list(curve),
        scratch_curve=list(baseline.curve), upstream=upstream, data_stats=stats, tokens=tokens,
    )


def _domain_evals(context: TrialContext) -> int:
    """Evaluation points of the domain stage (the one at 0 tokens included)."""
    return get_preset(context.preset).evals_per_stage + 1


# -- the scratch baseline ------------------------------------------------------------------------


def baseline_path(context: TrialContext, seed: int) -> Path:
    key = _key({"domain": context.domain, "data": context.data, "tokenizer": context.tokenizer,
                "preset": context.preset, "tokens": context.domain_tokens, "seed": seed,
                "device": context.device, "version": CODE_VERSION})
    return Path(context.cache_dir) / "baselines" / f"{context.domain}-{key}.json"


def scratch_baseline(context: TrialContext, seed: int,
                     progress: Callable[[int, int], None] | None = None) -> Baseline:
    """The scratch run of ``seed``: computed once, then read from the cache."""
    path = baseline_path(context, seed)
    with _locked(path):
        if not path.is_file():
            corpus = _corpus(context)
            model = build_model(context.preset, corpus.vocab_size, seed=seed)
            cfg = _domain_config(context, corpus, seed, Setting(source="none"))
            result = lm_train(model, corpus.train, corpus.val, cfg, device=context.device,
                              progress=progress)
            write_json_atomic(path, {"curve": result.curve, "final_loss": result.final_val_loss})
        data = json.loads(path.read_text())
    return Baseline(curve=[tuple(p) for p in data["curve"]], final_loss=data["final_loss"])


# -- pre-pre-training ----------------------------------------------------------------------------


def _pretrained(setting: Setting, context: TrialContext, seed: int, tell: Any = None
                ) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any], int]:
    """The pre-pre-trained weights for ``setting`` and ``seed``, from the cache when possible."""
    preset = get_preset(context.preset)
    tokens = setting.nca_tokens or context.nca_tokens
    if tell:
        tell("data", tokens=0, total=0)
    try:
        built = nca.build(_data_spec(setting, context), tokens, cache_dir=Path(context.cache_dir),
                          seed=seed, seq_len=preset.seq_len - 1)
    except nca.BandUnreachableError as exc:
        raise InfeasibleSettingError(str(exc)) from None
    lr = setting.ppt_lr or preset.nca_lr
    key = _key({"data": built.key, "preset": context.preset, "lr": lr, "tokens": tokens,
                "seed": seed, "device": context.device, "version": CODE_VERSION})
    path = Path(context.cache_dir) / "ppt" / f"{key}.pt"
    with _locked(path):
        if not path.is_file():
            model = build_model(preset, built.train.vocab_size, seed=seed)
            cfg = preset.train_config("nca", seq_len=built.train.seq_len, seed=seed,
                                      total_tokens=tokens, lr=lr)
            partial = path.with_suffix(".partial.pt")  # resumable if this job is preempted
            lm_train(model, built.train, built.val, cfg, device=context.device,
                     checkpoint_path=partial, checkpoint_every_tokens=cfg.eval_every_tokens,
                     progress=(lambda n, t: tell("nca", tokens=n, total=t)) if tell else None)
            diag = diagnose(model, built.train, built.val, device=context.device)
            save_checkpoint(path, {"model": model.state_dict(),
                                      "upstream": dataclasses.asdict(diag)})
            partial.unlink()
        saved = load_checkpoint(path)
    stats = {k: built.manifest.get(k) for k in ("complexity_mean", "acceptance_rate")}
    return saved["model"], saved["upstream"], stats, tokens


def _data_spec(setting: Setting, context: TrialContext) -> nca.DataSpec:
    if setting.source == "dyck":
        return nca.DataSpec(source="dyck", dyck_k=setting.dyck_k)
    if setting.source == "text":
        # The natural-text control reads the domain's own training text when it is a file.
        path = Path(context.data) if context.data else None
        if path is None or not path.is_file():
            raise InfeasibleSettingError("the text control needs --data pointing at a corpus file")
        return nca.DataSpec(source="text", text_path=path)
    cfg = nca.NCAConfig(alphabet=setting.alphabet, grid=setting.grid,
                        temperature=setting.temperature, identity_bias=setting.identity_bias)
    lo, hi = setting.band
    if setting.curriculum == "constant":
        return nca.DataSpec(curriculum=nca.Curriculum.constant(cfg, nca.Band(lo, hi, kind=setting.band_kind)))
    k = setting.curriculum_stages
    edges = [lo + (hi - lo) * i / k for i in range(k + 1)]
    bands = [nca.Band(a, b, kind=setting.band_kind) for a, b in itertools.pairwise(edges)]
    family = getattr(nca.Curriculum, setting.curriculum)
    return nca.DataSpec(curriculum=family(cfg, bands))


# -- downstream ----------------------------------------------------------------------------------

_TRANSFERS: dict[str, dict[str, Any]] = {
    "full": {},
    "attention-only": {"reinit": ("mlp",)},
    "mlp-only": {"reinit": ("attention",)},
    "freeze-attention": {"freeze": ("attention",)},
    "freeze-all": {"freeze": ("attention", "mlp")},
}


def _transfer_config(setting: Setting, seed: int) -> Any:
    return TransferConfig(seed=seed, **_TRANSFERS[setting.transfer])


def _domain_config(context: TrialContext, corpus: Any, seed: int, setting: Setting) -> Any:
    preset = get_preset(context.preset)
    overrides: dict[str, Any] = {"total_tokens": context.domain_tokens}
    if setting.lr:
        overrides["lr"] = setting.lr
    if setting.warmup >= 0:
        overrides["warmup_frac"] = setting.warmup
    return preset.train_config("domain", seq_len=corpus.train.seq_len, seed=seed, **overrides)


def _corpus(context: TrialContext) -> Any:
    try:
        return load_domain(context.domain, source=context.data or None,
                           tokenizer=context.tokenizer, cache_dir=Path(context.cache_dir),
                           seq_len=get_preset(context.preset).seq_len)
    except (ValueError, FileNotFoundError) as exc:
        raise SetupError(str(exc).strip().splitlines()[0]) from None


# -- cache helpers -------------------------------------------------------------------------------


def _key(data: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:20]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise compute-or-read of one cache entry across workers (released if a worker dies)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(path.suffix + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
