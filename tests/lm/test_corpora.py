from __future__ import annotations

import json

import numpy as np
import pytest

import lm.corpora
from lm.corpora import load_domain
from lm.sources import (
    HFSource,
    LocalSource,
    SourceError,
    Splits,
    StdlibSource,
    in_test,
    resolve_source,
    split_of,
)

DOCS = [f"def f{i}(x):\n    return x * {i}\n" * (1 + i % 3) for i in range(60)]


def _write_jsonl(path, texts, field="text"):
    path.write_text("".join(json.dumps({field: t, "n": i}) + "\n" for i, t in enumerate(texts)))
    return path


def _stream_text(corpus, split):
    ds = getattr(corpus, split)
    return corpus.tokenizer.decode(ds.stream[:].tolist())


def test_code_sample_keeps_its_own_split(shared_data, tmp_path):
    corpus = load_domain("code", source=str(shared_data / "code"), cache_dir=tmp_path)
    splits = corpus.manifest["splits"]
    # data README: 563 train and 56 valid documents; the test split comes out of train
    assert splits["train"]["n_docs"] + splits["test"]["n_docs"] == 563
    assert 0.05 < splits["test"]["n_docs"] / 563 < 0.15 and splits["val"]["n_docs"] == 56
    assert splits["val"]["n_bytes"] == 610003
    assert corpus.train.seq_len == 257 and corpus.vocab_size == 257
    assert 0.99 < corpus.bytes_per_token < 1.0  # one end-of-text token per document
    tokens, mask = corpus.val.get(np.array([0, 1]))
    assert tokens.shape == (2, 257) and mask.all() and tokens[0, -1] == tokens[1, 0]


def _docs(corpus, split):
    """The documents of a byte-tokenised split (each ends in the end-of-text token)."""
    tokens = corpus.__getattribute__(split).stream[:].tolist()
    docs, current = [], []
    for t in tokens:
        if t == corpus.tokenizer.eot_id:
            docs.append(bytes(current).decode("utf-8"))
            current = []
        else:
            current.append(t)
    return docs


def test_hash_split_is_by_document_and_disjoint(tmp_path):
    src = _write_jsonl(tmp_path / "docs.jsonl", DOCS)
    corpus = load_domain("web", source=str(src), cache_dir=tmp_path / "cache", seq_len=17,
                         splits=Splits(val_percent=20, test_percent=25))
    want_val = [d for i, d in enumerate(DOCS) if split_of(f"docs.jsonl:{i}", 20) == "val"]
    rest = [d for d in DOCS if d not in want_val]
    want_test = [d for d in rest if in_test(d, 25)]
    assert len(want_val) > 0 and 0 < len(want_test) < len(rest)
    assert _docs(corpus, "val") == want_val and _docs(corpus, "test") == want_test
    assert _docs(corpus, "train") == [d for d in rest if d not in want_test]


@pytest.mark.parametrize("domain", ["code", "math", "web"])
def test_test_split_is_disjoint_from_train_and_val_by_document(shared_data, tmp_path, domain):
    """Every shared corpus: each document in exactly one split, by its text; the test split is
    fixed by content (the same documents in another order and folder give the same split)."""
    corpus = load_domain(domain, source=str(shared_data / domain), cache_dir=tmp_path / "c")
    docs = {split: _docs(corpus, split) for split in ("train", "val", "test")}
    sets = {split: set(d) for split, d in docs.items()}
    assert not sets["train"] & sets["test"] and not sets["val"] & sets["test"]
    assert not sets["train"] & sets["val"]
    assert corpus.manifest["splits"]["test"]["n_docs"] == len(docs["test"]) > 0
    moved = tmp_path / "elsewhere" / domain
    moved.mkdir(parents=True)
    for name in ("train.jsonl", "valid.jsonl"):  # the same documents, reversed
        lines = (shared_data / domain / name).read_text().splitlines(keepends=True)
        (moved / name).write_text("".join(reversed(lines)))
    again = load_domain(domain, source=str(moved), cache_dir=tmp_path / "c2")
    assert sorted(_docs(again, "test")) == sorted(docs["test"])


