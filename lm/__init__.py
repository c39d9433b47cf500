"""Proxy language model: model, presets, recipes, trainer, transfer, corpora, scores.

See docs/interfaces.md §3 for how `search/` uses it. Command lines: `python -m lm.cli --help`
(the stages, and `presets` to list the model sizes) and `python -m lm.bench`.
"""

from lm.checkpoint import load_checkpoint, save_checkpoint, save_pretrained
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
from lm.recipe import RECIPES, Recipe, get_recipe
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

__all__ = [
    "DOMAINS",
    "PRESETS",
    "RECIPES",
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
    "Recipe",
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
    "get_recipe",
    "load_checkpoint",
    "load_domain",
    "open_token_dataset",
    "parse_tokenizer_spec",
    "resolve_autocast",
    "save_checkpoint",
    "save_pretrained",
    "score",
    "tokens_to_reach",
    "train",
    "transfer",
    "write_token_dataset",
]
