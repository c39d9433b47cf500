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
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lm.corpora import DOMAINS as CORPORA
from lm.recipe import RECIPES
from search._toml import (
    SEED_MAX,
    ConfigError,
    bounded,
    check_bounds,
    check_keys,
    from_table,
    typed_fields,
)
from search.record import (
    OBJECTIVES,
    PER_DOMAIN_OBJECTIVES,
    Direction,
    objective_direction,
    split_objective,
)
from search.space import ParamSpec, parse_space, setting_from_params
from search.synthetic import SYNTHETIC_DOMAINS
from search.tally import jobs_at_once
from search.tracking import parse_track

STUDIES_DIR = Path(__file__).resolve().parents[1] / "studies"
DOMAINS = tuple(CORPORA) + SYNTHETIC_DOMAINS
"""The domains a study may train on: ``lm.corpora``'s text domains and the synthetic ones of
``search.synthetic`` (known-answer studies)."""
EXECUTORS = ("inline", "local", "slurm")
SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("none", "median", "hyperband", "wilcoxon")
MAX_TOKENS = 10**13
"""Largest token budget a study accepts (the paper's largest run trains on about 10^10)."""
MAX_SEEDS = 1000
"""Most training seeds a study evaluates each setting with."""
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


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
    n_trials: int = bounded(8, 1, 100_000)
    """Finished trials (complete, pruned or failed for good) the study aims for, anchors
    included."""
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
    workers: int = bounded(2, 1, 4096)
    """Trials in flight at once (local processes or Slurm jobs)."""
    run_dir: str = ""
    """Directory for the journal, artifacts and resolved config; empty = runs/<name>."""
    cache_dir: str = ""
    """Shared cache of NCA data, checkpoints and baselines; empty = runs/cache."""
    max_retries: int = bounded(2, 0, 100)
    """Times a trial lost to infrastructure (killed worker, lost job) is retried."""
    threads: int = 0
    """Torch threads per trial process; 0 = cores / the trials that can run at once (the fewer of
    workers and n_trials), and / ranks."""
    ranks: int = bounded(1, 1, 256)
    """Processes each trial of the ``local`` executor trains with, data-parallel on this machine
    (gloo on CPUs, NCCL on GPUs); Slurm trials take ``[slurm] tasks_per_node`` and ``nodes``."""
    track: str = ""
    """Mirror every trial, seed and stage into MLflow (search.tracking): ``mlflow`` (a store in
    run_dir/mlflow) or ``mlflow:URI``; empty = off."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ConfigError(f"[study] name = {self.name!r}: expected 1-100 letters, digits, "
                              "'.', '_' or '-', starting with a letter or digit (it names the "
                              "run folder)")
        self._check_resolved()
        if self.executor not in EXECUTORS:
            raise ConfigError(f"executor {self.executor!r} is not one of {', '.join(EXECUTORS)}")
        if self.recipe and self.recipe not in RECIPES:
            raise ConfigError(f"recipe {self.recipe!r} is not one of {', '.join(RECIPES)}")
        if self.tokenizer not in ("byte", "bpe"):
            raise ConfigError(f"tokenizer {self.tokenizer!r} is not one of byte, bpe")
        if (not 0 < len(self.seeds) <= MAX_SEEDS or len(set(self.seeds)) != len(self.seeds)
                or not all(type(s) is int and 0 <= s <= SEED_MAX for s in self.seeds)):
            shown = list(self.seeds) if len(self.seeds) <= 10 else f"{len(self.seeds)} seeds"
            raise ConfigError(f"[study] seeds = {shown!r}: expected a list of 1 to {MAX_SEEDS} "
                              f"distinct integers in [0, {SEED_MAX}]")
        check_bounds(self, "study")
        if self.threads < 0:
            raise ConfigError(f"[study] threads = {self.threads}: expected 0 (automatic) or more")
        parse_track(self.track)

    def _check_resolved(self) -> None:
        """The domains and objectives are in their resolved form (``study_section`` makes it
        from what a study file says)."""
        names = self.domains
        pairs = () if isinstance(self.data, str) else tuple(d for d, _ in self.data)
        if not names or self.domain != names[0] or pairs != (names if len(names) > 1 else ()):
            raise ConfigError("[study] domain, domains and data are not resolved: build the "
                              "section with search.config.study_section")
        if len(set(self.objectives)) != len(self.objectives) or not self.objectives:
            raise ConfigError(f"objectives {list(self.objectives)!r}: expected distinct names")

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


def study_section(table: dict[str, Any]) -> StudySection:
    """The ``[study]`` section of a study file (after CLI overrides), resolved: ``domain`` is the
    first domain and ``domains`` all of them, ``data`` a string for one domain and
    ``(domain, data)`` pairs for several, a bare per-domain objective of a multi-domain study
    one objective per domain.

    Raises:
        ConfigError: a value of the wrong type, or domains, data or objectives that do not fit.
    """
    fields = typed_fields(StudySection, table, "study")
    fields |= _resolved_domains(fields.get("domain", ""), fields.get("domains", ()),
                                fields.get("data", ""))
    fields["objectives"] = _resolved_objectives(
        fields.get("objectives", StudySection.__dataclass_fields__["objectives"].default),
        fields["domains"])
    try:
        return StudySection(**fields)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"[study] {exc}") from None


def _resolved_domains(domain: str, domains: tuple[str, ...], data: str | tuple[tuple[str, str], ...]
                      ) -> dict[str, Any]:
    """``domain``, ``domains`` and ``data`` in their one resolved form (see study_section)."""
    if bool(domain) == bool(domains):
        raise ConfigError("[study] give domain = \"code\" (one domain) or domains = "
                          "[\"code\", \"math\", \"web\"] (several), not both or neither")
    names = domains or (domain,)
    for name in names:
        if name not in DOMAINS:
            raise ConfigError(f"domain {name!r} is not one of {', '.join(DOMAINS)}")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"domains {list(names)!r} name {', '.join(twice)} more than once; "
                          "each domain may appear once")
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
    missing = [n for n in names if not table.get(n) and n in CORPORA
               and CORPORA[n].builtin is None]
    if missing and len(names) > 1:
        raise ConfigError(f"domain {missing[0]!r} has no built-in corpus: give its data, "
                          f"e.g. data = {{ {missing[0]} = \"PATH\" }} or --data "
                          f"{missing[0]}=PATH")
    if len(names) == 1:
        one = data if isinstance(data, str) else str(table.get(names[0], ""))
        return {"domain": names[0], "domains": names, "data": one}
    return {"domain": names[0], "domains": names,
            "data": tuple((n, str(table.get(n, ""))) for n in names)}


def _resolved_objectives(objectives: tuple[str, ...], domains: tuple[str, ...]
                         ) -> tuple[str, ...]:
    """A multi-domain study scores each per-domain objective on every domain: a bare name
    such as ``net-effect`` becomes ``net-effect:code``, ``net-effect:math``, ...; named
    ones (``net-effect:math``), means over domains (``mean-net-effect``) and ``compute``
    stay as they are."""
    accepted = (f"{', '.join(OBJECTIVES)}, NAME:DOMAIN or mean-NAME "
                f"(NAME one of {', '.join(PER_DOMAIN_OBJECTIVES)})")
    if not objectives:
        raise ConfigError(f"objectives []: give at least one of {accepted}")
    resolved: list[str] = []
    for name in objectives:
        try:
            base, domain, mean = split_objective(name)
        except ValueError:
            raise ConfigError(f"objectives {list(objectives)!r}: {name!r} is not one "
                              f"of {accepted}") from None
        if domain and domain not in domains:
            raise ConfigError(f"objective {name!r} names domain {domain!r}, which the study "
                              f"does not train on; its domains: {', '.join(domains)}")
        if len(domains) > 1 and not (domain or mean) and base in PER_DOMAIN_OBJECTIVES:
            resolved.extend(f"{base}:{d}" for d in domains)
        else:
            resolved.append(name)
    if len(set(resolved)) != len(resolved):
        raise ConfigError(f"objectives {resolved!r} name an objective more than once")
    return tuple(resolved)


@dataclass(frozen=True, kw_only=True, slots=True)
class BudgetSection:
    """``[budget]``: token budgets; 0 takes the preset's default."""

    nca_tokens: int = bounded(0, 0, MAX_TOKENS)
    """Default pre-pre-training tokens (a searched ``nca_tokens`` overrides it)."""
    domain_tokens: int = bounded(0, 0, MAX_TOKENS)
    """Downstream training tokens of every trial and its scratch runs (a setting may override)."""
    nca_fraction: float = 0.0
    """NCA budget as a fraction of the domain budget, in (0, 1] (the paper: 0.013-0.039);
    0 = use nca_tokens."""

    def __post_init__(self) -> None:
        check_bounds(self, "budget")
        if not (self.nca_fraction == 0 or 0 < self.nca_fraction <= 1):
            raise ConfigError(f"[budget] nca_fraction {self.nca_fraction!r} must be in (0, 1] "
                              "(0 = use nca_tokens)")


