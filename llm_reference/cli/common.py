"""Options that several commands share, declared once so that they read the same."""

from __future__ import annotations

import argparse


def add_run(parser: argparse.ArgumentParser, what: str = "run folder written by "
            "`train` (or `finetune`)") -> None:
    parser.add_argument("--run", required=True, metavar="DIR", help=what)


def add_out(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--out", required=True, metavar="DIR", help=what)


def add_force(parser: argparse.ArgumentParser, what: str = "replace a non-empty --out"
              ) -> None:
    parser.add_argument("--force", action="store_true", help=what)


def add_device(parser: argparse.ArgumentParser, what: str = "device to run on") -> None:
    parser.add_argument("--device", default="auto",
                        help=f"{what}: auto (CUDA, then Apple MPS, then the CPU), "
                             "cpu, cuda[:N] or mps (default: auto)")
