"""A circuit breaker per upstream: after repeated failures that say "the service is unwell" (5xx, timeouts,
lost connections), stop calling it for a while instead of spending attempts on every op. Pure: time is
passed in.

closed --(threshold consecutive failures)--> open --(cooldown elapsed)--> half-open: one trial call
   ^                                                                            |
   +---------------------------- success ---------------------------------------+  (failure: open again)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Breaker:
    threshold: int = 3
    cooldown: float = 60.0
    failures: int = 0
    opened_at: float | None = None

    def allows(self, now: float) -> bool:
        return self.opened_at is None or now - self.opened_at >= self.cooldown

    def state(self, now: float) -> str:
        if self.opened_at is None:
            return "closed"
        return "half-open" if self.allows(now) else "open"

    def success(self) -> None:
        self.failures, self.opened_at = 0, None

    def failure(self, now: float) -> None:
        self.failures += 1
        if self.failures >= self.threshold:
            self.opened_at = now
