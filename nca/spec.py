"""`DataSpec`: what a pre-pre-training dataset is made of (NCA, or a Dyck or text control)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from nca.curriculum import Curriculum

SOURCES = ("nca", "dyck", "text")
"""Data sources."""
DEFAULT_DYCK_K = 8
"""Bracket types of the Dyck control when `dyck_k` is not given."""

_NCA_ONLY = ("sequences_per_rule", "profile_rules")


@dataclass(frozen=True, kw_only=True, slots=True)
class DataSpec:
    """A dataset recipe; `nca.build` turns it into cached token shards.

    Example:
        >>> from nca import Band, NCAConfig
        >>> spec = DataSpec(source="nca",
        ...                 curriculum=Curriculum.constant(NCAConfig(), Band(0.5, 1.0)))
    """

    source: Literal["nca", "dyck", "text"] = "nca"
    """`nca` (the generator), or the controls `dyck` (bracket sequences) and `text` (bytes)."""
    curriculum: Curriculum | None = None
    """Stages and order of the NCA stream; required for `nca`, unused otherwise."""
    sequences_per_rule: int = 1
    """NCA simulations (sequences) per accepted rule; the paper's recipe uses one."""
    profile_rules: int = 4096
    """Random rules in the profile that resolves quantile bands and refuses unreachable ones."""
    dyck_k: int | None = None
    """Bracket types of the Dyck control, 1..1024 (default 8)."""
    text_path: Path | None = None
    """Corpus of the text control: JSONL with a "text" field per line, or plain UTF-8 text."""
    val_fraction: float = 0.05
    """Held-out sequences as a fraction of the training sequences, in [0, 0.5]."""
    min_val_sequences: int = 32
    """At least this many held-out sequences (>= 1)."""

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"DataSpec.source={self.source!r} is invalid; valid: {list(SOURCES)}")
        self._check_source_fields()
        for name, lo in (("sequences_per_rule", 1), ("profile_rules", 16),
                         ("min_val_sequences", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < lo:
                raise ValueError(f"DataSpec.{name}={value!r} is invalid; "
                                 f"accepted: an integer >= {lo}")
        if not isinstance(self.val_fraction, (int, float)) or not 0 <= self.val_fraction <= 0.5:
            raise ValueError(f"DataSpec.val_fraction={self.val_fraction!r} is invalid; "
                             f"accepted: a number in [0, 0.5]")

    def _check_source_fields(self) -> None:
        if self.source == "nca" and not isinstance(self.curriculum, Curriculum):
            raise ValueError("DataSpec(source='nca') needs curriculum=Curriculum..., e.g. "
                             "Curriculum.constant(NCAConfig(), Band(0.5, 1.0))")
        if self.source != "nca" and self.curriculum is not None:
            raise ValueError(f"DataSpec.curriculum is only used with source='nca', not "
                             f"{self.source!r}")
        if self.source != "nca":
            defaults = {f.name: f.default for f in fields(DataSpec)}
            for name in _NCA_ONLY:
                if getattr(self, name) != defaults[name]:
                    raise ValueError(f"DataSpec.{name} is only used with source='nca'")
        if self.source != "dyck" and self.dyck_k is not None:
            raise ValueError(
                f"DataSpec.dyck_k is only used with source='dyck', not {self.source!r}")
        if self.source == "dyck" and self.dyck_k is not None and not (
            isinstance(self.dyck_k, int) and 1 <= self.dyck_k <= 1024
        ):
            raise ValueError(f"DataSpec.dyck_k={self.dyck_k!r} is invalid; accepted: 1..1024")
        if self.source == "text" and self.text_path is None:
            raise ValueError("DataSpec(source='text') needs text_path (JSONL or plain text)")
        if self.source != "text" and self.text_path is not None:
            raise ValueError(f"DataSpec.text_path is only used with source='text', not "
                             f"{self.source!r}")

    @property
    def k(self) -> int:
        """Bracket types of the Dyck control."""
        return self.dyck_k or DEFAULT_DYCK_K

    def to_dict(self) -> dict[str, Any]:
        """Resolved plain dict (for JSON and cache keys); the text corpus enters by content."""
        out: dict[str, Any] = {"source": self.source, "val_fraction": self.val_fraction,
                               "min_val_sequences": self.min_val_sequences}
        if self.source == "nca":
            assert self.curriculum is not None  # checked in __post_init__
            out.update(curriculum=self.curriculum.to_dict(),
                       sequences_per_rule=self.sequences_per_rule, profile_rules=self.profile_rules)
        elif self.source == "dyck":
            out["dyck_k"] = self.k
        return out
