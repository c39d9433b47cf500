"""Control sources with the NCA dataset interface: Dyck-k bracket sequences and natural text.

The paper compares NCA pre-pre-training against such controls; here they let a study ask
"NCA or not" with everything else equal.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ncaio import sha256_file

DYCK_MAX_DEPTH = 64
"""Deepest nesting in a Dyck sequence (a longer open run is forced to close)."""


def dyck_sequences(n: int, length: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Random Dyck-k sequences: each a prefix of a well-nested word over k bracket types.

    Token t < k opens bracket type t; token k + t closes it. At each position a sequence opens a
    random type with probability 1/2 or closes its innermost open bracket (it must open at depth
    0 and must close at `DYCK_MAX_DEPTH`), so every closing token is predictable from the prefix.

    Args:
        n: number of sequences.
        length: tokens per sequence.
        k: bracket types (vocabulary 2k).
        rng: the only source of randomness.

    Returns:
        (n, length) int64 tokens in [0, 2k).
    """
    out = np.empty((n, length), dtype=np.int64)
    stack = np.zeros((n, DYCK_MAX_DEPTH), dtype=np.int64)
    depth = np.zeros(n, dtype=np.int64)
    rows = np.arange(n)
    for t in range(length):  # a loop over positions, vectorised over sequences
        kinds = rng.integers(0, k, size=n)
        opens = (depth == 0) | ((depth < DYCK_MAX_DEPTH) & (rng.random(n) < 0.5))
        top = stack[rows, np.maximum(depth - 1, 0)]
        out[:, t] = np.where(opens, kinds, k + top)
        stack[rows[opens], depth[opens]] = kinds[opens]
        depth += np.where(opens, 1, -1)
    return out


def check_dyck(tokens: np.ndarray, k: int) -> bool:
    """Whether every closing token of a sequence closes its innermost open bracket."""
    stack: list[int] = []
    for tok in np.asarray(tokens).tolist():
        if tok < k:
            stack.append(tok)
        elif not stack or stack.pop() != tok - k:
            return False
    return True


def _corpus_file(path: Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"text corpus {str(path)!r} is not a file; accepted: JSONL or UTF-8 text")
    return path


def read_corpus(path: Path) -> bytes:
    """UTF-8 bytes of a corpus: JSONL documents' "text" fields joined by newlines, or a text file.

    Raises:
        ValueError: the file is missing, empty, or a JSONL line has no string "text" field.
    """
    path = _corpus_file(path)
    raw = path.read_bytes()
    if path.suffix == ".jsonl":
        docs = []
        for i, line in enumerate(raw.splitlines()):
            if not line.strip():
                continue
            try:
                text = json.loads(line).get("text")
            except (ValueError, AttributeError):  # not JSON, or JSON but not an object
                text = None
            if type(text) is not str:  # a data error, not a caller's type error
                raise ValueError(f"{path}:{i + 1} has no string 'text' field")
            docs.append(text.encode("utf-8"))
        raw = b"\n".join(docs)
    if not raw:
        raise ValueError(f"text corpus {str(path)!r} is empty")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"text corpus {str(path)!r} is not UTF-8 text (byte "
                         f"0x{raw[err.start]:02x} at offset {err.start}); accepted: JSONL or "
                         "UTF-8 text") from None
    return raw


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file (the text control's cache identity is its content, not its path)."""
    return sha256_file(_corpus_file(path))


def text_splits(corpus: bytes, length: int, n_train: int,
                n_val: int) -> tuple[np.ndarray, np.ndarray]:
    """Byte sequences: training from the start of the corpus, held-out from its end.

    Returns:
        (n_train, length) and (n_val, length) int64 byte tokens.

    Raises:
        ValueError: the corpus is shorter than (n_train + n_val) * length bytes.
    """
    need = (n_train + n_val) * length
    if len(corpus) < need:
        raise ValueError(f"text corpus has {len(corpus)} bytes; {need} needed for {n_train} "
                         f"training and {n_val} held-out sequences of {length} bytes")
    data = np.frombuffer(corpus, dtype=np.uint8)
    train = data[: n_train * length].reshape(n_train, length)
    val = data[len(data) - n_val * length :].reshape(n_val, length)
    return train.astype(np.int64), val.astype(np.int64)
