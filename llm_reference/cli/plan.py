"""`python -m llm_reference plan`: a compute budget -> a model, tokens, time and cost.

Prints the plan as a table with its notes and the config TOML to train with (or as
JSON with `--json`), and writes the TOML with `--out`. On the CPU, plans use your
own calibration file when there is one: `--calibrate` times a few training steps
of the planned model here (wall clock) and writes it. `--measure` times this CPU
the way the package's calibration.json was measured; `--save-calibration` stores
that in the package.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .. import hardware
from ..atomic import write_json, write_text
from ..budget import BUDGET_HELP
from ..errors import UserError
from ..plan import TRACK_NAMES, TRACKS, Plan, make_plan


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--budget", metavar="BUDGET",
        help=f"compute budget: {BUDGET_HELP} (default: the track's first preset)")
    parser.add_argument(
        "--track", choices=TRACK_NAMES,
        help="the model recipe: beginner (GPT-2 style, CPU), practitioner and "
             "researcher (Llama style); default: from the budget's hardware")
    parser.add_argument(
        "--tokens-per-param", type=float, default=20.0, metavar="R",
        help="training tokens per parameter; 20 is compute-optimal (Chinchilla), "
             "more gives a smaller model that is cheaper to run (default: 20)")
    parser.add_argument(
        "--mfu", type=float, metavar="F",
        help="model FLOPs utilization to assume, in (0, 1] (default: 0.4 on GPUs, "
             "measured on the CPU)")
    parser.add_argument("--json", action="store_true",
                        help="print the plan as JSON instead of a table and TOML")
    parser.add_argument(
        "--out", type=Path, metavar="FILE",
        help="also write the config TOML to FILE (for `train --config FILE`)")
    parser.add_argument(
        "--measure", action="store_true",
        help="time this CPU (matmul peak and a small GPT's training steps, ~10 s) "
             "and plan with the result instead of calibration.json")
    parser.add_argument(
        "--save-calibration", action="store_true",
        help="with --measure: store the result in the package's calibration.json")
    parser.add_argument(
        "--calibrate", action="store_true",
        help="time a few training steps of the planned model on this machine "
             "(wall clock, a few seconds to a minute), save them in your "
             "calibration file and plan with them; later plans use them too")
    parser.add_argument(
        "--calibration", type=Path, metavar="FILE",
        help="your calibration file (default: "
             "$XDG_CACHE_HOME or ~/.cache, then llm-reference/calibration.json)")


def run(args: argparse.Namespace) -> int:
    catalog = hardware.HARDWARE
    if args.save_calibration and not args.measure:
        raise UserError("--save-calibration stores what --measure measured; "
                        "add --measure")
    if args.calibrate and args.measure:
        raise UserError("--calibrate and --measure both time this CPU; use "
                        "--calibrate (yours) or --measure (the package's)")
    path = args.calibration or hardware.USER_CALIBRATION_PATH
    mine = hardware.load_user_calibration(path)
    if mine:
        catalog = {**catalog, "cpu": hardware.cpu_hardware(mine)}
    if args.measure:
        section = hardware.measure_cpu()
        print(f"measured: peak {section['peak_fp32_tflops'] * 1e3:.0f} GFLOP/s fp32, "
              f"MFU {section['mfu']:.0%} ({section['threads']} threads)",
              file=sys.stderr)
        catalog = {**catalog, "cpu": hardware.cpu_hardware(section)}
        if args.save_calibration:
            hardware.save_calibration({"cpu": section}, hardware.CALIBRATION_PATH)
            print(f"saved to {hardware.CALIBRATION_PATH}", file=sys.stderr)
    budget = args.budget or TRACKS[args.track or "beginner"].budgets[0]
    plan = make_plan(budget, args.track, args.tokens_per_param, args.mfu, catalog)
    if args.calibrate:
        mine = calibrate(plan, path)
        catalog = {**catalog, "cpu": hardware.cpu_hardware(mine)}
        plan = make_plan(budget, args.track, args.tokens_per_param, args.mfu,
                         catalog)
    if plan.hardware.device == "cpu":
        plan.notes.append(cpu_source(plan, mine, path, args.measure))
    if args.json:
        print(json.dumps(plan.to_dict(), indent=2))
    else:
        print_plan(plan)
    if args.out:
        write_text(args.out, plan.to_toml())
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def calibrate(plan: Plan, path: Path) -> dict:
    """Time the planned model here and write the cpu section to `path`."""
    if plan.hardware.device != "cpu":
        raise UserError(f"--calibrate times this machine's CPU, not a "
                        f"{plan.hardware.key}; plan a CPU budget, e.g. cpu:30m")
    # up to 16 sequences: a CPU's tokens/s barely grows past that, and it keeps
    # the measurement under a minute on a slow machine
    section = hardware.calibrate_cpu(plan.config, min(16, plan.train["batch_size"]))
    write_json(path, {"_about": "this machine's CPU, timed by `python -m "
                      "llm_reference plan --calibrate`; plans use it instead of "
                      "the package's calibration.json. Delete it to go back.",
                      "cpu": section})
    print(f"measured here: {section['tokens_per_second']:,.0f} tokens/s "
          f"({section['shape']}); saved to {path}", file=sys.stderr)
    return section


def cpu_source(plan: Plan, mine: dict | None, path: Path, measured: bool) -> str:
    """Where the plan's CPU speed comes from, for its notes."""
    if measured:
        return "CPU speed: measured by --measure just now (CPU time, not saved)"
    if mine:
        return (f"CPU speed: measured here on {mine['date']} ({path}): "
                f"{mine['tokens_per_second']:,.0f} tokens/s for {mine['shape']}")
    shipped = hardware.CALIBRATION.get("cpu", hardware.DEFAULT_CPU)
    hw = plan.hardware
    tokens_per_s = hw.peak_tflops * 1e12 * plan.mfu / plan.flops_per_token
    return (f"CPU speed: the package's default, measured on another machine "
            f"({shipped['date']}), {tokens_per_s:,.0f} tokens/s for this model; "
            "run `plan --calibrate` to time yours")


def print_plan(plan: Plan) -> None:
    """The plan as a table, its notes, then the TOML to train with."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"plan: {plan.budget.text} ({plan.track} track)",
                  show_header=False)
    for label, value in plan.summary():
        table.add_row(label, value)
    console = Console(highlight=False)
    console.print(table)
    for note in plan.notes:
        console.print(f"- {note}", markup=False)
    print()
    print(plan.to_toml(), end="")
