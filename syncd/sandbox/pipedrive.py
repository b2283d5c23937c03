"""Fake Pipedrive API v2 deals: cursor-paged listing by update time, deal fields, PATCH, token-based limits.

Why: syncd's Pipedrive poller must cope with things a real account produces only by accident: many deals
sharing one whole-second `update_time` (so `updated_since` has to be inclusive and results deduplicated),
custom fields keyed by 40-hex hashes whose enum values are option ids, the 2-second burst window with its
`x-ratelimit-*` headers, the daily token budget, 429s that may or may not carry `Retry-After`, the edge's HTML
403 for a flood (`inject("edge_403")`: served before the API, so it checks no token, spends no tokens and has no
`x-ratelimit-*` headers), and flaky transport. It also checks the client's manners: `tokens_in_query` counts
requests that put `api_token` in the URL (accepted, as by the real API, but syncd must send `x-api-token`), and
`early_requests` counts requests sent before a `Retry-After`, or a `x-ratelimit-reset` announced with
`x-ratelimit-remaining: 0`, had elapsed. `budget_used` is the day's token spend (`COSTS` per request).

Written from Pipedrive's documentation (API v2 reference and SDK docs, migration guide, rate-limiting page;
/work/shared/reference/apis.md §3), not from syncd's client code. Time is the fake's clock (`now()`, which
honours `clock_offset`), so tests move it instead of sleeping. Raw deals (`add_raw_deal`) are returned
verbatim and only filtered by time; one whose `update_time` does not parse is in every listing, last.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import math
import re
import time
import zlib
from collections import deque
from datetime import datetime
from typing import Any

from syncd.sandbox.server import FakeServer, Request, Response

FAULT_KINDS = ("500", "502", "503", "429", "403", "edge_403", "drop", "slow", "malformed_json", "wrong_envelope")
ROUTES = ("deals", "deal", "patch", "fields")
INFO = "Please check developers.pipedrive.com for more information about Pipedrive API."
STATUSES = ("open", "won", "lost", "deleted")
FIELD_TYPES = frozenset({"varchar", "varchar_auto", "text", "double", "monetary", "date", "set", "enum", "user"})
FIELD_TYPES |= {"org", "people", "phone", "time", "timerange", "daterange", "address"}
WRITABLE = frozenset({"title", "value", "currency", "status", "stage_id", "pipeline_id", "owner_id", "person_id"})
WRITABLE |= {"org_id", "expected_close_date", "probability", "lost_reason", "visible_to", "label_ids"}
# Token costs per request. v1 list/get/update cost 20/2/10 and v2 is documented as about half; exact v2
# numbers were not found, so these are our estimate.
COSTS = {"deals": 10, "deal": 1, "patch": 5, "fields": 10, "fields_v1": 20}
STANDARD = [("id", "ID", "int"), ("title", "Title", "varchar"), ("value", "Value", "monetary")]
STANDARD += [("status", "Status", "status"), ("stage_id", "Stage", "stage"), ("pipeline_id", "Pipeline", "double")]
STANDARD += [("owner_id", "Owner", "user"), ("person_id", "Contact person", "people")]
STANDARD += [("org_id", "Organization", "org")]
STANDARD += [("add_time", "Deal created", "date"), ("update_time", "Update time", "date")]
STANDARD += [("won_time", "Won time", "date"), ("close_time", "Deal closed on", "date")]
STANDARD += [("expected_close_date", "Expected close date", "date")]
WINDOW = 2.0  # seconds, the documented rolling burst window
# What the edge in front of the API answers a flood with (api_token integrations that keep sending after 429s
# get a 403 HTML page, "Access denied", from Cloudflare, not a JSON answer from the API:
# https://pipedrive.readme.io/docs/core-api-concepts-rate-limiting, /work/shared/reference/apis.md §3.4). The page
# is Cloudflare's error 1020 page in outline; no Retry-After is documented, so none is sent.
EDGE_PAGE = (
    b'<!DOCTYPE html>\n<html lang="en-US"><head><meta charset="UTF-8" />'
    b"<title>Access denied | api.pipedrive.com used Cloudflare to restrict access</title></head>"
    b'<body><div id="cf-wrapper"><h1>Access denied</h1><p>Error code 1020</p>'
    b"<p>You do not have access to api.pipedrive.com.</p><p>The site owner may have set restrictions that prevent "
    b"you from accessing the site.</p><span>Cloudflare Ray ID: 8c2f3a1b9d4e5f60</span></div></body></html>"
)
BIG = 2**53  # sort key of a raw deal whose timestamp does not parse
_DEALS = re.compile(r"^/api/v2/deals(?:/(\d+))?/?$")
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", re.I)


def rfc3339(ts: float) -> str:
    """Epoch seconds -> Pipedrive v2's timestamp, whole seconds: 2024-09-13T20:23:03Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(math.floor(ts)))


