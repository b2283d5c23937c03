"""Pipedrive deals through API v2 (`GET /api/v2/deals`), incrementally on `update_time`.

The deal fields (`GET /api/v2/dealFields`, cursor-paged) map the flows' friendly custom-field names to
Pipedrive's field codes and option ids to their labels (`syncd.sources.pipedrive_fields`). Pipedrive charges
API tokens per call against a daily budget ("each request consumes a certain number of tokens from a set daily
allowance, or 'budget'", https://pipedrive.readme.io/docs/core-api-concepts-rate-limiting; "each API endpoint
has an associated 'token cost'", https://pipedrive.readme.io/docs/guide-for-optimizing-api-usage), so the
listing is read once and kept for the life of the source object: an idle cycle costs one `GET /api/v2/deals`,
and write-backs reuse it. It is read again when it is older than `fields_ttl` (an hour), when a listed deal
carries a custom field code it does not have (a field created since; deals asked for without `custom_fields=`
carry every custom field), and before a write-back to a field it does not know. A reading the flows cannot
use (`SourceSetupError`) is not kept.

The window's upper end is Pipedrive's clock minus the delay, in whole seconds because `update_time` has no
fraction. Pipedrive's clock is the `Date` of its last answer plus the time elapsed since on a monotonic timer
(never ahead of Pipedrive: the `Date` is floored and was stamped before it arrived; a step of the local clock
does not move it); before any answer, the local clock. The deals are then listed in one query,
`updated_since` (inclusive) .. `updated_until` (exclusive), sorted by `update_time` ascending, following
`additional_data.next_cursor` until it is null. The cursor is opaque and no cap on results is documented, so
unlike HubSpot's search one query pages the whole window. The next page is asked for only when the caller
takes it, i.e. after the previous page was recorded.

Cursors: a page's `cursor_ms` is the newest `update_time` it holds (deals sharing that second may continue on
the next page; the next cycle re-reads from there, inclusive); the last page carries the window's upper end.
Because `updated_until` is exclusive, a deal stamped exactly at the upper second is not in this window and is
at or after the stored cursor, so the next window reads it. Every call yields at least one page.

`PROFILE` is what Pipedrive's answers mean to the HTTP layer: `x-ratelimit-remaining: 0` pauses the bucket for
`x-ratelimit-reset` seconds (Pipedrive's rolling 2 s window); an error body is
`{"success": false, "error", "error_info"}`; and a 403 that is an HTML page, not that JSON envelope, is
Pipedrive's edge refusing a flood (a rate limit, retried with backoff), not a rejected token.

Only the custom fields the flows use are asked for (`custom_fields=`, at most 15, else `SourceSetupError`).
Standard deal fields win over a custom field with the same friendly name; the normalised names (`name`,
`stage`, …) win over both. A name that matches nothing is simply absent (None in `when`).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from functools import partial
from typing import Any

from syncd.errors import TransientError
from syncd.http import HttpClient, Reply
from syncd.models import Deal, Page
from syncd.profile import GENERIC, Profile, parse_seconds
from syncd.sources.pipedrive_fields import DEAL_FIELDS, FIELDS_PAGE_SIZE, DealFields, Field, checked
from syncd.sources.records import parse_records
from syncd.sources.schema import Declared, Schema

DEALS = "/api/v2/deals"
READ_ONLY_FIELDS = frozenset({"id", "add_time", "update_time", "creator_user_id", "stage_change_time", "close_time"})
NORMALISED = frozenset({"id", "name", "stage", "amount", "close_date", "pipeline", "owner", "updated_at"})
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TIMESTAMP = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d\d):(\d\d))?"
)


class PipedriveSource:
    kind = "pipedrive"
    credential_origin: str | None = None

    def __init__(
        self,
        http: HttpClient,
        names: Iterable[str],
        *,
        page_size: int = 500,
        credential_hint: str = "the Pipedrive API token",
        clock: Callable[[], float] = time.time,
        timer: Callable[[], float] = time.monotonic,
        fields_ttl: float = 3600.0,
    ) -> None:
        self.http = http
        self.page_size = page_size
        self.credential_hint = credential_hint
        self.clock = clock  # epoch seconds: Pipedrive's clock until an answer carries a `Date`
        self.timer = timer  # monotonic seconds: the fields' age and the time since the last `Date`
        self.fields_ttl = fields_ttl
        self.names = frozenset(names) - NORMALISED  # raw deal fields, or custom fields by friendly name
        self._fields: DealFields | None = None
        self._date: tuple[float, float] | None = None  # (the last answer's `Date`, the timer when it came)

    def pages(self, since_ms: int | None, delay_ms: int) -> Iterator[Page]:
        fields = self._deal_fields()
        custom = fields.custom
        upper_s = (int(self._server_now() * 1000) - delay_ms) // 1000
        params: dict[str, Any] = {
            "updated_until": rfc3339(upper_s),
            "sort_by": "update_time",
            "sort_direction": "asc",
            "limit": self.page_size,
        }
        if since_ms is not None:
            params["updated_since"] = rfc3339(max(since_ms, 0) // 1000)
        if custom:
            params["custom_fields"] = ",".join(sorted(custom))
        cursor_ms = max(since_ms or 0, 0)
        refreshed = False
        for reply in self._walk(DEALS, params):
            data = reply.data
            if not refreshed and (unknown := fields.unknown(data["data"])):
                fields = self._deal_fields(refresh=True).knowing(unknown)  # at most once a poll
                self._fields, custom, refreshed = fields, fields.custom, True
            deals, quarantined = parse_records(data["data"], partial(parse_deal, names=self.names, custom=custom))
            in_window = [d for d in deals if d.updated_at_ms < upper_s * 1000]
            if _next_cursor(data) is None:
                yield Page(in_window, quarantined, cursor_ms=upper_s * 1000)
            else:
                cursor_ms = max([cursor_ms, *(d.updated_at_ms for d in in_window)])
                yield Page(in_window, quarantined, cursor_ms=cursor_ms)

    def write_back(self, deal_id: str, prop: str, value: str) -> None:
        """Set one deal field (a custom field by its friendly name, or a standard field) to `value`. A PATCH of
        the same value is idempotent, so it is retried like a read. A field the kept listing does not know is
        looked up in a fresh one first (it may have been created since)."""
        fields = self._deal_fields()
        if not fields.knows(prop):
            fields = self._deal_fields(refresh=True)
        code = fields.code(prop)
        body = {"custom_fields": {code: value}} if code else {prop: value}
        self._heard(self.http.call("PATCH", f"/api/v2/deals/{deal_id}", json=body, expect=_write_problem))

    def schema(self) -> Schema:
        """Every deal field (`GET /api/v2/dealFields`): standard ones by code, custom ones by friendly name."""
        fields = {}
        for item in self._deal_fields(refresh=True).items:
            if isinstance(item, dict) and isinstance(item.get("field_code"), str):
                custom = item.get("is_custom_field") is True and isinstance(item.get("field_name"), str)
                name = Field.from_item(item).name if custom else item["field_code"]
                writable = custom or item["field_code"] not in READ_ONLY_FIELDS
                fields[name] = Declared(item["field_code"], str(item.get("field_type", "varchar")), writable)
        return Schema("Pipedrive", fields)

    def _deal_fields(self, *, refresh: bool = False) -> DealFields:
        """The kept reading of the deal fields; a new one (every page of the listing) when there is none, it is
        `fields_ttl` old, or `refresh`."""
        now = self.timer()
        if refresh or self._fields is None or now - self._fields.read_at >= self.fields_ttl:
            items = [
                item for reply in self._walk(DEAL_FIELDS, {"limit": FIELDS_PAGE_SIZE}) for item in reply.data["data"]
            ]
            self._fields = None  # until the new reading resolves: a SourceSetupError keeps nothing
            self._fields = DealFields.resolve(items, self.names, now)
        return self._fields

    def _server_now(self) -> float:
        """Pipedrive's clock, epoch seconds: the last `Date` plus the timer's seconds since it came."""
        if self._date is None:
            return self.clock()
        date, at = self._date
        return date + max(0.0, self.timer() - at)

    def _heard(self, reply: Reply) -> Reply:
        if reply.server_time is not None:
            self._date = (reply.server_time, self.timer())
        return reply

    def _walk(self, path: str, params: dict[str, Any]) -> Iterator[Reply]:
        """GET `path`, then every next page (`additional_data.next_cursor`) until it is null."""
        params, seen = dict(params), set[str]()
        while True:
            reply = self._heard(self.http.call("GET", path, params=params, expect=_envelope_problem))
            yield reply
            cursor = _next_cursor(reply.data)
            if cursor is None:
                return
            if cursor in seen:
                raise TransientError(
                    f"pipedrive: {path} returned the cursor {cursor[:40]!r} twice; it will be read again next cycle",
                    service="pipedrive",
                )
            seen.add(cursor)
            params["cursor"] = cursor


def rfc3339(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _envelope_problem(data: Any) -> str | None:
    if not isinstance(data, dict) or data.get("success") is not True or not isinstance(data.get("data"), list):
        return "a body without 'success': true and a 'data' list (nothing is recorded; it will be read again)"
    extra = data.get("additional_data")
    if extra is not None and (not isinstance(extra, dict) or not isinstance(extra.get("next_cursor"), str | None)):
        return "an 'additional_data' without a readable 'next_cursor' (the page will be read again)"
    return None


def _write_problem(data: Any) -> str | None:
    if not isinstance(data, dict) or data.get("success") is not True:
        return "a body without 'success': true (the write will be tried again)"
    return None


def _next_cursor(data: dict[str, Any]) -> str | None:
    return (data.get("additional_data") or {}).get("next_cursor")


def parse_deal(record: Any, names: Iterable[str], custom: dict[str, Field]) -> Deal:
    """One v2 deal -> Deal. Raises ValueError with the reason when the record cannot be trusted."""
    if not isinstance(record, dict):
        raise ValueError(f"record is a {type(record).__name__}, not an object")
    deal_id = record.get("id")
    if isinstance(deal_id, str) and deal_id.isdigit() and len(deal_id) <= 20:
        deal_id = int(deal_id)
    if isinstance(deal_id, bool) or not isinstance(deal_id, int) or deal_id <= 0:
        raise ValueError("record has no usable 'id'")
    updated_at_ms = parse_timestamp_ms(record.get("update_time"))
    if updated_at_ms is None:
        raise ValueError(f"update_time {str(record.get('update_time'))[:40]!r} is not a timestamp")
    properties = {name: checked(record[name], name) for name in names if name in record and name != "custom_fields"}
    values = record.get("custom_fields")
    if values is not None and not isinstance(values, dict):
        raise ValueError(f"'custom_fields' is a {type(values).__name__}, not an object")
    for code, field in custom.items():
        for name, value in field.values((values or {}).get(code)).items():
            properties.setdefault(name, value)
    return Deal(
        id=str(deal_id),
        updated_at_ms=updated_at_ms,
        name=_text(record.get("title"), "title"),
        stage=_ident(record.get("stage_id"), "stage_id"),
        amount=parse_amount(record.get("value")),
        close_date=_text(record.get("expected_close_date"), "expected_close_date"),
        pipeline=_ident(record.get("pipeline_id"), "pipeline_id"),
        owner=_ident(record.get("owner_id"), "owner_id"),
        properties=properties,
        created_at_ms=parse_timestamp_ms(record.get("add_time")),
    )


def parse_amount(value: Any) -> float | None:
    """v2 sends `value` as a JSON number; anything else (a string included) is not trusted."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"value {str(value)[:40]!r} is not a number")
    return float(value)


