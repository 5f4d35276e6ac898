"""`python -m llm_reference merge`: join prepared slice folders into one."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..slices import merge
from .common import add_out


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folders", nargs="+", type=Path, metavar="FOLDER",
                        help="the folders of `prepare --slice I/N`, one per slice")
    add_out(parser, "the merged data folder (new or empty)")


def run(args: argparse.Namespace) -> int:
    meta = merge(args.folders, Path(args.out))
    print(f"merged {len(args.folders)} slices into {args.out}/: train "
          f"{meta['train_tokens']:,} tokens ({len(meta['shards']['train'])} shards), "
          f"val {meta['val_tokens']:,} tokens")
    return 0
