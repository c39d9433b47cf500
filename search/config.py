"""Study configuration: one frozen dataclass tree, built from ``studies/*.toml`` plus CLI overrides.

Example:
    >>> from search.config import load_study_config
    >>> cfg = load_study_config("smoke")
    >>> cfg.study.domain
    'code'
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lm.recipe import RECIPES
from search._toml import ConfigError, check_keys, from_table
from search.record import OBJECTIVES, Direction
from search.space import ParamSpec, parse_space, setting_from_params

STUDIES_DIR = Path(__file__).resolve().parents[1] / "studies"
DOMAINS = ("code", "math", "web")
EXECUTORS = ("inline", "local", "slurm")
SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("none", "median", "hyperband", "wilcoxon")


@dataclass(frozen=True, kw_only=True, slots=True)
class StudySection:
    """``[study]``: what is searched for, where results go and how trials run."""

    name: str
    """Optuna study name."""
    domain: str
    """Target domain: code, math or web."""
    data: str = ""
    """Domain data: a local path or a Hugging Face dataset id; empty = the domain's default."""
    tokenizer: str = "byte"
    """Tokenizer of the domain stage: ``byte`` or ``bpe``."""
    preset: str = "auto"
    """Model preset; ``auto`` = gpu-proxy with CUDA, cpu-proxy otherwise."""
    n_trials: int = 8
    """Finished trials (complete, pruned or failed for good) the study aims for, anchors included."""
    seeds: tuple[int, ...] = (0, 1)
    """Training seeds each setting is evaluated with; scores pair with scratch of the same seed."""
    objectives: tuple[str, ...] = ("net-effect",)
    """net-effect (% lower loss than the best scratch recipe, same seed and budget), nca-effect
    (% vs scratch with the same downstream recipe), loss (mean final val loss), speedup,
    compute; two or more = multi-objective."""
    recipe: str = ""
    """Training recipe of every trial (``paper``, ``proxy``); empty = the preset's default."""
    notes: str = ""
    """What this study is for (shown in the dashboard)."""
    storage: str = ""
    """Optuna storage: a journal file path or an SQLAlchemy URL; empty = run_dir/journal.log."""
    executor: str = "local"
    """Where trials run: inline, local or slurm."""
    workers: int = 2
    """Trials in flight at once (local processes or Slurm jobs)."""
    run_dir: str = ""
    """Directory for the journal, artifacts and resolved config; empty = runs/<name>."""
    cache_dir: str = ""
    """Shared cache of NCA data, checkpoints and baselines; empty = runs/cache."""
    max_retries: int = 2
    """Times a trial lost to infrastructure (killed worker, lost job) is retried."""
    threads: int = 0
    """Torch threads per trial process; 0 = cores / workers."""

    def __post_init__(self) -> None:
        if self.domain not in DOMAINS:
            raise ConfigError(f"domain {self.domain!r} is not one of {', '.join(DOMAINS)}")
        if self.executor not in EXECUTORS:
            raise ConfigError(f"executor {self.executor!r} is not one of {', '.join(EXECUTORS)}")
        if self.recipe and self.recipe not in RECIPES:
            raise ConfigError(f"recipe {self.recipe!r} is not one of {', '.join(RECIPES)}")
        if self.tokenizer not in ("byte", "bpe"):
            raise ConfigError(f"tokenizer {self.tokenizer!r} is not one of byte, bpe")
        bad = [o for o in self.objectives if o not in OBJECTIVES]
        if bad or not self.objectives:
            raise ConfigError(f"objectives {list(self.objectives)!r}: each must be one of {', '.join(OBJECTIVES)}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds {list(self.seeds)!r} must be a non-empty list of distinct ints")
        for name in ("n_trials", "workers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} {getattr(self, name)!r} must be >= 1")
        if self.max_retries < 0 or self.threads < 0:
            raise ConfigError("max_retries and threads must be >= 0")

    @property
    def directions(self) -> list[Direction]:
        return [OBJECTIVES[o] for o in self.objectives]


@dataclass(frozen=True, kw_only=True, slots=True)
class BudgetSection:
    """``[budget]``: token budgets; 0 takes the preset's default."""

    nca_tokens: int = 0
    """Default pre-pre-training tokens (a searched ``nca_tokens`` overrides it)."""
    domain_tokens: int = 0
    """Downstream training tokens of every trial and its scratch runs (a setting may override)."""
    nca_fraction: float = 0.0
    """NCA budget as a fraction of the domain budget, in (0, 1] (the paper: 0.013-0.039);
    0 = use nca_tokens."""

    def __post_init__(self) -> None:
        if self.nca_tokens < 0 or self.domain_tokens < 0:
            raise ConfigError("[budget] token counts must be >= 0 (0 = preset default)")
        if not (self.nca_fraction == 0 or 0 < self.nca_fraction <= 1):
            raise ConfigError(f"[budget] nca_fraction {self.nca_fraction!r} must be in (0, 1] "
                              "(0 = use nca_tokens)")


@dataclass(frozen=True, kw_only=True, slots=True)
class SamplerSection:
    """``[sampler]``: every argument pinned so a resumed study samples the same way."""

    name: str = "tpe"
    seed: int = 0
    n_startup_trials: int = 4
    n_ei_candidates: int = 24
    multivariate: bool = True
    group: bool = False
    constant_liar: bool = True

    def __post_init__(self) -> None:
        if self.name not in SAMPLERS:
            raise ConfigError(f"sampler {self.name!r} is not one of {', '.join(SAMPLERS)}")
        if self.group and not self.multivariate:
            raise ConfigError("[sampler] group = true needs multivariate = true")