@dataclass(frozen=True, kw_only=True, slots=True)
class SamplerSection:
    """``[sampler]``: every argument pinned so a resumed study samples the same way."""

    name: str = "tpe"
    seed: int = bounded(0, 0, SEED_MAX)
    n_startup_trials: int = bounded(4, 0, 100_000)
    n_ei_candidates: int = bounded(24, 1, 100_000)
    multivariate: bool = True
    group: bool = False
    constant_liar: bool = True

    def __post_init__(self) -> None:
        check_bounds(self, "sampler")
        if self.name not in SAMPLERS:
            raise ConfigError(f"sampler {self.name!r} is not one of {', '.join(SAMPLERS)}")
        if self.group and not self.multivariate:
            raise ConfigError("[sampler] group = true needs multivariate = true")


@dataclass(frozen=True, kw_only=True, slots=True)
class PrunerSection:
    """``[pruner]``: which trials to stop early, from their intermediate validation losses."""

    name: str = "median"
    n_startup_trials: int = bounded(3, 0, 100_000)
    n_warmup_steps: int = bounded(1, 0, 1_000_000)
    min_resource: int = bounded(1, 1, 1_000_000)
    reduction_factor: int = bounded(3, 2, 1000)
    p_threshold: float = bounded(0.1, 0.0, 1.0)

    def __post_init__(self) -> None:
        check_bounds(self, "pruner")
        if self.name not in PRUNERS:
            raise ConfigError(f"pruner {self.name!r} is not one of {', '.join(PRUNERS)}")