def test_cache_is_reused_and_content_addressed(tmp_path, monkeypatch):
    src = _write_jsonl(tmp_path / "docs.jsonl", DOCS)
    a = load_domain("math", source=str(src), cache_dir=tmp_path / "c", seq_len=17)
    monkeypatch.setattr(lm.corpora, "_build", lambda *a, **k: pytest.fail("rebuilt"))
    b = load_domain("math", source=str(src), cache_dir=tmp_path / "c", seq_len=33)
    assert a.key == b.key and b.train.seq_len == 33
    monkeypatch.undo()
    _write_jsonl(src, DOCS[:-1])  # new content → new key
    c = load_domain("math", source=str(src), cache_dir=tmp_path / "c", seq_len=17)
    assert c.key != a.key
    assert sorted(p.name for p in (tmp_path / "c" / "corpora").iterdir()) == sorted([a.key, c.key])


def test_bpe_is_trained_on_train_only_and_cached(shared_data, tmp_path, monkeypatch):
    kwargs = {"source": str(shared_data / "code"), "tokenizer": "bpe:512", "cache_dir": tmp_path,
                  "max_train_bytes": 300_000, "max_val_bytes": 50_000}
    corpus = load_domain("code", **kwargs)
    assert corpus.vocab_size == 512 and corpus.tokenizer.name == "bpe512"
    assert corpus.bytes_per_token > 2.0  # merges learned: fewer tokens than bytes
    text = "def main():\n    return 0\n"
    assert corpus.tokenizer.decode(corpus.tokenizer.encode_batch([text])[0].tolist()) == text
    monkeypatch.setattr(lm.corpora, "train_bpe", lambda *a, **k: pytest.fail("retrained"))
    again = load_domain("code", **kwargs)
    assert again.key == corpus.key and again.vocab_size == 512


def test_math_and_web_without_data_say_how_to_point_at_some(tmp_path):
    for domain in ("math", "web"):
        with pytest.raises(SourceError) as err:
            load_domain(domain, cache_dir=tmp_path)
        message = str(err.value)
        assert "\n" not in message and "--data PATH" in message and "hf" in message


@pytest.mark.parametrize("kwargs,match", [
    ({"domain": "poetry"}, "'poetry' is not a domain"),
    ({"domain": "code", "tokenizer": "wordpiece"}, "'wordpiece' is not a tokenizer"),
    ({"domain": "code", "tokenizer": "bpe:10"}, "not a tokenizer"),
    ({"domain": "code", "source": "/nonexistent/file.jsonl"}, "no such file"),
    ])
def test_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_domain(cache_dir=tmp_path, **kwargs)


@pytest.mark.parametrize("kwargs", [{"val_percent": 0}, {"test_percent": 100},
                                    {"test_percent": 2.5}])
