"""The search space: which settings a study fixes, which it searches, and how they are sampled.

A study file's ``[space]`` table maps a parameter name to either a plain value (fixed) or a
table: ``{choices = [...]}`` (categorical) or ``{low = a, high = b, log = true, step = s}``
(float or int range). Conditional parameters are only sampled where they apply: curriculum
knobs only for non-constant curricula, NCA knobs only when the source is NCA, ``dyck_k`` only
for Dyck data.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import typing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import nca
from lm.recipe import EMBED_INITS, NCA_SCHEDULES, RECIPES
from nca.bands import parse_band
from search._toml import ConfigError, checked_value

if TYPE_CHECKING:
    import optuna

SOURCES = ("nca", "dyck", "text", "none")
BAND_KINDS = ("absolute", "quantile")
CURRICULA = ("constant", "ascending", "descending", "mixture")
TRANSFERS: dict[str, dict[str, tuple[str, ...]]] = {
    "full": {},
    "attention-only": {"reinit": ("mlp",)},
    "mlp-only": {"reinit": ("attention",)},
    "freeze-attention": {"freeze": ("attention",)},
    "freeze-all": {"freeze": ("attention", "mlp")},
}
"""Transfer strategies by name, as the ``lm.transfer.TransferConfig`` fields each sets."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Setting:
    """One point of the search space: everything a trial needs besides the study context."""

    source: str = "nca"
    """Pre-pre-training data: ``nca``, ``dyck``, ``text`` (natural-text control) or ``none``."""
    band: tuple[float, float] = (0.5, 1.0)
    """Complexity band (lower, upper); absolute gzip ratio or profile quantiles (``band_kind``).
    A pair, not an ``nca.Band``, because the ``setting`` attribute of stored trials is its JSON."""
    band_kind: str = "absolute"
    """``absolute`` (gzip ratio) or ``quantile`` (of the alphabet's complexity profile)."""
    alphabet: int = 10
    """NCA states per cell, 2..15."""
    grid: int = 12
    """NCA grid side in cells (even)."""
    temperature: float = 1e-4
    """NCA sampling temperature (> 0)."""
    identity_bias: float = 0.0
    """Logit bonus for keeping the current state."""
    nca_tokens: int = 0
    """Pre-pre-training token budget; 0 means the preset's default."""
    curriculum: str = "constant"
    """Stage order: constant, ascending, descending, mixture."""
    curriculum_stages: int = 3
    """Number of sub-bands the band is split into for non-constant curricula."""
    dyck_k: int = 8
    """Bracket types for the Dyck control."""
    ppt_lr: float = 0.0
    """Pre-pre-training peak learning rate; 0 means the preset's default."""
    lr: float = 0.0
    """Downstream peak learning rate after transfer; 0 means the preset's default."""
    warmup: float = -1.0
    """Downstream warmup as a fraction of the budget; negative means the preset's default."""
    transfer: str = "full"
    """Transfer strategy, one of TRANSFERS."""
    recipe: str = ""
    """Training recipe (lm.recipe: ``paper`` or ``proxy``); empty means the study's."""
    embed_init: str = ""
    """New embedding and head init (``reference`` or ``scaled``); empty means the recipe's."""
    embed_std: float = 0.0
    """New embedding's init std, a continuous knob between ``scaled`` (the model's init std)
    and ``reference`` (1.0) that replaces embed_init; 0 means embed_init's."""
    block_scale: float = 0.0
    """Factor on the copied blocks' residual output projections at transfer, in (0, 1]; 0
    means 1 (copied as they are)."""
    nca_schedule: str = ""
    """NCA-stage schedule (``warmup-only`` or ``cosine``); empty means the recipe's."""
    nca_lr_ratio: float = 0.0
    """NCA-stage peak lr / downstream peak lr; 0 means the recipe's."""
    nca_fraction: float = 0.0
    """NCA budget as a fraction of the domain budget, in (0, 1]; 0 means the study's."""
    domain_tokens: int = 0
    """Downstream (and scratch) budget in tokens; 0 means the study's."""

    def __post_init__(self) -> None:
        _check_choice("source", self.source, SOURCES)
        _check_choice("band_kind", self.band_kind, BAND_KINDS)
        _check_choice("curriculum", self.curriculum, CURRICULA)
        _check_choice("transfer", self.transfer, tuple(TRANSFERS))
        self.nca_config()  # nca checks its own fields (alphabet, grid, temperature, ...)
        self.nca_band()
        if self.nca_tokens < 0 or self.ppt_lr < 0 or self.lr < 0:
            raise ValueError("nca_tokens, ppt_lr and lr must be >= 0 (0 = preset default)")
        if self.curriculum != "constant" and self.curriculum_stages < 2:
            raise ValueError(f"curriculum {self.curriculum!r} needs curriculum_stages >= 2")
        if self.warmup >= 1:
            raise ValueError(f"warmup {self.warmup!r} must be a fraction in [0, 1) (negative: "
                             "the recipe's)")
        _check_choice("recipe", self.recipe, ("",) + RECIPES)
        _check_choice("embed_init", self.embed_init, ("",) + EMBED_INITS)
        _check_choice("nca_schedule", self.nca_schedule, ("",) + NCA_SCHEDULES)
        if not (math.isfinite(self.nca_lr_ratio) and self.nca_lr_ratio >= 0):
            raise ValueError(f"nca_lr_ratio {self.nca_lr_ratio!r} must be a finite number >= 0 "
                             "(0 = the recipe's)")
        if not (self.nca_fraction == 0 or 0 < self.nca_fraction <= 1):
            raise ValueError(f"nca_fraction {self.nca_fraction!r} must be in (0, 1] "
                             "(0 = the study's)")
        if self.domain_tokens < 0:
            raise ValueError(f"domain_tokens {self.domain_tokens!r} must be >= 0 (0 = the study's)")
        if not (self.embed_std == 0 or 1e-4 <= self.embed_std <= 10):
            raise ValueError(f"embed_std {self.embed_std!r} must be in [1e-4, 10] (0 = the "
                             "embed_init's)")
        if not 0 <= self.block_scale <= 1:
            raise ValueError(f"block_scale {self.block_scale!r} must be in (0, 1] (0 = 1)")

    def nca_config(self) -> nca.NCAConfig:
        """The NCA generator settings: the knobs the search varies, nca's defaults otherwise."""
        return nca.NCAConfig(alphabet=self.alphabet, grid=self.grid, temperature=self.temperature,
                             identity_bias=self.identity_bias)

    def nca_band(self) -> nca.Band:
        """The whole complexity band (a non-constant curriculum splits it: `nca_data_spec`)."""
        lo, hi = self.band
        return nca.Band(lo, hi, kind="quantile" if self.band_kind == "quantile" else "absolute")

    def _recipe_text(self) -> str:
        parts = [f"{name}={value}" for name, value in (
            ("recipe", self.recipe), ("init", self.embed_init), ("sched", self.nca_schedule),
            ("nca_lr_x", self.nca_lr_ratio), ("dom", self.domain_tokens)) if value]
        parts += [f"{name}={value:.3g}" for name, value in (
            ("emb_std", self.embed_std), ("blk_x", self.block_scale)) if value]
        return "".join(f" {p}" for p in parts)

    def describe(self) -> str:
        """A short human line: what matters for this setting."""
        if self.source == "none":
            return "scratch"
        lrs = "".join(f" {name}={value:.1e}" for name, value in
                      (("ppt_lr", self.ppt_lr), ("lr", self.lr)) if value)
        budget = (f"{self.nca_fraction:.0%}" if self.nca_fraction and not self.nca_tokens
                  else self.nca_tokens or "study")
        tail = f" tok={budget}{lrs} xfer={self.transfer}{self._recipe_text()}"
        if self.source != "nca":
            return f"{self.source}{f' k={self.dyck_k}' if self.source == 'dyck' else ''}{tail}"
        q = "q" if self.band_kind == "quantile" else ""
        cur = ("" if self.curriculum == "constant"
               else f" {self.curriculum}x{self.curriculum_stages}")
        return f"nca {q}band={self.band[0]:.2f}-{self.band[1]:.2f} n={self.alphabet}{cur}{tail}"


