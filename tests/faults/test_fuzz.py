"""Property-based fuzzing of ``python -m search.run``'s input (Hypothesis): study files with
values of every type and range in every section, junk keys, broken bytes, and command-line
flags with bad values. Every generated input either runs (a dry run: it prints its plan, exit 0)
or exits 2 with one line on stderr, never a traceback; a refusal leaves the folders exactly as
they were, and no input creates the run folder (a dry run runs nothing).

``NCASEARCH_FUZZ_CASES`` sets the number of cases (default 2000), ``NCASEARCH_FUZZ_SEED`` the
seed (default 26); both are printed, with what the cases did. The calibration a dry run measures
is replaced by a fixed one (it times real training steps: seconds per case); everything else is
the real command line, run in this process.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from tests.conftest import SHARED_DATA
from tests.faults import _harness as h

pytestmark = pytest.mark.slow

CASES = int(os.environ.get("NCASEARCH_FUZZ_CASES", "2000"))
SEED = int(os.environ.get("NCASEARCH_FUZZ_SEED", "26"))

_SECTIONS: dict[str, list[str]] = {
    "study": ["name", "domain", "domains", "data", "tokenizer", "preset", "n_trials", "seeds",
              "objectives", "recipe", "executor", "workers", "max_retries", "threads", "notes",
              "storage", "run_dir", "cache_dir"],
    "budget": ["nca_tokens", "domain_tokens", "nca_fraction"],
    "sampler": ["name", "seed", "n_startup_trials", "n_ei_candidates", "multivariate", "group",
                "constant_liar"],
    "pruner": ["name", "n_startup_trials", "n_warmup_steps", "min_resource", "reduction_factor",
               "p_threshold"],
    "slurm": ["partition", "gpus_per_node", "cpus_per_task", "mem_gb", "timeout_min",
              "max_in_flight", "max_requeues", "extra", "setup"],
    "space": ["source", "band", "band_lower", "band_width", "alphabet", "grid", "temperature",
              "lr", "ppt_lr", "warmup", "transfer", "recipe", "embed_init", "nca_fraction",
              "domain_tokens", "nca_tokens", "curriculum", "curriculum_stages", "dyck_k"],
}

_SCALARS = st.one_of(
    st.integers(min_value=-3, max_value=20),
    st.sampled_from([0, 1, 2, 4, 10, 16, 100, 4096, 2**31, 2**32, 2**63 - 1, -(2**63), 10**20]),
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from([0.0, 0.04, 0.5, 1.0, 1.5, -0.1, 1e-4, 1e20, math.nan, math.inf]),
    st.booleans(),
    st.sampled_from(["", "code", "web", "math", "chess", "tiny", "cpu-proxy", "auto", "tpe",
                     "random", "grid", "median", "wilcoxon", "none", "paper", "proxy", "nca",
                     "full", "0.2-0.3", "0.5-1.0", "0.9-0.1", "q0.2-0.4", "x", "../escape",
                     "a/b", "ñ", "local", "inline", "slurm", "net-effect", "loss"]),
    st.text(max_size=12),
)
_VALUES = st.one_of(
    _SCALARS,
    st.lists(_SCALARS, max_size=4),
    st.dictionaries(st.sampled_from(["choices", "low", "high", "log", "step", "web", "x"]),
                    st.one_of(_SCALARS, st.lists(_SCALARS, max_size=3)), max_size=3),
)


def _toml(value: Any) -> str:
    """``value`` as TOML (nan and inf included, which TOML spells ``nan`` and ``inf``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return '"' + "".join(c if c.isprintable() and c not in '"\\' else f"\\u{ord(c):04x}"
                             for c in value) + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"


def _document(tables: dict[str, Any]) -> str:
    lines = []
    for section, table in tables.items():
        if section == "anchors":
            for anchor in table:
                lines.append("[[anchors]]")
                lines += [f"{k} = {_toml(v)}" for k, v in anchor.items()]
            continue
        lines.append(f"[{section}]")
        lines += [f"{k} = {_toml(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


@st.composite
def study_files(draw: st.DrawFn) -> bytes:
    """The smoke study with 0-4 values changed (to any type), keys added or removed, sometimes
    an anchor changed, sometimes bytes of junk."""
    if draw(st.integers(0, 30)) == 0:
        return draw(st.binary(max_size=64))
    tables = tomllib.loads(h.STUDY.read_text())
    for _ in range(draw(st.integers(0, 4))):
        section = draw(st.sampled_from([*_SECTIONS, "anchors", "junk"]))
        if section == "anchors":
            tables["anchors"][0]["params"][draw(st.sampled_from(
                _SECTIONS["space"] + ["bogus"]))] = draw(_SCALARS)
            continue
        table = tables.setdefault(section, {})
        key = draw(st.sampled_from(_SECTIONS.get(section, []) + ["bogus"]))
        if draw(st.integers(0, 5)) == 0:
            table.pop(key, None)
        else:
            table[key] = draw(_VALUES)
    return _document(tables).encode()


@st.composite
def flags(draw: st.DrawFn) -> list[str]:
    """0-3 command-line flags with values good and bad."""
    text = st.one_of(st.sampled_from(["0", "1", "2", "-1", "1e23", "nan", "0.5", "", "x",
                                      str(10**23), "4096", "0,1", "1,1", "0,-1", "a,b"]),
                     st.text(max_size=6))
    out: list[str] = []
    for _ in range(draw(st.integers(0, 3))):
        flag = draw(st.sampled_from(["--n-trials", "--workers", "--seed", "--seeds", "--preset",
                                     "--executor", "--heartbeat", "--time-budget", "--name"]))
        out += [flag, draw(text)]
    return out


def _tree(root: Path) -> list[tuple[str, int, int]]:
    return sorted((str(p.relative_to(root)), p.lstat().st_size if p.is_file() else 0,
                   p.lstat().st_mtime_ns) for p in root.rglob("*"))


def test_fuzz_search_run_input(tmp_path_factory, monkeypatch):
    """fuzz: search.run study files and flags (Hypothesis)"""
    from search import cost, run

    if not (SHARED_DATA / "code" / "train.jsonl").is_file():
        pytest.skip(f"shared corpora not found at {SHARED_DATA}")
    root = tmp_path_factory.mktemp("fuzz")
    data = root / "data"
    data.mkdir()
    for split, n in (("train", 30), ("valid", 6)):  # a small real corpus: fast to verify
        lines = (SHARED_DATA / "code" / f"{split}.jsonl").read_text().splitlines(True)[:n]
        (data / f"{split}.jsonl").write_text("".join(lines))
    calibration = cost.Calibration(
        preset="tiny", host="fuzz", threads=1, startup_s=1.0, data_s=1.0, domain_step_s=0.01,
        domain_eval_s=0.01, nca_step_s={a: 0.01 for a in range(2, 16)},
        nca_eval_s={a: 0.01 for a in range(2, 16)}, diagnose_s=0.1, artifacts_s=0.1)
    monkeypatch.setattr(cost, "calibrate", lambda config, context, **kw: (calibration, True))
    monkeypatch.chdir(root)
    seen: Counter[str] = Counter()
    cache = root / "cache"

    @seed(SEED)
    @settings(max_examples=CASES, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    @given(study=study_files(), extra=flags())
    def case(study: bytes, extra: list[str]) -> None:
        path = root / "study.toml"
        path.write_bytes(study)
        run_dir = root / "run"
        argv = ["--study", str(path), "--run-dir", str(run_dir), "--cache-dir", str(cache),
                "--data", str(data), *extra, "--dry-run"]
        before = _tree(root)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = run.main(argv)
            except SystemExit as exc:
                code = exc.code
        lines = [line for line in err.getvalue().splitlines() if line.strip()]
        context = f"argv {argv[:1] + extra}\nstudy {study[:400]!r}\nstderr {err.getvalue()[-800:]}"
        assert code in (0, 2), context
        assert not run_dir.exists(), "a dry run or a refusal created the run folder\n" + context
        if code == 2:
            assert len(lines) == 1 and "error: " in lines[0], context
            assert _tree(root) == before, "a refusal wrote something\n" + context
            seen["refused"] += 1
        else:
            assert "[dry-run] nothing was run" in out.getvalue(), context
            seen["ran"] += 1

    case()
    print(f"\nfuzz: seed {SEED}, {sum(seen.values())} cases: {seen['ran']} ran (dry run), "
          f"{seen['refused']} refused in one line; no traceback, no write")
    assert sum(seen.values()) >= min(CASES, 100)
