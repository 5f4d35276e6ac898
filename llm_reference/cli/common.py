"""Options that several commands share, declared once so that they read the same."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ..errors import UserError

if TYPE_CHECKING:
    import torch


def add_run(parser: argparse.ArgumentParser, what: str = "run folder written by "
            "`train` (or `finetune`)") -> None:
    parser.add_argument("--run", required=True, metavar="DIR", help=what)


def add_out(parser: argparse.ArgumentParser, what: str, default: str | None = None
            ) -> None:
    """`--out DIR`, required unless the command has a `default` folder."""
    parser.add_argument("--out", required=default is None, default=default,
                        metavar="DIR", help=what)


def add_force(parser: argparse.ArgumentParser, what: str = "replace a non-empty --out"
              ) -> None:
    parser.add_argument("--force", action="store_true", help=what)


def add_device(parser: argparse.ArgumentParser, what: str = "device to run on") -> None:
    parser.add_argument("--device", default="auto",
                        help=f"{what}: auto (CUDA, then Apple MPS, then the CPU), "
                             "cpu, cuda[:N] or mps (default: auto)")


def resolve_device(name: str) -> torch.device:
    """The torch device `--device` names, checked before the command does any work.

    A name that is no device (`tpu`) or a device this machine lacks (`cuda` without
    CUDA, `cuda:3` with two GPUs) is a one-line error, not a traceback from torch.
    """
    import torch  # here: `--help` does not load torch

    from .. import config

    if config.DEVICE_PATTERN.fullmatch(name) is None:
        raise UserError(f"device {name!r}: not a device; use auto, cpu, cuda, cuda:N "
                        "or mps")
    device = config.resolve_device(name)  # "auto" -> a device this machine has
    count = torch.cuda.device_count()
    if device.type == "cuda" and device.index is not None and device.index >= count:
        raise UserError(f"device {name!r}: this machine has {count} CUDA device(s), "
                        f"cuda:0 to cuda:{count - 1}")
    return device
