"""Where domain text comes from: local files, Hugging Face datasets, the Python stdlib.

A source yields `Document(id, text)`s, each in one of three splits (``Splits``): **val** by a
hash of the document id (about ``val_percent`` %), **test** by a hash of the document's text
(about ``test_percent`` % of the rest), **train** the rest. The splits are fixed whatever order
or subset is read, disjoint by document, and the test split by content: a document keeps its
split wherever its file lies, and exact copies of one text share it. A directory that already
holds `train.*` and `valid.*` (or `val.*`, `validation.*`) files keeps that val split, and takes
its test split from the train file's documents (or from a `test.*` file, when it has one).

Source strings accepted by `resolve_source`:

- a path: a `.jsonl`/`.json` file (one JSON object per line with a text field), a `.parquet`
  file (a text column), any other text file (documents = blocks between blank lines), or a
  directory (each JSONL/Parquet inside contributes its records, every other UTF-8 file is one
  document; hidden entries and `__pycache__` are skipped; `train.{jsonl,json,parquet,txt}`
  next to `valid.*` is taken as a ready-made split);
- `hf:NAME` or `hf:NAME:CONFIG`: a Hugging Face dataset, streamed, first `n_docs` documents
  (needs the network and `pip install datasets`);
- `stdlib`: the running interpreter's standard-library sources, tests excluded (code only).
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ncaio import content_key, sha256_file

__all__ = [
    "DEFAULT_SPLITS",
    "SPLITS",
    "Document",
    "HFSource",
    "LocalSource",
    "Source",
    "SourceError",
    "Splits",
    "StdlibSource",
    "in_test",
    "resolve_source",
    "split_of",
]

_VAL_NAMES = ("valid", "val", "validation")
_TEST_NAMES = ("test",)
SPLITS = ("train", "val", "test")
_STDLIB_SKIP = {"site-packages", "__pycache__", "test", "tests", "idle_test"}


class SourceError(ValueError):
    """A source that cannot be read (missing path, bad record, no network...)."""


@dataclass(frozen=True, slots=True)
class Document:
    id: str
    """Stable identity (path, path:line, dataset:index): decides the split."""
    text: str
    """The document's text."""


def split_of(doc_id: str, val_percent: int) -> str:
    """'val' for about val_percent % of ids (by sha256), else 'train'."""
    bucket = int(hashlib.sha256(doc_id.encode("utf-8")).hexdigest()[:8], 16) % 100
    return "val" if bucket < val_percent else "train"


def in_test(text: str, test_percent: int) -> bool:
    """True for about test_percent % of texts (by a sha256 of the text itself)."""
    digest = hashlib.sha256(b"test-split:" + text.encode("utf-8")).hexdigest()
    return int(digest[:8], 16) % 100 < test_percent


@dataclass(frozen=True, kw_only=True, slots=True)
class Splits:
    """How documents are split three ways (see the module docstring)."""

    val_percent: int = 10
    """% of documents (by id) held out for validation: curves, pruning, selection."""
    test_percent: int = 10
    """% of the other documents (by text) held out for the test split, which only the
    confirmation phase reads."""

    def __post_init__(self) -> None:
        for name in ("val_percent", "test_percent"):
            value = getattr(self, name)
            if type(value) is not int or not 0 < value < 100:
                raise ValueError(f"{name}={value!r}: expected an integer with 0 < {name} < 100")

    def of(self, doc: Document) -> str:
        """``train``, ``val`` or ``test``."""
        if split_of(doc.id, self.val_percent) == "val":
            return "val"
        return "test" if in_test(doc.text, self.test_percent) else "train"


DEFAULT_SPLITS = Splits()
"""10% of documents for val, 10% of the rest for test."""


class Source:
    """Base class: `documents(split, splits)` yields the documents of one split."""

    def fingerprint(self) -> dict[str, Any]:
        """What identifies the content, for cache keys."""
        raise NotImplementedError

    def describe(self) -> str:
        """Where the documents come from, for messages."""
        raise NotImplementedError

    def documents(self, split: str, splits: Splits) -> Iterator[Document]:
        for doc in self._all():
            if splits.of(doc) == split:
                yield doc

    def _all(self) -> Iterator[Document]:
        raise NotImplementedError


