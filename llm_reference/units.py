"""Numbers for people: counts, bytes and durations in a few significant digits."""

from __future__ import annotations

GiB = 2**30


def significant(x: float, digits: int = 3) -> float:
    """x rounded to `digits` significant digits: 0.0023456 -> 0.00235."""
    return float(f"{x:.{digits}g}")


def fmt_count(n: float) -> str:
    """1234567 -> '1.23M'."""
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.3g}"


def fmt_bytes(n: float) -> str:
    """3 * 2**30 -> '3 GiB'."""
    for unit, size in (("GiB", GiB), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:.0f} B"


def fmt_duration(seconds: float) -> str:
    """5400 -> '1.5 h'; 90 -> '1.5 min'."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"
