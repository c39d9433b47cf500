"""Language domains (code, math, web) and their tokenised, cached corpora.

`load_domain` reads a source (see lm.sources), splits it into train, val and test by document
(``lm.sources.Splits``: val and test are fixed and never trained on; the test split is read only
by a study's confirmation phase), tokenises all three with the chosen tokenizer (a BPE is trained
on the train split only) and caches the token streams as .npy files under
`<cache_dir>/corpora/<key>/` with a manifest. The key hashes everything that decides the tokens:
the source's content, the tokenizer spec, the byte caps and the split rule. The directory is
built under a temporary name and renamed into place, so readers never see half of it.

Example:
    >>> corpus = load_domain("code")                      # offline: the Python stdlib
    >>> corpus = load_domain("web", source="../shared/data/web", tokenizer="bpe:4096")
    >>> corpus.train, corpus.val, corpus.test, corpus.bytes_per_token
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lm.data import TextDataset
from lm.sources import DEFAULT_SPLITS, SPLITS, HFSource, Source, SourceError, Splits, resolve_source
from lm.tokenizer import BPETokenizer, ByteTokenizer, Tokenizer, parse_tokenizer_spec, train_bpe
from ncaio import (
    CorruptCacheError,
    atomic_write_text,
    content_key,
    publish_dir,
    read_intact,
    sha256_file,
    staging_dir,
)

__all__ = ["DOMAINS", "Domain", "DomainCorpus", "default_cache_dir", "load_domain"]

_CORPUS_FORMAT = "ncasearch-corpus/3"  # /2: every file's sha256; /3: a test split
_ENCODE_BATCH_DOCS = 256
_BPE_TRAIN_BYTES = 32_000_000  # merges stabilise long before this; keeps training to seconds


@dataclass(frozen=True, kw_only=True, slots=True)
class Domain:
    """A language domain and where its data comes from by default."""

    name: str
    """Registry name."""
    hf_dataset: str
    """Hugging Face dataset streamed for source='hf'."""
    hf_text_field: str
    """Text field of that dataset's records."""
    builtin: str | None
    """Offline source used when no source is given (None: the user must point at data)."""


DOMAINS: dict[str, Domain] = {
    "code": Domain(name="code", hf_dataset="codeparrot/codeparrot-clean",
                   hf_text_field="content", builtin="stdlib"),
    "math": Domain(name="math", hf_dataset="open-web-math/open-web-math",
                   hf_text_field="text", builtin=None),
    "web": Domain(name="web", hf_dataset="Skylion007/openwebtext",
                  hf_text_field="text", builtin=None),
}


@dataclass(frozen=True, kw_only=True)
class DomainCorpus:
    """A tokenised domain corpus: train and val windows of `seq_len` tokens."""

    domain: str
    """Domain name."""
    key: str
    """Cache key (content address) of the token streams."""
    tokenizer: Tokenizer
    """The tokenizer that produced the streams."""
    train: TextDataset
    """Training windows."""
    val: TextDataset
    """Held-out windows (never trained on): curves, pruning and selection."""
    test: TextDataset
    """Held-out windows of other documents, read only by the confirmation phase."""
    manifest: dict[str, Any]
    """Source fingerprint, document/byte/token counts per split."""

    @property
    def bytes_per_token(self) -> float:
        """UTF-8 bytes per token of the val split (converts val loss to bits per byte)."""
        return self.val.bytes_per_token

    @property
    def vocab_size(self) -> int:
        """Tokenizer vocabulary size."""
        return self.tokenizer.vocab_size


def default_cache_dir() -> Path:
    """$NCASEARCH_CACHE, else ~/.cache/ncasearch."""
    return Path(os.environ.get("NCASEARCH_CACHE", Path.home() / ".cache" / "ncasearch"))


def _resolve(domain: Domain, source: str | Source | None, n_docs: int) -> Source:
    if source is None:
        if domain.builtin is None:
            raise SourceError(
                f"domain {domain.name!r} has no built-in corpus: point it at data with "
                f"--data PATH / source=PATH (JSONL with a 'text' field, text, Parquet or a "
                f"directory), or source='hf' to stream {domain.hf_dataset} (needs network)")
        source = domain.builtin
    if source == "hf":
        return HFSource(domain.hf_dataset, text_field=domain.hf_text_field, n_docs=n_docs)
    return resolve_source(source, n_docs=n_docs)


def _take(docs: Iterator, max_bytes: int | None) -> list[str]:
    texts, total = [], 0
    for doc in docs:
        if max_bytes is not None and total >= max_bytes:
            break
        texts.append(doc.text)
        total += len(doc.text.encode("utf-8"))
    return texts


def _prefix(texts: list[str], max_bytes: int) -> list[str]:
    out, total = [], 0
    for text in texts:
        if total >= max_bytes:
            break
        out.append(text)
        total += len(text)
    return out


def _encode(tok: Tokenizer, texts: list[str]) -> np.ndarray:
    parts = []
    eot = np.array([tok.eot_id], dtype=np.uint16)
    for start in range(0, len(texts), _ENCODE_BATCH_DOCS):
        for ids in tok.encode_batch(texts[start:start + _ENCODE_BATCH_DOCS]):
            parts += [ids, eot]
    return np.concatenate(parts) if parts else np.zeros(0, np.uint16)


