"""Command line for the proxy LM: NCA stage, transfer, domain stage, scratch baseline.

    python -m lm.train nca --data NCA_DIR --preset cpu-proxy --out runs/ppt.pt
    python -m lm.train transfer --init runs/ppt.pt --domain code --out runs/lm0.pt \\
        --freeze attention
    python -m lm.train domain --domain code --data ../shared/data/code --init runs/ppt.pt \\
        --baseline runs/scratch.json --json runs/nca.json
    python -m lm.train scratch --domain code --data ../shared/data/code --json runs/scratch.json

`nca` trains on a token-dataset directory (docs/interfaces.md §1b, e.g. written by nca.build) and
prints the upstream diagnostic. `domain --init` accepts an NCA-stage checkpoint (transferred on
the fly with the --reinit/--freeze options) or the output of `transfer`. `--checkpoint PATH`
makes a run resumable: SIGINT, SIGTERM or SIGUSR1 save it and exit with status 75, and rerunning
the same command continues bit for bit. This module is the CLI only; the library is lm.trainer.
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

from ncaio import atomic_write_text
from lm.checkpoint import load_checkpoint, save_checkpoint
from lm.corpora import DOMAINS, load_domain
from lm.data import open_token_dataset
from lm.diagnose import diagnose
from lm.model import ModelConfig, Transformer
from lm.presets import PRESETS, build_model, get_preset
from lm.scores import score
from lm.trainer import TrainingInterrupted, train
from lm.transfer import GROUPS, TransferConfig, transfer

EXIT_INTERRUPTED = 75  # EX_TEMPFAIL: rerun the same command to resume


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="cpu-proxy", choices=list(PRESETS))
    p.add_argument("--seed", type=int, default=0, help="weight-init and batch-order seed")
    p.add_argument("--tokens", type=int, default=None, help="training tokens (default: preset)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default: preset)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--checkpoint", type=Path, default=None, help="resumable checkpoint file")
    p.add_argument("--checkpoint-every", type=int, default=None, help="tokens between saves")
    p.add_argument("--json", type=Path, default=None, help="write the result here")


def _add_corpus(p: argparse.ArgumentParser) -> None:
    p.add_argument("--domain", default="code", choices=list(DOMAINS))
    p.add_argument("--data", default=None,
                   help="local path, 'hf', hf:NAME or 'stdlib' (default: built-in, code only)")
    p.add_argument("--tokenizer", default="byte", help="'byte' or 'bpe[:N]'")
    p.add_argument("--cache-dir", type=Path, default=None)
    p.add_argument("--max-train-bytes", type=int, default=None)


def _add_transfer(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reinit", default="", help=f"groups to re-initialise: {','.join(GROUPS)}")
    p.add_argument("--reinit-layers", default=None, help="START:STOP blocks (default all)")
    p.add_argument("--freeze", default="", help=f"groups to freeze: {','.join(GROUPS)}")
    p.add_argument("--freeze-layers", default=None, help="START:STOP blocks (default all)")


def _parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m lm.train", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("nca", help="pre-pre-train on a token-dataset directory")
    p.add_argument("--data", type=Path, required=True, help="token-dataset directory")
    _add_common(p)
    p.add_argument("--out", type=Path, required=True, help="final checkpoint (for transfer)")
    p = sub.add_parser("transfer", help="move an NCA checkpoint to a domain's vocabulary")
    p.add_argument("--init", type=Path, required=True, help="NCA-stage checkpoint")
    p.add_argument("--vocab", type=int, default=None, help="target vocabulary (default: corpus)")
    p.add_argument("--out", type=Path, required=True)
    _add_corpus(p)
    _add_transfer(p)
    p.add_argument("--seed", type=int, default=0)
    for name, text in (("domain", "train on a domain (from --init, else from scratch)"),
                       ("scratch", "the scratch baseline: domain training from random init")):
        p = sub.add_parser(name, help=text)
        _add_corpus(p)
        _add_common(p)
        if name == "domain":
            p.add_argument("--init", type=Path, default=None,
                           help="NCA checkpoint or `transfer` output")
            _add_transfer(p)
        p.add_argument("--baseline", type=Path, default=None,
                       help="scratch result JSON to score against")
    return ap.parse_args(argv)


def _layers(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    start, _, stop = text.partition(":")
    try:
        return int(start), int(stop)
    except ValueError:
        raise ValueError(f"layer range {text!r}: expected START:STOP, e.g. 0:2") from None


def _transfer_config(args: argparse.Namespace) -> TransferConfig:
    def groups(text: str) -> tuple[str, ...]:
        return tuple(g for g in text.split(",") if g)
    return TransferConfig(reinit=groups(args.reinit), reinit_layers=_layers(args.reinit_layers),
                          freeze=groups(args.freeze), freeze_layers=_layers(args.freeze_layers),
                          seed=args.seed)


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


def _run_train(model: Transformer, train_ds: Any, val_ds: Any, args: argparse.Namespace,
               stage: str) -> Any:
    preset = get_preset(args.preset)
    overrides: dict[str, Any] = {"compile": args.compile}
    if args.tokens:
        overrides["total_tokens"] = args.tokens
    if args.lr:
        overrides["lr"] = args.lr
    cfg = preset.train_config(stage, seq_len=train_ds.seq_len, seed=args.seed,  # type: ignore
                              **overrides)

    def report(tokens: int, loss: float) -> None:
        print(f"  {stage} tokens {tokens:>12,}  val_loss {loss:.4f}", flush=True)

    return train(model, train_ds, val_ds, cfg, device=args.device, callback=report,
                 checkpoint_path=args.checkpoint, checkpoint_every_tokens=args.checkpoint_every,
                 should_stop=_StopFlag())


def _write_json(path: Path | None, record: dict[str, Any]) -> None:
    print(json.dumps({k: v for k, v in record.items() if k != "curve"}, indent=1))
    if path is not None:
        atomic_write_text(path, json.dumps(record, indent=1))


def _cmd_nca(args: argparse.Namespace) -> None:
    train_ds, val_ds = open_token_dataset(args.data, "train"), open_token_dataset(args.data, "val")
    model = build_model(args.preset, train_ds.vocab_size, seed=args.seed)
    result = _run_train(model, train_ds, val_ds, args, "nca")
    diag = diagnose(model, train_ds, val_ds, device=args.device)
    save_checkpoint(args.out, {"model": model.state_dict(),
                               "model_config": _config_dict(model.config)})
    _write_json(args.json, {"stage": "nca", "data": str(args.data), "preset": args.preset,
                            "curve": result.curve, "final_val_loss": result.final_val_loss,
                            "tokens_seen": result.tokens_seen, "wall_s": result.wall_s,
                            "upstream": diag.as_dict(), "checkpoint": str(args.out)})


def _config_dict(cfg: ModelConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def _load_init(path: Path, vocab: int, args: argparse.Namespace) -> Transformer:
    state = load_checkpoint(path)
    if "transfer_report" in state:  # output of `transfer`: load as is
        model = Transformer(ModelConfig(**state["model_config"]))
        model.load_state_dict(state["model"])
        for name, p in model.named_parameters():
            p.requires_grad_(state["requires_grad"][name])
        if model.config.vocab_size != vocab:
            raise ValueError(f"{str(path)!r} has vocab {model.config.vocab_size}, corpus {vocab}")
        return model
    model, report = transfer(state, vocab, _transfer_config(args))
    print(report.summary(), file=sys.stderr)
    return model


def _cmd_transfer(args: argparse.Namespace) -> None:
    vocab = args.vocab
    if vocab is None:
        vocab = load_domain(args.domain, args.data, args.tokenizer,
                            cache_dir=args.cache_dir).vocab_size
    model, report = transfer(args.init, vocab, _transfer_config(args))
    save_checkpoint(args.out, {"model": model.state_dict(),
                               "model_config": _config_dict(model.config),
                               "requires_grad": {n: p.requires_grad
                                                 for n, p in model.named_parameters()},
                               "transfer_report": report.as_dict()})
    print(report.summary())


def _cmd_domain(args: argparse.Namespace) -> None:
    preset = get_preset(args.preset)
    corpus = load_domain(args.domain, args.data, args.tokenizer, cache_dir=args.cache_dir,
                         seq_len=preset.seq_len, max_train_bytes=args.max_train_bytes)
    init = getattr(args, "init", None)
    model = (_load_init(init, corpus.vocab_size, args) if init is not None
             else build_model(preset, corpus.vocab_size, seed=args.seed))
    result = _run_train(model, corpus.train, corpus.val, args, "domain")
    record: dict[str, Any] = {
        "stage": "domain", "domain": args.domain, "corpus": corpus.key, "preset": args.preset,
        "init": str(init) if init else None, "seed": args.seed, "curve": result.curve,
        "final_val_loss": result.final_val_loss, "bytes_per_token": corpus.bytes_per_token,
        "tokens_seen": result.tokens_seen, "wall_s": result.wall_s}
    baseline = json.loads(args.baseline.read_text())["curve"] if args.baseline else None
    record["scores"] = dataclasses.asdict(score(result.curve, baseline, corpus.bytes_per_token))
    _write_json(args.json, record)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)  # nothing should draw from it; set for any library that does
    commands = {"nca": _cmd_nca, "transfer": _cmd_transfer, "domain": _cmd_domain,
                "scratch": _cmd_domain}
    try:
        commands[args.command](args)
    except TrainingInterrupted as err:
        print(err, file=sys.stderr)
        return EXIT_INTERRUPTED
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
