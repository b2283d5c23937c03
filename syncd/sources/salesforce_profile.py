"""What Salesforce's answers mean to the HTTP layer (`PROFILE`): `Sforce-Limit-Info` is the daily allocation, an
error body is a list `[{"errorCode", "message"}]` (the OAuth endpoint answers RFC 6749's `error_description`), and
a 403 `REQUEST_LIMIT_EXCEEDED` is a rate limit: the org's total allocation spent (`quota_spent`: no retry, the
service pauses for `RECHECK_SECONDS`; see there why), or, when the message names a concurrent limit, too many
long-running requests at once (retried as any rate limit).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from syncd.profile import GENERIC, Profile, QuotaPause

USAGE = re.compile(r"api-usage=(\d+)/(\d+)")


def daily_quota(headers: Mapping[str, str]) -> tuple[int, int] | None:
    """(remaining, limit) from `Sforce-Limit-Info: api-usage=used/limit`."""
    h = {name.lower(): value for name, value in headers.items()}
    if match := USAGE.search(h.get("sforce-limit-info", "")):
        used, limit = int(match[1]), int(match[2])
        return max(0, limit - used), limit
    return None


def error_text(status: int, body: Any) -> str:
    """REST errors are a list of `{"errorCode", "message"}`; anything else (the OAuth endpoint's
    `{"error", "error_description"}`) reads generically."""
    if isinstance(body, list) and body and isinstance(body[0], dict):
        return "; ".join(f"{e.get('errorCode', '')}: {e.get('message', '')}" for e in body if isinstance(e, dict))
    return GENERIC.error_text(status, body)


def is_rate_limit(status: int, text: str) -> bool:
    """Salesforce answers 403 `REQUEST_LIMIT_EXCEEDED`, not 429, when the org's allocation is spent."""
    return status == 403 and "REQUEST_LIMIT_EXCEEDED" in text


RECHECK_SECONDS = 30 * 60.0


def quota_spent(status: int, headers: Mapping[str, str], body: Any, now: float) -> QuotaPause | None:
    """A 403 `REQUEST_LIMIT_EXCEEDED` that is not about concurrency is the org's API allocation spent: pause 30 min.

    "If the error code is REQUEST_LIMIT_EXCEEDED, you've exceeded API request limits in your org"
    (https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/errorcodes.htm), with no
    Retry-After. The allocation is a rolling window: "Limits are enforced against the aggregate of all API calls
    made to the org in a 24-hour period ... Calls are blocked until usage for the preceding 24 hours drops below
    the limit" (https://help.salesforce.com/s/articleView?id=xcloud.setup_system_overview_api.htm). So there is
    no reset time: calls made 24 h ago age out one by one, and the org may recover in minutes (usage spread over
    the day) or in hours (after a burst); a 403 does not say which. syncd pauses a bounded 30 minutes and asks
    again with one request: it resumes at most 30 minutes after the org has room, and costs at most 48 refused
    requests a day (0.3 % of a Developer Edition's 15,000), where retrying every cycle spent 5 per call.

    The same code answers too many concurrent long-running requests ("If the number of long running requests
    exceeds the limit, the API returns a REQUEST_LIMIT_EXCEEDED exception code. Any new concurrent requests aren't
    processed until there are fewer requests than the allowed limit",
    https://developer.salesforce.com/docs/platform/salesforce-app-limits-cheatsheet/guide/salesforce-app-limits-platform-api.html),
    observed as "ConcurrentRequests (Concurrent API Requests) Limit exceeded." or "ConcurrentPerOrgLongTxn Limit
    exceeded."; that clears in seconds, so a message naming a concurrent limit gets None (retried as today).
    Any other message (the total's is observed as "TotalRequests Limit exceeded.") counts as the allocation."""
    if status != 403:
        return None
    errors = [e for e in body if isinstance(e, dict)] if isinstance(body, list) else []
    limits = [str(e.get("message", "")) for e in errors if e.get("errorCode") == "REQUEST_LIMIT_EXCEEDED"]
    if not limits or any("concurrent" in message.lower() for message in limits):
        return None
    return QuotaPause(
        RECHECK_SECONDS,
        "Salesforce's API request allocation for the org is spent (a rolling 24-hour window, no reset time); "
        "one request checks every 30 minutes",
    )


PROFILE = Profile(daily_quota=daily_quota, error_text=error_text, is_rate_limit=is_rate_limit, quota_spent=quota_spent)
