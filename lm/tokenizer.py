"""Text tokenizers: byte-level (default, nothing to train) and BPE trained locally.

Both append an end-of-text token after every document, so documents never run into each other
unmarked. A BPE tokenizer is trained with the `tokenizers` library on the training split only and
cached as JSON under a key that names its training data and vocabulary size.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import IO, Protocol

import numpy as np

from ncaio import CorruptCacheError, report_corrupt, save_verified, verify_file

__all__ = ["BPETokenizer", "ByteTokenizer", "Tokenizer", "parse_tokenizer_spec", "train_bpe"]

EOT = "<|endoftext|>"
_MAX_BPE_VOCAB = 65_536  # keeps token streams in uint16


class Tokenizer(Protocol):
    """What the corpus builder needs from a tokenizer."""

    @property
    def name(self) -> str:
        """Short name recorded in manifests, e.g. 'byte' or 'bpe4096'."""
        ...

    @property
    def vocab_size(self) -> int:
        """Token ids are in [0, vocab_size)."""
        ...

    @property
    def eot_id(self) -> int:
        """The end-of-text token appended after each document."""
        ...

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]: ...

    def decode(self, ids: Iterable[int]) -> str: ...


class ByteTokenizer:
    """UTF-8 bytes 0..255 plus end-of-text 256."""

    name = "byte"
    vocab_size = 257
    eot_id = 256

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        return [np.frombuffer(t.encode("utf-8"), dtype=np.uint8).astype(np.uint16) for t in texts]

    def decode(self, ids: Iterable[int]) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


class BPETokenizer:
    """A byte-level BPE tokenizer (GPT-2 style pre-tokenisation) from `tokenizers`."""

    def __init__(self, path: str | Path) -> None:
        from tokenizers import Tokenizer as _HFTokenizer

        self.path = Path(path)
        self._tok = _HFTokenizer.from_file(str(self.path))
        self.vocab_size = self._tok.get_vocab_size()
        eot = self._tok.token_to_id(EOT)
        if eot is None:
            raise ValueError(f"{str(self.path)!r} has no {EOT} token: not one of ours")
        self.eot_id: int = eot
        self.name = f"bpe{self.vocab_size}"

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        return [np.asarray(e.ids, dtype=np.uint16) for e in self._tok.encode_batch(texts)]

    def decode(self, ids: Iterable[int]) -> str:
        return self._tok.decode([int(i) for i in ids])


def parse_tokenizer_spec(spec: str) -> tuple[str, int]:
    """'byte' → ('byte', 257); 'bpe' → ('bpe', 4096); 'bpe:N' → ('bpe', N).

    Raises:
        ValueError: anything else.
    """
    if spec == "byte":
        return "byte", ByteTokenizer.vocab_size
    kind, _, size = spec.partition(":")
    if kind == "bpe":
        try:
            n = int(size) if size else 4096
        except ValueError:
            n = -1
        if 260 <= n <= _MAX_BPE_VOCAB:
            return "bpe", n
    raise ValueError(f"{spec!r} is not a tokenizer; valid: 'byte', 'bpe', 'bpe:N' "
                     f"(260 <= N <= {_MAX_BPE_VOCAB})")


def train_bpe(texts: Iterable[str], vocab_size: int, path: str | Path) -> BPETokenizer:
    """Train a byte-level BPE on `texts` and save it atomically to `path`; reuse it if present.

    The caller makes `path` unique to (training texts, vocab_size): see lm.corpora. A cached
    file is verified against its sha256 sidecar; a damaged one is quarantined and retrained.
    """
    path = Path(path)
    if path.is_file():
        try:
            verify_file(path)
            return BPETokenizer(path)
        except CorruptCacheError as exc:
            report_corrupt(exc, "tokenizer")
    from tokenizers import Tokenizer as _HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = _HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOT],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    save_verified(path, lambda f: _write_all(f, tok.to_str().encode("utf-8")))
    return BPETokenizer(path)


def _write_all(f: IO[bytes], data: bytes) -> None:
    f.write(data)
