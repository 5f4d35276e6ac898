"""Compute budgets as people write them: `1xH100:8h`, `cpu:30m`, `$200@1xA100`.

A budget is some devices of the hardware catalog for some time. A dollar budget
names the devices too, and buys as many hours as the most expensive listed
provider sells for that amount, so that the plan never costs more than the
budget. Every mistake is a one-line UserError that shows the form.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from .errors import UserError
from .hardware import HARDWARE, Hardware, find_hardware


@dataclass(frozen=True)
class Budget:
    """`count` devices of catalog entry `hardware` for `seconds`."""

    text: str
    hardware: str
    count: int
    seconds: float
    dollars: float | None = None  # set when the budget was given in dollars


BUDGET_HELP = ("COUNTxGPU:DURATION (1xH100:8h, 8xH100:24h), cpu:DURATION (cpu:30m) "
               "or $DOLLARS@COUNTxGPU ($200@1xA100); durations in s, m, h or d, "
               "e.g. 90m or 1h30m")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# The longest budget we plan: 90 days. Llama 3 405B, among the largest runs
# published, trained for ~54 days (Meta 2024, section 3.3.4, on 16K H100s); a
# plan much longer than that is a typo or a job for more devices, and hardware,
# prices and software all change over a longer run.
MAX_DAYS = 90


def parse_duration(text: str, budget: str = "") -> float:
    """'30m' -> 1800.0; parts add up: '1h30m' -> 5400.0."""
    parts = re.findall(r"(\d+(?:\.\d+)?)([smhd])", text.lower())
    if not parts or "".join(n + u for n, u in parts) != text.lower():
        raise UserError(f"budget {budget or text!r}: bad duration {text!r}; write a "
                        "number and a unit s, m, h or d, e.g. 30m, 8h, 1h30m")
    seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    if seconds <= 0:
        raise UserError(f"budget {budget or text!r}: the duration must be > 0, "
                        "e.g. 30m")
    return seconds


def parse_devices(text: str, budget: str, catalog: dict[str, Hardware]
                  ) -> tuple[Hardware, int]:
    """'8xH100' -> (H100, 8); 'cpu' -> (cpu, 1)."""
    match = re.fullmatch(r"(?:(\d+)\s*[xX×]\s*)?([A-Za-z0-9][\w-]*)", text.strip())
    if not match:
        raise UserError(f"budget {budget!r}: cannot read the hardware {text!r}; "
                        f"write {BUDGET_HELP}")
    try:
        hw = find_hardware(match[2], catalog)
    except UserError as e:
        raise UserError(f"budget {budget!r}: {e}") from None
    count = int(match[1]) if match[1] else 1
    if count < 1:
        raise UserError(f"budget {budget!r}: the device count must be >= 1, "
                        "e.g. 1xH100:8h")
    if count > 1 and hw.device != "cuda":
        raise UserError(f"budget {budget!r}: {hw.key} takes no count (one machine); "
                        f"write e.g. {hw.key}:30m")
    return hw, count


def parse_budget(text: str, catalog: dict[str, Hardware] | None = None) -> Budget:
    """Read a budget string: `1xH100:8h`, `cpu:30m` or `$200@1xA100`."""
    catalog = catalog or HARDWARE
    text = text.strip()
    if text.startswith("$"):
        return parse_dollars(text, catalog)
    devices, colon, duration = text.rpartition(":")
    if not colon or not devices:
        raise UserError(f"budget {text!r}: expected {BUDGET_HELP}")
    hw, count = parse_devices(devices, text, catalog)
    seconds = parse_duration(duration.strip(), text)
    check_duration(text, hw, count, seconds)
    return Budget(text, hw.key, count, seconds)


def check_duration(text: str, hw: Hardware, count: int, seconds: float,
                   dollars: str = "") -> None:
    """Refuse a budget longer than MAX_DAYS; suggest the same device-hours on more
    devices in at most a month (for a dollar budget, the same dollars)."""
    days = seconds / 86400
    if days <= MAX_DAYS:
        return
    devices = f"{math.ceil(count * days / 30)}x{hw.key}"
    suggestion = (f"${dollars}@{devices}" if dollars else f"{devices}:30d"
                  if hw.device == "cuda" else f"{hw.key}:{MAX_DAYS}d")
    raise UserError(f"budget {text!r}: {days:,.0f} days is longer than the "
                    f"{MAX_DAYS} days we plan (the longest published runs took ~2 "
                    f"months); spread it over more devices, e.g. {suggestion}")


def parse_dollars(text: str, catalog: dict[str, Hardware]) -> Budget:
    """`$200@1xA100`: the hours $200 buys at the high end of the device's price
    range, so that the run costs at most $200 wherever it is rented; the plan
    shows the price range and what the cheapest listed provider would charge."""
    amount, at, devices = text[1:].partition("@")
    if not at:
        raise UserError(f"budget {text!r}: a dollar budget names the hardware "
                        "after '@', e.g. $200@1xA100")
    try:
        dollars = float(amount.replace(",", ""))
    except ValueError:
        raise UserError(f"budget {text!r}: {amount!r} is not an amount of "
                        "dollars; e.g. $200@1xA100") from None
    hw, count = parse_devices(devices, text, catalog)
    if dollars <= 0:
        raise UserError(f"budget {text!r}: the amount must be > 0, "
                        "e.g. $200@1xA100")
    if hw.price_usd[0] <= 0:
        raise UserError(f"budget {text!r}: {hw.key} is your own machine and has "
                        f"no hourly price; give a duration, e.g. {hw.key}:30m")
    seconds = dollars / (count * hw.price_usd[1]) * 3600
    check_duration(text, hw, count, seconds, amount)
    return Budget(text, hw.key, count, seconds, dollars)
