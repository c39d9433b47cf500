"""The optuna-dashboard command for a storage and its artifact directory.

Run:
    python -m analysis.dashboard --storage runs/code.journal --artifact-dir runs/artifacts
    python -m analysis.dashboard --storage runs/code.journal --artifact-dir runs/artifacts --launch
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["dashboard_command", "main"]


def dashboard_command(storage: str | os.PathLike[str], artifact_dir: str | os.PathLike[str] | None,
                      *, host: str = "127.0.0.1", port: int = 8080) -> list[str]:
    """``optuna-dashboard <storage> [--artifact-dir DIR] --host H --port P`` as an argv list.

    Args:
        storage: Journal file path or database URL, as the search wrote it.
        artifact_dir: The FileSystemArtifactStore directory of the trials' artifacts.
        host: Interface to listen on (loopback by default; the dashboard has no auth).
        port: TCP port.
    """
    if not 0 < port < 65536:
        raise ValueError(f"port must be in 1..65535; got {port!r}")
    cmd = ["optuna-dashboard", os.fspath(storage)]
    if artifact_dir is not None:
        cmd += ["--artifact-dir", os.fspath(artifact_dir)]
    return [*cmd, "--host", host, "--port", str(port)]


def main(argv: Sequence[str] | None = None) -> int:
    """Print the command, or run it in the foreground with ``--launch`` (Ctrl-C to stop)."""
    p = argparse.ArgumentParser(prog="python -m analysis.dashboard",
                                description=__doc__.split("\n")[0])
    p.add_argument("--storage", required=True, help="journal file path or database URL")
    p.add_argument("--artifact-dir", type=Path, default=None, help="artifact store directory")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--launch", action="store_true", help="run it instead of printing it")
    args = p.parse_args(argv)
    try:
        cmd = dashboard_command(args.storage, args.artifact_dir, host=args.host, port=args.port)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.artifact_dir is not None and not args.artifact_dir.is_dir():
        print(f"error: --artifact-dir {str(args.artifact_dir)!r} is not a directory",
              file=sys.stderr)
        return 2
    print(shlex.join(cmd))
    if not args.launch:
        return 0
    if shutil.which(cmd[0]) is None:
        print("error: optuna-dashboard is not on PATH (pip install optuna-dashboard)",
              file=sys.stderr)
        return 2
    return subprocess.run(cmd, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
