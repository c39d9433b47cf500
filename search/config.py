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

from lm.corpora import DOMAINS as CORPORA
from lm.recipe import RECIPES
from search._toml import ConfigError, check_keys, from_table
from search.record import (
    OBJECTIVES,
    PER_DOMAIN_OBJECTIVES,
    Direction,
    objective_direction,
    split_objective,
)
from search.space import ParamSpec, parse_space, setting_from_params
from search.tally import jobs_at_once

STUDIES_DIR = Path(__file__).resolve().parents[1] / "studies"
DOMAINS = tuple(CORPORA)
"""The domains a study may train on (``lm.corpora``'s registry)."""
EXECUTORS = ("inline", "local", "slurm")
SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("none", "median", "hyperband", "wilcoxon")


@dataclass(frozen=True, kw_only=True, slots=True)
class StudySection:
    """``[study]``: what is searched for, where results go and how trials run."""

    name: str
    """Optuna study name."""
    domain: str = ""
    """Target domain of a one-domain study: code, math or web."""
    domains: tuple[str, ...] = ()
    """Target domains of a multi-domain study, in order: each trial pre-pre-trains once and
    trains on every one (the first one's recipe runs the NCA stage). Give domain or domains."""
    data: str | tuple[tuple[str, str], ...] = ""
    """Domain data: a local path or a Hugging Face dataset id; empty = the domain's default. A
    table ``{math = "...", web = "..."}`` names each domain's (a domain left out uses its
    built-in corpus); resolved to ``(domain, data)`` pairs in the order of ``domains``."""
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
    """Torch threads per trial process; 0 = cores / the trials that can run at once (the fewer of
    workers and n_trials)."""

    def __post_init__(self) -> None:
        self._resolve_domains()
        if self.executor not in EXECUTORS:
            raise ConfigError(f"executor {self.executor!r} is not one of {', '.join(EXECUTORS)}")
        if self.recipe and self.recipe not in RECIPES:
            raise ConfigError(f"recipe {self.recipe!r} is not one of {', '.join(RECIPES)}")
        if self.tokenizer not in ("byte", "bpe"):
            raise ConfigError(f"tokenizer {self.tokenizer!r} is not one of byte, bpe")
        self._resolve_objectives()
        if (not self.seeds or len(set(self.seeds)) != len(self.seeds)
                or not all(isinstance(s, int) and s >= 0 for s in self.seeds)):
            raise ConfigError(f"seeds {list(self.seeds)!r} must be a non-empty list of distinct "
                              "ints >= 0")
        for name in ("n_trials", "workers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} {getattr(self, name)!r} must be >= 1")
        if self.max_retries < 0 or self.threads < 0:
            raise ConfigError("max_retries and threads must be >= 0")

    @property
    def directions(self) -> list[Direction]:
        return [objective_direction(o) for o in self.objectives]

    @property
    def domain_data(self) -> tuple[tuple[str, str], ...]:
        """``(domain, data)`` of every domain the study trains on, in order."""
        if isinstance(self.data, str):
            return ((self.domain, self.data),)
        return self.data

    @property
    def multi_domain(self) -> bool:
        return len(self.domain_data) > 1

    def _resolve_domains(self) -> None:
        """Check ``domain``/``domains``/``data`` and set them to one form: ``domain`` is the
        first domain; ``data`` a string for one domain, ``(domain, data)`` pairs for several."""
        if bool(self.domain) == bool(self.domains):
            raise ConfigError("[study] give domain = \"code\" (one domain) or domains = "
                              "[\"code\", \"math\", \"web\"] (several), not both or neither")
        names = self.domains or (self.domain,)
        for name in names:
            if name not in DOMAINS:
                raise ConfigError(f"domain {name!r} is not one of {', '.join(DOMAINS)}")
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ConfigError(f"domains {list(names)!r} name {', '.join(twice)} more than once; "
                              "each domain may appear once")
        data = self.data
        if isinstance(data, str) and len(names) > 1:
            if data:
                raise ConfigError(f"data {data!r} is one path but the study has domains "
                                  f"{', '.join(names)}: give a table, data = {{ web = \"PATH\" }}")
            data = ()
        table = dict(data) if not isinstance(data, str) else {}
        unknown = sorted(set(table) - set(names))
        if unknown:
            raise ConfigError(f"data names domain(s) {', '.join(unknown)} the study does not "
                              f"train on; its domains: {', '.join(names)}")
        missing = [n for n in names if not table.get(n) and CORPORA[n].builtin is None]
        if missing and len(names) > 1:
            raise ConfigError(f"domain {missing[0]!r} has no built-in corpus: give its data, "
                              f"e.g. data = {{ {missing[0]} = \"PATH\" }} or --data "
                              f"{missing[0]}=PATH")
        object.__setattr__(self, "domain", names[0])
        object.__setattr__(self, "domains", names)
        if len(names) == 1:
            object.__setattr__(self, "data", data if isinstance(data, str)
                               else str(table.get(names[0], "")))
        else:
            object.__setattr__(self, "data", tuple((n, str(table.get(n, ""))) for n in names))

    def _resolve_objectives(self) -> None:
        """A multi-domain study scores each per-domain objective on every domain: a bare name
        such as ``net-effect`` becomes ``net-effect:code``, ``net-effect:math``, ...; named
        ones (``net-effect:math``), means over domains (``mean-net-effect``) and ``compute``
        stay as they are."""
        accepted = (f"{', '.join(OBJECTIVES)}, NAME:DOMAIN or mean-NAME "
                    f"(NAME one of {', '.join(PER_DOMAIN_OBJECTIVES)})")
        if not self.objectives:
            raise ConfigError(f"objectives []: give at least one of {accepted}")
        resolved: list[str] = []
        for name in self.objectives:
            try:
                base, domain, mean = split_objective(name)
            except ValueError:
                raise ConfigError(f"objectives {list(self.objectives)!r}: {name!r} is not one "
                                  f"of {accepted}") from None
            if domain and domain not in self.domains:
                raise ConfigError(f"objective {name!r} names domain {domain!r}, which the study "
                                  f"does not train on; its domains: {', '.join(self.domains)}")
            if len(self.domains) > 1 and not (domain or mean) and base in PER_DOMAIN_OBJECTIVES:
                resolved.extend(f"{base}:{d}" for d in self.domains)
            else:
                resolved.append(name)
        if len(set(resolved)) != len(resolved):
            raise ConfigError(f"objectives {resolved!r} name an objective more than once")
        object.__setattr__(self, "objectives", tuple(resolved))


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
        if len(self.study.objectives) > 1 and self.pruner.name not in ("median", "none"):
            raise ConfigError(f"[pruner] {self.pruner.name} cannot judge a study with several "
                              f"objectives; use median (the first-domain rule, see README) "
                              f"or none")

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

    @property
    def trials_at_once(self) -> int:
        """How many jobs (trials, or the scratch baselines before them) the study runs side by
        side (see ``jobs_at_once``)."""
        return jobs_at_once(self.study.executor, workers=self.study.workers,
                            n_trials=self.study.n_trials, max_in_flight=self.slurm.max_in_flight)

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
        table = raw.setdefault(section, {})
        for key, value in values.items():  # a table (``data``) is merged, a value replaced
            both = isinstance(value, dict) and isinstance(table.get(key), dict)
            table[key] = {**table[key], **value} if both else value
    return config_from_dict(raw, where=str(path))