def _build(out: Path, source: Source, tokenizer: str, splits: Splits,
           max_bytes: dict[str, int | None], seq_len: int) -> None:
    kind, vocab = parse_tokenizer_spec(tokenizer)
    texts = {s: _take(source.documents(s, splits), max_bytes[s]) for s in SPLITS}
    for split, docs in texts.items():  # a byte stream's length bounds every tokenizer's
        _check_length(split, source, sum(len(t.encode("utf-8")) + 1 for t in docs), seq_len)
    # only once the source was read: bad data writes nothing
    with staging_dir(out) as tmp:
        tok: Tokenizer = ByteTokenizer() if kind == "byte" else train_bpe(
            _prefix(texts["train"], _BPE_TRAIN_BYTES), vocab, tmp / "tokenizer.json")
        counts = {}
        for split, docs in texts.items():
            stream = _encode(tok, docs)
            _check_length(split, source, len(stream), seq_len)
            np.save(tmp / f"{split}.npy", stream)
            n_bytes = sum(len(t.encode("utf-8")) for t in docs)
            counts[split] = {"n_docs": len(docs), "n_bytes": n_bytes, "n_tokens": len(stream),
                             "bytes_per_token": n_bytes / len(stream)}
        files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        manifest = {"format": _CORPUS_FORMAT, "source": source.fingerprint(),
                    "tokenizer": tok.name, "vocab_size": tok.vocab_size,
                    "val_percent": splits.val_percent, "test_percent": splits.test_percent,
                    "max_bytes": max_bytes, "splits": counts, "files": files}
        atomic_write_text(tmp / "manifest.json", json.dumps(manifest, indent=1))
    if not publish_dir(tmp, out) and not (out / "manifest.json").is_file():
        raise OSError(f"cannot publish the corpus {str(out)!r}")  # another build won, or not


def _check_length(split: str, source: Source, n_tokens: int, seq_len: int) -> None:
    if n_tokens < seq_len:
        raise SourceError(f"the {split} split of {source.describe()} has {n_tokens} tokens "
                          f"(< one sequence of {seq_len}); give it more data")


def _verified_manifest(out: Path) -> dict[str, Any]:
    """The manifest of a built corpus, after checking every file against its recorded sha256.

    Raises:
        CorruptCacheError: the manifest is unreadable, or a file is missing or does not match.
    """
    try:
        manifest = json.loads((out / "manifest.json").read_text())
        files: dict[str, str] = manifest["files"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise CorruptCacheError(out, f"unreadable manifest.json ({type(exc).__name__})") from None
    for name, digest in files.items():
        if not (out / name).is_file() or sha256_file(out / name) != digest:
            raise CorruptCacheError(out, f"{name} does not match its recorded sha256")
    return manifest


def _cached_manifest(out: Path) -> dict[str, Any] | None:
    """The verified manifest of a cached corpus; None when absent or quarantined as damaged."""
    return read_intact(out, _verified_manifest, "corpus cache")


def load_domain(domain: str, source: str | Source | None = None, tokenizer: str = "byte", *,
                cache_dir: str | Path | None = None, seq_len: int = 257,
                max_train_bytes: int | None = None, max_val_bytes: int | None = None,
                splits: Splits = DEFAULT_SPLITS, n_docs: int = 20_000) -> DomainCorpus:
    """Load (building and caching on first use) a domain's tokenised corpus.

    Args:
        domain: "code", "math" or "web".
        source: None (the domain's built-in corpus: code only), "hf" (the domain's Hugging
            Face dataset), or a source string for lm.sources.resolve_source (a path, hf:NAME,
            stdlib), or a Source.
        tokenizer: "byte" or "bpe[:vocab_size]" (trained on the train split, cached).
        cache_dir: cache root; default `default_cache_dir()`.
        seq_len: tokens per window L of the returned datasets (not part of the cache key).
        max_train_bytes: stop reading train documents after this many UTF-8 bytes.
        max_val_bytes: same for val and for test.
        splits: how documents are split into train, val and test (lm.sources.Splits).
        n_docs: documents streamed from a Hugging Face source.

    Raises:
        ValueError: unknown domain or tokenizer; SourceError (a ValueError) when there is no
            data, with one line saying how to point at some.
    """
    if domain not in DOMAINS:
        raise ValueError(f"{domain!r} is not a domain; valid: {', '.join(DOMAINS)}")
    parse_tokenizer_spec(tokenizer)
    src = _resolve(DOMAINS[domain], source, n_docs)
    max_bytes = {"train": max_train_bytes, "val": max_val_bytes, "test": max_val_bytes}
    spec = {"format": _CORPUS_FORMAT, "source": src.fingerprint(), "tokenizer": tokenizer,
            "val_percent": splits.val_percent, "test_percent": splits.test_percent,
            "max_bytes": max_bytes}
    key = content_key(spec)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    out = root / "corpora" / key
    manifest = _cached_manifest(out)
    if manifest is None:
        _build(out, src, tokenizer, splits, max_bytes, seq_len)
        manifest = _verified_manifest(out)
    tok: Tokenizer = (ByteTokenizer() if tokenizer == "byte"
                      else BPETokenizer(out / "tokenizer.json"))
    data = {}
    for split in SPLITS:
        stream = np.load(out / f"{split}.npy", mmap_mode="r")
        bpt = manifest["splits"][split]["bytes_per_token"]
        data[split] = TextDataset(stream, tok.vocab_size, seq_len, bpt)
    return DomainCorpus(domain=domain, key=key, tokenizer=tok, train=data["train"],
                        val=data["val"], test=data["test"], manifest=manifest)
