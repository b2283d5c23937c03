"""SIGINT and SIGTERM for a one-off command (`syncd once`): finish the step in progress, then stop.

The handler only records the signal; the engine asks `stopping()` between pages and between ops, so the
HTTP call in flight completes (or times out) and its outcome is committed, exactly as `syncd run` stops. A
second signal of either kind stops at once (KeyboardInterrupt), which is crash-safe too: the state machine
recovers an interrupted `in_flight` op at the next start. `syncd run` has its own signal loop (`daemon.py`).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + the signal's number, as a shell reports it


@dataclass
class Interrupt:
    signum: signal.Signals | None = None

    def stopping(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str | None:
        return None if self.signum is None else self.signum.name

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.signum] if self.signum is not None else 0


@contextmanager
def interruptible() -> Iterator[Interrupt]:
    """Route SIGINT and SIGTERM to an `Interrupt` inside; restore the previous handlers on exit. Main thread only."""
    got = Interrupt()

    def handle(signum: int, frame: FrameType | None) -> None:
        if got.signum is not None:
            raise KeyboardInterrupt
        got.signum = signal.Signals(signum)

    previous = {signum: signal.signal(signum, handle) for signum in EXIT_CODES}
    try:
        yield got
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
