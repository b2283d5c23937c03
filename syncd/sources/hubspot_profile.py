"""What HubSpot's answers mean to the HTTP layer (`PROFILE`): `X-HubSpot-RateLimit-Remaining: 0` pauses the
bucket for the window's interval, `X-HubSpot-RateLimit-Daily[-Remaining]` is the daily allocation, an error body
is `{"message", "errors": [{"message"}]}`, and a 429 whose `policyName` is `DAILY` is the daily limit spent
(`quota_spent`: no retry, the service pauses until the next full UTC hour; see there why).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from syncd.profile import GENERIC, Profile, QuotaPause, parse_seconds


def pause_seconds(headers: Mapping[str, str]) -> float | None:
    """The burst window is spent (`X-HubSpot-RateLimit-Remaining: 0`): pause for its interval (ms, default 1 s)."""
    h = {name.lower(): value for name, value in headers.items()}
    if h.get("x-hubspot-ratelimit-remaining") != "0":
        return None
    return parse_seconds(h.get("x-hubspot-ratelimit-interval-milliseconds"), 1000) / 1000


def daily_quota(headers: Mapping[str, str]) -> tuple[int, int] | None:
    """(remaining, limit) from `X-HubSpot-RateLimit-Daily-Remaining` and `X-HubSpot-RateLimit-Daily`."""
    h = {name.lower(): value for name, value in headers.items()}
    try:
        return int(h["x-hubspot-ratelimit-daily-remaining"]), int(h["x-hubspot-ratelimit-daily"])
    except (KeyError, ValueError):
        return None


def error_text(status: int, body: Any) -> str:
    """The per-property `errors[].message` when there are some (they say more), else the top-level `message`."""
    if isinstance(body, dict) and isinstance(body.get("errors"), list) and body["errors"]:
        return "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in body["errors"])
    return GENERIC.error_text(status, body)


RECHECK_MARGIN = 30.0  # seconds past the hour before asking again: HubSpot's counter and clock are not ours


def quota_spent(status: int, headers: Mapping[str, str], body: Any, now: float) -> QuotaPause | None:
    """A 429 with `policyName: "DAILY"` is the daily limit spent: pause until the next full UTC hour (+30 s).

    HubSpot's usage guidelines (https://developers.hubspot.com/docs/api/usage-details) give the 429 body as
    `{"status": "error", "message": "You have reached your daily limit.", "errorType": "RATE_LIMIT",
    "correlationId": ..., "policyName": "DAILY", "requestId": ...}`, say "The message and policyName will indicate
    which limit you hit (either daily or secondly)" and "The daily limit resets at midnight based on your time
    zone setting" ("The daily limits reset at midnight based on the time zone setting of the HubSpot account",
    https://developers.hubspot.com/apisbytier). No Retry-After is documented for it.

    This profile function does not know the portal's time zone (`GET /account-info/v3/details` names it, but the
    source reads it only when close dates need it, and asking now would be one more refused call; the daily-usage
    endpoint's `resetsAt` would tell too, but "A call to this endpoint counts against your daily API limits",
    https://legacydocs.hubspot.com/docs/methods/check-daily-api-usage), so the reset is somewhere in the next 24
    hours, at midnight of a zone whose offset is a whole number of quarter hours. Waiting 24 hours would be safe
    for HubSpot but could stall syncd for a day; so it asks again at every full UTC hour, where midnight falls for
    every whole-hour zone: it resumes 30 s plus one poll period after the reset there (within 45 minutes more for
    :30/:45 zones) and spends at most 24 refused requests a day, where retrying every cycle spent 5 per call. The
    ten-secondly and secondly 429s are not quotas: None (retried as before)."""
    if status != 429 or not isinstance(body, dict) or body.get("policyName") != "DAILY":
        return None
    seconds = 3600.0 - now % 3600.0 + RECHECK_MARGIN
    return QuotaPause(
        seconds,
        "HubSpot's daily API limit is spent (policyName DAILY); it resets at midnight in the portal's time zone, "
        "so one request checks at each full UTC hour",
    )


PROFILE = Profile(pause_seconds=pause_seconds, daily_quota=daily_quota, error_text=error_text, quota_spent=quota_spent)
