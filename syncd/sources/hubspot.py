"""HubSpot deals through the CRM search API, incrementally on `hs_lastmodifieddate`.

Paging is by key, not by offset: every query asks for `hs_lastmodifieddate >= anchor` (sorted ascending,
200 per page) and the next anchor is the newest timestamp the page contained. Re-reading the deals that share
that timestamp costs little (the diff ignores versions it has), and it sidesteps both of search's traps:
- the 10,000-results-per-query cap (a 400 past it) is never reached, because no query pages with `after`;
- offset paging over equal timestamps can skip or repeat records when the order of ties is unstable.
When a whole page shares one timestamp, the source pages *within* it by `hs_object_id` (the only other
sort), then moves on at timestamp + 1 ms, so the loop always terminates.

The window's upper end is HubSpot's clock (the `Date` header of the first answer) minus the delay, so a
page boundary never races writes still in flight and the local clock does not matter.

`closedate` is an instant, but people mean a calendar day in the portal's time zone: 2026-09-30T22:30:00Z is
00:30 on 1 October in Berlin, so a Berlin portal's deal closed on 1 October. So `close_date` is the portal's
day, in the zone `GET /account-info/v3/details` names (read when a page first holds such an instant, then kept
for a day, so an idle cycle still costs one request; its `utcOffsetMilliseconds` when the name is unknown here).

`PROFILE` is what HubSpot's answers mean to the HTTP layer: `X-HubSpot-RateLimit-Remaining: 0` pauses the
bucket for the window's interval, `X-HubSpot-RateLimit-Daily[-Remaining]` is the daily allocation, an
error body is `{"message", "errors": [{"message"}]}`, and a 429 whose `policyName` is `DAILY` is the daily limit
spent (`quota_spent`: no retry, the service pauses until the next full UTC hour; see there why).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from syncd.errors import RejectedError, TransientError
from syncd.http import HttpClient
from syncd.models import Deal, Page
from syncd.profile import GENERIC, Profile, QuotaPause, parse_seconds
from syncd.sources.records import deal_from, iso_ms, parse_records
from syncd.sources.schema import Declared, Schema

SEARCH = "/crm/v3/objects/deals/search"
PROPERTY_OF = {
    "name": "dealname",
    "stage": "dealstage",
    "amount": "amount",
    "close_date": "closedate",
    "pipeline": "pipeline",
    "owner": "hubspot_owner_id",
    "updated_at": "hs_lastmodifieddate",
}
MODIFIED = "hs_lastmodifieddate"
log = logging.getLogger("syncd")
# Always asked for: when the deal was created (a deal restored from the recycle bin keeps its createdate, so
# one created before the baseline is not new), and the deals HubSpot merged into this one.
CREATED, MERGED = "createdate", "hs_merged_object_ids"
SAFE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_VALUE_CHARS = 100_000
ACCOUNT = "/account-info/v3/details"
PROPERTIES = "/crm/v3/properties/deals"
ZONE_TTL = 86_400.0


class HubSpotSource:
    kind = "hubspot"
    credential_origin: str | None = None

    def __init__(
        self,
        http: HttpClient,
        names: Iterable[str],
        *,
        page_size: int = 200,
        credential_hint: str = "the HubSpot token",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.http = http
        self.page_size = page_size
        self.credential_hint = credential_hint
        self.clock = clock
        wanted = {PROPERTY_OF.get(name, name) for name in names if name != "id"}
        self.properties = sorted(wanted | {MODIFIED, CREATED, MERGED})
        self._zone: tuple[tzinfo, float] | None = None  # the portal's time zone, and when it was read

    def zone(self) -> tzinfo:
        """The portal's time zone, read once a day. A token that may not read the account details (403) keeps UTC,
        with a warning; any other failure fails the cycle, so no close date is ever shifted silently."""
        if self._zone is None or self.clock() - self._zone[1] > ZONE_TTL:
            try:
                details = self.http.call("GET", ACCOUNT).data
            except RejectedError as exc:
                if exc.status not in (403, 404):
                    raise
                log.warning("hubspot: the portal's time zone cannot be read (%s); close dates are UTC days", exc)
                details = {}
            self._zone = (portal_zone(details), self.clock())
        return self._zone[0]

    def pages(self, since_ms: int | None, delay_ms: int) -> Iterator[Page]:
        anchor = max(since_ms or 0, 0)
        upper: int | None = None
        tie_after: int | None = None  # paging within one timestamp, by hs_object_id (0: from the first id)
        while True:
            reply_data, server_time = self._search(anchor, upper, tie_after)
            if upper is None:
                upper = int((server_time or self.clock()) * 1000) - delay_ms
            zone = self.zone() if _has_instant_close(reply_data["results"]) else UTC  # an idle cycle asks nothing more
            deals, quarantined = parse_records(reply_data["results"], functools.partial(parse_deal, zone=zone))
            in_window = [d for d in deals if d.updated_at_ms <= upper]
            more = _has_next(reply_data) and anchor <= upper
            if tie_after is None:
                newest = max((d.updated_at_ms for d in in_window), default=anchor)
                if not more:
                    yield Page(in_window, quarantined, cursor_ms=upper)
                    return
                if newest > anchor:
                    yield Page(in_window, quarantined, cursor_ms=newest)
                    anchor = newest
                else:
                    yield Page(in_window, quarantined, cursor_ms=anchor)
                    tie_after = 0
            else:
                ids = [int(d.id) for d in deals if d.id.isdigit()]
                if not more:
                    yield Page(in_window, quarantined, cursor_ms=anchor + 1)
                    anchor, tie_after = anchor + 1, None
                    continue
                if not ids or max(ids) <= tie_after:
                    raise TransientError(
                        f"hubspot: search did not advance past deal id {tie_after} at {anchor} ms; "
                        "the answer will be retried next cycle",
                        service="hubspot",
                    )
                yield Page(in_window, quarantined, cursor_ms=anchor)
                tie_after = max(ids)

    def schema(self) -> Schema:
        """Every deal property the portal declares (`GET /crm/v3/properties/deals`), with its type."""
        results = self.http.call("GET", PROPERTIES, expect=_search_problem).data["results"]
        fields = {}
        for item in results:
            if isinstance(item, dict) and isinstance(item.get("name"), str):
                meta = item.get("modificationMetadata")
                read_only = isinstance(meta, dict) and meta.get("readOnlyValue") is True
                options = tuple(
                    str(o["value"]) for o in item.get("options") or [] if isinstance(o, dict) and "value" in o
                )
                kind = str(item.get("type", "string"))
                fields[item["name"]] = Declared(
                    item["name"], kind, not read_only, options if kind == "enumeration" else ()
                )
        return Schema("HubSpot", fields)

    def write_back(self, deal_id: str, prop: str, value: str) -> None:
        """Set one deal property (e.g. the project URL). Idempotent, so retried like a read. HubSpot bumps
        hs_lastmodifieddate; the next poll sees a version whose rule result did not change: no new op."""
        self.http.call("PATCH", f"/crm/v3/objects/deals/{deal_id}", json={"properties": {prop: value}})

    def _search(self, anchor: int, upper: int | None, tie_after: int | None) -> tuple[dict[str, Any], float | None]:
        if tie_after is None:
            filters = [{"propertyName": MODIFIED, "operator": "GTE", "value": str(anchor)}]
            if upper is not None:
                filters.append({"propertyName": MODIFIED, "operator": "LTE", "value": str(upper)})
            sort = MODIFIED
        else:
            filters = [
                {"propertyName": MODIFIED, "operator": "GTE", "value": str(anchor)},
                {"propertyName": MODIFIED, "operator": "LTE", "value": str(anchor)},
            ]
            if tie_after > 0:
                filters.append({"propertyName": "hs_object_id", "operator": "GT", "value": str(tie_after)})
            sort = "hs_object_id"
        body = {
            "filterGroups": [{"filters": filters}],
            "sorts": [{"propertyName": sort, "direction": "ASCENDING"}],
            "properties": self.properties,
            "limit": self.page_size,
        }
        reply = self.http.call("POST", SEARCH, json=body, bucket="search", expect=_search_problem)
        return reply.data, reply.server_time


def _search_problem(data: Any) -> str | None:
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        return "a body without a 'results' list (the page is not recorded; it will be read again)"
    return None


def _has_instant_close(records: list[Any]) -> bool:
    """Whether any record's `closedate` is an instant, whose day depends on the portal's zone."""
    for record in records:
        props = record.get("properties") if isinstance(record, dict) else None
        value = props.get("closedate") if isinstance(props, dict) else None
        if isinstance(value, str) and len(value.strip()) > 10:
            return True
    return False


def _has_next(data: dict[str, Any]) -> bool:
    paging = data.get("paging")
    return isinstance(paging, dict) and isinstance(paging.get("next"), dict)


def parse_deal(record: Any, zone: tzinfo = UTC) -> Deal:
    """One search result -> Deal, its close date the calendar day in `zone`. Raises ValueError with the reason
    when the record cannot be trusted."""
    if not isinstance(record, dict):
        raise ValueError(f"record is a {type(record).__name__}, not an object")
    deal_id = record.get("id")
    if isinstance(deal_id, int) and not isinstance(deal_id, bool):
        deal_id = str(deal_id)
    if not isinstance(deal_id, str) or not SAFE_ID.match(deal_id):
        raise ValueError("record has no usable 'id'")
    props = record.get("properties")
    if not isinstance(props, dict):
        raise ValueError("'properties' is missing or not an object")
    for key, value in props.items():
        if value is not None and not isinstance(value, str | int | float | bool):
            raise ValueError(f"property {key!r} is a {type(value).__name__}, not a string")
        if isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
            raise ValueError(f"property {key!r} is {len(value)} characters long")
    modified = props.get(MODIFIED) or record.get("updatedAt")
    updated_at_ms = parse_timestamp_ms(modified)
    if updated_at_ms is None:
        raise ValueError(f"{MODIFIED} {str(modified)[:40]!r} is not a timestamp")
    merged = tuple(part.strip() for part in str(props.get(MERGED) or "").split(";") if part.strip())
    deal = deal_from(
        deal_id,
        updated_at_ms,
        props,
        PROPERTY_OF,
        parse_amount(props.get("amount")),
        created_at_ms=parse_timestamp_ms(props.get(CREATED)),
        merged_ids=merged,
    )
    return dataclasses.replace(deal, close_date=calendar_day(props.get("closedate"), zone))


def calendar_day(value: Any, zone: tzinfo) -> str | None:
    """`closedate` as the day it is in `zone` ('2026-09-30T22:30:00Z' in Berlin: '2026-10-01'). A bare date is
    already a day; a value that is neither is kept as it came, for the rules to judge."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    text = str(value).strip()
    if len(text) == 10 and text[4] == text[7] == "-":
        return text
    ms = parse_timestamp_ms(text)
    if ms is None:
        return text
    return datetime.fromtimestamp(ms / 1000, UTC).astimezone(zone).date().isoformat()


def portal_zone(details: Any) -> tzinfo:
    """The zone `GET /account-info/v3/details` names (`timeZone`, e.g. "US/Eastern"), else its fixed
    `utcOffsetMilliseconds`, else UTC."""
    if not isinstance(details, dict):
        return UTC
    name = details.get("timeZone")
    if isinstance(name, str) and name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    offset = details.get("utcOffsetMilliseconds")
    if isinstance(offset, int) and not isinstance(offset, bool) and abs(offset) < 86_400_000:
        return timezone(timedelta(milliseconds=offset))
    return UTC


def parse_amount(value: Any) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise ValueError(f"amount {value!r} is not a number")
    try:
        amount = float(str(value).strip().replace(",", ""))
    except ValueError:
        raise ValueError(f"amount {str(value)[:40]!r} is not a number") from None
    if not math.isfinite(amount):
        raise ValueError(f"amount {value!r} is not a finite number")
    return amount


def parse_timestamp_ms(value: Any) -> int | None:
    """HubSpot timestamps: ISO 8601 in responses ('2024-09-13T20:23:03.333Z'), epoch ms in filters."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value >= 0 else None
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return iso_ms(value)


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
