"""`eval`: loss, perplexity, bits/byte, accuracy and cloze of a run (`evaluate.py`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .common import add_device, add_run, resolve_device


def configure_parser(parser: argparse.ArgumentParser) -> None:
    add_run(parser, "run folder written by `train`")
    parser.add_argument("--step", type=int, metavar="N",
                        help="evaluate the checkpoint of step N (default: the latest)")
    parser.add_argument("--batches", type=int, metavar="N",
                        help="validation batches for loss, bits/byte and accuracy "
                             "(default: the run's train.eval_steps, the same batches "
                             "as its val_loss)")
    parser.add_argument("--cloze", type=int, default=100, metavar="N",
                        help="cloze items (default: 100; 0 skips the cloze eval)")
    parser.add_argument("--choices", type=int, default=4, metavar="N",
                        help="answer choices per cloze item (default: 4)")
    parser.add_argument("--data", metavar="DIR",
                        help="prepared data folder (default: the run's train.data_dir)")
    add_device(parser)
    parser.add_argument("--json", action="store_true",
                        help="print the results as JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    from ..evaluate import evaluate_run

    device = resolve_device(args.device)
    result = evaluate_run(args.run, args.step, args.batches, args.cloze, args.choices,
                          args.data, str(device))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_table(result))
        print(f"wrote {Path(args.run) / 'eval.json'}")
    return 0


def format_table(result: dict[str, Any]) -> str:
    """The metrics `eval` prints, one per line."""
    cloze = result["cloze"]
    cloze_row = ("cloze accuracy", "skipped")
    if cloze:
        cloze_row = (f"cloze accuracy ({cloze['items']} items)",
                     f"{cloze['accuracy']:.2%} (chance {cloze['chance']:.0%})")
    rows = [
        ("step", f"{result['step']}"),
        ("val loss (nats/token)", f"{result['val_loss']:.4f}"),
        ("perplexity", f"{result['perplexity']:.2f}"),
        ("bits per byte", f"{result['bits_per_byte']:.4f}"),
        ("next-token accuracy", f"{result['accuracy']:.2%}"),
        cloze_row,
        ("tokens / bytes", f"{result['tokens']:,} / {result['bytes']:,}"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
