"""What an HTTP answer means, read without any I/O: the standard headers (`Retry-After`, `Date`) and a vendor's
`Profile`, the pure hooks that say what its limit headers and error bodies mean.

It is apart from `syncd.http` so that each source can define its profile next to its own client code and test it
as plain functions, and so that the client module is about sending requests and translating their failures.
"""

from __future__ import annotations

import email.utils
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


def _generic_error_text(status: int, body: Any) -> str:
    """The generic reading of an error body (parsed JSON, else its text): a top-level `message`, or RFC 6749's
    `error_description`/`error`; otherwise the body itself, bounded."""
    if isinstance(body, dict):
        for key in ("message", "error_description", "error"):
            if body.get(key):
                return str(body[key])
    return str(body)[:200]


@dataclass(frozen=True)
class Profile:
    """What one vendor's answers mean beyond standard HTTP; pure hooks that `HttpClient` calls on every answer.

    - `pause_seconds(headers)`: how long to pause the bucket because the vendor's limit headers say its budget
      is spent (None: it is not). `Retry-After` is standard and handled by the client itself;
    - `daily_quota(headers)`: (remaining, limit) of a daily allocation, told to `on_response` (alerts, status);
    - `error_text(status, body)`: the vendor's own words from an error body (parsed JSON, else the text); the
      client redacts and bounds them;
    - `is_rate_limit(status, text)`: whether an error that is not a 429 is the vendor saying "too many
      requests" (`text` is what `error_text` returned);
    - `quota_spent(status, headers, body, now)`: whether an error answer says a daily or other long quota is
      spent, so that retrying within the cycle is pointless (`body` as for `error_text`, `now` the vendor's
      clock in epoch seconds: its `Date` header, else ours). A `QuotaPause` pauses the whole service for its
      `seconds` without a retry; None (the default) keeps the ordinary rate-limit handling.
    """

    pause_seconds: Callable[[Mapping[str, str]], float | None] = lambda headers: None
    daily_quota: Callable[[Mapping[str, str]], tuple[int, int] | None] = lambda headers: None
    error_text: Callable[[int, Any], str] = _generic_error_text
    is_rate_limit: Callable[[int, str], bool] = lambda status, text: False
    quota_spent: Callable[[int, Mapping[str, str], Any, float], QuotaPause | None] = lambda *answer: None


@dataclass(frozen=True)
class QuotaPause:
    """A long quota is spent: pause every call to the service for `seconds`, then let one request ask again.
    `limit` names the limit, when it resets and when syncd checks, for the error message."""

    seconds: float
    limit: str


GENERIC = Profile()


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError):
        return None


def parse_seconds(value: str | None, default: float) -> float:
    """A non-negative number from a header (a limit's interval or reset); `default` when absent or unreadable."""
    try:
        return max(0.0, float(value)) if value else default
    except ValueError:
        return default


def parse_date(value: str | None) -> float | None:
    """A `Date` header -> epoch seconds; None when absent or unreadable."""
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
