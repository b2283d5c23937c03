"""A token bucket that never lets a rolling window see more than `limit` requests, plus server-ordered pauses.

Pure: the clock is passed in. `reserve(now)` takes a token and returns how long the caller must wait first;
`pause_until(t)` holds every caller until `t` (a `Retry-After`, or a quota header that reached zero).

Sizing: a bucket of capacity 1 refilling at `limit / window` tokens per second spaces requests evenly and admits
at most `limit` requests in any rolling window. `for_limit` keeps a 2 % margin below the documented limit for
clock and network jitter, so a well-behaved client receives no 429 and finishes within ~1.02x of the fastest
schedule the limit allows.

Learning a limit (`learn_floor` set): a service whose limit depends on the customer's plan (Asana: 150/min
free, 1,500/min paid) is started at the highest rate, and a 429 with `Retry-After` tells what the plan allows:
the requests the bucket let through in the window before it, less the refused one. `learn(now)` lowers the
rate to that count, when it is at least `learn_floor` (fewer means the 429 was about something else, such as
a concurrency limit, and says nothing about the plan). Rates only go down; an operator resets them.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    rate: float  # tokens per second
    capacity: float
    tokens: float = 0.0
    updated: float | None = None
    paused_until: float = 0.0
    window: float = 60.0
    margin: float = 1.0
    learn_floor: float | None = None  # None: the limit is known; else a 429 teaches it (see the module docstring)
    sent: deque[float] = field(default_factory=deque, repr=False)  # when each request in the window went out

    @classmethod
    def for_limit(
        cls, limit: float, window: float, margin: float = 0.98, learn_floor: float | None = None
    ) -> TokenBucket:
        return cls(
            rate=limit * margin / window,
            capacity=1.0,
            tokens=1.0,
            window=window,
            margin=margin,
            learn_floor=learn_floor,
        )

    @property
    def limit(self) -> float:
        """Requests per window the bucket is sized for (its rate without the margin)."""
        return self.rate * self.window / self.margin

    def limit_to(self, limit: float) -> None:
        """Never exceed `limit` requests per window from now on (a limit learned earlier, or a cap)."""
        self.rate = min(self.rate, limit * self.margin / self.window)

    def learn(self, now: float) -> int | None:
        """After a 429 with Retry-After: the limit the requests of the last window reveal, once the bucket has
        lowered itself to it; None when they reveal nothing (too few, or not below the current rate)."""
        while self.sent and self.sent[0] <= now - self.window:
            self.sent.popleft()
        accepted = len(self.sent) - 1
        if self.learn_floor is None or accepted < self.learn_floor or accepted >= self.limit:
            return None
        self.limit_to(accepted)
        return accepted

    def reserve(self, now: float) -> float:
        """Take one token; return the seconds to wait before using it (0 when it is available now)."""
        if self.updated is None:
            self.updated = now
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        self.tokens -= 1.0
        wait = 0.0 if self.tokens >= 0 else -self.tokens / self.rate
        wait = max(wait, self.paused_until - now)
        if self.learn_floor is not None:
            self.sent.append(now + wait)
            while self.sent[0] <= now - self.window:
                self.sent.popleft()
        return wait

    def give_back(self) -> None:
        """Undo the last `reserve`: its request was not sent."""
        self.tokens += 1.0
        if self.learn_floor is not None and self.sent:
            self.sent.pop()

    def available(self, now: float) -> bool:
        """Whether `reserve(now)` would not wait. Takes nothing."""
        tokens = (
            self.tokens if self.updated is None else min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        )
        return now >= self.paused_until and tokens >= 1.0

    def pause_until(self, until: float) -> None:
        self.paused_until = max(self.paused_until, until)