def parse_rfc3339(text: Any) -> float | None:
    if not isinstance(text, str) or not _RFC3339.fullmatch(text):
        return None
    try:
        return datetime.fromisoformat(text.upper()).timestamp()
    except ValueError:
        return None


class _Reject(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


def _error(status: int, message: str) -> Response:
    body = {"success": False, "error": message, "errorCode": status, "error_info": INFO}
    return Response(status, {**body, "data": None, "additional_data": None})


def _edge_page() -> Response:
    return Response(403, EDGE_PAGE, {"Content-Type": "text/html; charset=UTF-8", "Server": "cloudflare"})


def _invalid(message: str) -> _Reject:
    return _Reject(_error(400, message))


def _route(method: str, path: str) -> tuple[str | None, int | None]:
    if m := _DEALS.match(path):
        if m[1] is None:
            return ("deals" if method == "GET" else None), None
        return {"GET": "deal", "PATCH": "patch"}.get(method), int(m[1])
    if method == "GET" and path.rstrip("/") == "/api/v2/dealFields":
        return "fields", None
    if method == "GET" and path.rstrip("/") in ("/api/v1/dealFields", "/v1/dealFields"):
        return "fields_v1", None
    return None, None


def _encode(payload: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


def _decode(cursor: str) -> Any:
    try:
        return json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error):
        raise _invalid("Invalid cursor") from None


class FakePipedrive(FakeServer):
    MALFORMED_BODY = b'{"success":true,"data":[{"id":'
    FAULT_KINDS = FAULT_KINDS
    FAULT_ROUTES = ROUTES
    service = "pipedrive"

    def __init__(self, token: str = "sandbox-pipedrive-token", *, seed: int = 0) -> None:
        super().__init__(seed)
        self.token = token
        self.deals: dict[int, dict] = {}
        self.fields: list[dict] = [self._field_def(code, name, kind, None, False) for code, name, kind in STANDARD]
        self.burst_limit: int | None = None  # requests per rolling 2 s window; None = not enforced
        self.nominal_burst = 40  # x-ratelimit-limit when burst_limit is None (Growth plan, API token)
        self.penalty_seconds = 0.0  # after a burst 429, refuse for this long (support forum: 10 s)
        self.send_retry_after = False
        self.daily_budget: int | None = None  # tokens per UTC day; None = unlimited
        self.budget_used = 0
        self.daily_writes_limit = 10_000  # POST/PUT/PATCH fair use, reported in x-daily-requests-left
        self.writes_today = 0
        self.deals_requests = self.rate_limited = self.early_requests = 0
        self.tokens_in_query = 0
        self.fault_kinds = ["500", "502", "503", "429", "drop"]
        self._windows: dict[str, deque[float]] = {}
        self._penalty: dict[str, float] = {}
        self._not_before: dict[str, float] = {}
        self._upd: dict[int, float | None] = {}
        self._raw: set[int] = set()
        self._next_id, self._next_option, self._day = 1, 1, -1

    # -- helpers for tests -------------------------------------------------------------------------
    def add_custom_field(self, name: str, field_type: str = "varchar", options: list[str] | None = None) -> str:
        """Define a deal custom field; returns its 40-hex key. enum/set `options` are labels."""
        if field_type not in FIELD_TYPES:
            raise ValueError(f"unknown field_type {field_type!r}")
        with self.lock:
            key = f"{self._rng.getrandbits(160):040x}"
            opts = None
            if field_type in ("enum", "set"):
                opts = [{"id": self._next_option + i, "label": label} for i, label in enumerate(options or [])]
                self._next_option += len(opts)
            self.fields.append(self._field_def(key, name, field_type, opts, True))
            for deal_id, deal in self.deals.items():
                if deal_id not in self._raw:
                    deal["custom_fields"][key] = None
            return key

    def field_key(self, name: str) -> str:
        return self._custom_field(name, by_name=True)["field_code"]

    def option_id(self, field: str, label: str) -> int:
        return next(o["id"] for o in self._custom_field(field, by_name=True)["options"] if o["label"] == label)

    def add_deal(
        self, id: int | None = None, *, update_time: float | None = None, created_at: float | None = None, **fields: Any
    ) -> int:
        """Create a deal. `custom={"Tier": "Enterprise"}` sets custom fields by name (enum labels -> ids).

        `add_time` is "The creation date and time of the deal" (Pipedrive's SDK docs,
        https://github.com/pipedrive/client-php/blob/master/docs/Model/DealCollectionResponseObject.md), in v2's
        format: "All timestamps in the v2 API are now in RFC 3339 format (e.g. 2024-01-01T00:00:00Z)"
        (https://pipedrive.readme.io/docs/pipedrive-api-v2-migration-guide). It is `created_at` (epoch s, whole
        seconds like `update_time`), else the first `update_time`; PATCH cannot change it."""
        with self.lock:
            deal_id = self._new_id(id)
            ts, custom = self._ts(update_time), fields.pop("custom", None) or {}
            stamp = rfc3339(ts)
            added = stamp if created_at is None else rfc3339(created_at)
            deal = {"id": deal_id, "title": f"Deal {deal_id}", "owner_id": 1, "person_id": None, "org_id": None}
            deal |= {"pipeline_id": 1, "stage_id": 1, "value": 0.0, "currency": "USD", "add_time": added}
            deal |= {"update_time": stamp, "stage_change_time": None, "is_deleted": False, "is_archived": False}
            deal |= {"status": "open", "probability": None, "lost_reason": None, "visible_to": 3}
            deal |= {"close_time": None, "won_time": None, "lost_time": None, "expected_close_date": None}
            deal |= {"label_ids": [], "origin": "API", "origin_id": None, "channel": None, "channel_id": None}
            deal["custom_fields"] = {f["field_code"]: None for f in self.fields if f["is_custom_field"]}
            self.deals[deal_id] = deal
            self._change(deal, fields, custom, ts, by_name=True)
            return deal_id

    def update_deal(self, id: int, *, update_time: float | None = None, **fields: Any) -> dict:
        with self.lock:
            custom = fields.pop("custom", None) or {}
            self._change(self.deals[id], fields, custom, self._ts(update_time), by_name=True)
            return self.deals[id]

    def delete_deal(self, id: int, *, update_time: float | None = None) -> None:
        """Soft-delete: listed only with status=deleted."""
        self.update_deal(id, update_time=update_time, status="deleted")

    def archive_deal(self, id: int, *, update_time: float | None = None) -> None:
        """Archive: excluded from GET /api/v2/deals (documented since 15 Jul 2025)."""
        self.update_deal(id, update_time=update_time, is_archived=True)

    def add_raw_deal(self, record: dict) -> int:
        """Store a record verbatim (malformed-record tests)."""
        with self.lock:
            raw_id = record.get("id")
            deal_id = self._new_id(raw_id if isinstance(raw_id, int) and not isinstance(raw_id, bool) else None)
            self.deals[deal_id], self._upd[deal_id] = record, parse_rfc3339(record.get("update_time"))
            self._raw.add(deal_id)
            return deal_id

    @staticmethod
    def _field_def(code: str, name: str, kind: str, options: list | None, custom: bool) -> dict:
        field = {"field_name": name, "field_code": code, "description": None, "field_type": kind, "options": options}
        return field | {"subfields": None, "is_custom_field": custom, "is_optional_response_field": False}

    def _ts(self, at: float | None) -> int:
        return math.floor(self.now() if at is None else at)

    def _new_id(self, wanted: int | None) -> int:
        if wanted is None:
            while self._next_id in self.deals:
                self._next_id += 1
            wanted = self._next_id
        self._next_id = max(self._next_id, wanted + 1)
        return wanted

    def _custom_field(self, name: str, by_name: bool) -> dict:
        for f in self.fields:
            if f["is_custom_field"] and (f["field_code"] == name or (by_name and f["field_name"] == name)):
                return f
        raise KeyError(f"no custom field {name!r}")

    def _custom_value(self, name: str, value: Any, by_name: bool) -> tuple[str, Any]:
        """(name or key, friendly value) -> (key, stored value): enum/set labels become option ids."""
        field = self._custom_field(name, by_name)
        if field["field_type"] in ("enum", "set") and value is not None:
            options = {o["label"]: o["id"] for o in field["options"]}

            def option(v: Any) -> int:
                if v in options.values() and not isinstance(v, bool):
                    return v
                if by_name and v in options:
                    return options[v]
                raise ValueError(f"{v!r} is not an option of custom field {field['field_name']!r}")

            value = option(value) if field["field_type"] == "enum" else [option(v) for v in value]
        if field["field_type"] == "monetary" and isinstance(value, tuple):
            value = {"value": value[0], "currency": value[1]}
        return field["field_code"], value

    def _change(self, deal: dict, fields: dict, custom: dict, ts: int, by_name: bool) -> None:
        values = dict(self._custom_value(k, v, by_name) for k, v in custom.items())  # may raise: before mutating
        old_status, old_stage, stamp = deal.get("status"), deal.get("stage_id"), rfc3339(ts)
        deal.update(fields)
        deal["custom_fields"].update(values)
        if isinstance(deal.get("value"), int):
            deal["value"] = float(deal["value"])
        if deal["status"] != old_status:
            for name, when in (("won_time", "won"), ("lost_time", "lost"), ("close_time", ("won", "lost"))):
                if name not in fields:
                    deal[name] = stamp if deal["status"] in when else None
            deal["is_deleted"] = deal["status"] == "deleted"
        if deal["stage_id"] != old_stage and "stage_change_time" not in fields:
            deal["stage_change_time"] = stamp
        deal["update_time"], self._upd[deal["id"]] = stamp, ts

    def _render(self, deal_id: int, keys: list[str] | None) -> dict:
        deal = copy.deepcopy(self.deals[deal_id])
        if deal_id not in self._raw and keys is not None:
            deal["custom_fields"] = {k: v for k, v in deal["custom_fields"].items() if k in keys}
        return deal

    # -- HTTP ----------------------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        with self.lock:
            now, token = self.now(), request.headers.get("x-api-token")
            if "api_token" in request.query:
                self.tokens_in_query += 1
                token = token or request.query["api_token"]
            key = token or ""
            if request.received_at + self.clock_offset < self._not_before.get(key, -math.inf):
                self.early_requests += 1
            route, deal_id = _route(request.method, request.path)
            if route == "deals":
                self.deals_requests += 1
            if route is not None and self._edge_next(route.removesuffix("_v1")):
                self._next_fault(route.removesuffix("_v1"))
                return _edge_page()  # the edge answers: no token check, no tokens spent, no API headers
            if token != self.token:
                return _error(401, "unauthorized access")
            if route is None:
                return _error(404, "Unknown method .")
            if self._day != (day := int(now // 86_400)):
                self._day, self.budget_used, self.writes_today = day, 0, 0
            response = self._throttle(key, now, route)
            if response is None:
                fault = self._next_fault(route.removesuffix("_v1"))
                if fault and fault[0] != "slow" and not fault[1].get("apply"):
                    response = self._fault(*fault, key=key, now=now)
                else:
                    try:
                        response = self._dispatch(route, deal_id, request, now)
                    except _Reject as reject:
                        response = reject.response
                    response = self._fault(*fault, response, key=key, now=now) if fault else response
            if not response.drop:
                for name, value in self._headers(key, now).items():
                    response.headers.setdefault(name, value)
                if response.headers["x-ratelimit-remaining"] == "0":
                    reset = now + float(response.headers["x-ratelimit-reset"])
                    self._not_before[key] = max(self._not_before.get(key, -math.inf), reset)
            return response

    def _edge_next(self, route: str) -> bool:
        """Whether the next queued fault for `route` is `edge_403`, which the edge serves before the API."""
        with self.lock:
            first = next((fault for fault in self._faults if fault[2] in (None, route)), None)
        return first is not None and first[0] == "edge_403"

    def _window(self, key: str, now: float) -> deque[float]:
        q = self._windows.setdefault(key, deque())
        while q and q[0] <= now - WINDOW:
            q.popleft()
        return q

    def _reset(self, key: str, now: float) -> int:
        if (penalty := self._penalty.get(key, 0.0) - now) > 0:
            return math.ceil(penalty)
        q = self._window(key, now)
        return max(1, math.ceil(q[0] + WINDOW - now)) if q else 2

    def _headers(self, key: str, now: float) -> dict[str, str]:
        limit = self.burst_limit if self.burst_limit is not None else self.nominal_burst
        remaining = 0 if self._penalty.get(key, 0.0) > now else max(0, limit - len(self._window(key, now)))
        return {
            "x-ratelimit-limit": str(limit),
            "x-ratelimit-remaining": str(remaining),
            "x-ratelimit-reset": str(self._reset(key, now)),
            "x-daily-requests-left": str(max(0, self.daily_writes_limit - self.writes_today)),
        }

    def _throttle(self, key: str, now: float, route: str) -> Response | None:
        q = self._window(key, now)
        if now < self._penalty.get(key, 0.0) or (self.burst_limit is not None and len(q) >= self.burst_limit):
            if self.penalty_seconds and now >= self._penalty.get(key, 0.0):
                self._penalty[key] = now + self.penalty_seconds
            self.rate_limited += 1
            return self._too_many(key, now, "Rate limit exceeded", self._reset(key, now))
        q.append(now)
        if self.daily_budget is not None and self.budget_used + COSTS[route] > self.daily_budget:
            self.rate_limited += 1
            return self._too_many(key, now, "daily request budget exceeded", math.ceil(86_400 - now % 86_400))
        self.budget_used += COSTS[route]
        self.writes_today += route == "patch"
        return None

    def _too_many(self, key: str, now: float, message: str, retry_after: int) -> Response:
        response = _error(429, message)
        response.headers |= {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(retry_after)}
        if self.send_retry_after:
            response.headers["Retry-After"] = str(retry_after)
            self._not_before[key] = max(self._not_before.get(key, -math.inf), now + retry_after)
        return response

    def _fault(self, kind: str, params: dict, response: Response | None = None, *, key: str, now: float) -> Response:
        if (common := self._transport_fault(kind, params, response)) is not None:
            return common
        if kind == "429":
            return self._too_many(key, now, "Rate limit exceeded", int(params.get("retry_after", 2)))
        if kind == "edge_403":  # drawn at random (fault_kinds): served by the edge, as HTML
            return _edge_page()
        if kind == "502":  # served by Cloudflare in front of the API, as HTML
            page = b"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1>"
            page += b"</center><hr><center>cloudflare</center></body></html>"
            return Response(502, page, {"Content-Type": "text/html"})
        if kind == "403":  # the API's own 403, in its JSON envelope: "Request not allowed"
            # (https://pipedrive.readme.io/docs/core-api-concepts-http-status-codes)
            return _error(403, "Request not allowed")
        return _error(int(kind), "Internal server error" if kind == "500" else "Service unavailable")

    # -- endpoints -------------------------------------------------------------------------------------
    def _dispatch(self, route: str, deal_id: int | None, request: Request, now: float) -> Response:
        if route == "deals":
            return self._list(request.query)
        if route == "fields":
            return self._fields(request.query)
        if route == "fields_v1":
            data = [{"id": n, "key": f["field_code"], "name": f["field_name"], "field_type": f["field_type"]}
                    | {"options": f["options"], "edit_flag": f["is_custom_field"], "active_flag": True}
                    for n, f in enumerate(self.fields, 1)]  # fmt: skip
            paging = {"start": 0, "limit": len(data), "more_items_in_collection": False}
            return Response(200, {"success": True, "data": data, "additional_data": {"pagination": paging}})
        if deal_id not in self.deals or (deal_id not in self._raw and self.deals[deal_id]["is_archived"]):
            return _error(404, "Deal not found")
        if route == "deal":
            return Response(200, {"success": True, "data": self._render(deal_id, None)})
        if deal_id in self._raw:
            raise _invalid("This deal cannot be updated")
        try:
            body = request.json()
        except ValueError:
            raise _invalid("Request body is not valid JSON") from None
        if not isinstance(body, dict) or not isinstance(body.get("custom_fields", {}), dict):
            raise _invalid("Validation failed: body must be an object and custom_fields an object")
        custom = body.pop("custom_fields", None) or {}
        if unknown := sorted(set(body) - WRITABLE):
            raise _invalid(f"Validation failed: unknown or read-only fields: {', '.join(unknown)}")
        if "status" in body and body["status"] not in ("open", "won", "lost"):
            raise _invalid("Validation failed: status: must be one of open, won, lost")
        try:
            self._change(self.deals[deal_id], body, custom, self._ts(now), by_name=False)
        except (KeyError, ValueError, TypeError) as exc:
            raise _invalid(f"Validation failed: custom_fields: {exc}") from None
        return Response(200, {"success": True, "data": self._render(deal_id, None)})

    @staticmethod
    def _int(value: str, name: str, low: int, high: int) -> int:
        if not re.fullmatch(r"\d{1,9}", value) or not low <= int(value) <= high:
            raise _invalid(f"Validation failed: {name}: must be an integer between {low} and {high}")
        return int(value)

    def _list(self, q: dict[str, str]) -> Response:
        limit = self._int(q.get("limit", "100"), "limit", 1, 500)
        sort_by, direction = q.get("sort_by", "id"), q.get("sort_direction", "asc")
        if sort_by not in ("id", "update_time", "add_time") or direction not in ("asc", "desc"):
            raise _invalid("Validation failed: sort_by must be id|update_time|add_time, sort_direction asc|desc")
        since, until = (parse_rfc3339(q[n]) if q.get(n) else None for n in ("updated_since", "updated_until"))
        for name, parsed in (("updated_since", since), ("updated_until", until)):
            if q.get(name) and parsed is None:
                raise _invalid(f"Validation failed: {name}: must be RFC 3339, e.g. 2025-01-01T10:20:00Z")
        statuses = set(q["status"].split(",")) if q.get("status") else {"open", "won", "lost"}
        if not statuses <= set(STATUSES):
            raise _invalid(f"Validation failed: status: must be a comma separated list of {', '.join(STATUSES)}")
        keys = [k for k in q.get("custom_fields", "").split(",") if k] or None
        ids = [self._int(i, "ids", 0, 2**31) for i in q["ids"].split(",")] if q.get("ids") else None
        if (keys and len(keys) > 15) or (ids and len(ids) > 100):
            raise _invalid("Validation failed: at most 15 custom_fields keys and 100 ids are allowed")
        names = ("owner_id", "person_id", "org_id", "pipeline_id", "stage_id")
        filters = {n: self._int(q[n], n, 0, 2**31) for n in names if q.get(n)}
        query = sorted((k, v) for k, v in q.items() if k not in ("cursor", "limit"))
        signature = zlib.crc32(json.dumps(query).encode())
        rows = []
        for deal_id, deal in self.deals.items():
            upd = self._upd.get(deal_id)
            if deal_id not in self._raw and (
                deal["is_archived"]
                or deal["status"] not in statuses
                or (ids is not None and deal_id not in ids)
                or any(deal.get(n) != v for n, v in filters.items())
            ):
                continue
            if upd is not None and ((since is not None and upd < since) or (until is not None and upd >= until)):
                continue
            when = upd if sort_by == "update_time" else parse_rfc3339(deal.get("add_time"))
            rows.append((deal_id if sort_by == "id" else BIG if when is None else when, deal_id))
        rows.sort(reverse=direction == "desc")
        if q.get("cursor"):
            cursor = _decode(q["cursor"])
            numbers = [cursor.get(n) for n in ("k", "i")] if isinstance(cursor, dict) else []
            if len(numbers) != 2 or not all(isinstance(n, int | float) for n in numbers) or cursor["s"] != signature:
                raise _invalid("Invalid cursor")
            after = (cursor.get("k"), cursor.get("i"))
            rows = [r for r in rows if (r > after if direction == "asc" else r < after)]
        page = rows[:limit]
        more = _encode({"k": page[-1][0], "i": page[-1][1], "s": signature}) if len(rows) > limit else None
        data = [self._render(deal_id, keys) for _, deal_id in page]
        return Response(200, {"success": True, "data": data, "additional_data": {"next_cursor": more}})

    def _fields(self, q: dict[str, str]) -> Response:
        limit = self._int(q.get("limit", "100"), "limit", 1, 500)
        start = _decode(q["cursor"]) if q.get("cursor") else 0
        if not isinstance(start, int) or not 0 <= start <= len(self.fields):
            raise _invalid("Invalid cursor")
        more = _encode(start + limit) if start + limit < len(self.fields) else None
        data = copy.deepcopy(self.fields[start : start + limit])
        return Response(200, {"success": True, "data": data, "additional_data": {"next_cursor": more}})
