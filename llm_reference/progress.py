"""Progress that shows wherever the output goes: a bar on a terminal, lines elsewhere.

tqdm draws a bar that redraws itself in place, which only makes sense on a
terminal; writing to a file, a pipe, `nohup`, CI or a batch scheduler's log it turns
itself off, and a run then prints nothing for hours. Off a terminal `Progress`
writes one plain line every `every` seconds instead:

    train step 1200/5000 (24%) loss 3.412 lr 8.1e-04 6,120 tokens/s ETA 10m24s
    prepare 120.0/480.0 MB (25%) 12.0 MB/s tokens 31,000,000 ETA 30s

The first counts steps (training, finetuning, RL), the second bytes of input
(`unit="B"`, `prepare`, whose total may be unknown). The rate and the ETA are
measured from the first update on, so that a first step slowed by compilation
does not count.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any, TextIO

from tqdm import tqdm


class Progress:
    """Progress through `total` units ("step", or "B" for bytes; None: unknown),
    starting at `initial`."""

    def __init__(self, total: int | None, initial: int = 0, desc: str = "",
                 every: float = 10.0, enabled: bool = True,
                 file: TextIO | None = None, unit: str = "step") -> None:
        self.total, self.desc, self.every, self.unit = total, desc, every, unit
        self.file = file or sys.stderr
        self.enabled = enabled
        self.bar = None
        if enabled and self.file.isatty():
            self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit,
                            unit_scale=unit == "B", file=self.file,
                            dynamic_ncols=True, leave=unit != "B")
        self.n = initial
        self.fields: dict[str, Any] = {}
        self.start: tuple[float, int] | None = None  # (time, n) of the first update
        self.printed = -math.inf  # when the last line was written

    def update(self, n: int, **fields: Any) -> None:
        """Now at unit `n`; `fields` (loss=…, tokens_per_s=…) describe it."""
        now = time.monotonic()
        self.n = n
        self.fields.update(fields)
        if self.start is None:
            self.start = (now, n)
        if self.bar is not None:
            self.bar.update(n - self.bar.n)
            self.bar.set_postfix({k: format_value(v) for k, v in fields.items()},
                                 refresh=False)
        elif self.enabled and now - self.printed >= self.every:
            self.write_line(now)

    def close(self) -> None:
        """The final state: the bar closed, or one last line."""
        if self.bar is not None:
            self.bar.close()
        elif self.enabled and self.start is not None:
            self.write_line(time.monotonic())

    def write_line(self, now: float) -> None:
        self.printed = now
        print(self.line(now), file=self.file, flush=True)

    def advance(self, n: int, **fields: Any) -> None:
        """`n` more units done (bytes read, say), rather than `update`'s position."""
        self.update(self.n + n, **fields)

    def line(self, now: float) -> str:
        """`desc step n/total (p%) field value … ETA`, or in MB for bytes."""
        t0, n0 = self.start or (now, self.n)
        if self.unit == "B":
            done = f"{self.n / 1e6:.1f}"
            parts = [self.desc, f"{done}/{self.total / 1e6:.1f} MB" if self.total
                     else f"{done} MB"]
        else:
            parts = [self.desc, f"step {self.n}/{self.total}"]
        if self.total:
            parts.append(f"({self.n / self.total:.0%})")
        if self.unit == "B" and now > t0:
            parts.append(f"{(self.n - n0) / (now - t0) / 1e6:.1f} MB/s")
        for key, value in self.fields.items():
            if key == "tokens_per_s":
                parts.append(f"{value:,.0f} tokens/s")
            else:
                parts.append(f"{key} {format_value(value)}")
        if self.total and n0 < self.n < self.total:
            eta = (self.total - self.n) * (now - t0) / (self.n - n0)
            parts.append(f"ETA {format_seconds(eta)}")
        return " ".join(p for p in parts if p)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def format_value(value: Any) -> str:
    """Numbers as a log shows them: 3.412, 8.1e-04, 6,120."""
    if isinstance(value, float):
        return f"{value:.1e}" if 0 < abs(value) < 1e-2 else f"{value:.3f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def format_seconds(seconds: float) -> str:
    """3725 -> "1h02m", 624 -> "10m24s", 9 -> "9s"."""
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
