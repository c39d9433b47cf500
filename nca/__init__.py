"""NCA data engine: the paper's neural cellular automata, as fast, bounded, cached token data.

Example:
    >>> from pathlib import Path
    >>> from nca import Band, Curriculum, DataSpec, NCAConfig, build
    >>> spec = DataSpec(source="nca", curriculum=Curriculum.constant(NCAConfig(), Band(0.5, 1.0)))
    >>> built = build(spec, n_tokens=2_000_000, cache_dir=Path("cache"), seed=0)  # doctest: +SKIP
"""

from nca.bank import RuleSelection, ScoreStream, select_rules
from nca.complexity import (
    MEASURES,
    ChangeRate,
    ComplexityMeasure,
    GzipRatio,
    get_measure,
    gzip_ratio,
)
from nca.config import PAPER_BANDS, Band, BandUnreachableError, NCAConfig, Stage
from nca.controls import dyck_sequences, read_corpus
from nca.curriculum import FAMILIES, Curriculum
from nca.dataset import BuiltDataset, build, dataset_key, layout
from nca.profiles import ComplexityProfile, complexity_profile
from nca.rollout import initial_states, make_generator, rollout
from nca.rules import RuleParams, reference_logits, sample_rules
from nca.spec import DataSpec
from nca.store import TokenDataset, verify
from nca.tokens import decode, frame_sequences, patch_tokens

__all__ = [
    "FAMILIES",
    "MEASURES",
    "PAPER_BANDS",
    "Band",
    "BandUnreachableError",
    "BuiltDataset",
    "ChangeRate",
    "ComplexityMeasure",
    "ComplexityProfile",
    "Curriculum",
    "DataSpec",
    "GzipRatio",
    "NCAConfig",
    "RuleParams",
    "RuleSelection",
    "ScoreStream",
    "Stage",
    "TokenDataset",
    "build",
    "complexity_profile",
    "dataset_key",
    "decode",
    "dyck_sequences",
    "frame_sequences",
    "get_measure",
    "gzip_ratio",
    "initial_states",
    "layout",
    "make_generator",
    "patch_tokens",
    "read_corpus",
    "reference_logits",
    "rollout",
    "sample_rules",
    "select_rules",
    "verify",
]