def _read_jsonl(path: Path, text_field: str, rel: str) -> Iterator[Document]:
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise SourceError(f"{str(path)!r} line {i + 1}: not JSON ({err.msg})") from None
            if not isinstance(record, dict) or not isinstance(record.get(text_field), str):
                keys = sorted(record) if isinstance(record, dict) else type(record).__name__
                raise SourceError(f"{str(path)!r} line {i + 1}: no string field "
                                  f"{text_field!r} (has {keys})")
            yield Document(f"{rel}:{i}", record[text_field])


def _read_parquet(path: Path, text_field: str, rel: str) -> Iterator[Document]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    if text_field not in pf.schema_arrow.names:
        raise SourceError(f"{str(path)!r}: no column {text_field!r} "
                          f"(has {pf.schema_arrow.names})")
    i = 0
    for batch in pf.iter_batches(columns=[text_field], batch_size=1024):
        for text in batch.column(0).to_pylist():
            if text is not None:
                yield Document(f"{rel}:{i}", text)
            i += 1


def _read_text_blocks(path: Path, rel: str) -> Iterator[Document]:
    text = path.read_text(encoding="utf-8")
    for i, block in enumerate(re.split(r"\n\s*\n", text)):
        if block.strip():
            yield Document(f"{rel}:{i}", block)


def _is_split_file(path: Path) -> bool:
    return path.suffix in (".jsonl", ".json", ".parquet", ".txt")


class LocalSource(Source):
    """Files on disk (see the module docstring for the layouts)."""

    def __init__(self, path: str | Path, *, text_field: str = "text") -> None:
        self.path = Path(path).expanduser().resolve()
        if not self.path.exists():
            raise SourceError(f"no such file or directory: {str(path)!r}")
        self.text_field = text_field
        self.fixed = self._fixed_splits() if self.path.is_dir() else None

    def _fixed_splits(self) -> dict[str, Path] | None:
        files = {p.stem: p for p in self.path.iterdir() if p.is_file() and _is_split_file(p)}
        val = next((files[n] for n in _VAL_NAMES if n in files), None)
        if "train" not in files or val is None:
            return None
        test = next((files[n] for n in _TEST_NAMES if n in files), None)
        return {"train": files["train"], "val": val} | ({"test": test} if test else {})

    def _files(self) -> list[Path]:
        if self.path.is_file():
            return [self.path]
        return sorted(p for p in self.path.rglob("*") if p.is_file() and not any(
            part.startswith(".") or part == "__pycache__"
            for part in p.relative_to(self.path).parts))

    def fingerprint(self) -> dict[str, Any]:
        """The files' names (relative to the source: they name the documents, which decide the
        split) and contents, never where they lie or when they were written: a file replaced in
        place is new data, a copy elsewhere is the same data."""
        files = list(self.fixed.values()) if self.fixed else self._files()
        base = self.path if self.path.is_dir() else self.path.parent
        contents = [(str(p.relative_to(base)), sha256_file(p)) for p in files]
        return {"kind": "local", "text_field": self.text_field,
                "files": content_key(contents, length=64)}

    def describe(self) -> str:
        return repr(str(self.path))

    def documents(self, split: str, splits: Splits) -> Iterator[Document]:
        if self.fixed is None:
            yield from super().documents(split, splits)
        elif split in self.fixed:
            if split == "train" and "test" not in self.fixed:
                yield from (d for d in self._read(self.fixed["train"], self.fixed["train"].name)
                            if not in_test(d.text, splits.test_percent))
            else:
                yield from self._read(self.fixed[split], self.fixed[split].name)
        else:  # test, taken from the train file's documents
            yield from (d for d in self._read(self.fixed["train"], self.fixed["train"].name)
                        if in_test(d.text, splits.test_percent))

    def _read(self, path: Path, rel: str) -> Iterator[Document]:
        try:
            yield from self._read_any(path, rel)
        except UnicodeDecodeError as err:
            raise SourceError(
                f"{str(path)!r} is not UTF-8 text (it holds byte 0x{err.object[err.start]:02x}); "
                f"accepted: UTF-8 text, JSONL with a {self.text_field!r} field, "
                f"Parquet, or a folder of such files") from None

    def _read_any(self, path: Path, rel: str) -> Iterator[Document]:
        if path.suffix in (".jsonl", ".json"):
            yield from _read_jsonl(path, self.text_field, rel)
        elif path.suffix == ".parquet":
            yield from _read_parquet(path, self.text_field, rel)
        elif self.path.is_file():
            yield from _read_text_blocks(path, rel)
        else:
            data = path.read_bytes()
            if b"\0" not in data:
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError:
                    pass  # binary or non-UTF-8 files are not text documents
                else:
                    yield Document(rel, text)

    def _all(self) -> Iterator[Document]:
        for path in self._files():
            rel = path.name if self.path.is_file() else str(path.relative_to(self.path))
            yield from self._read(path, rel)


