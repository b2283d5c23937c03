"""Fake HubSpot CRM deals API: search, list, get and PATCH, with HubSpot's awkward edges switched on.

Why: syncd's HubSpot poller lives or dies by behaviour that is hard to provoke against the real service:
the 10,000-result cap on search paging (400 beyond it), thousands of deals sharing one
`hs_lastmodifieddate` millisecond, a search index that lags the database, the per-second search limit and
the ten-second burst limit and the daily limit with their exact 429 bodies, and flaky transport. This fake
reproduces them from HubSpot's public documentation (/work/shared/reference/apis.md §1), not from syncd's client code.

How search stays fast at 25k deals: every write appends an immutable version to `_index`, a list sorted by
(hs_lastmodifieddate ms, numeric id, seq). A version is visible from its own modification time until the
earliest modification time of any later version of the same deal (`end`). Filters on
`hs_lastmodifieddate` / `hs_object_id` become a bisected slice plus one cheap pass; other filters are
evaluated per candidate. Mutate state through the helpers (`add_deal`, `update_deal`, `archive_deal`...),
not by editing `deals` in place, or search will not see the change.

The daily limit (`daily_limit`, `daily_used`): once spent, every call answers the usage guidelines' 429
`{"status": "error", "message": "You have reached your daily limit.", "errorType": "RATE_LIMIT", "correlationId",
"policyName": "DAILY", "requestId"}` without Retry-After, until "The daily limit resets at midnight based on your
time zone setting" (https://developers.hubspot.com/docs/api/usage-details): `daily_used` returns to 0 at midnight
in `time_zone` (the portal's setting; New York by default).

The portal's settings and the deal properties' definitions:
- GET /account-info/v3/details answers `{"portalId", "accountType", "timeZone", "companyCurrency",
  "additionalCurrencies", "utcOffset", "utcOffsetMilliseconds", "uiDomain", "dataHostingLocation"}`
  (https://developers.hubspot.com/docs/api-reference/legacy/account/account-information/get-account-details).
  `timeZone` is the zone's name ("US/Eastern" in the docs' example); a fixed-offset `time_zone` has none that
  tz databases know, so it reads as e.g. "UTC-05:00", and only the offset fields tell.
- GET /crm/v3/properties/deals lists every property with `name`, `label`, `type` (string, number, date,
  datetime, enumeration, bool), `fieldType`, `options` and `modificationMetadata.readOnlyValue`
  (https://developers.hubspot.com/docs/api-reference/crm-properties-v3/core/get-crm-v3-properties-objectType).
  `declare_property` adds one; a property first set through `add_deal` is a string.
- A PATCH naming a property that does not exist is a 400 VALIDATION_ERROR whose message lists
  `{"isValid": false, "message": "Property \"x\" does not exist", "error": "PROPERTY_DOESNT_EXIST", "name": "x"}`
  (as HubSpot answers it; the reference documents only the 400), and a PATCH of a read-only one is a 400 too.

Recycle bin and merges (`archive_deal`, `restore_deal`, `merge_deals`, and the DELETE and merge routes):
- DELETE /crm/v3/objects/deals/{dealId} "Move an Object identified by `{dealId}` to the recycling bin" and
  answers 204, "This response has no body data."
  (https://developers.hubspot.com/docs/api-reference/crm-deals-v3/basic/delete-crm-v3-objects-0-3-dealId).
- Restoring is a person's job: "You can use the restore records tool to restore HubSpot-defined object records
  ... up to 90 days after they were deleted" (https://knowledge.hubspot.com/records/restore-deleted-records);
  the deals API documents no restore endpoint. The restored deal keeps its id and `createdate`. (guess) It
  gets a new `hs_lastmodifieddate` (now), so a poller sees it modified now; no page we found says so.
- Merging: the endpoint reference says `primaryObjectId` is "The ID of the object that will remain after the
  merge" (https://developers.hubspot.com/docs/api-reference/crm-deals-v3/basic/post-crm-v3-objects-0-3-merge),
  but HubSpot's changelog describes the behaviour differently: "If a customer merges Deal A and Deal B, HubSpot
  creates a new deal from that merge: Deal C" and "If you make a GET request for Deal A, the dealId in the
  response will be Deal C's dealId"
  (https://developers.hubspot.com/changelog/announcement-deals-now-support-merging), and contacts and companies
  were later changed "to make them more consistent with merges for other object types": "a new record with a
  new ID will be created for the resulting merged record ... fetching any records using the original IDs will
  return the new merged record with the new ID"
  (https://developers.hubspot.com/changelog/updated-merge-functionality-for-contacts-and-companies). The fake
  follows the changelogs (`merge_keeps_primary_id = False`); set it True for the reference's reading. Either
  way the survivor's current values are the primary's, gaps filled from the other deal ("the property values
  of the resulting merged record will use the latest property values of the primary record", same page), and
  it lists the merged-away ids in `hs_merged_object_ids` ("you can use the Merged [record] IDs property to view
  previously merged records", https://knowledge.hubspot.com/deals/merge-deals), joined with ";" as HubSpot joins
  multi-valued properties (the merge reference's example: "chocolate;strawberry"). (guess) The new deal
  keeps the primary's `createdate`; PATCH and DELETE of a merged-away id act on the survivor, as GET does.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import json
import re
import time
import uuid
from bisect import bisect_left, bisect_right, insort
from collections import deque
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, tzinfo
from functools import lru_cache
from itertools import count
from operator import attrgetter
from typing import Any
from zoneinfo import ZoneInfo

from syncd.sandbox.server import FakeServer, Request, Response

INF = float("inf")
MOD, OBJ_ID, MERGED = "hs_lastmodifieddate", "hs_object_id", "hs_merged_object_ids"
DEFAULT_PROPS = ("dealname", "amount", "closedate", "pipeline", "dealstage", "createdate", MOD, OBJ_ID)
ALWAYS = (OBJ_ID, "createdate", MOD)
READ_ONLY = frozenset({*ALWAYS, MERGED})
DATETIME_PROPS = frozenset({MOD, "createdate", "closedate"})
SEARCHABLE = ("dealname", "pipeline", "dealstage", "description", "dealtype")
RANGE_OPS = frozenset({"EQ", "GT", "GTE", "LT", "LTE", "BETWEEN"})
OPERATORS = RANGE_OPS | {"NEQ", "IN", "NOT_IN", "HAS_PROPERTY", "NOT_HAS_PROPERTY"}
OPERATORS |= {"CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"}
FAULT_KINDS = ("500", "502", "503", "504", "429", "drop", "slow", "malformed_json", "wrong_envelope")
_PATH = re.compile(r"^/crm/(?:v3/objects|objects/(?:2025-09|2026-03|2026-09))/(?:deals|0-3)(?:/([^/]+))?/?$")
DECLARED = {  # HubSpot's own deal properties that syncd meets: name -> (type, fieldType, options)
    "dealname": ("string", "text", ()),
    "amount": ("number", "number", ()),
    "closedate": ("datetime", "date", ()),
    "createdate": ("datetime", "date", ()),
    MOD: ("datetime", "date", ()),
    OBJ_ID: ("number", "number", ()),
    MERGED: ("enumeration", "checkbox", ()),
    "pipeline": ("enumeration", "select", ("default",)),
    "dealstage": ("enumeration", "radio", ("appointmentscheduled", "contractsent", "closedwon", "closedlost")),
    "hs_is_closed_won": ("bool", "booleancheckbox", ("true", "false")),
    "hs_is_closed": ("bool", "booleancheckbox", ("true", "false")),
    "hubspot_owner_id": ("enumeration", "select", ()),
    "description": ("string", "textarea", ()),
    "dealtype": ("enumeration", "radio", ("newbusiness", "existingbusiness")),
}
READ_ONLY_VALUES = frozenset({OBJ_ID, "createdate", MOD, MERGED, "hs_is_closed_won", "hs_is_closed"})
_ACCOUNT = re.compile(r"^/account-info/(?:v3|2026-03|2026-09)/details/?$")
_PROPERTIES = re.compile(r"^/crm/(?:v3|2026-03|2026-09)/properties/(?:deals|0-3)/?$")
AUTH_MESSAGE = (
    "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find "
    "more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview"
)


def iso(ms: int) -> str:
    """Epoch ms -> HubSpot's response format, e.g. 2024-09-13T20:23:03.333Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def parse_ms(value: Any) -> int | None:
    """Epoch-ms string/int or ISO 8601 -> epoch ms; None when it does not parse."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    if isinstance(value, int) or re.fullmatch(r"\s*-?\d+\s*", value, re.ASCII):
        return int(value)
    try:
        dt = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return round((dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp() * 1000)


def _s(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return str(value).lower() if isinstance(value, bool) else str(value)


def _idn(deal_id: str) -> int:
    return int(deal_id) if deal_id.isdecimal() else -1


@lru_cache(maxsize=1 << 16)
def _key(name: str, value: Any) -> tuple:
    """Sort/compare key: datetimes as ms, numbers numerically, else case-folded string; None last."""
    if value is None:
        return (2,)
    if name in DATETIME_PROPS and (ms := parse_ms(value)) is not None:
        return (0, ms)
    try:
        return (0, float(value))
    except (TypeError, ValueError):
        return (1, str(value).casefold())


def _hkey(name: str, value: Any) -> tuple:
    try:
        return _key(name, value)
    except TypeError:  # unhashable value in a raw record
        return _key.__wrapped__(name, value)


def _cmp(name: str, a: Any, b: Any) -> int:
    ka, kb = _hkey(name, a), _hkey(name, b)
    if ka[0] != kb[0]:  # one side is not a number: compare as strings
        ka, kb = (1, str(a).casefold()), (1, str(b).casefold())
    return (ka > kb) - (ka < kb)


def _props(record: dict) -> dict:
    props = record.get("properties")
    return props if isinstance(props, dict) else {}


_TESTS: dict[str, Callable[[int], bool]] = {
    "EQ": lambda c: c == 0, "NEQ": lambda c: c != 0, "GT": lambda c: c > 0,
    "GTE": lambda c: c >= 0, "LT": lambda c: c < 0, "LTE": lambda c: c <= 0,
}  # fmt: skip


class _Reject(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


class _Version:
    """One indexed state of a deal; visible to search from `mod` until `end` (epoch ms)."""

    __slots__ = ("cseq", "end", "idn", "mod", "props", "raw", "record", "seq")

    def __init__(self, mod: int, idn: int, seq: int, record: dict, cseq: int, raw: bool) -> None:
        self.mod, self.idn, self.seq, self.record, self.cseq, self.raw = mod, idn, seq, record, cseq, raw
        self.props, self.end = _props(record), INF


_vkey: Callable[[_Version], tuple[Any, ...]] = attrgetter("mod", "idn", "seq")


class FakeHubSpot(FakeServer):
    MALFORMED_BODY = b'{"results": [ {"id": '
    FAULT_KINDS = FAULT_KINDS
    FAULT_ROUTES = ("search", "list", "get", "patch", "delete", "merge")
    service = "hubspot"

    def __init__(self, token: str = "sandbox-hubspot-token", *, seed: int = 0) -> None:
        super().__init__(seed)
        self.token = token
        self.deals: dict[str, dict] = {}
        self.index_lag = 0.0
        self.search_rate_per_second: float | None = None
        self.burst_per_10s: int | None = None
        self.nominal_burst = 100  # X-HubSpot-RateLimit-Max when burst_per_10s is None (not enforced)
        self.daily_limit = 250_000
        self.daily_used = 0
        self.time_zone: tzinfo = ZoneInfo("America/New_York")  # the portal's setting: where midnight resets it
        self.portal_id = 62515
        self.property_types: dict[str, tuple[str, str, tuple[str, ...]]] = dict(DECLARED)  # type, field, options
        self._daily_date: date | None = None  # the portal's calendar day daily_used counts
        self.rate_limited = 0
        self.merge_keeps_primary_id = False  # True: the endpoint reference's reading (see the module docstring)
        self.merged_into: dict[str, str] = {}  # merged-away deal id -> id of the deal that holds it now
        self.fault_kinds = ["500", "502", "503", "504", "429", "drop"]
        self._windows: dict[tuple, deque] = {}
        self._search_count = 0
        self._next_id = 1000
        self._seq = count()
        self._index: list[_Version] = []  # sorted by _vkey
        self._history: dict[str, list[_Version]] = {}
        self._garbage: dict[str, dict] = {}  # raw records whose hs_lastmodifieddate does not parse
        self._raw: set[str] = set()
        self._cseq: dict[str, int] = {}  # creation order
        self._by_id: list[tuple[int, str]] = []  # sorted, for the list endpoint
        self._known: set[str] = {*DEFAULT_PROPS, "description", "dealtype", "hubspot_owner_id", MERGED}

    # -- helpers for tests -------------------------------------------------------------------------
    @property
    def search_requests(self) -> int:
        return self._search_count

    def add_deal(
        self,
        id: str | None = None,
        *,
        updated_at: float | None = None,
        created_at: float | None = None,
        **properties: Any,
    ) -> str:
        """Create a deal; `createdate` is `created_at` (epoch s), else its first `updated_at`."""
        with self.lock:
            return self._add(id, self._ms(updated_at), None if created_at is None else self._ms(created_at), properties)

    def _add(self, id: str | None, ms: int, created_ms: int | None, properties: dict) -> str:
        first = id is None or str(id) not in self.deals
        deal_id = self._create(id, ms, properties, created_ms)
        insort(self._index, self._history[deal_id][-1], key=_vkey)
        if first:
            insort(self._by_id, (_idn(deal_id), deal_id))
        return deal_id

    def bulk_add(
        self, n: int, *, updated_at: float | None = None, created_at: float | None = None, **properties: Any
    ) -> list[str]:
        """Add n deals sharing one timestamp; O(n) (one merge of the sorted index)."""
        with self.lock:
            ms, created_ms = self._ms(updated_at), None if created_at is None else self._ms(created_at)
            ids = [self._create(None, ms, properties, created_ms) for _ in range(n)]
            self._index.extend(self._history[i][-1] for i in ids)
            self._index.sort(key=_vkey)
            self._by_id.extend((_idn(i), i) for i in ids)
            self._by_id.sort()
            return ids

    def update_deal(self, id: str, *, updated_at: float | None = None, **properties: Any) -> dict:
        with self.lock:
            record, ms = self.deals[id], self._ms(updated_at)
            props = record.setdefault("properties", {})
            props.update({k: _s(v) for k, v in properties.items()})
            props[MOD] = record["updatedAt"] = iso(ms)
            self._known.update(properties)
            self._version(id, record, ms, raw=id in self._raw)
            return record

    def archive_deal(self, id: str) -> None:
        """Move a deal to the recycle bin (what DELETE does): gone from search once the index catches up, from GET
        at once (it is still there with `archived=true`)."""
        with self.lock:
            now = self._ms(None)
            self.deals[id].update(archived=True, archivedAt=iso(now))
            self._retire(id, now)

    def restore_deal(self, id: str, *, restored_at: float | None = None) -> dict:
        """Bring a deal back from the recycle bin, as a person does in HubSpot (no API does this): same id and
        `createdate`, `hs_lastmodifieddate` = `restored_at` (default now), so a poller sees it modified now."""
        with self.lock:
            record = self.deals[id]
            if not record.get("archived"):
                raise ValueError(f"deal {id} is not in the recycle bin")
            record["archived"] = False
            record.pop("archivedAt", None)
            return self.update_deal(id, updated_at=restored_at)

    def merge_deals(self, primary: str, other: str, *, merged_at: float | None = None) -> str:
        """Merge `other` into `primary` as HubSpot does (see the module docstring); returns the surviving id: a
        new one, or `primary` when `merge_keeps_primary_id`. Merged-away ids answer GET with the survivor."""
        with self.lock:
            primary, other = self.merged_into.get(primary, primary), self.merged_into.get(other, other)
            first, second = self.deals[primary], self.deals[other]
            if primary == other or first.get("archived") or second.get("archived") or {primary, other} & self._raw:
                raise ValueError(f"cannot merge deal {other} into {primary}")
            ms, p1, p2 = self._ms(merged_at), first["properties"], second["properties"]
            props = {k: v for k, v in p2.items() if v not in (None, "")}
            props |= {k: v for k, v in p1.items() if v not in (None, "")}
            old = [str(i) for p in (p1, p2) for i in (p.get(MERGED) or "").split(";") if i]
            for name in (OBJ_ID, MOD, "createdate", MERGED):
                props.pop(name, None)
            if self.merge_keeps_primary_id:
                gone, survivor = [other], primary
                self.update_deal(primary, updated_at=ms / 1000, **props, **{MERGED: ";".join([*old, other])})
            else:
                gone, ids = [primary, other], ";".join(dict.fromkeys([*old, primary, other]))
                survivor = self._add(None, ms, parse_ms(p1.get("createdate")), {**props, MERGED: ids})
            for deal_id in gone:
                self._retire(deal_id, ms)
                del self.deals[deal_id]
                self.merged_into = {k: (survivor if v == deal_id else v) for k, v in self.merged_into.items()}
                self.merged_into[deal_id] = survivor
            return survivor

    def _retire(self, deal_id: str, ms: int) -> None:
        """The deal's search-index versions stop being visible at `ms`."""
        for v in self._history.get(deal_id, []):
            v.end = min(v.end, ms)
        self._garbage.pop(deal_id, None)

    def add_raw_deal(self, record: dict) -> str:
        """Store a record verbatim (malformed-record tests); it is returned as stored, unfiltered."""
        with self.lock:
            deal_id = str(record.get("id") or self._new_id(None))
            first = deal_id not in self.deals
            self.deals[deal_id] = record
            self._raw.add(deal_id)
            self._version(deal_id, record, parse_ms(_props(record).get(MOD)), raw=True)
            if first:
                insort(self._by_id, (_idn(deal_id), deal_id))
            return deal_id

    def _ms(self, at: float | None) -> int:
        return round((self.now() if at is None else at) * 1000)

    def _new_id(self, wanted: str | int | None) -> str:
        if wanted is not None:
            deal_id = str(wanted)
            if deal_id.isdecimal():
                self._next_id = max(self._next_id, int(deal_id) + 1)
            return deal_id
        while str(self._next_id) in self.deals:
            self._next_id += 1
        self._next_id += 1
        return str(self._next_id - 1)

    def _create(self, wanted: str | None, ms: int, properties: dict, created_ms: int | None = None) -> str:
        deal_id, stamp = self._new_id(wanted), iso(ms)
        created = iso(created_ms) if created_ms is not None else None
        if created is None and deal_id in self.deals and deal_id not in self._raw:  # added again: created once
            created = self.deals[deal_id]["properties"].get("createdate")
        props = {"createdate": created or stamp, **{k: _s(v) for k, v in properties.items()}}
        props.update({OBJ_ID: deal_id, MOD: stamp})
        record = {"id": deal_id, "properties": props, "createdAt": props["createdate"], "updatedAt": stamp}
        self.deals[deal_id] = {**record, "archived": False}
        self._known.update(properties)
        self._version(deal_id, self.deals[deal_id], ms, indexed=False)
        return deal_id

    def _version(self, deal_id: str, record: dict, ms: int | None, raw: bool = False, indexed=True) -> None:
        """Record a search-index version; earlier versions stop being visible at `ms`."""
        history = self._history.setdefault(deal_id, [])
        for v in history:
            v.end = min(v.end, -INF if ms is None else ms)
        self._garbage.pop(deal_id, None)
        snap = record if raw else {**record, "properties": dict(record["properties"])}
        if ms is None:
            self._garbage[deal_id] = snap
            return
        cseq = self._cseq.setdefault(deal_id, len(self._cseq))
        history.append(_Version(ms, _idn(deal_id), next(self._seq), snap, cseq, raw))
        if indexed:
            insort(self._index, history[-1], key=_vkey)

    def declare_property(self, name: str, type: str = "string", options: tuple[str, ...] = ()) -> None:
        """Create a deal property, as a portal admin would in HubSpot's settings."""
        with self.lock:
            self.property_types[name] = (type, "text" if type == "string" else type, tuple(options))
            self._known.add(name)

    def _account(self) -> Response:
        offset = self.time_zone.utcoffset(datetime.fromtimestamp(self.now(), UTC)) or timedelta(0)
        minutes = int(offset.total_seconds() // 60)
        sign, minutes = ("-", -minutes) if minutes < 0 else ("+", minutes)
        utc_offset = f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"
        name = getattr(self.time_zone, "key", None) or f"UTC{utc_offset}"
        return Response(200, {
            "portalId": self.portal_id, "accountType": "STANDARD", "timeZone": name, "companyCurrency": "USD",
            "additionalCurrencies": [], "utcOffset": utc_offset,
            "utcOffsetMilliseconds": int(offset.total_seconds() * 1000), "uiDomain": "app.hubspot.com",
            "dataHostingLocation": "na1",
        })  # fmt: skip

    def _properties(self) -> Response:
        results = []
        for name in sorted(self._known | self.property_types.keys()):
            kind, field, options = self.property_types.get(name, ("string", "text", ()))
            results.append({
                "name": name, "label": name.replace("_", " ").title(), "type": kind, "fieldType": field,
                "groupName": "dealinformation", "description": "", "displayOrder": -1, "calculated": False,
                "hasUniqueValue": False, "hidden": False, "hubspotDefined": name in DECLARED,
                "options": [{"label": o.title(), "value": o, "displayOrder": i, "hidden": False}
                            for i, o in enumerate(options)],
                "modificationMetadata": {"archivable": name not in DECLARED, "readOnlyDefinition": name in DECLARED,
                                         "readOnlyValue": name in READ_ONLY_VALUES},
            })  # fmt: skip
        return Response(200, {"results": results})

    # -- HTTP ----------------------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        with self.lock:
            m = _PATH.match(request.path)
            tail, method = (m.group(1) if m else None), request.method
            route = None
            if method == "GET" and _ACCOUNT.match(request.path):
                route = "account"
            elif method == "GET" and _PROPERTIES.match(request.path):
                route = "properties"
            elif m and tail == "search" and method == "POST":
                route = "search"
                self._search_count += 1
            elif m and tail is None and method == "GET":
                route = "list"
            elif m and tail == "merge" and method == "POST":
                route = "merge"
            elif m and tail not in (None, "search", "merge") and method in ("GET", "PATCH", "DELETE"):
                route = method.lower()
            if request.bearer != self.token:
                return self._error(401, AUTH_MESSAGE, "INVALID_AUTHENTICATION")
            if route is None:
                return self._error(404, f"Unable to route {method} {request.path}", "OBJECT_NOT_FOUND")
            fault = self._next_fault(route)
            if fault and fault[0] != "slow" and not fault[1].get("apply"):
                return self._fault(*fault)
            try:
                response = self._dispatch(route, tail, request)
            except _Reject as reject:
                response = reject.response
            return self._fault(*fault, response) if fault else response

    def _dispatch(self, route: str, deal_id: str | None, request: Request) -> Response:
        who = request.bearer
        today = datetime.fromtimestamp(self.now(), self.time_zone).date()
        if self._daily_date not in (None, today):
            self.daily_used = 0  # midnight in the portal's time zone
        self._daily_date = today
        if self.daily_used >= self.daily_limit:
            return self._limit("You have reached your daily limit.", "DAILY")
        self.daily_used += 1
        if route == "search":
            if not self._admit(("search", who), 1.0, self.search_rate_per_second):
                return self._limit("You have reached your secondly limit.", "SECONDLY")
            return self._search(self._body(request))
        if route in ("account", "properties"):
            return self._account() if route == "account" else self._properties()
        allowed = self._admit(("burst", who), 10.0, self.burst_per_10s)
        cap = self.burst_per_10s if self.burst_per_10s is not None else self.nominal_burst
        headers = {
            "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
            "X-HubSpot-RateLimit-Max": str(cap),
            "X-HubSpot-RateLimit-Remaining": str(max(0, cap - len(self._windows[("burst", who)]))),
            "X-HubSpot-RateLimit-Daily": str(self.daily_limit),
            "X-HubSpot-RateLimit-Daily-Remaining": str(max(0, self.daily_limit - self.daily_used)),
        }
        if not allowed:
            response = self._limit("You have reached your ten_secondly_rolling limit.", "TEN_SECONDLY_ROLLING")
        elif route == "list":
            response = self._list(request.query)
        elif route == "merge":
            response = self._merge(self._body(request))
        else:
            response = self._get_or_patch(route, deal_id or "", request)
        response.headers.update(headers)
        return response

    def _admit(self, bucket: tuple, window: float, limit: float | None) -> bool:
        q, now = self._windows.setdefault(bucket, deque()), time.monotonic()
        while q and q[0] <= now - window:
            q.popleft()
        if limit is not None and len(q) >= limit:
            return False
        q.append(now)
        return True

    def _fault(self, kind: str, params: dict, response: Response | None = None) -> Response:
        if (common := self._transport_fault(kind, params, response)) is not None:
            return common
        if kind == "429":
            msg, rid = "You have reached your ten_secondly_rolling limit.", str(uuid.uuid4())
            return self._error(429, msg, errorType="RATE_LIMIT", policyName="TEN_SECONDLY_ROLLING", requestId=rid)
        messages = {"500": "internal error", "502": "Bad Gateway", "503": "Service Unavailable"}
        return self._error(int(kind), messages.get(kind, "Gateway Timeout"))

    def _error(self, status: int, message: str, category: str | None = None, **extra: Any) -> Response:
        body: dict[str, Any] = {"status": "error", "message": message, "correlationId": str(uuid.uuid4())}
        if category:
            body["category"] = category
        return Response(status, {**body, **extra})

    def _invalid(self, detail: str) -> _Reject:
        errors = [{"message": detail, "code": "INVALID"}]
        msg = "There was a problem with the request."
        return _Reject(self._error(400, msg, "VALIDATION_ERROR", errors=errors))

    def _limit(self, message: str, policy: str) -> Response:
        self.rate_limited += 1
        return self._error(429, message, errorType="RATE_LIMIT", policyName=policy, requestId=str(uuid.uuid4()))

    def _body(self, request: Request) -> Any:
        try:
            body = request.json()
        except ValueError as exc:
            line, col = getattr(exc, "lineno", 1), getattr(exc, "colno", 1)
            msg = f"Invalid input JSON on line {line}, column {col}: {exc}"
            raise _Reject(self._error(400, msg, "VALIDATION_ERROR")) from None
        return {} if body is None else body

    def _render(self, record: dict, names: list[str] | None, raw: bool = False) -> dict:
        if raw:
            return record
        src = record["properties"]
        wanted = DEFAULT_PROPS if names is None else dict.fromkeys([*names, *ALWAYS])
        props = {n: src.get(n) for n in wanted if n in src or n in self._known}
        out = {"id": record["id"], "properties": props, "createdAt": record["createdAt"]}
        out.update(updatedAt=record["updatedAt"], archived=record.get("archived", False))
        if record.get("archivedAt"):
            out["archivedAt"] = record["archivedAt"]
        return out

    # -- endpoints -------------------------------------------------------------------------------------
    def _search(self, body: Any) -> Response:
        if not isinstance(body, dict):
            raise self._invalid("Request body must be a PublicObjectSearchRequest object")
        groups, sorts = body.get("filterGroups") or [], body.get("sorts") or []
        if not isinstance(groups, list) or not isinstance(sorts, list):
            raise self._invalid("filterGroups and sorts must be arrays")
        nfilters = [len(g.get("filters") or []) if isinstance(g, dict) else 99 for g in groups]
        if len(groups) > 5 or any(n > 6 for n in nfilters) or sum(nfilters) > 18:
            raise self._invalid("Too many filters: at most 5 filterGroups, 6 filters per group, 18 in total")
        if len(sorts) > 1:
            raise self._invalid("Only one sort is allowed per search request")
        limit, after = self._int(body.get("limit", 10), "limit"), self._int(body.get("after", 0), "after")
        if not 1 <= limit <= 200 or after < 0:
            raise self._invalid("limit must be between 1 and 200 and after must be a non-negative integer")
        if after + limit > 10_000:
            raise self._invalid(f"Paging is limited to 10000 results; after={after} + limit={limit}")
        names = body.get("properties") or None
        if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise self._invalid("properties must be a list of property names")
        query = body.get("query")
        plans = [self._plan(g) for g in groups] or [self._plan({})]
        if len(plans) == 1:
            hits = self._match(plans[0])
        else:  # OR the groups, then put the union back in (modified, id) order
            hits = sorted({v.seq: v for plan in plans for v in self._match(plan)}.values(), key=_vkey)
        if isinstance(query, str) and query:
            q = query.casefold()
            hits = [v for v in hits if any(q in str(v.props.get(p) or "").casefold() for p in SEARCHABLE)]
        hits = self._sort(hits, sorts[0] if sorts else None)
        garbage = list(self._garbage.values())
        total = len(hits) + len(garbage)
        page = [self._render(v.record, names, v.raw) for v in hits[after : after + limit]]
        page += garbage[max(0, after - len(hits)) : max(0, after + limit - len(hits))]
        out: dict[str, Any] = {"total": total, "results": page}
        if after + limit < total:
            out["paging"] = {"next": {"after": str(after + limit), "link": f"?after={after + limit}"}}
        return Response(200, out)

    def _int(self, value: Any, name: str) -> int:
        try:
            if isinstance(value, bool | float):
                raise ValueError
            return int(value)
        except (TypeError, ValueError):
            raise self._invalid(f"{name} must be formatted as an integer, got {value!r}") from None

    def _plan(self, group: Any) -> tuple:
        """One filter group -> (modified range, id range, residual predicates)."""
        lo, hi, ilo, ihi, preds = -INF, INF, -INF, INF, []
        for f in (group.get("filters") or []) if isinstance(group, dict) else []:
            name, op = (f.get("propertyName"), f.get("operator")) if isinstance(f, dict) else (None, None)
            if not isinstance(name, str) or op not in OPERATORS:
                raise self._invalid(f"Invalid filter {f!r}")
            if name in (MOD, OBJ_ID) and op in RANGE_OPS:
                conv = parse_ms if name == MOD else (lambda x: int(x) if str(x).isdecimal() else None)
                v, hv = conv(f.get("value")), conv(f.get("highValue") if op == "BETWEEN" else f.get("value"))
                if v is None or hv is None:
                    raise self._invalid(f"Invalid value for {name}: {f!r}")
                a, b = {"EQ": (v, v), "GT": (v + 1, INF), "GTE": (v, INF), "LT": (-INF, v - 1),
                        "LTE": (-INF, v), "BETWEEN": (v, hv)}[op]  # fmt: skip
                if name == MOD:
                    lo, hi = max(lo, a), min(hi, b)
                else:
                    ilo, ihi = max(ilo, a), min(ihi, b)
            else:
                preds.append((name, self._predicate(name, op, f)))
        return lo, hi, ilo, ihi, preds

    def _predicate(self, name: str, op: str, f: dict) -> Callable[[Any], bool]:
        """A residual filter as a test of the property's value (None when the deal lacks it)."""
        if op == "HAS_PROPERTY":
            return lambda x: x not in (None, "")
        if op == "NOT_HAS_PROPERTY":
            return lambda x: x in (None, "")
        values: Any = f.get("values") if op in ("IN", "NOT_IN") else [f.get("value")]
        values = [*values, f.get("highValue")] if op == "BETWEEN" else values
        if not isinstance(values, list) or not values or None in values:
            raise self._invalid(f"Filter {f!r} is missing value, highValue or values")
        if op in ("IN", "NOT_IN"):
            wanted = op == "IN"
            return lambda x: (x is not None and any(_cmp(name, x, y) == 0 for y in values)) == wanted
        if op in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
            pat, wanted = str(values[0]).casefold(), op == "CONTAINS_TOKEN"
            return lambda x: any(fnmatch.fnmatchcase(t, pat) for t in str(x or "").casefold().split()) == wanted
        if op == "BETWEEN":
            return lambda x: x is not None and _cmp(name, x, values[0]) >= 0 >= _cmp(name, x, values[1])
        test = _TESTS[op]
        return lambda x: op == "NEQ" if x is None else test(_cmp(name, x, values[0]))

    def _match(self, plan: tuple) -> list[_Version]:
        lo, hi, ilo, ihi, preds = plan
        if self.index_lag:  # the index shows each deal as it was index_lag seconds ago
            alive = self._ms(self.now() - self.index_lag)
            hi = min(hi, alive)
        else:
            alive = 2**62  # only current versions (end == INF)
        if lo > hi or ilo > ihi:
            return []
        one_ms = lo == hi  # a single millisecond: the id range bisects too
        a = bisect_left(self._index, (lo, ilo if one_ms else -INF), key=_vkey)
        b = bisect_right(self._index, (hi, ihi if one_ms else INF, INF), key=_vkey)
        if ilo == -INF and ihi == INF:
            hits = [v for v in self._index[a:b] if v.end > alive]
        else:
            hits = [v for v in self._index[a:b] if v.end > alive and ilo <= v.idn <= ihi]
        for name, test in preds:  # memoised per distinct value: stages, pipelines... repeat a lot
            memo: dict[Any, bool] = {}
            kept = []
            for v in hits:
                x = v.props.get(name)
                try:
                    ok = memo[x]
                except KeyError:
                    ok = memo[x] = test(x)
                except TypeError:  # unhashable value in a raw record
                    ok = test(x)
                if ok:
                    kept.append(v)
            hits = kept
        return hits

    def _sort(self, hits: list[_Version], rule: Any) -> list[_Version]:
        if rule is None:
            return sorted(hits, key=attrgetter("cseq"))  # default: creation order, oldest first
        prop: str | None
        if isinstance(rule, str):
            prop, desc = rule.lstrip("+-"), rule.startswith("-")
        elif isinstance(rule, dict) and rule.get("direction", "ASCENDING") in ("ASCENDING", "DESCENDING"):
            prop, desc = rule.get("propertyName"), rule.get("direction") == "DESCENDING"
        else:
            raise self._invalid(f"Invalid sort {rule!r}")
        if not isinstance(prop, str) or not prop:
            raise self._invalid(f"Invalid sort {rule!r}")
        # Stable sorts (also with reverse=True): ties stay in ascending id order.
        if prop == MOD:  # hits already come in (modified, id) order
            return sorted(hits, key=attrgetter("mod"), reverse=True) if desc else hits
        hits = sorted(hits, key=attrgetter("idn"), reverse=desc and prop == OBJ_ID)
        if prop == OBJ_ID:
            return hits
        return sorted(hits, key=lambda v: _hkey(prop, v.props.get(prop)), reverse=desc)

    def _list(self, query: dict[str, str]) -> Response:
        limit = self._int(query.get("limit", "10"), "limit")
        if not 1 <= limit <= 100:
            raise self._invalid("limit must be between 1 and 100")
        archived = query.get("archived", "false").lower() == "true"
        names = [n for n in query["properties"].split(",") if n] if query.get("properties") else None
        start = 0
        if query.get("after"):
            try:
                cursor = base64.urlsafe_b64decode(query["after"].encode()).decode().strip()
            except (binascii.Error, UnicodeDecodeError, ValueError):
                raise self._invalid(f"Invalid after cursor {query['after']!r}") from None
            start = bisect_left(self._by_id, (_idn(cursor), cursor))
        page: list[dict] = []
        for _, deal_id in self._by_id[start:]:
            record = self.deals.get(deal_id)
            if record is None or bool(record.get("archived")) != archived:
                continue
            if len(page) == limit:
                after = base64.urlsafe_b64encode(f"{deal_id}\n".encode()).decode()
                return Response(200, {"results": page, "paging": {"next": {"after": after, "link": f"?after={after}"}}})
            page.append(self._render(record, names, deal_id in self._raw))
        return Response(200, {"results": page})

    def _get_or_patch(self, route: str, deal_id: str, request: Request) -> Response:
        deal_id = self.merged_into.get(deal_id, deal_id)  # a merged-away id reads as the deal it went into
        record = self.deals.get(deal_id)
        show_archived = route == "get" and request.query.get("archived", "").lower() == "true"
        if record is None or (record.get("archived") and not show_archived):
            return self._error(404, "resource not found", "OBJECT_NOT_FOUND")
        if route == "delete":
            self.archive_deal(deal_id)
            return Response(204)
        if route == "get":
            props = request.query.get("properties")
            return Response(200, self._render(record, props.split(",") if props else None, deal_id in self._raw))
        body = self._body(request)
        updates = body.get("properties") if isinstance(body, dict) else None
        if not isinstance(updates, dict):
            raise self._invalid('Body must be {"properties": {...}}')
        if read_only := sorted(READ_ONLY & updates.keys()):
            raise self._invalid(f"Property values were not valid: {read_only} are read-only")
        if missing := sorted(updates.keys() - self._known - self.property_types.keys()):
            invalid = [
                {"isValid": False, "message": f'Property "{n}" does not exist', "error": "PROPERTY_DOESNT_EXIST",
                 "name": n, "localizedErrorMessage": f'Property "{n}" does not exist'}
                for n in missing
            ]  # fmt: skip
            msg = f"Property values were not valid: {json.dumps(invalid)}"
            raise _Reject(self._error(400, msg, "VALIDATION_ERROR"))
        self.update_deal(deal_id, **{k: (None if v == "" else v) for k, v in updates.items()})
        return Response(200, self._render(record, [*DEFAULT_PROPS, *updates], deal_id in self._raw))

    def _merge(self, body: Any) -> Response:
        """POST /crm/v3/objects/deals/merge {"primaryObjectId", "objectIdToMerge"} -> 200, the surviving deal."""
        names = ("primaryObjectId", "objectIdToMerge")
        primary, other = (_s(body.get(n)) if isinstance(body, dict) else None for n in names)
        if not primary or not other:
            raise self._invalid("primaryObjectId and objectIdToMerge are required")
        primary, other = self.merged_into.get(primary, primary), self.merged_into.get(other, other)
        for deal_id in (primary, other):
            if deal_id not in self.deals or self.deals[deal_id].get("archived") or deal_id in self._raw:
                return self._error(404, f"Object {deal_id} not found", "OBJECT_NOT_FOUND")
        if primary == other:
            raise self._invalid(f"Cannot merge deal {primary} into itself")
        survivor = self.merge_deals(primary, other)
        return Response(200, self._render(self.deals[survivor], [*DEFAULT_PROPS, MERGED]))
