"""Progress of a long `prepare`: bytes read, MB/s, tokens written and time left.

On a terminal this is a tqdm bar. In a log file (a Slurm job, `nohup`) a bar
would be noise, so a line is printed every `every` seconds instead.
"""

from __future__ import annotations

import sys
import time

from tqdm import tqdm


class PrepareProgress:
    """Count bytes of input text read (of `total`, if known) and tokens written."""

    def __init__(self, total: int | None, desc: str = "prepare", every: float = 10.0):
        self.total, self.desc, self.every = total, desc, every
        self.done = self.tokens = 0
        self.start = self.last = time.monotonic()
        self.bar = tqdm(total=total, unit="B", unit_scale=True, desc=desc,
                        file=sys.stderr, leave=False) if sys.stderr.isatty() else None

    def update(self, nbytes: int, tokens: int = 0) -> None:
        self.done += nbytes
        self.tokens += tokens
        if self.bar is not None:
            self.bar.update(nbytes)
            self.bar.set_postfix_str(f"{self.tokens:,} tokens", refresh=False)
            return
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            print(self.line(now), file=sys.stderr, flush=True)

    def line(self, now: float) -> str:
        """'prepare: 120.0 MB, 12.0 MB/s, 31,000,000 tokens, ETA 2m05s'."""
        rate = self.done / max(now - self.start, 1e-9)
        text = (f"{self.desc}: {self.done / 1e6:.1f} MB, {rate / 1e6:.1f} MB/s, "
                f"{self.tokens:,} tokens")
        if self.total and rate > 0:
            left = max(self.total - self.done, 0) / rate
            text += f", ETA {int(left // 60)}m{int(left % 60):02d}s"
        return text

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