@dataclass(frozen=True, kw_only=True, slots=True)
class PrunerSection:
    """``[pruner]``: which trials to stop early, from their intermediate validation losses."""

    name: str = "median"
    n_startup_trials: int = 3
    n_warmup_steps: int = 1
    min_resource: int = 1
    reduction_factor: int = 3
    p_threshold: float = 0.1

    def __post_init__(self) -> None:
        if self.name not in PRUNERS:
            raise ConfigError(f"pruner {self.name!r} is not one of {', '.join(PRUNERS)}")


@dataclass(frozen=True, kw_only=True, slots=True)
class SlurmSection:
    """``[slurm]``: how ``--executor slurm`` turns trials into jobs."""

    partition: str = ""
    gpus_per_node: int = 1
    cpus_per_task: int = 8
    mem_gb: int = 32
    timeout_min: int = 60
    max_in_flight: int = 8
    account: str = ""
    qos: str = ""
    constraint: str = ""
    extra: tuple[tuple[str, str], ...] = ()
    """Extra sbatch parameters as key/value pairs."""
    setup: tuple[str, ...] = ()
    """Shell lines run in the job before Python starts (module load, venv activate)."""
    folder: str = ""
    """submitit job folder; empty = run_dir/slurm."""
    max_requeues: int = 3
    """Preemption/time-limit requeues before a trial fails."""

    def __post_init__(self) -> None:
        for name in ("gpus_per_node", "cpus_per_task", "mem_gb", "timeout_min", "max_in_flight"):
            value = getattr(self, name)
            if value < (0 if name == "gpus_per_node" else 1):
                raise ConfigError(f"[slurm] {name} {value!r} is out of range")


@dataclass(frozen=True, kw_only=True, slots=True)
class Anchor:
    """A setting enqueued before the sampler starts (the paper's setting, bands, controls)."""

    name: str
    params: tuple[tuple[str, Any], ...]

    def __post_init__(self) -> None:
        try:
            setting_from_params(dict(self.params))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"anchor {self.name!r}: {exc}") from None


@dataclass(frozen=True, kw_only=True, slots=True)
class StudyConfig:
    """A whole study, as resolved from its TOML file and the command line."""

    study: StudySection
    budget: BudgetSection = field(default_factory=BudgetSection)
    sampler: SamplerSection = field(default_factory=SamplerSection)
    pruner: PrunerSection = field(default_factory=PrunerSection)
    slurm: SlurmSection = field(default_factory=SlurmSection)
    space: tuple[ParamSpec, ...] = ()
    anchors: tuple[Anchor, ...] = ()

    def __post_init__(self) -> None:
        ranges = [p.name for p in self.space if p.searched and p.choices is None]
        if self.sampler.name == "grid" and ranges:
            raise ConfigError(f"[sampler] grid needs choices for every searched parameter; "
                              f"{', '.join(ranges)} are ranges")

    @property
    def grid(self) -> dict[str, list[Any]]:
        """The searched parameters' choices (the grid sampler's search space)."""
        return {p.name: list(p.choices or ()) for p in self.space if p.searched}

    @property
    def space_map(self) -> dict[str, ParamSpec]:
        return {p.name: p for p in self.space}

    @property
    def run_dir(self) -> Path:
        return Path(self.study.run_dir or Path("runs") / self.study.name)

    @property
    def cache_dir(self) -> Path:
        return Path(self.study.cache_dir or Path("runs") / "cache")

    @property
    def storage_url(self) -> str:
        return self.study.storage or str(self.run_dir / "journal.log")

    def to_json(self) -> str:
        """Canonical JSON of the resolved configuration (saved with the study)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True, default=str)


_SECTIONS = ("study", "budget", "sampler", "pruner", "slurm", "space", "anchors")


def resolve_study_path(name_or_path: str) -> Path:
    """A study name (``code``) maps to ``studies/code.toml``; anything else is a path."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = STUDIES_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        known = sorted(p.stem for p in STUDIES_DIR.glob("*.toml"))
        raise ConfigError(f"study file {str(path)!r} not found; built-in studies: {', '.join(known)}")
    return path


def load_study_config(name_or_path: str, overrides: dict[str, dict[str, Any]] | None = None) -> StudyConfig:
    """Load a study file and apply ``overrides`` (section -> key -> value) on top."""
    path = resolve_study_path(name_or_path)
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    for section, values in (overrides or {}).items():
        raw.setdefault(section, {}).update(values)
    return config_from_dict(raw, where=str(path))


def config_from_dict(raw: dict[str, Any], where: str = "study") -> StudyConfig:
    """Build a StudyConfig from a parsed TOML document."""
    check_keys(raw, _SECTIONS, f"{where} (top level)")
    if "study" not in raw:
        raise ConfigError(f"{where} has no [study] section")
    slurm = dict(raw.get("slurm", {}))
    if "extra" in slurm:
        slurm["extra"] = tuple(sorted((str(k), str(v)) for k, v in dict(slurm["extra"]).items()))
    anchors = []
    for a in raw.get("anchors", []):
        check_keys(a, ("name", "params"), "anchors")
        anchors.append(Anchor(name=a["name"], params=tuple(sorted(a.get("params", {}).items()))))
    return StudyConfig(
        study=from_table(StudySection, raw["study"], "study"),
        budget=from_table(BudgetSection, raw.get("budget", {}), "budget"),
        sampler=from_table(SamplerSection, raw.get("sampler", {}), "sampler"),
        pruner=from_table(PrunerSection, raw.get("pruner", {}), "pruner"),
        slurm=from_table(SlurmSection, slurm, "slurm"),
        space=tuple(parse_space(raw.get("space", {})).values()),
        anchors=tuple(anchors),
    )
