"""A token bucket that never lets a rolling window see more than `limit` requests, plus server-ordered pauses.

Pure: the clock is passed in. `reserve(now)` takes a token and returns how long the caller must wait first;
`pause_until(t)` holds every caller until `t` (a `Retry-After`, or a quota header that reached zero).

Sizing: a bucket of capacity 1 refilling at `limit / window` tokens per second spaces requests evenly and admits
at most `limit` requests in any rolling window. `for_limit` keeps a 2 % margin below the documented limit for
clock and network jitter, so a well-behaved client receives no 429 and finishes within ~1.02x of the fastest
schedule the limit allows.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TokenBucket:
    rate: float  # tokens per second
    capacity: float
    tokens: float = 0.0
    updated: float | None = None
    paused_until: float = 0.0

    @classmethod
    def for_limit(cls, limit: float, window: float, margin: float = 0.98) -> TokenBucket:
        return cls(rate=limit * margin / window, capacity=1.0, tokens=1.0)

    def reserve(self, now: float) -> float:
        """Take one token; return the seconds to wait before using it (0 when it is available now)."""
        if self.updated is None:
            self.updated = now
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        self.tokens -= 1.0
        wait = 0.0 if self.tokens >= 0 else -self.tokens / self.rate
        return max(wait, self.paused_until - now)

    def available(self, now: float) -> bool:
        """Whether `reserve(now)` would not wait. Takes nothing."""
        tokens = (
            self.tokens if self.updated is None else min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        )
        return now >= self.paused_until and tokens >= 1.0

    def pause_until(self, until: float) -> None:
        self.paused_until = max(self.paused_until, until)
