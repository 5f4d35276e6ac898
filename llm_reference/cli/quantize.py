"""`quantize`: int8 weight-only quantization with a report (`quantize.py`)."""

from __future__ import annotations

import argparse

from .common import add_device, add_out, add_run, resolve_device


def configure_parser(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add_run(parser, "run folder to quantize")
    add("--step", type=int, metavar="N",
        help="checkpoint step (default: the latest)")
    add_out(parser, "output folder: model.safetensors (int8), quantization.json, "
                    "tokenizer.json, report.json")
    add("--data", metavar="DIR",
        help="prepared data folder for the perplexity (default: the run's "
             "train.data_dir)")
    add("--val-batches", type=int, default=10, metavar="N",
        help="held-out batches for the perplexity, the same for every variant "
             "(default: 10)")
    add("--prompt", default="def ",
        help="prompt for the greedy speed test (default: 'def ')")
    add("--new-tokens", type=int, default=64, metavar="N",
        help="tokens generated per speed test (default: 64)")
    add("--repeats", type=int, default=3, metavar="N",
        help="speed tests per variant; the fastest counts (default: 3)")
    add("--no-peer", action="store_true",
        help="skip PyTorch's quantize_dynamic comparison")
    add_device(parser, "device for the measurements (the int8 kernel and "
                       "quantize_dynamic are CPU-only)")


def run(args: argparse.Namespace) -> int:
    from ..quantize import INFO, WEIGHTS, format_report, quantize_run

    device = resolve_device(args.device)
    report = quantize_run(args.run, args.out, args.step, args.data, args.val_batches,
                          args.prompt, args.new_tokens, args.repeats,
                          not args.no_peer, str(device))
    print(format_report(report))
    print(f"wrote {report['out']}/: {WEIGHTS}, {INFO}, tokenizer.json, report.json")
    return 0
