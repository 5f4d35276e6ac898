"""`eval`: loss, perplexity, bits/byte, accuracy and cloze of any model folder
(`evaluate.py`), or standard benchmarks through lm-evaluation-harness (`harness.py`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .common import add_device, add_run, resolve_device


def configure_parser(parser: argparse.ArgumentParser) -> None:
    add_run(parser, "model folder: a run written by `train`, or a quantize, release "
                    "or Hugging Face folder")
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
    parser.add_argument("--tasks", metavar="A,B",
                        help="run these lm-evaluation-harness tasks instead (e.g. "
                             "hellaswag,arc_easy; needs `pip install lm-eval`)")
    parser.add_argument("--include-path", metavar="DIR",
                        help="with --tasks: a folder of your own task YAML files")
    parser.add_argument("--limit", type=int, metavar="N",
                        help="with --tasks: at most N examples per task")


def run(args: argparse.Namespace) -> int:
    from ..artifacts import load_model
    from ..evaluate import evaluate_run

    device = resolve_device(args.device)
    if args.tasks:
        return run_tasks(args, device)
    result = evaluate_run(args.run, args.step, args.batches, args.cloze, args.choices,
                          args.data, str(device), load_model=load_model)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_table(result))
        if (Path(args.run) / "checkpoints").is_dir():  # other folders: not written
            print(f"wrote {Path(args.run) / 'eval.json'}")
    return 0


def run_tasks(args: argparse.Namespace, device: Any) -> int:
    """`eval --tasks`: lm-evaluation-harness tasks with our model as its LM."""
    from ..artifacts import load_model, optional

    model, tokenizer, _ = load_model(args.run, args.step, str(device))
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    results = optional("harness", "run_tasks")(model, tokenizer, tasks, device,
                                                args.include_path, args.limit)
    print(json.dumps(results["results"], indent=2) if args.json
          else optional("harness", "format_results")(results))
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
