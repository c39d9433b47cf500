"""Complexity scores: the paper's exact gzip serialisation, and the alternative measure."""

from __future__ import annotations

import gzip
import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from nca.complexity import MEASURES, get_measure, gzip_ratio
from nca.config import NCAConfig
from nca.rollout import make_generator, rollout
from nca.rules import sample_rules
from nca.tokens import patch_tokens


def reference_gzip(byte_data: bytes) -> float:
    """The reference's `gzip_complexity`, verbatim in behaviour."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9) as f:
        f.write(byte_data)
    return len(buf.getvalue()) / len(byte_data)


def _tokens(n_rules: int = 8) -> tuple[np.ndarray, np.ndarray]:
    cfg = NCAConfig()
    frames = rollout(sample_rules(10, 0, np.arange(n_rules)), cfg, 10, make_generator(0))
    return frames.numpy(), patch_tokens(frames, cfg).numpy()


def test_gzip_score_is_int32_little_endian_like_the_reference() -> None:
    frames, tokens = _tokens()
    scores = MEASURES["gzip"].score(frames, tokens, None)
    for row, score in zip(tokens, scores, strict=True):
        assert score == reference_gzip(row.astype("<i4").tobytes())
        assert score == gzip_ratio(row.astype(np.int32).tobytes())
    rng = np.random.default_rng(0)
    for size in (1, 100, 1440, 10_000):
        data = rng.integers(0, 7, size, dtype=np.uint8).tobytes()
        assert gzip_ratio(data) == reference_gzip(data)


def test_the_dtype_sets_the_scale() -> None:
    frames, tokens = _tokens(8)
    row = tokens[np.argmax(MEASURES["gzip"].score(frames, tokens, None))]
    as_int32 = reference_gzip(row.astype("<i4").tobytes())
    assert as_int32 > 0.5  # a complex rule: 50%+ band under the paper's serialisation
    assert reference_gzip(row.astype("<u2").tobytes()) > as_int32 + 0.2
    assert reference_gzip(row.astype("<i8").tobytes()) < as_int32 - 0.2


def test_thread_pool_gives_the_same_scores() -> None:
    frames, tokens = _tokens(96)
    with ThreadPoolExecutor(2) as pool:
        parallel = MEASURES["gzip"].score(frames, tokens, pool)
    assert np.array_equal(parallel, MEASURES["gzip"].score(frames, tokens, None))


def test_static_trajectories_score_low() -> None:
    frames = np.zeros((1, 10, 12, 12), dtype=np.uint8)
    tokens = patch_tokens(torch.from_numpy(frames), NCAConfig()).numpy()
    assert MEASURES["gzip"].score(frames, tokens, None)[0] < 0.05
    assert MEASURES["change"].score(frames, tokens, None)[0] == 0.0


def test_change_rate_of_random_frames() -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 10, (4, 10, 12, 12), dtype=np.uint8)
    rate = get_measure("change").score(frames, np.zeros((4, 10, 36), np.int32), None)
    assert np.allclose(rate, 0.9, atol=0.03)
    with pytest.raises(ValueError, match="valid: \\['change', 'gzip'\\]"):
        get_measure("entropy")
