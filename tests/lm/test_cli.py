"""The command lines, run as a user would (subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lm.data import write_token_dataset

from .conftest import counting_dataset

REPO = Path(__file__).resolve().parents[2]


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True,
                          check=False, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


@pytest.mark.slow
def test_nca_transfer_domain_and_scratch_from_the_command_line(shared_data, tmp_path):
    nca_dir = tmp_path / "nca"
    write_token_dataset(nca_dir, {"train": counting_dataset(64, 65, 200, 0).tokens,
                                  "val": counting_dataset(8, 65, 200, 1).tokens}, vocab_size=200)
    common = ["--preset", "tiny", "--threads", "1"]
    corpus = ["--data", str(shared_data / "code"), "--cache-dir", str(tmp_path / "cache")]
    out = _run("-m", "lm.train", "nca", "--data", str(nca_dir), "--out",
               str(tmp_path / "ppt.pt"), "--json", str(tmp_path / "nca.json"), *common)
    upstream = json.loads((tmp_path / "nca.json").read_text())["upstream"]
    assert set(upstream) >= {"val_loss", "unigram_loss", "learned"}, out.stdout
    out = _run("-m", "lm.train", "transfer", "--init", str(tmp_path / "ppt.pt"), "--out",
               str(tmp_path / "lm.pt"), "--freeze", "attention", *corpus)
    assert "frozen (4)" in out.stdout
    _run("-m", "lm.train", "scratch", *corpus, *common, "--json", str(tmp_path / "s.json"))
    _run("-m", "lm.train", "domain", *corpus, *common, "--init", str(tmp_path / "lm.pt"),
         "--baseline", str(tmp_path / "s.json"), "--json", str(tmp_path / "d.json"))
    result = json.loads((tmp_path / "d.json").read_text())
    assert result["curve"][0][0] == 0 and result["scores"]["gain_pct"] is not None


def test_cli_errors_are_one_line(tmp_path):
    proc = _run("-m", "lm.train", "domain", "--domain", "math", "--preset", "tiny",
                "--cache-dir", str(tmp_path), check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "--data PATH" in proc.stderr


def test_presets_and_bench_print_figures():
    listing = _run("-m", "lm.presets").stdout
    assert "cpu-proxy" in listing and "1,611,765,760" in listing
    out = _run("-m", "lm.bench", "--json", "--presets", "tiny,paper-1.6b", "--steps", "1",
               "--device", "cpu").stdout
    bench = json.loads(out)
    assert bench["matmul_gflops"] > 0 and bench["presets"]["tiny"]["tokens_per_s"] > 0
    assert set(bench["presets"]["tiny"]) >= {"tokens_per_s", "model_gflops", "mfu"}
    assert "paper-1.6b" in bench["skipped"]
