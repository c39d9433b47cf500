"""Command line for the proxy LM's stages, each run as the search trial runs it.

    python -m lm.cli presets
    python -m lm.cli nca --data NCA_DIR --preset cpu-proxy --out runs/ppt.pt --json runs/nca.json
    python -m lm.cli transfer --init runs/ppt.pt --domain code --freeze attention
    python -m lm.cli scratch --domain code --data ../shared/data/code --json runs/scratch.json
    python -m lm.cli domain --domain code --data ../shared/data/code --init runs/ppt.pt \\
        --freeze attention --baseline runs/scratch.json --json runs/nca.json

`presets` lists the model sizes with their parameter counts. The recipe (lm.recipe; default
the preset's) sets each stage's TrainConfig, as in a trial.
`nca` trains a fresh model on a token-dataset directory (docs/interfaces.md §1b, e.g. written by
nca.build), prints its upstream diagnostic and writes the pre-pre-trained checkpoint whose
layout lm.checkpoint defines. `transfer` prints what moving that checkpoint to the domain's
vocabulary copies, re-initialises and freezes; `domain --init` transfers it so and trains on the
domain; `scratch` (or `domain` without --init) trains a fresh model with the recipe's new
embedding. `--checkpoint PATH` makes a training run resumable: SIGINT, SIGTERM or SIGUSR1 save
it and exit with status 75, and rerunning the same command continues bit for bit. A bad value
is one line on stderr and status 2. This module only parses and prints; the stages are lm's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
from pathlib import Path
from typing import Any

import torch

from lm.checkpoint import save_pretrained
from lm.corpora import DOMAINS, DomainCorpus, load_domain
from lm.data import SequenceDataset, open_token_dataset
from lm.diagnose import diagnose
from lm.model import Transformer
from lm.presets import PRESETS, Preset, Stage, build_model, get_preset
from lm.recipe import RECIPES, Recipe, get_recipe, init_new_embeddings
from lm.scores import score
from lm.trainer import TrainConfig, TrainingInterrupted, TrainResult, train
from lm.transfer import GROUPS, TransferConfig, TransferReport, transfer
from ncaio import atomic_write_text
from ncaio.cli import OneLineParser, check_device, run_cli

EXIT_INTERRUPTED = 75  # EX_TEMPFAIL: rerun the same command to resume


# -- arguments -----------------------------------------------------------------------------------


def _add_model(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="cpu-proxy", choices=list(PRESETS))
    p.add_argument("--recipe", default=None, choices=RECIPES,
                   help="training recipe (default: the preset's)")
    p.add_argument("--seed", type=int, default=0, help="weight-init and batch-order seed")


def _add_training(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tokens", type=int, default=None, help="training tokens (default: preset)")
    p.add_argument("--lr", type=float, default=None,
                   help="this stage's peak learning rate (default: the preset's and recipe's)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--checkpoint", type=Path, default=None, help="resumable checkpoint file")
    p.add_argument("--checkpoint-every", type=int, default=None,
                   help="tokens between saves (default: every evaluation)")
    p.add_argument("--json", type=Path, default=None, help="write the result here")


def _add_corpus(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default=None,
                   help="local path, 'hf', hf:NAME or 'stdlib' (default: built-in, code only)")
    p.add_argument("--tokenizer", default="byte", help="'byte' or 'bpe[:N]'")
    p.add_argument("--cache-dir", type=Path, default=None)
    p.add_argument("--max-train-bytes", type=int, default=None)


def _add_transfer(p: argparse.ArgumentParser) -> None:
    groups = ",".join(GROUPS)
    p.add_argument("--reinit", default="", help=f"groups to re-initialise: {groups}")
    p.add_argument("--reinit-layers", default=None, help="START:STOP blocks (default all)")
    p.add_argument("--freeze", default="", help=f"groups to freeze: {groups}")
    p.add_argument("--freeze-layers", default=None, help="START:STOP blocks (default all)")


def _domain_flag(p: argparse.ArgumentParser, text: str) -> None:
    p.add_argument("--domain", default="code", choices=list(DOMAINS), help=text)


def _parser() -> OneLineParser:
    ap = OneLineParser(prog="python -m lm.cli", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("presets", help="list the presets with parameter counts")
    p = sub.add_parser("nca", help="pre-pre-train on a token-dataset directory")
    p.add_argument("--data", type=Path, required=True, help="token-dataset directory")
    p.add_argument("--out", type=Path, required=True, help="pre-pre-trained checkpoint")
    _domain_flag(p, "the domain the recipe is resolved for (its NCA lr ratio)")
    _add_model(p)
    _add_training(p)
    p = sub.add_parser("transfer", help="print what --init's transfer to a domain does")
    p.add_argument("--init", type=Path, required=True, help="pre-pre-trained checkpoint")
    p.add_argument("--vocab", type=int, default=None, help="target vocabulary (default: corpus)")
    _domain_flag(p, "the target domain")
    _add_corpus(p)
    _add_model(p)
    _add_transfer(p)
    for name, text in (("domain", "train on a domain (from --init, else from scratch)"),
                       ("scratch", "the scratch baseline: domain training from a fresh model")):
        p = sub.add_parser(name, help=text)
        _domain_flag(p, "the domain to train on")
        _add_corpus(p)
        _add_model(p)
        _add_training(p)
        if name == "domain":
            p.add_argument("--init", type=Path, default=None, help="pre-pre-trained checkpoint")
            _add_transfer(p)
        p.add_argument("--baseline", type=Path, default=None,
                       help="scratch result JSON to score against")
    return ap


def _groups(flag: str, text: str) -> tuple[str, ...]:
    groups = tuple(g for g in text.split(",") if g)
    if not set(groups) <= set(GROUPS):
        raise ValueError(f"{flag} {text!r}; accepted: comma-separated {', '.join(GROUPS)}")
    return groups


def _layers(flag: str, text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    start, _, stop = text.partition(":")
    try:
        return int(start), int(stop)
    except ValueError:
        raise ValueError(f"{flag} {text!r}; accepted: START:STOP, e.g. 0:2") from None


def _transfer_config(args: argparse.Namespace, recipe: Recipe) -> TransferConfig:
    """As the trial: the new embedding drawn from the seed as the recipe says."""
    return TransferConfig(reinit=_groups("--reinit", args.reinit),
                          reinit_layers=_layers("--reinit-layers", args.reinit_layers),
                          freeze=_groups("--freeze", args.freeze),
                          freeze_layers=_layers("--freeze-layers", args.freeze_layers),
                          seed=args.seed, embed_init=recipe.embed_init)


def _recipe(args: argparse.Namespace, preset: Preset) -> Recipe:
    return get_recipe(args.recipe or preset.recipe, args.domain)


def _stage_config(args: argparse.Namespace, preset: Preset, stage: Stage, seq_len: int
                  ) -> TrainConfig:
    """The stage's TrainConfig as search.plan resolves a trial's: --lr sets this stage's peak lr
    (for the NCA stage through the recipe's ratio, as a setting's ppt_lr does)."""
    recipe, domain_lr = _recipe(args, preset), preset.lr
    if args.lr and stage == "nca":
        recipe = recipe.replace(nca_lr_ratio=args.lr / domain_lr)
    elif args.lr:
        domain_lr = args.lr
    tokens = args.tokens or (preset.nca_tokens if stage == "nca" else preset.domain_tokens)
    cfg = recipe.stage_config(preset, stage, seed=args.seed, seq_len=seq_len, tokens=tokens,
                              domain_lr=domain_lr)
    return dataclasses.replace(cfg, compile=True) if args.compile else cfg


# -- the commands --------------------------------------------------------------------------------


class _StopFlag:
    """Set by SIGINT/SIGTERM/SIGUSR1; polled by the trainer as should_stop."""

    def __init__(self) -> None:
        self.raised = False
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        print(f"signal {signum}: stopping after this step", file=sys.stderr, flush=True)
        self.raised = True

    def __call__(self) -> bool:
        return self.raised


def _train(model: Transformer, train_ds: SequenceDataset, val_ds: SequenceDataset,
           cfg: TrainConfig, args: argparse.Namespace, stage: str) -> TrainResult:
    def report(tokens: int, loss: float) -> None:
        print(f"  {stage} tokens {tokens:>12,}  val_loss {loss:.4f}", flush=True)

    return train(model, train_ds, val_ds, cfg, device=args.device, callback=report,
                 checkpoint_path=args.checkpoint,
                 checkpoint_every_tokens=args.checkpoint_every or cfg.eval_every_tokens,
                 should_stop=_StopFlag())


def _write_json(path: Path | None, record: dict[str, Any]) -> None:
    print(json.dumps({k: v for k, v in record.items() if k != "curve"}, indent=1))
    if path is not None:
        atomic_write_text(path, json.dumps(record, indent=1))


def _presets(args: argparse.Namespace) -> None:
    text_vocab, nca_vocab = 257, 10 ** 4 + 2
    print(f"{'preset':<12} {'layers':>6} {'width':>6} {'heads':>5} {'params (bytes)':>15} "
          f"{'params (NCA)':>13} {'non-emb':>12}  description")
    for p in PRESETS.values():
        print(f"{p.name:<12} {p.n_layer:>6} {p.n_embd:>6} {p.n_head:>5} "
              f"{p.num_params(text_vocab):>15,} {p.num_params(nca_vocab):>13,} "
              f"{p.num_params(0):>12,}  {p.description}")
    print(f"(byte vocabulary {text_vocab}; NCA vocabulary {nca_vocab} = 10**4 + 2)")


def _nca(args: argparse.Namespace) -> None:
    preset = get_preset(args.preset)
    train_ds, val_ds = open_token_dataset(args.data, "train"), open_token_dataset(args.data, "val")
    model = build_model(preset, train_ds.vocab_size, seed=args.seed)
    cfg = _stage_config(args, preset, "nca", train_ds.seq_len)
    result = _train(model, train_ds, val_ds, cfg, args, "nca")
    upstream = diagnose(model, train_ds, val_ds, device=args.device).as_dict()
    save_pretrained(args.out, model, upstream)
    _write_json(args.json, {"stage": "nca", "data": str(args.data), "preset": args.preset,
                            "recipe": _recipe(args, preset).name, "curve": result.curve,
                            "final_val_loss": result.final_val_loss,
                            "tokens_seen": result.tokens_seen, "wall_s": result.wall_s,
                            "upstream": upstream, "checkpoint": str(args.out)})


def _corpus(args: argparse.Namespace, preset: Preset) -> DomainCorpus:
    return load_domain(args.domain, args.data, args.tokenizer, cache_dir=args.cache_dir,
                       seq_len=preset.seq_len, max_train_bytes=args.max_train_bytes)


def _transferred(args: argparse.Namespace, preset: Preset, vocab_size: int
                 ) -> tuple[Transformer, TransferReport]:
    return transfer(args.init, vocab_size, _transfer_config(args, _recipe(args, preset)))


def _transfer(args: argparse.Namespace) -> None:
    preset = get_preset(args.preset)
    vocab = args.vocab or _corpus(args, preset).vocab_size
    _, report = _transferred(args, preset, vocab)
    print(report.summary())


def _fresh(args: argparse.Namespace, preset: Preset, vocab_size: int) -> Transformer:
    """The scratch model, as the trial's: the new embedding drawn as the recipe says."""
    model = build_model(preset, vocab_size, seed=args.seed)
    init_new_embeddings(model, _recipe(args, preset).embed_init, args.seed)
    return model


