"""`python -m llm_reference COMMAND …`: the reference trainer's command line.

Each command is a module of `cli/`, apart from the modules that teach the work. It
provides `configure_parser(parser)` to declare its options and `run(args) -> int` to
do the work; this file only dispatches, importing the module when its command is
chosen so that `--help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import UserError

# command -> (module under llm_reference, one-line help)
COMMANDS = {
    "prepare": ("cli.prepare", "collect, clean, scrub and tokenize a corpus"),
    "merge": ("cli.merge", "join the folders of `prepare --slice I/N` into one"),
    "train": ("cli.train", "pretrain a GPT on prepared shards"),
    "eval": ("cli.evaluate", "loss, perplexity, bits/byte, cloze; lm-eval tasks"),
    "generate": ("cli.generate", "sample text from a trained run"),
    "finetune": ("cli.finetune", "instruction SFT, LoRA or DPO on top of a run"),
    "rl": ("cli.rl", "GRPO: reinforcement learning from verifiable rewards"),
    "quantize": ("cli.quantize", "int8 weight-only quantization with a report"),
    "serve": ("cli.serve", "OpenAI-compatible HTTP server for a run"),
    "release": ("cli.release", "model card, weights, tokenizer and manifest for a run"),
    "export": ("cli.export", "write a run as a Hugging Face model folder"),
    "import": ("cli.import_hf", "turn a Hugging Face model folder into a run"),
    "plan": ("cli.plan", "turn a compute budget into a model, tokens, time and cost"),
    "check": ("cli.check", "validate your own implementation of a roadmap step"),
    "audit": ("cli.audit", "compliance checks over data, runs, releases, code"),
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
    """The module of a command: a teaching module, or `cli.NAME` for a command
    that only wires others together."""
    return importlib.import_module(f"llm_reference.{COMMANDS[command][0]}")


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
