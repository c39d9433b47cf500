"""The report end to end (CLI and Python API) and its Markdown/HTML rendering."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from analysis.document import FigureBlock, Heading, Para, Table, render_html, render_markdown
from analysis.report import analyze, main
from analysis.synthetic import create_synthetic_study

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def report_dir(synthetic_journal, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    assert main(["--storage", str(synthetic_journal), "--out", str(out), "--no-nca-render"]) == 0
    return out


def test_report_files_and_figures(report_dir):
    for name in ("trials.csv", "seeds.csv", "settings.csv", "cross_domain.csv", "bands.csv",
                 "report.md", "report.html"):
        assert (report_dir / name).stat().st_size > 0, name
    assert not (report_dir / "pareto.csv").exists(), "Pareto tables of multi-domain studies only"
    md = (report_dir / "report.md").read_text()
    linked = re.findall(r"!\[[^\]]*\]\((figures/[^)]+\.png)\)", md)
    assert {"figures/gain_by_band.png", "figures/code-mo_pareto.png",
            "figures/web_importances.png", "figures/code_curves.png",
            "figures/best_band_by_domain.png"} <= set(linked), "several domains: best band each"
    for rel in linked:
        assert (report_dir / rel).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "rendering with nca was turned off" in md, "skipped figures say why"
    assert not list(report_dir.glob("**/*.tmp")), "temporary files left behind"


def test_report_tables_match_the_api(report_dir, synthetic_journal):
    a = analyze(synthetic_journal)
    trials = pd.read_csv(report_dir / "trials.csv")
    assert len(trials) == len(a.trials) == 4 * 30
    settings = pd.read_csv(report_dir / "settings.csv")
    assert list(settings["p_value"].round(12).fillna(-1)) == list(
        a.settings["p_value"].round(12).fillna(-1))
    cross = pd.read_csv(report_dir / "cross_domain.csv")
    assert sorted(cross["study"]) == ["code", "code-mo", "math", "web"]
    md = (report_dir / "report.md").read_text()
    across = md[md.index("## Across domains"):]
    code_row = next(line for line in across.splitlines() if line.startswith("| code | code |"))
    assert "band-30-40 = paper" in code_row
    assert "not distinguishable from noise" in md and "paired t" in md


def test_html_inlines_every_figure(report_dir):
    html = (report_dir / "report.html").read_text()
    md = (report_dir / "report.md").read_text()
    images = re.findall(r"src='data:image/png;base64,([^']+)'", html)
    assert len(images) == md.count("](figures/")
    assert base64.b64decode(images[0])[:4] == b"\x89PNG"
    assert "<table" in html and "src='figures/" not in html


def test_sqlite_storage_and_study_selection(tmp_path):
    db = tmp_path / "s.db"
    for name in ("a", "b"):
        create_synthetic_study(f"sqlite:///{db}", name, domain="web", n_search=3)
    out = tmp_path / "out"
    assert main(["--storage", f"sqlite:///{db}", "--study", "b", "--out", str(out),
                 "--no-nca-render"]) == 0
    assert set(pd.read_csv(out / "trials.csv")["study"]) == {"b"}
    assert not (out / "bands.csv").exists(), "one domain: no best band by domain"
    assert "best_band_by_domain" not in (out / "report.md").read_text()


def test_studies_from_several_storages_report_together(tmp_path):
    storages = []
    for name in ("code", "web"):
        db = tmp_path / f"{name}.db"
        create_synthetic_study(f"sqlite:///{db}", name, domain=name, n_search=3)
        storages += ["--storage", f"sqlite:///{db}"]
    out = tmp_path / "out"
    assert main([*storages, "--out", str(out), "--no-nca-render"]) == 0
    assert sorted(pd.read_csv(out / "cross_domain.csv")["study"]) == ["code", "web"]
    assert main([*storages, "--study", "web", "--out", str(tmp_path / "w"), "--no-nca-render"]) == 0
    assert set(pd.read_csv(tmp_path / "w" / "trials.csv")["study"]) == {"web"}


@pytest.mark.parametrize("args, message", [
    (["--storage", "{tmp}/nope.journal"], "neither an existing journal file"),
    (["--storage", "{journal}", "--study", "nope"], "no study named 'nope'"),
    (["--storage", "{journal}", "--artifact-dir", "{tmp}/missing"], "is not a directory"),
    (["--storage", "{journal}", "--alpha", "1.5"], "--alpha must be in (0, 1)"),
])
def test_bad_input_exits_2_with_one_line(args, message, synthetic_journal, tmp_path, capsys):
    argv = [a.format(tmp=tmp_path, journal=synthetic_journal) for a in args]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not (tmp_path / "out").exists(), "nothing half-written"


def test_cli_entry_point_exit_code(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "analysis.report", "--storage",
                           str(tmp_path / "x.journal"), "--out", str(tmp_path)],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=120,
                          check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "error:" in proc.stderr


def test_markdown_and_html_rendering_escape_cells(tmp_path):
    (tmp_path / "f.png").write_bytes(b"\x89PNG\r\n\x1a\nfake")
    blocks = [Heading(text="T <1>"), Para(text="a `b` **c** <d>"),
              Table(frame=pd.DataFrame({"x": ["p|q", None], "y": [1.5, float("nan")]})),
              FigureBlock(caption="fig", path="f.png"), FigureBlock(caption="g", skipped="why")]
    md = render_markdown(blocks)
    assert "| p\\|q | 1.5 |" in md and "|  |  |" in md
    assert "![fig](f.png)" in md and "*g: skipped (why).*" in md
    html = render_html(blocks, tmp_path, title="t")
    assert "<code>b</code>" in html and "<strong>c</strong>" in html and "&lt;d&gt;" in html
    assert "T &lt;1&gt;" in html
    assert base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode() in html


def test_study_notes_and_search_space_are_shown(tmp_path):
    db = f"sqlite:///{tmp_path / 's.db'}"
    study = create_synthetic_study(db, "noted", domain="code", n_search=2)
    space = [{"name": "source", "fixed": "nca"}, {"name": "band", "choices": ["0.2-0.3"]},
             {"name": "lr", "low": 1e-4, "high": 1e-2, "log": True}]
    study.set_user_attr("config", json.dumps({"study": {"notes": "What it is.\n  Why."},
                                              "space": space}))
    assert main(["--storage", db, "--out", str(tmp_path / "o"), "--no-nca-render"]) == 0
    md = (tmp_path / "o" / "report.md").read_text()
    assert "What it is. Why." in md
    assert '`source = "nca"`; `band in ["0.2-0.3"]`; `lr in [0.0001, 0.01] log`' in md
