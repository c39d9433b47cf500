"""Proxy language model: model, presets, trainer, transfer, corpora, scores.

See docs/interfaces.md §3 for how `search/` uses it. Command lines: `python -m lm.train --help`,
`python -m lm.presets`, `python -m lm.bench`.

Names are imported on first use (PEP 562), so `python -m lm.<module>` runs a module that the
package has not imported yet.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "BPETokenizer": "lm.tokenizer",
    "ByteTokenizer": "lm.tokenizer",
    "DOMAINS": "lm.corpora",
    "DivergenceError": "lm.trainer",
    "Document": "lm.sources",
    "Domain": "lm.corpora",
    "DomainCorpus": "lm.corpora",
    "HFSource": "lm.sources",
    "LocalSource": "lm.sources",
    "ModelConfig": "lm.model",
    "PRESETS": "lm.presets",
    "Preset": "lm.presets",
    "Scores": "lm.scores",
    "SequenceDataset": "lm.data",
    "Source": "lm.sources",
    "SourceError": "lm.sources",
    "StdlibSource": "lm.sources",
    "TextDataset": "lm.data",
    "TokenArrayDataset": "lm.data",
    "TrainConfig": "lm.trainer",
    "TrainResult": "lm.trainer",
    "TrainingInterrupted": "lm.trainer",
    "TransferConfig": "lm.transfer",
    "TransferReport": "lm.transfer",
    "Transformer": "lm.model",
    "UpstreamDiagnostic": "lm.diagnose",
    "build_model": "lm.presets",
    "default_cache_dir": "lm.corpora",
    "diagnose": "lm.diagnose",
    "evaluate": "lm.trainer",
    "get_preset": "lm.presets",
    "load_checkpoint": "lm.checkpoint",
    "load_domain": "lm.corpora",
    "open_token_dataset": "lm.data",
    "parse_tokenizer_spec": "lm.tokenizer",
    "resolve_autocast": "lm.trainer",
    "save_checkpoint": "lm.checkpoint",
    "score": "lm.scores",
    "tokens_to_reach": "lm.scores",
    "train": "lm.trainer",
    "transfer": "lm.transfer",
    "write_token_dataset": "lm.data",
}

__all__ = [
    "DOMAINS",
    "PRESETS",
    "BPETokenizer",
    "ByteTokenizer",
    "DivergenceError",
    "Document",
    "Domain",
    "DomainCorpus",
    "HFSource",
    "LocalSource",
    "ModelConfig",
    "Preset",
    "Scores",
    "SequenceDataset",
    "Source",
    "SourceError",
    "StdlibSource",
    "TextDataset",
    "TokenArrayDataset",
    "TrainConfig",
    "TrainResult",
    "TrainingInterrupted",
    "TransferConfig",
    "TransferReport",
    "Transformer",
    "UpstreamDiagnostic",
    "build_model",
    "default_cache_dir",
    "diagnose",
    "evaluate",
    "get_preset",
    "load_checkpoint",
    "load_domain",
    "open_token_dataset",
    "parse_tokenizer_spec",
    "resolve_autocast",
    "save_checkpoint",
    "score",
    "tokens_to_reach",
    "train",
    "transfer",
    "write_token_dataset",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lm' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
    from lm.checkpoint import load_checkpoint, save_checkpoint
    from lm.corpora import DOMAINS, Domain, DomainCorpus, default_cache_dir, load_domain
    from lm.data import (
        SequenceDataset,
        TextDataset,
        TokenArrayDataset,
        open_token_dataset,
        write_token_dataset,
    )
    from lm.diagnose import UpstreamDiagnostic, diagnose
    from lm.model import ModelConfig, Transformer
    from lm.presets import PRESETS, Preset, build_model, get_preset
    from lm.scores import Scores, score, tokens_to_reach
    from lm.sources import Document, HFSource, LocalSource, Source, SourceError, StdlibSource
    from lm.tokenizer import BPETokenizer, ByteTokenizer, parse_tokenizer_spec
    from lm.trainer import (
        DivergenceError,
        TrainConfig,
        TrainingInterrupted,
        TrainResult,
        evaluate,
        resolve_autocast,
        train,
    )
    from lm.transfer import TransferConfig, TransferReport, transfer