@dataclass(frozen=True, kw_only=True, slots=True)
class ParamSpec:
    """How one parameter is set: a fixed value, a categorical choice or a numeric range."""

    name: str
    fixed: Any = None
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None

    @property
    def searched(self) -> bool:
        return self.fixed is None

    def contains(self, value: Any) -> bool:
        """True when a searched parameter's distribution can record ``value`` (for anchors)."""
        if self.choices is not None:
            return value in self.choices
        if self.low is None or self.high is None or isinstance(value, (str, bool)):
            return False
        return self.low <= value <= self.high

    def suggest(self, trial: optuna.Trial) -> Any:
        """Ask ``trial`` for this parameter (or return the fixed value)."""
        if self.fixed is not None:
            return self.fixed
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        assert self.low is not None and self.high is not None  # checked in parse_space
        if self._is_int and not self.log:
            return trial.suggest_int(self.name, int(self.low), int(self.high),
                                     step=int(self.step or 1))
        if self._is_int:
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=True)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log, step=self.step)

    def distribution(self) -> optuna.distributions.BaseDistribution:
        """The Optuna distribution ``suggest`` asks from (its constructor checks log and step).

        Raises:
            ValueError: Optuna refuses the range (log with low <= 0, log with a step, ...).
        """
        from optuna.distributions import FloatDistribution, IntDistribution

        assert self.low is not None and self.high is not None
        if self._is_int:
            return IntDistribution(int(self.low), int(self.high), log=self.log,
                                   step=1 if self.log else int(self.step or 1))
        return FloatDistribution(self.low, self.high, log=self.log, step=self.step)

    @property
    def _is_int(self) -> bool:
        return isinstance(self.low, int) and isinstance(self.high, int)


