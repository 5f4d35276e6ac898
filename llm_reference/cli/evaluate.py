"""`python -m llm_reference eval`: our metrics, or standard benchmarks with --tasks.

evaluate.py teaches the metrics on a run's checkpoint; here the command reads every
folder this project writes (`artifacts.load_model`) and, with `--tasks`, runs
lm-evaluation-harness tasks on the model (harness.py)."""

from __future__ import annotations

import argparse
import json

from .. import evaluate


def configure_parser(parser: argparse.ArgumentParser) -> None:
    evaluate.configure_parser(parser)
    parser.add_argument("--tasks", metavar="A,B",
                        help="run these lm-evaluation-harness tasks instead (e.g. "
                             "hellaswag,arc_easy; needs `pip install lm-eval`)")
    parser.add_argument("--include-path", metavar="DIR",
                        help="with --tasks: a folder of your own task YAML files")
    parser.add_argument("--limit", type=int, metavar="N",
                        help="with --tasks: at most N examples per task")


def run(args: argparse.Namespace) -> int:
    from ..artifacts import load_model

    if not args.tasks:
        return evaluate.run(args, load_model)
    from ..config import resolve_device
    from ..harness import format_results, run_tasks

    device = resolve_device(args.device)
    model, tokenizer, _ = load_model(args.run, args.step, str(device))
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    results = run_tasks(model, tokenizer, tasks, device, args.include_path, args.limit)
    if args.json:
        print(json.dumps(results["results"], indent=2))
    else:
        print(format_results(results))
    return 0