@dataclass(frozen=True, kw_only=True, slots=True)
class SlurmSection:
    """``[slurm]``: how ``--executor slurm`` turns trials into jobs."""

    partition: str = ""
    gpus_per_node: int = bounded(1, 0, 64)
    cpus_per_task: int = bounded(8, 1, 4096)
    mem_gb: int = bounded(32, 1, 1_000_000)
    timeout_min: int = bounded(60, 1, 10_000_000)
    max_in_flight: int = bounded(8, 1, 100_000)
    account: str = ""
    qos: str = ""
    constraint: str = ""
    extra: tuple[tuple[str, str], ...] = ()
    """Extra sbatch parameters as key/value pairs."""
    setup: tuple[str, ...] = ()
    """Shell lines run in the job before Python starts (module load, venv activate)."""
    folder: str = ""
    """submitit job folder; empty = run_dir/slurm."""
    max_requeues: int = bounded(3, 0, 1000)
    """Preemption/time-limit requeues before a trial fails."""
    tasks_per_node: int = bounded(1, 1, 1024)
    """Processes (ranks) per node of each trial's job, data-parallel (one per GPU on GPU nodes)."""
    nodes: int = bounded(1, 1, 4096)
    """Nodes of each trial's job; its ranks are tasks_per_node x nodes."""

    def __post_init__(self) -> None:
        check_bounds(self, "slurm")
        if self.gpus_per_node and self.tasks_per_node > self.gpus_per_node:
            # each rank takes the LOCAL_RANK-th GPU of its node; two ranks on one GPU fail in NCCL
            raise ConfigError(f"[slurm] tasks_per_node = {self.tasks_per_node}: expected at most "
                              f"gpus_per_node = {self.gpus_per_node} (one GPU per rank)")

    @property
    def ranks(self) -> int:
        """Processes of each trial's job."""
        return self.tasks_per_node * self.nodes


