"""Stopping a run without losing it: SIGINT and SIGTERM end training at a checkpoint.

Long runs get stopped. Ctrl-C sends SIGINT; `kill`, Slurm before a time limit or a
preemption, and Kubernetes before it evicts a pod send SIGTERM, and follow up with
SIGKILL (which nothing can catch) some seconds to minutes later. By default Python
turns SIGINT into a KeyboardInterrupt wherever the program happens to be, and
SIGTERM ends it on the spot: every step since the last checkpoint is lost.

While `StopSignals` is active, both signals only set a flag. The training loop looks
at it once per step, at a step boundary where the weights, optimizer and data
position agree, saves a checkpoint and raises `Stopped`, which exits the process
with code 128 + the signal's number, the code a shell reports for a process the
signal killed: 130 for SIGINT, 143 for SIGTERM. A scheduler thus sees a run that
was stopped, not one that finished (exit 0) or failed (exit 1 or 2), and a Slurm
job can requeue itself on 143. Repeated signals are noted but change nothing (under
torchrun every process gets the terminal's Ctrl-C and then torchrun's own
SIGINT); SIGKILL still stops at once.
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """Within `with StopSignals() as stop:`, SIGINT and SIGTERM set `stop.received`
    (the first signal's number) instead of interrupting; with `announce`, a line
    on stderr says so. Only the main thread can handle signals; elsewhere this
    does nothing."""

    def __init__(self, announce: bool = True) -> None:
        self.received: int | None = None
        self.announce = announce
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self.previous[sig] = signal.signal(sig, self.note)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous.clear()

    def note(self, signum: int, frame: FrameType | None) -> None:
        """The handler: remember the signal and say what will happen."""
        name = signal.Signals(signum).name
        if self.received is None:
            self.received = signum
            message = (f"\n{name}: saving a checkpoint at the end of this step, "
                       "then stopping (SIGKILL stops at once, losing the steps "
                       "since the last checkpoint)\n")
        else:
            message = f"\n{name}: already stopping at the end of this step\n"
        if self.announce:
            os.write(2, message.encode())  # print() is not safe inside a handler


class Stopped(SystemExit):
    """Raised once the checkpoint is on disk: exits with 128 + the signal's number."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(128 + signum)
        self.signum, self.message = signum, message


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name
