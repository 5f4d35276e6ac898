"""Reading budgets: every form, and one-line errors that show the right one."""

import pytest

from llm_reference.budget import parse_budget
from llm_reference.errors import UserError
from llm_reference.hardware import HARDWARE


@pytest.mark.parametrize("text, hardware, count, seconds", [
    ("cpu:30m", "cpu", 1, 1800),
    ("cpu:4h", "cpu", 1, 14400),
    ("1xH100:8h", "H100", 1, 8 * 3600),
    ("8xH100:24h", "H100", 8, 24 * 3600),
    ("1xA100:24h", "A100-80GB", 1, 24 * 3600),
    ("1xRTX4090:8h", "RTX4090", 1, 8 * 3600),
    ("2x a100-40gb:1d", "A100-40GB", 2, 86400),
    ("H200:90s", "H200", 1, 90),
    ("1xT4:1h30m", "T4", 1, 5400),
    ("M3Max:2.5h", "M3Max", 1, 9000),
])
def test_parse_budget(text, hardware, count, seconds):
    budget = parse_budget(text)
    assert (budget.hardware, budget.count, budget.seconds) == (hardware, count, seconds)
    assert budget.dollars is None


def test_dollar_budget_buys_hours_at_the_high_price():
    # the run then costs at most the budget at any listed provider
    budget = parse_budget("$200@1xA100")
    high = HARDWARE["A100-80GB"].price_usd[1]
    assert budget.hardware == "A100-80GB" and budget.dollars == 200
    assert budget.seconds == pytest.approx(200 / high * 3600)
    assert parse_budget("$1,000@8xH100").seconds == pytest.approx(
        1000 / (8 * HARDWARE["H100"].price_usd[1]) * 3600)


@pytest.mark.parametrize("text, fragment", [
    ("", "expected"),
    ("H100", "expected"),
    ("1xH100", "expected"),
    ("1xH100:", "bad duration"),
    ("1xH100:8x", "bad duration"),
    ("1xH100:-1h", "bad duration"),
    ("1xH100:0h", "must be > 0"),
    ("0xH100:8h", "count must be"),
    ("2xcpu:1h", "takes no count"),
    ("1xB300:1h", "unknown hardware"),
    ("1x:1h", "unknown hardware '1x'"),
    ("8xH 100:1h", "cannot read the hardware"),
    ("$200", "names the hardware"),
    ("$abc@1xH100", "not an amount"),
    ("$0@1xH100", "must be > 0"),
    ("$200@cpu", "no hourly price"),
    ("1xH100:10000d", "longer than the 90 days"),
    ("cpu:100d", "longer than the 90 days"),
    ("$100000000@1xH100", "devices, e.g. $100000000@"),
])
def test_bad_budgets_say_what_is_wrong(text, fragment):
    with pytest.raises(UserError) as info:
        parse_budget(text)
    message = str(info.value)
    assert fragment in message
    assert "e.g." in message or "write" in message or "choose" in message
    assert "\n" not in message
