"""`python -m llm_reference generate`: sample text from any model folder.

generate.py teaches sampling and runs it on a run's checkpoint; here the command
reads every folder this project writes (`artifacts.load_model`)."""

from __future__ import annotations

import argparse

from .. import generate


def configure_parser(parser: argparse.ArgumentParser) -> None:
    generate.configure_parser(parser)


def run(args: argparse.Namespace) -> int:
    from ..artifacts import load_model

    return generate.run(args, load_model)
