"""`build`: a DataSpec and a token budget in, a cached, checksummed token dataset out.

The cache key is the hash of the canonical JSON of everything that decides the tokens (the
resolved spec, token budget, sequence length, seed, the text corpus's content, and the code
version of the generator), so equal inputs share one dataset and nothing that changes a token
can be left out. Datasets are written into a staging directory and renamed into place; a hit is
served only after every shard passes its sha256 check, and a corrupted one is rebuilt.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nca._util import code_version, default_workers
from nca.bank import Progress
from nca.controls import dyck_sequences, file_sha256, read_corpus, text_splits
from nca.nca_source import GEN_CHUNK, plan_stages, stage_report, write_split
from nca.spec import DataSpec
from nca.store import ShardWriter, TokenDataset, read_manifest, verify, write_manifest
from nca.tokens import frames_per_sequence, nca_loss_mask
from ncaio import TOKEN_FORMAT, content_key, discard_dir, publish_dir, staging_dir

DEFAULT_MAX_CANDIDATES = 2_000_000
"""Default bound on rules scored per stage before a band is declared unfillable."""


@dataclass(frozen=True, slots=True)
class BuiltDataset:
    """A built (or cached) dataset.

    Attributes:
        train: training split (memory-mapped SequenceDataset), in curriculum order.
        val: held-out split (NCA: sequences of rules never used in training).
        manifest: resolved config, token counts, complexity stats, acceptance, checksums.
        key: content hash used as the cache key.
        path: the dataset directory.
        hit: whether it was served from the cache.
    """

    train: TokenDataset
    val: TokenDataset
    manifest: dict[str, Any]
    key: str
    path: Path
    hit: bool


def _check_int(name: str, value: object, lo: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < lo:
        raise ValueError(f"{name}={value!r} is invalid; accepted: an integer >= {lo}")


def layout(spec: DataSpec, seq_len: int) -> tuple[int, int, np.ndarray]:
    """Stored tokens per sequence, vocabulary size and loss mask for `spec`.

    Every sequence holds at least seq_len + 1 tokens (seq_len inputs and their targets); NCA
    sequences are rounded up to whole frames, as the paper does (1026 tokens for 1024, grid 12).
    """
    if spec.source == "nca":
        assert spec.curriculum is not None
        fl = spec.curriculum.frame_len
        length = frames_per_sequence(seq_len, fl) * fl
        return length, spec.curriculum.vocab_size, nca_loss_mask(length, fl)
    vocab = 2 * spec.k if spec.source == "dyck" else 256
    mask = np.ones(seq_len + 1, dtype=bool)
    mask[0] = False
    return seq_len + 1, vocab, mask


def dataset_key(spec: DataSpec, n_tokens: int, seed: int, seq_len: int) -> str:
    """The cache key of `build(spec, n_tokens, seed=seed, seq_len=seq_len)`."""
    identity: dict[str, Any] = {"format": TOKEN_FORMAT, "spec": spec.to_dict(),
                                "n_tokens": n_tokens, "seed": seed, "seq_len": seq_len,
                                "code": code_version()}
    if spec.source == "text":
        assert spec.text_path is not None
        identity["text_sha256"] = file_sha256(Path(spec.text_path))
    if spec.source == "nca":
        identity["gen_chunk"] = GEN_CHUNK
    return content_key(identity)


def build(spec: DataSpec, n_tokens: int, *, cache_dir: Path, seed: int = 0, seq_len: int = 1024,
          device: str | torch.device = "cpu", max_candidates: int = DEFAULT_MAX_CANDIDATES,
          progress: Progress | None = None) -> BuiltDataset:
    """Build the dataset `spec` describes, or serve it from the cache.

    Args:
        spec: what to build.
        n_tokens: training tokens wanted (rounded up to whole sequences).
        cache_dir: cache root; datasets live in `cache_dir/nca/<key>/`.
        seed: the only seed: rules, simulations and controls derive from it.
        seq_len: model context; stored sequences hold at least seq_len + 1 tokens.
        device: where NCA rollouts run (bit-for-bit reproducible on CPU).
        max_candidates: rules scored per stage before a band counts as unfillable.
        progress: optional progress(phase, done, total) callback.

    Returns:
        The BuiltDataset.

    Raises:
        BandUnreachableError: a band cannot be filled (a ValueError).
        ValueError: a bad argument.

    Example:
        >>> from nca import Band, Curriculum, NCAConfig
        >>> spec = DataSpec(curriculum=Curriculum.constant(NCAConfig(), Band(0.5, 1.0)))
        >>> built = build(spec, 2_000_000, cache_dir=Path("/tmp/cache"), seed=0)  # doctest: +SKIP
    """
    _check_int("n_tokens", n_tokens, 1)
    _check_int("seq_len", seq_len, 1)
    _check_int("seed", seed, 0)
    _check_int("max_candidates", max_candidates, 1)
    if spec.source == "text":  # refuse an unusable corpus before anything is written
        read_corpus(Path(spec.text_path or ""))
    key = dataset_key(spec, n_tokens, seed, seq_len)
    path = Path(cache_dir) / "nca" / key
    rebuilt_because = None
    if path.exists():
        rebuilt_because = verify(path)
        if rebuilt_because is None:
            return _open(path, key, hit=True)
        discard_dir(path)
    start = time.perf_counter()
    with staging_dir(path) as tmp:
        manifest = _write(spec, tmp, n_tokens=n_tokens, seed=seed, seq_len=seq_len,
                          cache_dir=Path(cache_dir), device=device,
                          max_candidates=max_candidates, progress=progress)
        manifest.update(key=key, rebuilt_because=rebuilt_because,
                        build_s=round(time.perf_counter() - start, 3))
        write_manifest(tmp, manifest, manifest.pop("_loss_mask"))
    if not publish_dir(tmp, path) and (reason := verify(path)) is not None:
        raise RuntimeError(f"a concurrent build left {path} unusable ({reason}); build again")
    return _open(path, key, hit=False)


def _open(path: Path, key: str, hit: bool) -> BuiltDataset:
    manifest = read_manifest(path)
    return BuiltDataset(train=TokenDataset(path, "train", manifest),
                        val=TokenDataset(path, "val", manifest),
                        manifest=manifest, key=key, path=path, hit=hit)


def _write(spec: DataSpec, tmp: Path, *, n_tokens: int, seed: int, seq_len: int,
           cache_dir: Path, device: str | torch.device, max_candidates: int,
           progress: Progress | None) -> dict[str, Any]:
    length, vocab, mask = layout(spec, seq_len)
    n_train = math.ceil(n_tokens / length)
    n_val = max(spec.min_val_sequences, math.ceil(spec.val_fraction * n_train))
    writers = {split: ShardWriter(tmp, split, length, vocab) for split in ("train", "val")}
    manifest: dict[str, Any] = {
        "vocab_size": vocab, "seq_len": length, "producer": "nca", "source": spec.source,
        "spec": spec.to_dict(), "seed": seed, "n_tokens_requested": n_tokens,
        "context_len": seq_len, "code_version": code_version(),
        "complexity_mean": None, "acceptance_rate": None, "_loss_mask": mask,
    }
    writer: Callable[..., dict[str, Any]] = {"nca": _write_nca, "dyck": _write_dyck,
                                             "text": _write_text}[spec.source]
    manifest.update(writer(spec, writers, n_train=n_train, n_val=n_val, seed=seed,
                           length=length, cache_dir=cache_dir, device=device,
                           max_candidates=max_candidates, progress=progress))
    splits = {split: w.close() for split, w in writers.items()}
    manifest["splits"] = splits
    manifest["tokens"] = {split: s["n_sequences"] * length for split, s in splits.items()}
    return manifest


def _write_nca(spec: DataSpec, writers: dict[str, ShardWriter], *, n_train: int, n_val: int,
               seed: int, length: int, cache_dir: Path, device: str | torch.device,
               max_candidates: int, progress: Progress | None) -> dict[str, Any]:
    cur = spec.curriculum
    assert cur is not None
    counts = {"train": cur.sequence_counts(n_train), "val": cur.sequence_counts(n_val)}
    plans = plan_stages(cur, counts, seed=seed, sequences_per_rule=spec.sequences_per_rule,
                        profile_rules=spec.profile_rules, cache_dir=cache_dir, device=device,
                        max_candidates=max_candidates, progress=progress)
    frames = length // cur.frame_len
    done = 0
    for split in ("train", "val"):
        write_split(writers[split], cur, plans, split, seed=seed,
                    sequences_per_rule=spec.sequences_per_rule, frames=frames, device=device,
                    workers=default_workers(device), progress=progress, done=done,
                    total=n_train + n_val)
        done += writers[split].n_sequences
    stages = [stage_report(p, spec.sequences_per_rule) for p in plans]
    weights = np.array([p.counts["train"] for p in plans], dtype=float)
    means = [s["complexity"]["mean"] if s["complexity"] else 0.0 for s in stages]
    scored = sum(p.selection.n_candidates for p in plans)
    accepted = sum(p.selection.acceptance * p.selection.n_candidates for p in plans)
    bounds = np.concatenate([[0], np.cumsum(weights)]).astype(int).tolist()
    return {
        "frame_len": cur.frame_len, "frames_per_sequence": frames, "curriculum": cur.family,
        "start_token": cur.vocab_size - 2, "end_token": cur.vocab_size - 1, "stages": stages,
        "complexity_mean": float(np.dot(weights, means) / weights.sum()),
        "acceptance_rate": accepted / scored,
        "stage_boundaries": (None if cur.family == "mixture" else
                             [[bounds[j], bounds[j + 1]] for j in range(len(plans))]),
    }


def _write_dyck(spec: DataSpec, writers: dict[str, ShardWriter], *, n_train: int, n_val: int,
                seed: int, length: int, progress: Progress | None, **_: Any) -> dict[str, Any]:
    for split, n in (("train", n_train), ("val", n_val)):
        for chunk, lo in enumerate(range(0, n, 4096)):
            rng = np.random.default_rng([seed, 1 if split == "val" else 0, chunk])
            writers[split].add(dyck_sequences(min(4096, n - lo), length, spec.k, rng))
            if progress is not None:
                progress("generate", writers["train"].n_sequences + writers["val"].n_sequences,
                         n_train + n_val)
    return {"dyck_k": spec.k}


def _write_text(spec: DataSpec, writers: dict[str, ShardWriter], *, n_train: int, n_val: int,
                length: int, progress: Progress | None, **_: Any) -> dict[str, Any]:
    assert spec.text_path is not None
    train, val = text_splits(read_corpus(Path(spec.text_path)), length, n_train, n_val)
    writers["train"].add(train)
    writers["val"].add(val)
    if progress is not None:
        progress("generate", n_train + n_val, n_train + n_val)
    return {"bytes_per_token": 1.0, "text_sha256": file_sha256(Path(spec.text_path)),
            "text_path": str(spec.text_path)}