@dataclass(frozen=True, kw_only=True, slots=True)
class ConfirmSection:
    """``[confirm]``: the confirmation phase that runs after the search (``search.confirm``).

    The study's ``top`` settings by its objective and its ``paper`` anchor run again on fresh
    ``seeds`` (disjoint from the search's), each over the same downstream learning-rate grid as
    every scratch recipe; each arm's best grid point is chosen on val and reported on the test
    split, paired by seed."""

    enabled: bool = True
    """Run it after the search (``--no-confirm`` skips it, ``--confirm-only`` runs it alone)."""
    top: int = bounded(2, 1, 20)
    """Finalists by the study's (first) objective, besides its paper anchor."""
    seeds: tuple[int, ...] = (1000, 1001, 1002)
    """Fresh training seeds, disjoint from the search's."""
    lr_grid: tuple[float, ...] = (0.5, 1.0, 2.0)
    """Downstream learning rates, as multipliers of the preset's, that every arm runs."""

    def __post_init__(self) -> None:
        check_bounds(self, "confirm")
        if (not 0 < len(self.seeds) <= MAX_SEEDS or len(set(self.seeds)) != len(self.seeds)
                or not all(type(s) is int and 0 <= s <= SEED_MAX for s in self.seeds)):
            raise ConfigError(f"[confirm] seeds = {list(self.seeds)!r}: expected a list of 1 to "
                              f"{MAX_SEEDS} distinct integers in [0, {SEED_MAX}]")
        if (not 0 < len(self.lr_grid) <= 10 or len(set(self.lr_grid)) != len(self.lr_grid)
                or not all(0 < m <= 100 for m in self.lr_grid)):
            raise ConfigError(f"[confirm] lr_grid = {list(self.lr_grid)!r}: expected 1 to 10 "
                              "distinct multipliers of the preset's lr, each in (0, 100]")


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
    confirm: ConfirmSection = field(default_factory=ConfirmSection)
    space: tuple[ParamSpec, ...] = ()
    anchors: tuple[Anchor, ...] = ()

    def __post_init__(self) -> None:
        overlap = sorted(set(self.confirm.seeds) & set(self.study.seeds))
        if self.confirm.enabled and overlap:
            raise ConfigError(f"[confirm] seeds {list(self.confirm.seeds)} overlap the search's "
                              f"seeds {list(self.study.seeds)} (at {overlap}); the confirmation "
                              "needs fresh ones")
        cpus = (self.slurm.cpus_per_task if self.study.executor == "slurm"
                else len(os.sched_getaffinity(0)))
        if self.study.threads > cpus:
            where = "[slurm] cpus_per_task" if self.study.executor == "slurm" else "this machine"
            raise ConfigError(f"[study] threads = {self.study.threads}: expected 0 (automatic) "
                              f"to {cpus}, the CPUs of {where}")
        self._check_ranks()
        ranges = [p.name for p in self.space if p.searched and p.choices is None]
        if self.sampler.name == "grid" and ranges:
            raise ConfigError(f"[sampler] grid needs choices for every searched parameter; "
                              f"{', '.join(ranges)} are ranges")
        if len(self.study.objectives) > 1 and self.pruner.name not in ("median", "none"):
            raise ConfigError(f"[pruner] {self.pruner.name} cannot judge a study with several "
                              f"objectives; use median (the first-domain rule, see README) "
                              f"or none")

    def _check_ranks(self) -> None:
        """Several ranks per trial come from the executor that starts them: ``[study] ranks``
        for local processes, ``[slurm] tasks_per_node`` and ``nodes`` for a Slurm job."""
        executor, ranks = self.study.executor, self.study.ranks
        if ranks > 1 and executor != "local":
            where = ("one process: use executor local" if executor == "inline" else
                     "Slurm: use [slurm] tasks_per_node and nodes")
            raise ConfigError(f"[study] ranks = {ranks} is for the local executor; {executor} "
                              f"runs each trial as {where}")
        if executor == "local" and ranks > len(os.sched_getaffinity(0)):
            raise ConfigError(f"[study] ranks = {ranks}: this machine has "
                              f"{len(os.sched_getaffinity(0))} CPUs; each rank needs one")

    @property
    def ranks(self) -> int:
        """Processes each trial trains with (data-parallel; 1 = one process)."""
        if self.study.executor == "slurm":
            return self.slurm.ranks
        return self.study.ranks

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


