"""Cache keys never change: each pinned value was computed by the hashers before they moved to ncaio.

A changed key silently orphans every cached NCA dataset, checkpoint, baseline and corpus, so a
refactor of the hashing must keep these bytes exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# Key material with what the real keys hold: nesting, floats, a Path, numpy scalars, non-ASCII.
SPEC = {"b": [1, 2.5, "x"], "u": "é",
        "a": {"path": Path("/data/x.jsonl"), "n": np.int64(7), "f": np.float32(0.25)}}


def test_nca_content_key_is_pinned():
    from nca._util import content_key

    assert content_key(SPEC) == "a2e4ae6f4bb5ffb11021"
    assert content_key(SPEC, length=12) == "a2e4ae6f4bb5"


def test_search_content_key_is_pinned():
    """search's keys stringify what JSON cannot hold (numpy scalars too), unlike nca's."""
    from search.plan import content_key

    assert content_key(SPEC) == "b3612fea653dcf9c9692"


def test_file_digests_are_pinned(tmp_path):
    from lm.data import _sha256
    from nca.controls import file_sha256

    path = tmp_path / "c.jsonl"
    path.write_bytes(b'{"text": "hello"}\n')
    want = "7cda9ec1f0842184c2f10f1b056ef625e75a4749c94b594d0a70c9eda7553262"
    assert file_sha256(path) == want and _sha256(path) == want


def test_lm_split_buckets_are_pinned():
    from lm.sources import split_of

    assert [split_of(f"doc-{i}", 50) for i in range(8)] == \
        ["val", "train", "train", "train", "train", "val", "train", "train"]
