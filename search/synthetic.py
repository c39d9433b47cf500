"""Built-in synthetic domains, for studies whose best setting is known by construction.

Two downstream domains that ``nca`` generates (the search composes it; ``lm`` never sees how):

- ``nca``: rollouts of NCA rules of one complexity band (``[study] data = "band=0.5-1.0
  alphabet=10"``), drawn from a rule bank of its own (seeds far from any training seed, so no
  rule is one the pre-pre-training saw). Pre-pre-training on the same band should help most.
- ``dyck``: Dyck-k bracket sequences (``data = "k=8"``). Pre-pre-training on Dyck should help
  most; ``text=PATH`` names the natural text the ``text`` control reads.

Each has train, val and test splits of different rules (or sequences): train and val come from
one build, test from a build of its own seed. They train with the ``code`` recipe (a 3% warmup,
no weight decay): the recipes are defined for the text domains only.

Example:
    >>> spec = parse("nca", "band=0.3-0.4 alphabet=10")
    >>> spec.band, spec.alphabet
    ((0.3, 0.4), 10)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nca
from nca.bands import parse_band
from ncaio import content_key

__all__ = ["SYNTHETIC_DOMAINS", "SyntheticCorpus", "SyntheticSpec", "load", "parse",
           "recipe_domain"]

SYNTHETIC_DOMAINS = ("nca", "dyck")
RULE_SEED = 1_000_003
"""Seed of a synthetic domain's train and val data (its own rule bank)."""
TEST_SEED = 1_000_004
"""Seed of its test split: other rules (other sequences) again."""
TEST_SHARE = 4
"""The test split holds a quarter of the train split's tokens."""
_FIELD = re.compile(r"(\w+)=(\S+)")


@dataclass(frozen=True, kw_only=True, slots=True)
class SyntheticSpec:
    """What a synthetic domain's data is."""

    kind: str
    """``nca`` or ``dyck``."""
    band: tuple[float, float] = (0.5, 1.0)
    """The NCA domain's complexity band (absolute gzip ratio)."""
    alphabet: int = 10
    """The NCA domain's states per cell."""
    k: int = 8
    """The Dyck domain's bracket types."""
    text: str = ""
    """A text corpus (JSONL or text file) for the ``text`` pre-pre-training control."""

    def data_spec(self) -> nca.DataSpec:
        """The ``nca`` data the domain is."""
        if self.kind == "dyck":
            return nca.DataSpec(source="dyck", dyck_k=self.k)
        band = nca.Band(self.band[0], self.band[1])
        return nca.DataSpec(curriculum=nca.Curriculum.constant(
            nca.NCAConfig(alphabet=self.alphabet), band))


def parse(domain: str, data: str) -> SyntheticSpec:
    """The spec that ``data`` (``key=value`` pairs) gives the synthetic ``domain``.

    Raises:
        ValueError: an unknown domain or key, or a value its field refuses (one line).
    """
    if domain not in SYNTHETIC_DOMAINS:
        raise ValueError(f"domain {domain!r} is not one of {', '.join(SYNTHETIC_DOMAINS)}")
    accepted = {"nca": ("band", "alphabet"), "dyck": ("k", "text")}[domain]
    given = dict(_FIELD.findall(data))
    if _FIELD.sub("", data).strip() or set(given) - set(accepted):
        raise ValueError(f"{domain} data {data!r}: expected key=value pairs of "
                         f"{', '.join(accepted)} (e.g. "
                         f"{'band=0.5-1.0 alphabet=10' if domain == 'nca' else 'k=8'})")
    fields: dict[str, Any] = {"kind": domain}
    try:
        if "band" in given:
            band = parse_band(given["band"])
            fields["band"] = (band.lower, band.upper)
        for name in ("alphabet", "k"):
            if name in given:
                fields[name] = int(given[name])
    except ValueError as exc:
        raise ValueError(f"{domain} data {data!r}: {exc}") from None
    if "text" in given:
        fields["text"] = given["text"]
    spec = SyntheticSpec(**fields)
    spec.data_spec()  # nca checks the band, alphabet and k
    return spec


@dataclass(frozen=True, kw_only=True)
class SyntheticCorpus:
    """A synthetic domain's splits, shaped like ``lm.corpora.DomainCorpus`` where the trial
    reads it."""

    domain: str
    key: str
    """Content key: the keys of the ``nca`` datasets it is made of."""
    train: nca.TokenDataset
    val: nca.TokenDataset
    test: nca.TokenDataset
    spec: SyntheticSpec
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def vocab_size(self) -> int:
        return self.train.vocab_size

    @property
    def bytes_per_token(self) -> float:
        """A token is not text: losses stay in nats per token (bits per byte = nats / ln 2)."""
        return 1.0


def load(domain: str, data: str, *, cache_dir: Path, seq_len: int, n_tokens: int
         ) -> SyntheticCorpus:
    """Build (or read from the cache) the synthetic domain's splits: ``n_tokens`` of train."""
    spec = parse(domain, data)
    built = nca.build(spec.data_spec(), n_tokens, cache_dir=cache_dir, seed=RULE_SEED,
                      seq_len=seq_len)
    test = nca.build(spec.data_spec(), max(1, n_tokens // TEST_SHARE), cache_dir=cache_dir,
                     seed=TEST_SEED, seq_len=seq_len)
    counts = {name: {"n_sequences": len(ds), "n_tokens": len(ds) * ds.seq_len}
              for name, ds in (("train", built.train), ("val", built.val), ("test", test.train))}
    return SyntheticCorpus(domain=domain, key=content_key({"data": built.key, "test": test.key}),
                           train=built.train, val=built.val, test=test.train, spec=spec,
                           manifest={"splits": counts, "data": built.key, "test": test.key})


def recipe_domain(domain: str) -> str:
    """The domain whose recipe a domain trains with: its own, or ``code`` for a synthetic one."""
    return "code" if domain in SYNTHETIC_DOMAINS else domain