_SECTIONS = ("study", "budget", "sampler", "pruner", "slurm", "confirm", "space", "anchors")


def resolve_study_path(name_or_path: str) -> Path:
    """A study name (``code``) maps to ``studies/code.toml``; anything else is a path."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = STUDIES_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        known = sorted(p.stem for p in STUDIES_DIR.glob("*.toml"))
        raise ConfigError(f"study file {str(path)!r} not found; "
                          f"built-in studies: {', '.join(known)}")
    return path


def load_study_config(name_or_path: str,
                      overrides: dict[str, dict[str, Any]] | None = None) -> StudyConfig:
    """Load a study file and apply ``overrides`` (section -> key -> value) on top."""
    path = resolve_study_path(name_or_path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at "
                          f"offset {exc.start}); a study file is TOML") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None
    for section, values in (overrides or {}).items():
        table = _table(raw.setdefault(section, {}), f"[{section}]")
        for key, value in values.items():  # a table (``data``) is merged, a value replaced
            both = isinstance(value, dict) and isinstance(table.get(key), dict)
            table[key] = {**table[key], **value} if both else value
    return config_from_dict(raw, where=str(path))


def config_from_dict(raw: dict[str, Any], where: str = "study") -> StudyConfig:
    """Build a StudyConfig from a parsed TOML document (every value checked: see search._toml)."""
    check_keys(raw, _SECTIONS, f"{where} (top level)")
    if "study" not in raw:
        raise ConfigError(f"{where} has no [study] section")
    tables = {name: _table(raw.get(name, {}), f"[{name}]")
              for name in ("study", "budget", "sampler", "pruner", "slurm", "confirm", "space")}
    study = dict(tables["study"])
    if isinstance(study.get("data"), dict):  # a TOML table: domain -> data
        study["data"] = tuple((str(k), _string(v, f"[study] data.{k}"))
                              for k, v in study["data"].items())
    slurm = dict(tables["slurm"])
    if "extra" in slurm:
        slurm["extra"] = tuple(sorted((str(k), str(_scalar(v, f"[slurm] extra.{k}")))
                                      for k, v in _table(slurm["extra"], "[slurm] extra").items()))
    return StudyConfig(
        study=study_section(study),
        budget=from_table(BudgetSection, tables["budget"], "budget"),
        sampler=from_table(SamplerSection, tables["sampler"], "sampler"),
        pruner=from_table(PrunerSection, tables["pruner"], "pruner"),
        slurm=from_table(SlurmSection, slurm, "slurm"),
        confirm=from_table(ConfirmSection, tables["confirm"], "confirm"),
        space=tuple(parse_space(tables["space"]).values()),
        anchors=_anchors(raw.get("anchors", [])),
    )


def _anchors(raw: Any) -> tuple[Anchor, ...]:
    """``[[anchors]]``: a list of tables, each with a string ``name`` and a ``params`` table."""
    if not isinstance(raw, list):
        raise ConfigError(f"anchors = {raw!r}: expected [[anchors]] tables, each with a name "
                          "and a params table")
    anchors = []
    for i, a in enumerate(raw):
        a = _table(a, f"[[anchors]] #{i + 1}")
        check_keys(a, ("name", "params"), "anchors")
        name = _string(a.get("name"), f"[[anchors]] #{i + 1} name")
        params = _table(a.get("params", {}), f"anchor {name!r} params")
        anchors.append(Anchor(name=name, params=tuple(sorted(params.items()))))
    return tuple(anchors)


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} = {value!r}: expected a table")
    return value


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where} = {value!r}: expected a non-empty string")
    return value


def _scalar(value: Any, where: str) -> str | int | float | bool:
    if not isinstance(value, (str, int, float, bool)):
        raise ConfigError(f"{where} = {value!r}: expected a string or a number")
    return value
