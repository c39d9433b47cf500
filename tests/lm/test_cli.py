"""The command lines, run as a user would (subprocesses), and their one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lm.checkpoint import load_checkpoint
from lm.cli import main
from lm.corpora import load_domain
from lm.data import write_token_dataset
from lm.presets import build_model, get_preset
from lm.trainer import train
from lm.transfer import TransferConfig, transfer

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
def test_the_stages_from_the_command_line_are_the_trials(shared_data, tmp_path):
    """nca -> transfer -> domain (and scratch) through `python -m lm.cli`, then the same stages
    through the functions search.trial runs: one checkpoint layout, the same curves."""
    from search.plan import resolve, scratch_runs
    from search.space import Setting
    from search.trial import TrialContext, scratch_baseline

    nca_dir, ppt, cache = tmp_path / "nca", tmp_path / "ppt.pt", tmp_path / "cache"
    nca_train = counting_dataset(64, 65, 200, 0)
    write_token_dataset(nca_dir, {"train": nca_train.tokens,
                                  "val": counting_dataset(8, 65, 200, 1).tokens}, vocab_size=200)
    tiny = ["--preset", "tiny", "--threads", "1", "--device", "cpu"]
    common = [*tiny, "--tokens", "4096"]
    corpus = ["--data", str(shared_data / "code"), "--cache-dir", str(cache)]
    _run("-m", "lm.cli", "nca", "--data", str(nca_dir), "--out", str(ppt), *tiny,
         "--tokens", "2048", "--json", str(tmp_path / "nca.json"))
    out = _run("-m", "lm.cli", "transfer", "--init", str(ppt), "--freeze", "attention",
               "--preset", "tiny", *corpus)
    assert "frozen (4)" in out.stdout
    _run("-m", "lm.cli", "scratch", *corpus, *common, "--json", str(tmp_path / "s.json"))
    _run("-m", "lm.cli", "domain", *corpus, *common, "--init", str(ppt), "--freeze", "attention",
         "--baseline", str(tmp_path / "s.json"), "--json", str(tmp_path / "d.json"))

    saved = load_checkpoint(ppt)  # what the trial reads from its ppt/ cache
    assert set(saved) == {"model", "upstream"}
    assert saved["upstream"] == json.loads((tmp_path / "nca.json").read_text())["upstream"]
    context = TrialContext(domain="code", data=str(shared_data / "code"), tokenizer="byte",
                           preset="tiny", nca_tokens=2048, domain_tokens=4096, seeds=(0,),
                           cache_dir=str(cache))
    plan, preset = resolve(Setting(), context), get_preset("tiny")
    text = load_domain("code", str(shared_data / "code"), cache_dir=cache, seq_len=preset.seq_len)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        nca_curve = train(build_model(preset, 200, seed=0), nca_train,
                          counting_dataset(8, 65, 200, 1),
                          plan.nca_config(preset, 0, nca_train.seq_len)).curve
        scratch = scratch_baseline(context, scratch_runs(plan, context)[0], 0)
        model, _ = transfer(saved["model"], text.vocab_size, TransferConfig(
            seed=0, embed_init=plan.recipe.embed_init, freeze=("attention",)))
        domain_curve = train(model, text.train, text.val,
                             plan.domain_config(preset, 0, text.train.seq_len)).curve
    finally:
        torch.set_num_threads(threads)
    for name, curve in (("nca", nca_curve), ("s", scratch.curve), ("d", domain_curve)):
        cli = json.loads((tmp_path / f"{name}.json").read_text())["curve"]
        assert [t for t, _ in cli] == [t for t, _ in curve], name
        assert [loss for _, loss in cli] == pytest.approx([loss for _, loss in curve], rel=1e-4)
    assert json.loads((tmp_path / "d.json").read_text())["scores"]["gain_pct"] is not None


def test_cli_errors_are_one_line(tmp_path):
    proc = _run("-m", "lm.cli", "domain", "--domain", "math", "--preset", "tiny",
                "--cache-dir", str(tmp_path), check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "--data PATH" in proc.stderr


@pytest.mark.parametrize("argv,named", [
    (["nca", "--data", "d", "--out", "o.pt", "--preset", "huge"], "'huge'"),
    (["nca", "--data", "d", "--out", "o.pt", "--device", "tpu"], "'tpu'"),
    (["transfer", "--init", "ppt.pt", "--vocab", "80", "--reinit", "attn"], "'attn'"),
    (["transfer", "--init", "ppt.pt", "--vocab", "80", "--freeze-layers", "1-2"], "'1-2'"),
    (["scratch", "--baseline", "missing.json"], "missing.json"),
    (["domain", "--bogus"], "--bogus"),
])
def test_a_bad_flag_is_one_line_naming_it_and_exit_2(argv, named, capsys):
    try:
        status = main(argv)
    except SystemExit as exit_:  # argparse's own errors
        status = exit_.code
    err = capsys.readouterr().err
    assert status == 2
    assert err.strip().count("\n") == 0 and named in err and "error:" in err, err


def test_presets_and_bench_print_figures():
    listing = _run("-m", "lm.cli", "presets").stdout
    assert "cpu-proxy" in listing and "1,611,765,760" in listing
    out = _run("-m", "lm.bench", "--json", "--presets", "tiny,paper-1.6b", "--steps", "1",
               "--device", "cpu").stdout
    bench = json.loads(out)
    assert bench["matmul_gflops"] > 0 and bench["presets"]["tiny"]["tokens_per_s"] > 0
    assert set(bench["presets"]["tiny"]) >= {"tokens_per_s", "model_gflops", "mfu"}
    assert "paper-1.6b" in bench["skipped"]


@pytest.mark.parametrize("args", [["--threads", "0"], ["--steps", "0"], ["--max-step-s", "-1"]])
def test_bench_refuses_counts_it_cannot_run(args):
    proc = _run("-m", "lm.bench", "--presets", "tiny", *args, check=False)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and args[0] in last and "error:" in last, proc.stderr