def test_bad_splits(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        Splits(**kwargs)


def test_missing_text_field_names_file_line_and_keys(tmp_path):
    src = _write_jsonl(tmp_path / "docs.jsonl", DOCS, field="content")
    with pytest.raises(SourceError, match=r"docs.jsonl' line 1: no string field 'text'.*content"):
        load_domain("web", source=str(src), cache_dir=tmp_path)


def test_too_little_data_is_refused(tmp_path):
    src = _write_jsonl(tmp_path / "docs.jsonl", ["tiny"] * 3)
    with pytest.raises(SourceError, match="tokens"):
        load_domain("web", source=str(src), cache_dir=tmp_path)


def _ids_and_texts(source, split, val_percent=10):
    return [(d.id, d.text) for d in source.documents(split, Splits(val_percent=val_percent))]


def test_local_formats(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": DOCS[:5], "other": list(range(5))}), tmp_path / "d.parquet")
    docs = list(LocalSource(tmp_path / "d.parquet")._all())
    assert [d.text for d in docs] == DOCS[:5] and docs[0].id == "d.parquet:0"

    (tmp_path / "plain.txt").write_text("first block\nstill first\n\n\nsecond\n")
    assert [d.text for d in LocalSource(tmp_path / "plain.txt")._all()] == [
        "first block\nstill first", "second\n"]

    tree = tmp_path / "repo"
    (tree / "pkg" / "__pycache__").mkdir(parents=True)
    (tree / "pkg" / "a.py").write_text("a = 1\n")
    (tree / "b.md").write_text("# b\n")
    (tree / "pkg" / "__pycache__" / "a.pyc").write_bytes(b"\0\1")
    (tree / "blob.bin").write_bytes(b"\xff\xfe\0")
    (tree / ".hidden").write_text("no")
    docs = {d.id: d.text for d in LocalSource(tree)._all()}
    assert docs == {"b.md": "# b\n", "pkg/a.py": "a = 1\n"}


def test_directory_with_train_and_valid_files_keeps_them(tmp_path):
    _write_jsonl(tmp_path / "train.jsonl", DOCS[:10])
    _write_jsonl(tmp_path / "valid.jsonl", DOCS[10:12])
    src = resolve_source(str(tmp_path))
    assert [t for _, t in _ids_and_texts(src, "val")] == DOCS[10:12]
    train, test = _ids_and_texts(src, "train"), _ids_and_texts(src, "test")
    assert sorted(t for _, t in train + test) == sorted(DOCS[:10])  # test comes out of train
    assert [t for _, t in test] == [d for d in DOCS[:10] if in_test(d, 10)]
    _write_jsonl(tmp_path / "test.jsonl", DOCS[12:14])  # a test file of its own is kept
    src = resolve_source(str(tmp_path))
    assert [t for _, t in _ids_and_texts(src, "test")] == DOCS[12:14]
    assert len(_ids_and_texts(src, "train")) == 10


def test_stdlib_corpus_splits_by_file_deterministically():
    src = StdlibSource()
    val = _ids_and_texts(src, "val")
    assert val == _ids_and_texts(src, "val") and len(val) > 20
    assert all(split_of(i, 10) == "val" and i.endswith(".py") for i, _ in val)
    assert not any(i.startswith("test/") for i, _ in val)


def test_datasets_loader_on_a_local_file(tmp_path):
    pytest.importorskip("datasets", reason="the optional `datasets` package is not installed")
    src = _write_jsonl(tmp_path / "docs.jsonl", DOCS, field="content")
    hf = HFSource("json", data_files=str(src), text_field="content", n_docs=25)
    docs = list(hf._all())
    assert [d.text for d in docs] == DOCS[:25] and docs[3].id == "json:3"
    corpus = load_domain("code", source=hf, cache_dir=tmp_path / "cache", seq_len=17)
    assert corpus.manifest["source"]["kind"] == "hf"
    assert corpus.manifest["splits"]["train"]["n_docs"] + \
        corpus.manifest["splits"]["val"]["n_docs"] == 25


def test_unreachable_hf_dataset_is_one_clear_error(tmp_path):
    pytest.importorskip("datasets", reason="the optional `datasets` package is not installed")
    hf = HFSource("json", data_files=str(tmp_path / "missing.jsonl"))
    with pytest.raises(SourceError, match="cannot load hf:json"):
        list(hf._all())


def test_damaged_corpus_cache_is_reported_quarantined_and_rebuilt(tmp_path, capsys):
    src = _write_jsonl(tmp_path / "docs.jsonl", DOCS)
    a = load_domain("math", source=str(src), cache_dir=tmp_path / "c", seq_len=17)
    entry = tmp_path / "c" / "corpora" / a.key
    want = np.array(a.train.stream)  # a copy: the stream is a memory map of the damaged file
    stream = bytearray((entry / "train.npy").read_bytes())
    stream[-1] ^= 0x01  # one token silently changed: still a valid .npy
    (entry / "train.npy").write_bytes(bytes(stream))
    capsys.readouterr()
    b = load_domain("math", source=str(src), cache_dir=tmp_path / "c", seq_len=17)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "train.npy does not match" in err, err
    assert np.array_equal(np.asarray(b.train.stream), want)
    (kept,) = (tmp_path / "c" / "corpora" / ".corrupt").iterdir()
    assert (kept / "train.npy").read_bytes() == bytes(stream)