class HFSource(Source):
    """A Hugging Face dataset through `datasets` in streaming mode: the first `n_docs` records.

    `name` may also be a builder like "json" or "parquet" with `data_files` (works offline).
    """

    def __init__(self, name: str, *, config: str | None = None, data_files: str | None = None,
                 text_field: str = "text", n_docs: int = 20_000, split: str = "train") -> None:
        self.name, self.config, self.data_files = name, config, data_files
        self.text_field, self.n_docs, self.split = text_field, n_docs, split

    def fingerprint(self) -> dict[str, Any]:
        return {"kind": "hf", "name": self.name, "config": self.config,
                "data_files": self.data_files, "text_field": self.text_field,
                "n_docs": self.n_docs, "split": self.split}

    def describe(self) -> str:
        return f"hf:{self.name}"

    def _all(self) -> Iterator[Document]:
        try:
            import datasets
        except ImportError:
            raise SourceError(f"hf:{self.name} needs the `datasets` package: "
                              "pip install 'ncasearch[hf]'") from None
        try:
            ds = datasets.load_dataset(self.name, self.config, data_files=self.data_files,
                                       split=self.split, streaming=True)
        except Exception as err:  # datasets raises many types for offline/missing data
            first = str(err).splitlines()[0] if str(err) else ""
            raise SourceError(f"cannot load hf:{self.name} ({type(err).__name__}: {first}); "
                              "without network pass a local path instead") from err
        for i, record in enumerate(ds):
            if i >= self.n_docs:
                break
            text = record.get(self.text_field)
            if not isinstance(text, str):
                raise SourceError(f"hf:{self.name} record {i}: no string field "
                                  f"{self.text_field!r} (has {sorted(record)})")
            yield Document(f"{self.name}:{i}", text)


class StdlibSource(Source):
    """The running interpreter's standard-library `.py` files, tests excluded; split by file."""

    def __init__(self) -> None:
        self.root = Path(sysconfig.get_paths()["stdlib"])

    def fingerprint(self) -> dict[str, Any]:
        return {"kind": "stdlib", "root": str(self.root), "version": sys.version}

    def describe(self) -> str:
        return f"the Python {sys.version.split()[0]} standard library"

    def _all(self) -> Iterator[Document]:
        for path in sorted(self.root.rglob("*.py")):
            rel = path.relative_to(self.root)
            if _STDLIB_SKIP.intersection(rel.parts):
                continue
            try:
                yield Document(str(rel), path.read_text(encoding="utf-8"))
            except UnicodeDecodeError:
                continue  # a few stdlib files are deliberately in other encodings


def resolve_source(spec: str | Source, *, text_field: str = "text", n_docs: int = 20_000
                   ) -> Source:
    """Turn a source string (see module docstring) into a Source; Sources pass through."""
    if isinstance(spec, Source):
        return spec
    if spec == "stdlib":
        return StdlibSource()
    if spec.startswith("hf:"):
        name, _, config = spec[3:].partition(":")
        if not name:
            raise SourceError(f"{spec!r}: expected hf:NAME or hf:NAME:CONFIG")
        return HFSource(name, config=config or None, text_field=text_field, n_docs=n_docs)
    return LocalSource(spec, text_field=text_field)
