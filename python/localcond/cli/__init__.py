"""The ``localcond`` command line: one module per group of commands, each with
its own parsers and handlers (``register`` adds them)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from localcond.errors import LocalcondError


def positive(text: str) -> float:
    """An argparse type: a finite number > 0 (a temperature, a timestep, a lag)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from localcond.cli import grid, learn, models, reduce, trajectories

    parser = argparse.ArgumentParser(
        prog="localcond", description="Local molar conductivity of ions (LAMMPS plugin + Python)."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (models, trajectories, grid, learn, reduce):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (LocalcondError, OSError) as exc:  # OSError: a file named in its message (full disk, permissions)
        print(f"localcond {args.command}: error: {exc}", file=sys.stderr)
        return 2