_SETTING_FIELDS = tuple(f.name for f in dataclasses.fields(Setting))
#: Names a ``[space]`` table accepts: Setting's fields, with the band split for numeric search.
SPACE_KEYS = tuple(k for k in _SETTING_FIELDS if k != "band") + ("band", "band_lower", "band_width")


def parse_space(table: dict[str, Any]) -> dict[str, ParamSpec]:
    """Turn a ``[space]`` TOML table into parameter specs, refusing unknown keys and shapes."""
    unknown = sorted(set(table) - set(SPACE_KEYS))
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in [space]; "
                          f"valid keys: {', '.join(SPACE_KEYS)}")
    if "band" in table and ("band_lower" in table or "band_width" in table):
        raise ConfigError("[space] sets both band and band_lower/band_width; use one of the two")
    specs = {}
    for name, value in table.items():
        specs[name] = _parse_param(name, value)
    return specs


def _parse_param(name: str, value: Any) -> ParamSpec:
    _check_finite(name, value)
    if not isinstance(value, dict):
        return ParamSpec(name=name, fixed=_coerce(name, value))
    valid = {"choices", "low", "high", "log", "step"}
    if set(value) - valid:
        raise ConfigError(
            f"[space.{name}] has keys {sorted(set(value) - valid)}; valid: {sorted(valid)}"
        )
    _check_range_keys(name, value)
    if "choices" in value:
        choices = tuple(value["choices"])
        if not choices:
            raise ConfigError(f"[space.{name}] choices must not be empty")
        for c in choices:
            _coerce(name, c)
        return ParamSpec(name=name, choices=choices)
    if "low" not in value or "high" not in value or not value["low"] < value["high"]:
        raise ConfigError(f"[space.{name}] needs low < high (got {value!r}) or choices")
    spec = ParamSpec(
        name=name, low=value["low"], high=value["high"], log=bool(value.get("log", False)),
        step=value.get("step"),
    )
    _check_range(spec)
    return spec


def _check_range_keys(name: str, table: dict[str, Any]) -> None:
    """The shapes a ``[space.NAME]`` table's keys take: a list of choices, numbers for the
    bounds and the step, true or false for log."""
    shapes = {"choices": (list,), "low": (int, float), "high": (int, float), "step": (int, float),
              "log": (bool,)}
    for key, kinds in shapes.items():
        value = table.get(key)
        if key in table and (not isinstance(value, kinds) or (bool not in kinds
                                                              and isinstance(value, bool))):
            expected = {"choices": "a list", "log": "true or false"}.get(key, "a number")
            raise ConfigError(f"[space.{name}] {key} = {value!r}: expected {expected}")


def _check_range(spec: ParamSpec) -> None:
    """Every value a range can propose must make a valid Setting, and Optuna must accept it.

    The Setting checks are intervals (alphabet 2..15, rates >= 0, bands in [0, 1]), so valid
    bounds mean every value between them passes those; a value that breaks another rule (an
    odd grid inside an even range) fails its own trial with the reason (search.driver).
    """
    _coerce(spec.name, spec.low, where=f"[space.{spec.name}] low")
    _coerce(spec.name, spec.high, where=f"[space.{spec.name}] high")
    try:
        spec.distribution()
    except ValueError as exc:
        raise ConfigError(f"[space.{spec.name}] {{low = {spec.low!r}, high = {spec.high!r}"
                          f"{', log = true' if spec.log else ''}"
                          f"{f', step = {spec.step!r}' if spec.step is not None else ''}}}: "
                          f"{exc}") from None


