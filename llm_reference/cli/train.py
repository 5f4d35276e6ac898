"""`train`: pretrain a GPT on prepared shards (`train.py`)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from ..config import load_config, preset_names
from ..errors import UserError
from .common import add_force, add_out


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=preset_names(), default=None,
                        help="starting config from llm_reference/presets "
                             "(default: tiny, unless --config is given)")
    parser.add_argument("--config", metavar="FILE",
                        help="a TOML file with [model] and [train] tables, applied "
                             "on top of the preset")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="override one field, e.g. --set train.lr=3e-4 --set "
                             "model.n_layer=2 (value read as a TOML literal; "
                             "repeatable)")
    parser.add_argument("--data", metavar="DIR",
                        help="prepared data folder (from `prepare`); same as "
                             "--set train.data_dir=DIR")
    add_out(parser, "run folder: config.toml, metrics.jsonl, loss.png, checkpoints/, "
                    "tokenizer.json")
    parser.add_argument("--max-steps", type=int, metavar="N",
                        help="optimizer steps; same as --set train.max_steps=N (with "
                             "--resume: extend the run, which changes the LR schedule)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its last checkpoint, "
                             "with the config saved in the run folder")
    add_force(parser, "delete the checkpoints and metrics already in --out and start "
                      "over")


def run(args: argparse.Namespace) -> int:
    from .. import distributed
    from ..train import train

    overrides = list(args.overrides)
    if args.data is not None:
        overrides.append(f"train.data_dir={json.dumps(args.data)}")
    if args.max_steps is not None:
        overrides.append(f"train.max_steps={args.max_steps}")
    if args.resume:
        if args.preset or args.config or args.overrides:
            raise UserError("--resume uses the run's own config.toml; drop --preset, "
                            "--config and --set (edit that file to change it)")
        saved = Path(args.out) / "config.toml"
        if not saved.is_file():
            raise UserError(f"nothing to resume: {saved} does not exist")
        config = load_config(config_file=saved, overrides=overrides)
    else:
        preset = args.preset or (None if args.config else "tiny")
        config = load_config(preset, args.config, overrides)
    result = train(config, args.out, resume=args.resume, force=args.force)
    if not distributed.is_main():  # under torchrun, rank 0 reports
        return 0
    print(f"final val loss {result['val_loss']:.4f} "
          f"(perplexity {math.exp(result['val_loss']):.1f}) at step {result['step']}")
    out = Path(args.out)
    print(f"wrote {out / 'metrics.jsonl'}, {out / 'loss.png'}, {result['checkpoint']}")
    return 0
