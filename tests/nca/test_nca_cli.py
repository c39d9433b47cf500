"""CLIs: exit status 2 and one line on bad values; generate, profile and show end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from nca import generate, show

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("args", "needle"), [
    (["--band", "0.5:0.4"], "0 <= lower < upper <= 1"),
    (["--band", "0.5:1.5"], "0 <= lower < upper <= 1"),
    (["--band=-0.1:0.5"], "0 <= lower < upper <= 1"),
    (["--band", "half"], "LOWER:UPPER"),
    (["--alphabet", "1"], "alphabet=1 is invalid; accepted: an integer in [2, 15]"),
    (["--alphabet", "16"], "alphabet=16 is invalid; accepted: an integer in [2, 15]"),
    (["--grid", "13"], "grid=13 is invalid; accepted: a multiple of patch=2"),
    (["--temperature", "0"], "temperature=0.0 is invalid; accepted: a finite number > 0"),
    (["--tokens", "0"], "--tokens 0 is invalid; accepted: a positive integer"),
    (["--tokens", "-5"], "--tokens -5 is invalid"),
    (["--tokens", "lots"], "--tokens lots is invalid"),
    (["--alphabet", "four"], "argument --alphabet: invalid int value"),
    (["--curriculum", "spiral"], "argument --curriculum: invalid choice"),
    (["--band", "0.2:0.3", "--band", "0.5:1"], "--curriculum constant takes one --band"),
    (["--source", "dyck", "--band", "0.5:1"], "apply to --source nca"),
    (["--curriculum", "mixture", "--band", "0.2:0.3", "--band", "0.5:1", "--shares", "a,b"],
     "--shares 'a,b' is invalid; accepted: comma-separated positive numbers"),
    (["--curriculum", "mixture", "--band", "0.2:0.3", "--band", "0.5:1", "--shares", "1,nan"],
     "--shares '1,nan' is invalid"),
    (["--device", "bogus"], "--device 'bogus' is not available on this machine; accepted: cpu"),
])
def test_generate_bad_values_exit_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                  args: list[str], needle: str) -> None:
    argv = ["--tokens", "1000", "--cache-dir", str(tmp_path)] + args
    try:
        rc = generate.main(argv)
    except SystemExit as exit_:  # argparse's own errors
        rc = exit_.code
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and needle in err, err


def test_generate_process_exit_status(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "nca.generate", "--band", "0.6:0.5", "--tokens",
                           "1000", "--cache-dir", str(tmp_path)], cwd=REPO, capture_output=True,
                          check=False, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and not proc.stdout


def test_generate_builds_then_hits(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = ["--alphabet", "4", "--band", "0.3:0.45", "--tokens", "8k", "--cache-dir", str(tmp_path)]
    assert generate.main(argv) == 0
    out = capsys.readouterr().out
    assert (out.startswith("built: ") and "tokens: train 8,208 (8 seq)" in out
            and "acceptance" in out)
    assert generate.main(argv) == 0
    assert capsys.readouterr().out.startswith("cache hit: ")


def test_profile_cli_prints_percentiles_and_paper_bands() -> None:
    proc = subprocess.run([sys.executable, "-m", "nca.profile", "--alphabet", "4", "--rules",
                           "512", "--seed", "0", "--json"], cwd=REPO, capture_output=True,
                          check=False, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    prof = json.loads(proc.stdout)
    assert len(prof["percentiles"]) == 101 and prof["rules"] == 512
    assert list(prof["band_fractions"]) == ["0-0.2", "0.2-0.3", "0.3-0.4", "0.4-0.5", "0.5-1"]
    assert abs(sum(prof["band_fractions"].values()) - 1) < 1e-9
    assert prof["percentiles"][100] == prof["max"] < 0.5


def test_show_writes_png_gif_and_contact_sheet(tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    argv = ["--alphabet", "4", "--band", "0.2:0.3", "--band", "q0.9:1", "--rules", "2",
            "--frames", "5", "--out", str(tmp_path)]
    assert show.main(argv) == 0
    with Image.open(tmp_path / "band_0.2-0.3.gif") as gif:
        assert gif.n_frames == 5 and gif.size == (12 * 16, 12 * 16)
    with Image.open(tmp_path / "band_0.2-0.3.png") as png:
        assert png.size == (5 * 12 * 8 + 4 * 2, 12 * 8)
    assert (tmp_path / "band_q0.9-1.png").is_file() and (tmp_path / "sheet.png").is_file()
    assert show.main(argv[:-2] + ["--rules", "0", "--out", str(tmp_path)]) == 2


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
def test_generate_on_cuda_without_cuda_is_one_line(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "nca.generate", "--tokens", "1000", "--device",
                           "cuda", "--cache-dir", str(tmp_path / "c")], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "--device 'cuda' is not available" in proc.stderr and not (tmp_path / "c").exists()


def test_generate_cache_dir_that_is_a_file_is_one_line(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "nca.generate", "--tokens", "1000",
                           "--cache-dir", "/bin/ls"], cwd=REPO, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "--cache-dir '/bin/ls' is not a folder" in proc.stderr