def parse_timestamp_ms(value: Any) -> int | None:
    """RFC 3339 ('2024-09-13T20:23:03Z', with or without a fraction or an offset) or v1's UTC
    '2024-09-13 20:23:03' -> epoch ms, exactly (no float rounding). None when it is not such a timestamp."""
    if not isinstance(value, str) or not (m := _TIMESTAMP.fullmatch(value.strip())):
        return None
    year, month, day, hour, minute, second = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    try:
        parsed = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        return None
    delta = parsed - EPOCH
    ms = (delta.days * 86_400 + delta.seconds) * 1000 + int((m[7] or "0")[:3].ljust(3, "0"))
    if m[9]:
        hours, minutes = int(m[10]), int(m[11])
        if hours > 23 or minutes > 59:
            return None
        ms -= (1 if m[9] == "+" else -1) * (hours * 60 + minutes) * 60_000
    return ms if ms >= 0 else None


def _text(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name} is a {type(value).__name__}, not a string")
    checked(value, name)
    return value


def _ident(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str) or len(str(value)) > 64:
        raise ValueError(f"{name} {str(value)[:40]!r} is not an id")
    return str(value)


def pause_seconds(headers: Mapping[str, str]) -> float | None:
    """The burst window is spent (`x-ratelimit-remaining: 0`): pause until it resets (`x-ratelimit-reset`, in
    seconds; 2 s, the window's length, when absent)."""
    h = {name.lower(): value for name, value in headers.items()}
    if h.get("x-ratelimit-remaining") != "0":
        return None
    return parse_seconds(h.get("x-ratelimit-reset"), 2)


