"""`python -m llm_reference serve`: the OpenAI-compatible server for any model folder.

serve.py teaches the server and runs it on a run's checkpoint; here the command
reads every folder this project writes (`artifacts.load_model`)."""

from __future__ import annotations

import argparse

from .. import serve


def configure_parser(parser: argparse.ArgumentParser) -> None:
    serve.configure_parser(parser)


def run(args: argparse.Namespace) -> int:
    from ..artifacts import load_model

    return serve.run(args, load_model)
