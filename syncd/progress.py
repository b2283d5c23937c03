"""Progress of long work (a baseline over many deals, a long poll), as a periodic log line such as
"baseline: 12,000 deals, 60 pages, 14 s", so that a long first run is never silent.

The clock is passed in; the line goes to the `syncd.progress` logger, which the CLI shows at every verbosity.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger("syncd.progress")


class Progress:
    """Call `page(pages, deals)` after each page; an INFO line is logged at most once every `every` seconds,
    and none at all for work that ends sooner (each page is a DEBUG line, for -vv)."""

    def __init__(self, what: str, clock: Callable[[], float], every: float = 10.0) -> None:
        self.what, self.clock, self.every = what, clock, every
        self.started = self.last = clock()

    def page(self, pages: int, deals: int) -> None:
        now = self.clock()
        log.debug("%s: page %s read, %s deals so far", self.what, f"{pages:,}", f"{deals:,}")
        if now - self.last < self.every:
            return
        self.last = now
        log.info("%s: %s deals, %s pages, %.0f s", self.what, f"{deals:,}", f"{pages:,}", now - self.started)
