"""Salesforce Opportunities through the REST query API, incrementally on `SystemModstamp`.

Auth is the OAuth 2.0 refresh-token flow against the configured login host; the token answer names the org's
`instance_url`, which must be https (or loopback, for the sandbox) before the access token is sent there. A 401
`INVALID_SESSION_ID` refreshes once and repeats the request; a second 401 is an AuthError naming the variables.

The query is `SystemModstamp >= since AND SystemModstamp <= upper ORDER BY SystemModstamp, Id`, with SOQL's
unquoted datetime literals to the second; pages follow `nextRecordsUrl`. The upper end is Salesforce's clock
(the `Date` header seen last, minus the delay). `Sforce-Limit-Info: api-usage=n/m` is read on every answer:
past `stop_percent` of the daily allocation the cycle stops early (cursor where it was recorded) with a
sentence saying so, so syncd never spends the org's last API calls. The allocation is a rolling 24-hour
window, so the next cycle asks `GET .../limits` (one call) for the current figure instead of assuming.

`PROFILE` is what Salesforce's answers mean to the HTTP layer: `Sforce-Limit-Info` is the daily allocation, an
error body is a list `[{"errorCode", "message"}]` (the OAuth endpoint answers RFC 6749's `error_description`),
and a 403 `REQUEST_LIMIT_EXCEEDED` is a rate limit: the org's total allocation spent (`quota_spent`: no retry, the
service pauses for `RECHECK_SECONDS`; see there why), or, when the message names a concurrent limit, too many
long-running requests at once (retried as any rate limit).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from syncd.errors import AuthError, RateLimited, RejectedError
from syncd.http import Form, HttpClient, Reply
from syncd.models import Deal, Page
from syncd.profile import GENERIC, Profile, QuotaPause
from syncd.sources.records import deal_from, iso_ms, parse_records
from syncd.sources.refresh_token import RefreshToken
from syncd.sources.schema import Declared, Schema

FIELD_OF = {
    "name": "Name",
    "stage": "StageName",
    "amount": "Amount",
    "close_date": "CloseDate",
    "owner": "OwnerId",
    "updated_at": "SystemModstamp",
}
BASE_FIELDS = ("Id", "SystemModstamp", "CreatedDate")  # CreatedDate: a deal created before the baseline is not new
USAGE = re.compile(r"api-usage=(\d+)/(\d+)")
SAFE_ID = re.compile(r"^[A-Za-z0-9]{15,18}$")


class SalesforceSource:
    kind = "salesforce"

    def __init__(
        self,
        http: HttpClient,
        names: Iterable[str],
        *,
        client_id: str,
        client_secret: str,
        refresh_token: str | RefreshToken,
        api_version: str = "v60.0",
        fields: Iterable[str] = (),
        page_size: int = 2000,
        stop_percent: float = 90.0,
        credential_hint: str = "the Salesforce client id, client secret and refresh token",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.http = http
        self.login_url = http.base_url
        self._client = {"grant_type": "refresh_token", "client_id": client_id, "client_secret": client_secret}
        self.refresh_token = refresh_token if isinstance(refresh_token, RefreshToken) else RefreshToken(refresh_token)
        self.credential_hint = credential_hint
        self.api_version = api_version
        self.page_size = max(200, min(page_size, 2000))
        self.stop_percent = stop_percent
        self.clock = clock
        self.skew: float | None = None  # server clock - local clock, from Date headers
        self.token: str | None = None
        self.quota: tuple[int, int] | None = None  # (remaining, limit) of the daily API allocation
        wanted = {FIELD_OF.get(n, n) for n in names if n not in ("id", "pipeline")} | set(fields)
        self.relationships = {f.replace(".", "_"): f for f in wanted | set(fields) if "." in f}
        wanted = {self.relationships.get(f, f) for f in wanted}
        self.fields = sorted(wanted - set(BASE_FIELDS))
        http.session.headers["Sforce-Query-Options"] = f"batchSize={self.page_size}"

    @property
    def credential_origin(self) -> str:
        return self.refresh_token.origin

    # -- paging --------------------------------------------------------------------------------------
    def pages(self, since_ms: int | None, delay_ms: int) -> Iterator[Page]:
        if self.token is None or self.skew is None:
            self._refresh()
        if self._past_stop():
            self._read_limits()  # the window rolls: the last figure seen may be hours old
        self._check_usage()
        upper_ms = (int((self.clock() + (self.skew or 0.0)) * 1000) - delay_ms) // 1000 * 1000  # SOQL: seconds
        since = max(since_ms or 0, 0)
        if since > upper_ms:
            yield Page([], [], cursor_ms=upper_ms)
            return
        soql = (
            f"SELECT {', '.join((*BASE_FIELDS, *self.fields))} FROM Opportunity "
            f"WHERE SystemModstamp >= {soql_datetime(since)} "
            f"AND SystemModstamp <= {soql_datetime(upper_ms)} ORDER BY SystemModstamp, Id"
        )
        reply = self._get(f"/services/data/{self.api_version}/query", {"q": soql})
        while True:
            deals, quarantined = parse_records(reply.data["records"], self.parse_record, "Id")
            next_url = reply.data.get("nextRecordsUrl")
            if reply.data.get("done", True) or not next_url:
                yield Page(deals, quarantined, cursor_ms=upper_ms)
                return
            newest = max((d.updated_at_ms for d in deals), default=since)
            yield Page(deals, quarantined, cursor_ms=min(newest, upper_ms))
            self._check_usage()
            reply = self._get(str(next_url), None)

    def schema(self) -> Schema:
        """Every Opportunity field (`GET .../sobjects/Opportunity/describe`). SOQL matches field names in any
        case and answers with the canonical one, which is why `parse_record` reads them case-insensitively."""
        if self.token is None:
            self._refresh()
        data = self._get(f"/services/data/{self.api_version}/sobjects/Opportunity/describe", None, _describe_problem)
        fields = {
            f["name"]: Declared(f["name"], str(f.get("type", "string")), f.get("updateable") is True)
            for f in data.data["fields"]
            if isinstance(f, dict) and isinstance(f.get("name"), str)
        }
        return Schema("Salesforce", fields, case_insensitive=True, derived=frozenset(self.relationships))

    def write_back(self, deal_id: str, prop: str, value: str) -> None:
        """Set one Opportunity field (e.g. Asana_Project__c). Idempotent, so retried like a read."""
        if self.token is None:
            self._refresh()
        path = f"/services/data/{self.api_version}/sobjects/Opportunity/{deal_id}"
        try:
            self.http.call("PATCH", path, json={prop: value})
        except AuthError as exc:
            if exc.status != 401:
                raise
            self._refresh()
            self.http.call("PATCH", path, json={prop: value})

    # -- requests ------------------------------------------------------------------------------------
    def _get(
        self, path: str, params: dict[str, str] | None, expect: Callable[[Any], str | None] | None = None
    ) -> Reply:
        for attempt in (1, 2):
            try:
                reply = self.http.call("GET", path, params=params, expect=expect or _query_problem)
            except AuthError as exc:
                if attempt == 2 or exc.status != 401:
                    raise AuthError(
                        f"salesforce: the access token was rejected twice after a refresh ({exc}). "
                        f"Check {self.credential_hint}.",
                        service="salesforce",
                        status=exc.status,
                    ) from exc
                self._refresh()
                continue
            self._observe(reply)
            return reply
        raise AssertionError("unreachable")  # pragma: no cover

    def _refresh(self) -> None:
        self.http.retarget(self.login_url, {})
        try:
            grant = Form({**self._client, "refresh_token": self.refresh_token.value})
            reply = self.http.call("POST", "/services/oauth2/token", json=grant, expect=_token_problem)
        except RejectedError as exc:
            raise AuthError(
                f"salesforce: the refresh-token login with {self.refresh_token.origin} failed ({exc}). "
                f"Check {self.credential_hint}.",
                service="salesforce",
                status=exc.status,
            ) from exc
        if isinstance(rotated := reply.data.get("refresh_token"), str) and rotated:
            self.refresh_token.rotate(rotated)  # the old one is already invalid: keep this one before anything else
        instance = str(reply.data["instance_url"]).rstrip("/")
        parts = urlsplit(instance)
        login = urlsplit(self.login_url)
        if not (
            parts.scheme == "https" or (parts.scheme == login.scheme == "http" and parts.hostname == login.hostname)
        ):
            raise AuthError(
                f"salesforce: the login answer named instance_url {instance!r}, which is not https; refusing to "
                "send the token there.",
                service="salesforce",
            )
        self.token = str(reply.data["access_token"])
        self.http.retarget(instance, {"Authorization": f"Bearer {self.token}"})
        self._observe(reply)

    def _observe(self, reply: Reply) -> None:
        if reply.server_time is not None:
            self.skew = reply.server_time - self.clock()
        self.quota = daily_quota(reply.headers) or self.quota

    def _past_stop(self) -> bool:
        return bool(
            self.quota and self.quota[1] and 100 * (self.quota[1] - self.quota[0]) / self.quota[1] >= self.stop_percent
        )

    def _read_limits(self) -> None:
        """One cheap call for the current figure: `DailyApiRequests` of `GET /services/data/vXX.X/limits` ("the
        maximum allocation and the remaining allocation based on usage",
        https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_limits.htm)."""
        reply = self._get(f"/services/data/{self.api_version}/limits", None, _limits_problem)
        daily = reply.data["DailyApiRequests"]
        self.quota = (int(daily["Remaining"]), int(daily["Max"]))

    def _check_usage(self) -> None:
        if self.quota and self._past_stop():
            used, limit = self.quota[1] - self.quota[0], self.quota[1]
            raise RateLimited(
                f"salesforce: API usage is {used}/{limit} ({100 * used / limit:.0f}%), past [crm] "
                f"api_usage_stop_percent = {self.stop_percent:g}; this cycle stops early and the rest waits for "
                "the daily allocation to recover",
                service="salesforce",
                status=None,
                retry_after=None,
            )

    # -- parsing -------------------------------------------------------------------------------------
    def parse_record(self, record: Any) -> Deal:
        if not isinstance(record, dict):
            raise ValueError(f"record is a {type(record).__name__}, not an object")
        rid = record.get("Id")
        if not isinstance(rid, str) or not SAFE_ID.match(rid):
            raise ValueError("record has no usable 'Id'")
        modstamp = parse_datetime_ms(record.get("SystemModstamp"))
        if modstamp is None:
            raise ValueError(f"SystemModstamp {str(record.get('SystemModstamp'))[:40]!r} is not a datetime")
        props: dict[str, Any] = {}
        folded = {str(key).casefold(): value for key, value in record.items()}  # SOQL answers canonical names
        for name in self.fields:
            if "." in name:
                parent, child = name.split(".", 1)
                related = folded.get(parent.casefold())
                value = (
                    {str(k).casefold(): v for k, v in related.items()}.get(child.casefold())
                    if isinstance(related, dict)
                    else None
                )
                props[name.replace(".", "_")] = value
            else:
                props[name] = folded.get(name.casefold())
        for key, value in props.items():
            if value is not None and not isinstance(value, str | int | float | bool):
                raise ValueError(f"field {key!r} is a {type(value).__name__}")
        amount = props.get("Amount")
        if amount is not None and (
            isinstance(amount, bool) or not isinstance(amount, int | float) or not math.isfinite(amount)
        ):
            raise ValueError(f"Amount {str(amount)[:40]!r} is not a number")
        return deal_from(
            rid,
            modstamp,
            props,
            FIELD_OF,
            None if amount is None else float(amount),
            created_at_ms=parse_datetime_ms(record.get("CreatedDate")),
        )


def soql_datetime(ms: int) -> str:
    """A SOQL datetime literal: unquoted, UTC, whole seconds (rounded down)."""
    return datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_datetime_ms(value: Any) -> int | None:
    """Salesforce datetimes: '2024-09-13T20:23:03.000+0000' (also Z and +00:00 forms), exact to the ms."""
    return iso_ms(value)


def _query_problem(data: Any) -> str | None:
    if not isinstance(data, dict) or not isinstance(data.get("records"), list):
        return "a body without a 'records' list (the page is not recorded; it will be read again)"
    return None


def _limits_problem(data: Any) -> str | None:
    daily = data.get("DailyApiRequests") if isinstance(data, dict) else None
    if not isinstance(daily, dict) or not all(isinstance(daily.get(k), int) for k in ("Max", "Remaining")):
        return "a limits answer without DailyApiRequests Max and Remaining"
    return None


def _describe_problem(data: Any) -> str | None:
    if not isinstance(data, dict) or not isinstance(data.get("fields"), list):
        return "a describe answer without a 'fields' list"
    return None


def _token_problem(data: Any) -> str | None:
    if not isinstance(data, dict) or not data.get("access_token") or not data.get("instance_url"):
        return "a token answer without access_token and instance_url"
    return None


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