def config_from_dict(raw: dict[str, Any], where: str = "study") -> StudyConfig:
    """Build a StudyConfig from a parsed TOML document."""
    check_keys(raw, _SECTIONS, f"{where} (top level)")
    if "study" not in raw:
        raise ConfigError(f"{where} has no [study] section")
    study = dict(raw["study"])
    if isinstance(study.get("data"), dict):  # a TOML table: domain -> data
        study["data"] = tuple((str(k), str(v)) for k, v in study["data"].items())
    slurm = dict(raw.get("slurm", {}))
    if "extra" in slurm:
        slurm["extra"] = tuple(sorted((str(k), str(v)) for k, v in dict(slurm["extra"]).items()))
    anchors = []
    for a in raw.get("anchors", []):
        check_keys(a, ("name", "params"), "anchors")
        anchors.append(Anchor(name=a["name"], params=tuple(sorted(a.get("params", {}).items()))))
    return StudyConfig(
        study=from_table(StudySection, study, "study"),
        budget=from_table(BudgetSection, raw.get("budget", {}), "budget"),
        sampler=from_table(SamplerSection, raw.get("sampler", {}), "sampler"),
        pruner=from_table(PrunerSection, raw.get("pruner", {}), "pruner"),
        slurm=from_table(SlurmSection, slurm, "slurm"),
        space=tuple(parse_space(raw.get("space", {})).values()),
        anchors=tuple(anchors),
    )
