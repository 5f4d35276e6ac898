"""`python -m llm_reference COMMAND …`: the reference trainer's command line.

Each command lives in the module that teaches it. That module provides
`configure_parser(parser)` to declare its options and `run(args) -> int` to do the work;
this file only dispatches, importing the module when its command is chosen so that
`--help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import UserError

# command -> (module, one-line help)
COMMANDS = {
    "prepare": ("data", "collect, clean, scrub and tokenize a corpus into shards"),
    "train": ("train", "pretrain a GPT on prepared shards"),
    "eval": ("evaluate", "loss, perplexity, bits/byte, accuracy and cloze of a run"),
    "generate": ("generate", "sample text from a trained run"),
    "finetune": ("finetune", "instruction SFT, LoRA or DPO on top of a run"),
    "quantize": ("quantize", "int8 weight-only quantization with a report"),
    "serve": ("serve", "OpenAI-compatible HTTP server for a run"),
    "release": ("release", "model card, weights, tokenizer and manifest for a run"),
    "export": ("cli.export", "write a run as a Hugging Face model folder"),
    "import": ("cli.import_hf", "turn a Hugging Face model folder into a run"),
    "plan": ("plan", "turn a compute budget into a model, tokens, time and cost"),
    "check": ("check", "validate your own implementation of a roadmap step"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m llm_reference",
        description="LLM From Scratch: the reference implementation's commands.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:  # only the chosen command's module is imported
            _module(name).configure_parser(p)
    return parser


def _module(command: str):
    """The command's module: `llm_reference.cli.NAME` for a value "cli.NAME"; for
    a teaching module NAME, `llm_reference.cli.NAME` when the command line has one
    (it reads every model folder, see artifacts.py), else `llm_reference.NAME`."""
    name = COMMANDS[command][0]
    if name.startswith("cli."):
        return importlib.import_module(f"llm_reference.{name}")
    try:
        return importlib.import_module(f"llm_reference.cli.{name}")
    except ModuleNotFoundError as e:
        if e.name not in ("llm_reference.cli", f"llm_reference.cli.{name}"):
            raise
    return importlib.import_module(f"llm_reference.{name}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    if command not in COMMANDS:
        command = None
    args = build_parser(command).parse_args(argv)
    try:
        return int(_module(args.command).run(args) or 0)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