EDGE_PAGE = "an HTML page from Pipedrive's edge, not its JSON error envelope"
_HTML = re.compile(r"<!doctype\s+html|<html[\s>]", re.I)
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.I | re.S)


def error_text(status: int, body: Any) -> str:
    """Pipedrive's own words are `error`; `error_info` is a generic pointer to its documentation. An HTML page
    (the JSON would have parsed) is from the edge in front of the API: `EDGE_PAGE` and the page's title."""
    if isinstance(body, dict) and body.get("error"):
        return str(body["error"])
    if isinstance(body, str) and _HTML.search(body[:2000]):
        title = _TITLE.search(body)
        return f"{EDGE_PAGE}: {' '.join(title[1].split())[:120]}" if title else EDGE_PAGE
    return GENERIC.error_text(status, body)


def is_rate_limit(status: int, text: str) -> bool:
    """A 403 that is an HTML page is Pipedrive's edge refusing a flood: an api_token integration that keeps
    sending after 429s gets a 403 HTML page from the Cloudflare-style edge, not an answer from the API
    (https://pipedrive.readme.io/docs/core-api-concepts-rate-limiting; /work/shared/reference/apis.md §3.4). It
    is retried with backoff like a 429 without Retry-After. A 403 in the JSON envelope ("Request not allowed",
    a plan limit: https://pipedrive.readme.io/docs/core-api-concepts-http-status-codes) stays an AuthError."""
    return status == 403 and text.startswith(EDGE_PAGE)


PROFILE = Profile(pause_seconds=pause_seconds, error_text=error_text, is_rate_limit=is_rate_limit)
