"""Cache keys never change: each pinned value was computed by the hashers before they moved to
ncaio.

A changed key silently orphans every cached NCA dataset, checkpoint, baseline and corpus, so a
refactor of the hashing must keep these bytes exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# Key material with what the real keys hold: nesting, floats, a Path, numpy scalars, non-ASCII.
SPEC = {"b": [1, 2.5, "x"], "u": "é",
        "a": {"path": Path("/data/x.jsonl"), "n": np.int64(7), "f": np.float32(0.25)}}


def test_every_package_keys_with_the_one_content_hasher():
    """nca's datasets, lm's corpora and search's stages and work folders are keyed by
    ncaio.content_key (search used a variant that stringified numpy scalars until issue 28:
    its keys changed once then, with the corpus format)."""
    import ncaio
    from lm import corpora
    from nca import dataset
    from search import _leases, trial

    assert dataset.content_key is corpora.content_key is trial.content_key is \
        _leases.content_key is ncaio.content_key
    assert ncaio.content_key(SPEC) == "a2e4ae6f4bb5ffb11021"
    assert ncaio.content_key(SPEC, length=12) == "a2e4ae6f4bb5"


def test_file_digests_are_pinned(tmp_path):
    from nca.controls import file_sha256
    from ncaio import sha256_file

    path = tmp_path / "c.jsonl"
    path.write_bytes(b'{"text": "hello"}\n')
    want = "7cda9ec1f0842184c2f10f1b056ef625e75a4749c94b594d0a70c9eda7553262"
    assert file_sha256(path) == want and sha256_file(path) == want


def test_lm_split_buckets_are_pinned():
    from lm.sources import split_of

    assert [split_of(f"doc-{i}", 50) for i in range(8)] == \
        ["val", "train", "train", "train", "train", "val", "train", "train"]


def test_source_key_is_pinned(tmp_path):
    """The lm source hash of the plan keys (search.plan.lm_source_key) hashes names and bytes."""
    import ncaio

    (tmp_path / "a.py").write_bytes(b"x = 1\n")
    (tmp_path / "b.py").write_bytes("é = 2\n".encode())
    assert ncaio.source_key(sorted(tmp_path.glob("*.py"))) == "2fbcb30e364363ee"


def test_lm_source_key_hashes_every_lm_library_module():
    """Every module a trial can run, not the command lines (lm.cli, lm.bench, lm.bench_ranks:
    tests/test_imports checks nothing imports them); how it hashes them is pinned above."""
    import lm
    import ncaio
    from search.plan import lm_source_key

    files = [p for p in sorted(Path(lm.__file__).resolve().parent.glob("*.py"))
             if p.name not in ("bench.py", "bench_ranks.py", "cli.py")]
    assert lm_source_key() == ncaio.source_key(files)
    assert {"model.py", "trainer.py", "presets.py", "recipe.py"} <= {p.name for p in files}


def test_verified_json_checksum_and_token_digest_are_pinned(tmp_path):
    import json

    import ncaio

    ncaio.write_verified_json(tmp_path / "v.json", {"b": [1, 2.5], "a": {"x": "é"}})
    recorded = json.loads((tmp_path / "v.json").read_text())["sha256"]
    assert recorded == "9f06e087906196d72ba66fb9be19db5e447a16c8cede1d2d00cd0481da0ddeb8"
    # search.trial's corpus key
    tokens = np.ascontiguousarray(np.arange(5, dtype=np.uint16)).tobytes()
    assert ncaio.sha256_bytes(tokens) == \
        "092977d86764722166958b9307b445c3054aab39bd8f9dddc80363777cecc197"


def test_nca_code_version_hashes_every_generator_module():
    """lm's source key, over the modules that decide which tokens a build writes; each must
    exist (a renamed one would hash as empty and stop guarding the cache)."""
    import ncaio
    from nca import _util

    here = Path(_util.__file__).resolve().parent
    assert all((here / name).is_file() for name in _util._GENERATOR_MODULES)
    assert _util.code_version() == ncaio.source_key(here / name
                                                    for name in _util._GENERATOR_MODULES)
    assert {"rules.py", "rollout.py", "tokens.py", "dataset.py"} <= set(_util._GENERATOR_MODULES)
