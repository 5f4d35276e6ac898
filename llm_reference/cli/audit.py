"""`python -m llm_reference audit`: run the compliance checks over your folders.

Point it at what you have (a data folder, a run, a release, a code tree, an
evaluation set); every check whose targets were given runs, the others are reported
as skipped with the option that would run them. Exit status: 1 when a check failed,
2 on bad input (a missing folder, an unknown id), 0 otherwise, so CI can gate on it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..atomic import write_text
from ..audit import Targets, exit_code, run_audit
from ..audit.report import FORMATS, describe
from ..audit.runner import select
from ..errors import UserError


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, metavar="DIR",
                        help="a data folder written by `prepare`")
    parser.add_argument("--run", type=Path, metavar="DIR",
                        help="a run folder written by `train` or `finetune`")
    parser.add_argument("--release", type=Path, metavar="DIR",
                        help="a folder written by `release`")
    parser.add_argument("--code", type=Path, metavar="DIR",
                        help="a code tree: Python sources, scripts and configs")
    parser.add_argument("--eval", type=Path, metavar="FILE",
                        help="an evaluation set (.jsonl, .json or one item per line) "
                             "to decontaminate against --data")
    parser.add_argument("--compare-data", type=Path, metavar="DIR",
                        help="a second prepare of the same inputs: "
                             "data.reproducible-manifest compares the two folders "
                             "instead of preparing again")
    parser.add_argument("--ngram", type=int, default=13, metavar="N",
                        help="tokens per n-gram for dataset.decontamination "
                             "(default: 13)")
    parser.add_argument("--max-contaminated", type=float, default=0.0,
                        metavar="FRACTION",
                        help="share of evaluation items allowed to be contaminated "
                             "(default: 0)")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes for re-running prepare (default: 1)")
    parser.add_argument("--only", nargs="+", metavar="ID",
                        help="run only these checks (ids from --list)")
    parser.add_argument("--format", choices=sorted(FORMATS), default="table",
                        help="table for people, json or sarif for machines "
                             "(default: table)")
    parser.add_argument("--out", type=Path, metavar="FILE",
                        help="write the report here instead of standard output")
    parser.add_argument("--list", action="store_true",
                        help="explain every check (id, what, why, how to fix) and exit")


def targets_from(args: argparse.Namespace) -> Targets:
    """The targets, each checked to exist (a missing one is a UserError)."""
    for option in ("data", "run", "release", "code", "compare_data"):
        path = getattr(args, option)
        if path is not None and not path.is_dir():
            raise UserError(f"--{option.replace('_', '-')} {path}: no such folder")
    if args.eval is not None and not args.eval.is_file():
        raise UserError(f"--eval {args.eval}: no such file")
    if args.ngram < 1:
        raise UserError(f"--ngram {args.ngram} must be >= 1")
    if not 0 <= args.max_contaminated <= 1:
        raise UserError(f"--max-contaminated {args.max_contaminated} must be in [0, 1]")
    return Targets(data=args.data, run=args.run, release=args.release, code=args.code,
                   eval=args.eval, compare_data=args.compare_data, ngram=args.ngram,
                   max_contaminated=args.max_contaminated, workers=args.workers)


def run(args: argparse.Namespace) -> int:
    checks = select(args.only)
    if args.list:
        print(describe(checks), end="")
        return 0
    results = run_audit(targets_from(args), [c.id for c in checks])
    report = FORMATS[args.format](results)
    if args.out is None:
        sys.stdout.write(report)
    else:
        write_text(args.out, report)
        print(f"wrote {args.out}", file=sys.stderr)
    return exit_code(results)

