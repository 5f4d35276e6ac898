"""`python -m scaffold`: the starter-repo exporter's command line.

    python -m scaffold new --track practitioner --budget 1xH100:8h -o my-llm
    python -m scaffold new                       # asks for each answer
    python -m scaffold new --track beginner --exercises -o my-exercises
    python -m scaffold new --replay my-llm/.scaffold.json -o my-llm-again
    python -m scaffold update my-llm            # the diff a fresh rendering makes
    python -m scaffold update my-llm --apply    # ... and write it
    python -m scaffold describe --track beginner --budget cpu:30m

Questions use cookiecutter's prompts (numbered choices, defaults in brackets); a
mistake in the answers is a one-line error with exit code 2, and nothing is written.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path

from llm_reference import plan
from llm_reference.budget import BUDGET_HELP, parse_budget
from llm_reference.errors import UserError
from llm_reference.units import fmt_count

from . import roadmap
from .generate import (
    DEFAULT_NAME,
    DEFAULT_TORCH,
    Answers,
    answers_for,
    check_budget,
    check_name,
    describe,
    new_from,
    slugify,
    update,
)

OTHER_BUDGET = "another budget"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m scaffold",
        description="Generate a starter repo for a track of LLM From Scratch and a "
                    "compute budget: the planned config, the code, tests and CI.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    new = sub.add_parser("new", help="generate a starter repo",
                         description="Generate a starter repo; asks for what is not "
                                     "given unless --no-input.")
    add_answer_options(new)
    new.add_argument("-o", "--output", metavar="DIR",
                     help="the folder to create (default: ./NAME, as a slug)")
    new.add_argument("--torch-version", default=DEFAULT_TORCH, metavar="VERSION",
                     help=f"the torch the repo's Makefile installs (default: "
                          f"{DEFAULT_TORCH})")
    new.add_argument("--force", action="store_true",
                     help="replace the output folder if it exists and is not empty "
                          "(never a Git repository with uncommitted work)")
    new.add_argument("--exercises", action="store_true",
                     help="leave the bodies of the track's key functions (the BPE "
                          "merge, attention, sampling) for you to write; `make "
                          "check` tells which steps pass")
    new.add_argument("--no-input", action="store_true",
                     help="ask nothing: take the defaults for what is not given")
    new.add_argument("--no-git", action="store_true",
                     help="do not make the folder a Git repository")
    new.add_argument("--replay", metavar="FILE",
                     help="the answers of an earlier repo (its .scaffold.json) "
                          "instead of --track, --budget, --name, --torch-version and "
                          "--exercises")
    update = sub.add_parser(
        "update", help="render a generated repo again and show the diff",
        description="Render a generated repo again from its .scaffold.json into a "
                    "temporary folder and print the diff against the repo (exit 1 "
                    "if they differ); --apply writes the changed files. Data, runs "
                    "and your other files are kept.")
    update.add_argument("directory", metavar="DIR", help="the generated repo")
    update.add_argument("--apply", action="store_true",
                        help="write the files that differ (commit first: your "
                             "changes to those files are replaced)")
    show = sub.add_parser("describe", help="print the plan and the files of a repo "
                                           "as JSON, without writing it")
    add_answer_options(show)
    return parser


def add_answer_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--track", metavar="TRACK",
        help=f"the book's track: {', '.join(plan.TRACKS)} (default: the one the "
             "budget suggests, else beginner)")
    parser.add_argument(
        "--budget", metavar="BUDGET",
        help=f"compute budget: {BUDGET_HELP} (default: the track's first "
             "preset)")
    parser.add_argument(
        "--name", metavar="NAME",
        help="the project's name; its package is the name in snake_case (default: "
             f"the output folder's name, else {DEFAULT_NAME})")


# ------------------------------------------------------------------ questions


def ask(args: argparse.Namespace) -> None:
    """Ask for each answer the options did not give, with cookiecutter's prompts."""
    from cookiecutter.prompt import read_user_choice, read_user_variable

    if args.track is None:
        labels = {name: f"{name}: {roadmap.track(name).who} ({t.default_hardware})"
                  for name, t in plan.TRACKS.items()}
        args.track = read_user_choice("track", list(plan.TRACKS), {
            "track": {"__prompt__": "Which track?", **labels}})
    track = plan.get_track(args.track)
    if args.budget is None:
        labels = {budget: budget_label(budget, track.name) for budget in track.budgets}
        args.budget = read_user_choice("budget", [*track.budgets, OTHER_BUDGET], {
            "budget": {"__prompt__": "Which compute budget?", **labels}})
        while args.budget == OTHER_BUDGET or not valid(
                functools.partial(check_budget, track.name), args.budget):
            args.budget = read_user_variable("budget", track.budgets[0], {
                "budget": "Budget, e.g. 1xA100:12h, cpu:2h or $200@1xH100"})
    while args.name is None or not valid(check_name, args.name):
        default = Path(args.output).name if args.output else DEFAULT_NAME
        args.name = read_user_variable("name", default, {"name": "Project name"})
    if args.output is None:
        args.output = read_user_variable("output", slugify(args.name),
                                         {"output": "Output folder"})


def budget_label(budget: str, track: str) -> str:
    """'1xH100:8h: 302M parameters on 6.05B tokens, $16 - $40' for the choice list."""
    planned = plan.make_plan(budget, track)
    low, high = planned.cost_usd
    cost = "your own machine" if high == 0 else f"${low:,.0f} - ${high:,.0f}"
    return (f"{budget}: {fmt_count(planned.params)} parameters on "
            f"{fmt_count(planned.tokens)} tokens, {cost}")


def valid(check: Callable[[str], object], value: str) -> bool:
    """Run a check; print its error and return False if the value is bad."""
    try:
        check(value)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return False
    return True


# ------------------------------------------------------------------- commands


def run_new(args: argparse.Namespace) -> int:
    if args.replay:
        given = [f"--{o}" for o in ("track", "budget", "name", "exercises")
                 if getattr(args, o)]
        if given:
            raise UserError(f"--replay takes the answers from {args.replay}; drop "
                            f"{', '.join(given)}")
        answers = Answers.load(args.replay)
    else:
        if not args.no_input:
            ask(args)
        answers = answers_for(args.track, args.budget, args.output, args.name,
                              args.torch_version, args.exercises)
    out = new_from(answers, args.output, args.force, git=not args.no_git)
    suggested = plan.track_for_budget(parse_budget(answers.budget))
    if suggested != answers.track:
        print(f"note: {answers.budget} is a {suggested} budget; the repo follows "
              f"the {answers.track} track's recipe", file=sys.stderr)
    print(f"created {out}/ ({answers.track} track, budget {answers.budget}, package "
          f"{answers.package})\nnext: cd {out} && make test && make data && make "
          "train" + (" (or make check: which exercises pass)" if answers.exercises
                     else ""))
    return 0


def run_update(args: argparse.Namespace) -> int:
    differ, diff = update(args.directory, apply=args.apply)
    if not differ:
        print(f"{args.directory} is up to date")
        return 0
    print(diff, end="")
    if args.apply:
        print(f"wrote {len(differ)} file(s)")
        return 0
    print(f"{len(differ)} file(s) differ; `python -m scaffold update "
          f"{args.directory} --apply` writes them")
    return 1


def run_describe(args: argparse.Namespace) -> int:
    print(json.dumps(describe(args.track, args.budget, args.name or DEFAULT_NAME),
                     indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    commands = {"new": run_new, "update": run_update,
                "describe": run_describe}
    try:
        return commands[args.command](args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except EOFError:
        print("error: no answer on the input; pass the options (see --help) or "
              "--no-input", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