def _check_finite(name: str, value: Any) -> None:
    """nan and inf pass every comparison-based check (nan < 0 is False): refuse them here."""
    items = value.values() if isinstance(value, dict) else [value]
    for item in items:
        for x in item if isinstance(item, list) else [item]:
            if isinstance(x, float) and not math.isfinite(x):
                raise ConfigError(f"[space] {name}: {x!r} is not a finite number; "
                                  "every number in [space] must be finite")


def _coerce(name: str, value: Any, where: str = "") -> Any:
    """Check one fixed value, choice or range bound by building a Setting from it."""
    params = {name: value}
    if name == "band_width":  # a width alone is no band: pair it with the lowest lower edge
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 1:
            raise ConfigError(f"{where or '[space] band_width'} = {value!r}: band_width must "
                              "be in (0, 1]")
        params["band_lower"] = 0.0
    try:
        setting_from_params(params)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where or f'[space] {name}'} = {value!r}: {exc}") from None
    return value


def nca_data_spec(setting: Setting) -> nca.DataSpec:
    """The NCA data an NCA setting pre-pre-trains on: `nca_config` and `nca_band`, the band split
    into ``curriculum_stages`` equal sub-bands for a non-constant curriculum.

    The one Setting -> NCA data mapping (trial, cost probe, artifacts): ``nca.build`` hashes it,
    so the same setting must keep giving the same spec, or every cached NCA dataset is rebuilt.
    """
    if setting.source != "nca":
        raise ValueError(f"setting source {setting.source!r} has no NCA data; accepted: 'nca'")
    cfg, band = setting.nca_config(), setting.nca_band()
    if setting.curriculum == "constant":
        return nca.DataSpec(curriculum=nca.Curriculum.constant(cfg, band))
    k = setting.curriculum_stages
    edges = [band.lower + (band.upper - band.lower) * i / k for i in range(k + 1)]
    bands = [nca.Band(a, b, kind=band.kind) for a, b in itertools.pairwise(edges)]
    return nca.DataSpec(curriculum=getattr(nca.Curriculum, setting.curriculum)(cfg, bands))


def _band_param(text: Any, band_kind: Any) -> tuple[tuple[float, float], str]:
    """``band`` and ``band_kind`` of a ``band`` parameter (any spelling of ``parse_band``)."""
    band = parse_band(str(text))
    if band.measure != "gzip":
        raise ValueError(f"band {text!r} is a {band.measure} band; accepted: a gzip band")
    if band.kind == "quantile" and band_kind not in (None, "quantile"):
        raise ValueError(f"band {text!r} is a quantile band but band_kind is {band_kind!r}")
    return (band.lower, band.upper), band_kind or band.kind


def setting_from_params(params: dict[str, Any]) -> Setting:
    """Build a Setting from flat parameter values (Optuna params, anchors, fixed values).

    Raises:
        ValueError: a value of the wrong type (an int field given ``4.5``), not finite, or one
            the Setting refuses.
    """
    hints = typing.get_type_hints(Setting)
    kwargs = {k: checked_value(v, hints[k], k) if k in hints else v
              for k, v in params.items() if k not in ("band", "band_lower", "band_width")}
    if "band" in params:
        kwargs["band"], kwargs["band_kind"] = _band_param(params["band"], params.get("band_kind"))
    elif "band_lower" in params:
        lo = float(params["band_lower"])
        kwargs["band"] = (lo, min(1.0, lo + float(params.get("band_width", 0.1))))
    return Setting(**kwargs)


def sample(trial: optuna.Trial, space: dict[str, ParamSpec]) -> Setting:
    """Sample a Setting, asking only for the parameters that apply to what was sampled so far."""
    params: dict[str, Any] = {}

    def take(name: str) -> None:
        if name in space:
            params[name] = space[name].suggest(trial)

    take("source")
    source = params.get("source", "nca")
    for name in ("recipe", "embed_init", "embed_std", "domain_tokens", "transfer", "lr",
                 "warmup"):
        take(name)
    if source != "none":
        for name in ("nca_tokens", "nca_fraction", "ppt_lr", "nca_lr_ratio", "nca_schedule",
                     "block_scale"):
            take(name)
    if source == "dyck":
        take("dyck_k")
    if source == "nca":
        for name in ("band", "band_lower", "band_width", "band_kind", "alphabet", "grid",
                     "temperature", "identity_bias", "curriculum"):
            take(name)
        if params.get("curriculum", "constant") != "constant":
            take("curriculum_stages")
    return setting_from_params(params)


def _check_choice(field: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        named = ", ".join(v for v in valid if v)
        empty = " (or empty: the study's)" if "" in valid else ""
        raise ValueError(f"{field} {value!r} is not one of {named}{empty}")