def _baseline_curve(path: Path | None) -> list[tuple[int, float]] | None:
    if path is None:
        return None
    try:
        return [(int(t), float(loss)) for t, loss in json.loads(path.read_text())["curve"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"--baseline {str(path)!r} is unreadable ({type(exc).__name__}); "
                         "accepted: the --json of a `scratch` run") from None


def _domain(args: argparse.Namespace) -> None:
    preset = get_preset(args.preset)
    baseline = _baseline_curve(args.baseline)
    corpus = _corpus(args, preset)
    init = getattr(args, "init", None)
    if init is None:
        model = _fresh(args, preset, corpus.vocab_size)
    else:
        model, report = _transferred(args, preset, corpus.vocab_size)
        print(report.summary(), file=sys.stderr)
    cfg = _stage_config(args, preset, "domain", corpus.train.seq_len)
    result = _train(model, corpus.train, corpus.val, cfg, args, "domain")
    scores = score(result.curve, baseline, corpus.bytes_per_token)
    _write_json(args.json, {
        "stage": "domain", "domain": args.domain, "corpus": corpus.key, "preset": args.preset,
        "recipe": _recipe(args, preset).name, "init": str(init) if init else None,
        "seed": args.seed, "curve": result.curve, "final_val_loss": result.final_val_loss,
        "bytes_per_token": corpus.bytes_per_token, "tokens_seen": result.tokens_seen,
        "wall_s": result.wall_s, "scores": dataclasses.asdict(scores)})


_COMMANDS = {"presets": _presets, "nca": _nca, "transfer": _transfer, "domain": _domain,
             "scratch": _domain}


def _run(args: argparse.Namespace) -> int:
    if getattr(args, "device", None):
        check_device(args.device)
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    try:
        _COMMANDS[args.command](args)
    except TrainingInterrupted as err:
        print(err, file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status (2: a bad value, 75: interrupted)."""
    return run_cli(_parser(), _run, argv)


if __name__ == "__main__":
    sys.exit(main())
