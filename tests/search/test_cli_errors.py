"""Bad input to `python -m search.run` and `search.status`: exit 2, one line naming the value,
nothing written."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO


def _run(tmp_path, *args):
    cmd = [sys.executable, "-m", "search.run", "--run-dir", str(tmp_path / "run"),
           "--cache-dir", str(tmp_path / "cache"), *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)


def _study_file(tmp_path, body):
    path = tmp_path / "bad.toml"
    path.write_text('[study]\nname = "bad"\ndomain = "code"\npreset = "tiny"\n' + body)
    return str(path)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--domain", "chess"], "chess"),
        (["--study", "no-such-study"], "no-such-study"),
        (["--study", "smoke", "--preset", "huge"], "huge"),
        (["--study", "smoke", "--storage", "postgresql://nobody@127.0.0.1:1/none"],
         "cannot open storage"),
        (["--study", "smoke", "--storage", "sqlite:///x.db", "--workers", "2"], "SQLite"),
        (["--study", "smoke", "--storage", "ftp://host/x"], "ftp://"),
        (["--study", "smoke", "--seeds", "a,b"], "--seeds"),
        (["--study", "smoke", "--seeds", "0,-1"], "[0, -1]"),
        (["--study", "smoke", "--heartbeat", "0"], "--heartbeat 0"),
        (["--study", "smoke", "--time-budget", "0m"], "'0m'"),
        (["--domain", "math", "--preset", "tiny"], "math"),
        (["--study", "smoke", "--data", "/no/such/corpus.jsonl"], "/no/such/corpus.jsonl"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(tmp_path, args, needle):
    result = _run(tmp_path, *args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "body, needle",
    [
        ('[space]\nband = "0.5-0.4"\n', "0.5-0.4"),
        ('[space]\nalphabet = 16\n', "16"),
        ('[space]\nalphabet = 1\n', "alphabet"),
        ('[space]\nalphabet = { low = 1, high = 4 }\n', "alphabet"),
        ('[space]\nlr = nan\n', "nan"),
        ('[space]\nlr = { low = 1e-4, high = inf }\n', "inf"),
        ('[pruner]\nname = "psychic"\n', "psychic"),
        ('[study.extra]\nx = 1\n', "extra"),
        ('recipe = "mine"\n', "paper, proxy"),
        ('[space]\nrecipe = "mine"\n', "paper, proxy"),
        ('[space]\nembed_init = "xavier"\n', "reference, scaled"),
        ('[space]\nnca_schedule = "linear"\n', "warmup-only, cosine"),
        ('[space]\nnca_fraction = 1.5\n', "(0, 1]"),
        ('[budget]\nnca_fraction = 0.0001\nnca_tokens = -1\n',
         "nca_tokens = -1: expected a value in [0, "),
        ('[budget]\nnca_fraction = 2.0\n', "(0, 1]"),
        ('[sampler]\nname = "grid"\n[space]\nlr = { low = 1e-4, high = 1e-3 }\n', "grid"),
    ],
)
def test_bad_study_file_exits_2(tmp_path, body, needle):
    result = _run(tmp_path, "--study", _study_file(tmp_path, body))
    assert result.returncode == 2, result.stderr
    assert needle in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "flag, value, needle",
    [
        ("--storage", "{tmp}", "is a folder"),          # IsADirectoryError after 24 MB before
        ("--data", "/bin/ls", "is not UTF-8 text"),      # a bare codec error before
    ],
)
def test_unusable_path_exits_2_naming_it_before_anything_is_written(tmp_path, flag, value, needle):
    value = value.format(tmp=tmp_path)
    result = _run(tmp_path, "--study", "smoke", flag, value)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and value.split("/")[-1] in lines[0], lines
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()


@pytest.mark.parametrize(
    "body, args, needle",
    [
        ('domains = ["code", "math", "math"]\n', [], "math more than once"),
        ('domains = ["code", "chess"]\n', [], "chess"),
        ('domains = ["code", "web"]\n', [], "'web' has no built-in corpus"),
        ('domains = ["code", "web"]\n', ["--data", "poetry=/x"], "'poetry' is not a domain"),
        ('domains = ["code", "web"]\n', ["--data", "web=/a", "--data", "web=/b"], "web=/b"),
    ],
)
def test_bad_domains_exit_2_with_one_line(tmp_path, body, args, needle):
    path = tmp_path / "multi.toml"
    path.write_text('[study]\nname = "multi"\npreset = "tiny"\n' + body)
    result = _run(tmp_path, "--study", str(path), *args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "module, args, needle",
    [
        ("search.bench", ["--preset", "huge"], "'huge'"),
        ("search.bench_domains", ["--seeds", "a,b"], "'a,b'"),
        ("search.bench_progress", ["--preset", "huge"], "'huge'"),
        ("search.bench_trial", ["--preset", "huge"], "'huge'"),
        ("search.bench_trial", ["--nca-fraction", "2"], "nca_fraction 2.0 must be in (0, 1]"),
    ],
)
def test_benchmarks_refuse_bad_input_in_one_line(module, args, needle):
    result = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr


@pytest.mark.parametrize("seconds", ["0", "-1"])
def test_status_refuses_a_watch_period_it_cannot_sleep(tmp_path, seconds):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "journal.log").touch()
    result = subprocess.run([sys.executable, "-m", "search.status", str(tmp_path / "run"),
                             "--watch", seconds], cwd=REPO, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 2 and result.stderr.strip() == (
        f"error: --watch {seconds}: give seconds > 0"), result.stderr
