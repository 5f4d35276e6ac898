"""`release`: model card, weights, tokenizer and manifest for a run (`release.py`)."""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import UserError
from ..rescan import SCAN_TOKENS
from .common import add_device, add_force, add_out, add_run, resolve_device


def configure_parser(parser: argparse.ArgumentParser) -> None:
    add_run(parser)
    add_out(parser, "release folder to create; must be empty or absent unless --force")
    parser.add_argument("--step", type=int, metavar="N",
                        help="release the checkpoint of step N (default: the latest)")
    parser.add_argument("--license", metavar="NAME",
                        help="license of the released weights, an SPDX id such as "
                             "MIT or Apache-2.0 (written into the model card); it "
                             "must be compatible with the data licenses")
    parser.add_argument("--data", metavar="DIR",
                        help="the prepared data folder the run trained on (default: "
                             "the run's train.data_dir)")
    parser.add_argument("--format", choices=["native", "hf"], default="native",
                        help="native: our config.json and tensor names; hf: a "
                             "Hugging Face folder (config.json with a model_type, "
                             "HF tensor names, tokenizer_config.json with the chat "
                             "template) that transformers loads and the Hub shows "
                             "with its model card (default: native)")
    add_force(parser)
    parser.add_argument("--no-eval", action="store_true",
                        help="skip the quick evaluation when the run has no eval.json "
                             "for this step (the card then says 'not evaluated')")
    parser.add_argument("--scan-tokens", type=int, default=SCAN_TOKENS, metavar="N",
                        help="tokens of the training shards to re-scan for PII "
                             f"(default: {SCAN_TOKENS:,}; 0 skips the re-scan)")
    add_device(parser, "device for the quick evaluation")


def run(args: argparse.Namespace) -> int:
    from ..release import release

    device = resolve_device(args.device)
    if args.scan_tokens < 0:
        raise UserError(f"--scan-tokens {args.scan_tokens}: must be >= 0")
    out = release(args.run, args.out, args.step, args.license, args.data, args.force,
                  evaluate=not args.no_eval, scan_tokens=args.scan_tokens,
                  device=str(device), format=args.format)
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    if args.license is None:
        print("warning: no --license given; the model card says the license is not "
              "chosen", file=sys.stderr)
    if manifest["data"] is None:
        print("warning: the training data folder was not found; the card does not "
              "document the data (pass --data)", file=sys.stderr)
    files = ", ".join([*manifest["files_sha256"], "manifest.json"])
    print(f"released step {manifest['step']} to {out}/: {files}")
    return 0
