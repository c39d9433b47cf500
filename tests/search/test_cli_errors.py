"""Bad input to `python -m search.run` and `search.status`: exit 2, one line naming the value,
nothing written.

Each case calls the command's ``main`` in this process (a fresh interpreter per case cost 2-3 s
of imports); one case per command runs the real ``python -m`` line, so the entry points are
tested too."""

from __future__ import annotations

import contextlib
import importlib
import io
import subprocess
import sys
from dataclasses import dataclass

import pytest

from tests.conftest import REPO


@dataclass(frozen=True)
class _Result:
    returncode: int | str | None
    stderr: str


def _main(module: str, *args: str) -> _Result:
    """``python -m module args`` run in this process: its exit code and what it wrote to
    stderr."""
    main = importlib.import_module(module).main
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse's own refusals
            code = exc.code
    return _Result(code, err.getvalue())


def _run(tmp_path, *args):
    return _main("search.run", "--run-dir", str(tmp_path / "run"), "--cache-dir",
                 str(tmp_path / "cache"), *args)


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    """Relative paths (``sqlite:///x.db``) resolve in the test's folder, not the checkout."""
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("module, args, needle", [
    ("search.run", ["--domain", "chess"], "chess"),
    ("search.status", ["{run}", "--watch", "0"], "--watch 0"),
    ("search.bench_trial", ["--preset", "huge"], "'huge'"),
])
def test_the_real_command_line_refuses_in_one_line(tmp_path, module, args, needle):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "journal.log").touch()
    args = [a.format(run=tmp_path / "run") for a in args]
    result = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr


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
    result = _main(module, *args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr


@pytest.mark.parametrize("seconds", ["0", "-1"])
def test_status_refuses_a_watch_period_it_cannot_sleep(tmp_path, seconds):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "journal.log").touch()
    result = _main("search.status", str(tmp_path / "run"), "--watch", seconds)
    assert result.returncode == 2 and result.stderr.strip() == (
        f"error: --watch {seconds}: give seconds > 0"), result.stderr
