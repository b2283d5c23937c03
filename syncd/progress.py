"""Progress of long work (a baseline over many deals, a long poll), so that a long first run is never silent:
"baseline: 12,000 deals, 60 pages, 14 s" every 10 s in a log, rewritten in place every second on a terminal
(`syncd.journal` sets `Progress.every` and draws it), then one closing line with "done".

The clock is passed in; the lines go to the `syncd.progress` logger, which the CLI shows at every verbosity.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import ClassVar

log = logging.getLogger("syncd.progress")


class Progress:
    """Call `page(pages, deals)` after each page and `done(...)` at the end. An INFO line is logged at most
    once every `every` seconds, and none at all for work that ends sooner; each page is a DEBUG line (-vv)."""

    every: ClassVar[float] = 10.0  # seconds between lines; 1 on a terminal (syncd.journal.setup)

    def __init__(self, what: str, clock: Callable[[], float]) -> None:
        self.what, self.clock = what, clock
        self.started = self.last = clock()
        self.shown = False

    def page(self, pages: int, deals: int) -> None:
        now = self.clock()
        log.debug("%s: page %s read, %s deals so far", self.what, f"{pages:,}", f"{deals:,}")
        if now - self.last < self.every:
            return
        self.last, self.shown = now, True
        log.info("%s", self.line(pages, deals, now))

    def done(self, pages: int, deals: int) -> None:
        """The closing line, only after a progress line was shown (a short poll stays silent)."""
        if self.shown:
            log.info("%s, done", self.line(pages, deals, self.clock()), extra={"progress_done": True})

    def line(self, pages: int, deals: int, now: float) -> str:
        return f"{self.what}: {deals:,} deals, {pages:,} pages, {now - self.started:.0f} s"
