"""Fake Salesforce REST API for Opportunities: OAuth refresh, SOQL query with paging, PATCH, API limits.

Why: syncd's Salesforce poller depends on behaviour that a developer org will not produce on demand: access
tokens that expire mid-run (401 INVALID_SESSION_ID, then a refresh-token grant), SOQL's unquoted datetime
literals and its typed errors, `nextRecordsUrl` cursors that expire, batch sizes smaller than asked for,
many rows sharing one second-precision `SystemModstamp`, the daily API allocation answered with **403**
REQUEST_LIMIT_EXCEEDED (not 429, and without Retry-After), and flaky transport. This fake reproduces them
from Salesforce's public documentation and widely observed responses (/work/shared/reference/apis.md §2),
not from syncd's client code.

Both 403 REQUEST_LIMIT_EXCEEDED answers: the allocation spent (`api_used >= daily_limit`, or the
`request_limit` fault) is `TotalRequests Limit exceeded.`; too many concurrent long-running requests (the
`concurrent_limit` fault) is `ConcurrentRequests (Concurrent API Requests) Limit exceeded.`, as observed in the
field (the docs name only the code: "the API returns a REQUEST_LIMIT_EXCEEDED exception code",
https://developer.salesforce.com/docs/platform/salesforce-app-limits-cheatsheet/guide/salesforce-app-limits-platform-api.html).

SOQL: `SELECT <fields, incl. Account.Name / Owner.Name> FROM Opportunity [WHERE <comparisons = != <> < <= > >=
joined by AND, OR and parentheses>] [ORDER BY f [ASC|DESC], ...] [LIMIT n]`. A query snapshots its result and
`nextRecordsUrl` pages through that snapshot.
Datetimes are stored as epoch ms truncated to whole seconds (Salesforce stamps have second precision in
practice) and rendered as `2024-09-13T20:23:03.000+0000`.

Creation and the recycle bin: `CreatedDate` is "Date and time when this record was created" and `IsDeleted`
"Indicates whether the record has been moved to the Recycle Bin (true) or not (false)"
(https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/system_fields.htm). `add_opportunity(created_at=)`
sets the first (default: the first modification time). `delete_opportunity` moves a record to the recycle bin:
`query` leaves it out, while "Unlike the Query resource, QueryAll returns records that are soft deleted due to
a merge or delete", and "Although the nextRecordsUrl has query in the URL, it still provides the remaining
results from the initial QueryAll request"
(https://developer.salesforce.com/docs/platform/api-rest/guide/resources-queryall.html). (guess) Deleting and
undeleting bump `SystemModstamp` but not `LastModifiedDate`, and a PATCH of a deleted record is 404
ENTITY_IS_DELETED.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import string
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

from syncd.sandbox.server import FakeServer, Request, Response

FAULT_KINDS: tuple[str, ...] = ("500", "503", "drop", "slow", "malformed_json", "wrong_envelope", "request_limit")
FAULT_KINDS += ("expired_session", "concurrent_limit")  # concurrent_limit: see the module docstring
DATETIME = frozenset({"SystemModstamp", "LastModifiedDate", "CreatedDate"})
STANDARD: tuple[str, ...] = ("Id", "Name", "StageName", "Amount", "IsWon", "IsClosed", "IsDeleted", "CloseDate")
STANDARD += ("OwnerId", "AccountId", "Probability", "Type", "LeadSource", "Description", "NextStep", "CreatedById")
STANDARD += ("LastModifiedById", *sorted(DATETIME))
READ_ONLY = frozenset({"Id", "IsWon", "IsClosed", "IsDeleted", "CreatedById", "LastModifiedById", *DATETIME})
RELATIONS = {"Account": ("AccountId", "Account"), "Owner": ("OwnerId", "User")}  # name -> (id field, type)
RELATED_FIELDS = {"Account": ("Id", "Name", "Industry", "Type"), "User": ("Id", "Name", "Email")}
WON, CLOSED = frozenset({"Closed Won"}), frozenset({"Closed Won", "Closed Lost"})
SESSION = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
NOT_FOUND = [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]
IS_DELETED = [{"errorCode": "ENTITY_IS_DELETED", "message": "entity is deleted", "fields": []}]
CUSTOM = "If you are attempting to use a custom %s, be sure to append %s. Please reference your WSDL or the "
CUSTOM += "describe call for the appropriate names."
LIMIT_EXCEEDED = [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
CONCURRENT_EXCEEDED = [
    {"message": "ConcurrentRequests (Concurrent API Requests) Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}
]
RESERVED = frozenset({"SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "ORDER", "BY", "ASC", "DESC", "LIMIT", "NULL"})
_API = re.compile(
    r"^/services/data/(?P<v>v\d+\.\d)(?:/query(?P<all>All)?/?|/query(?:All)?/(?P<locator>\w+)-(?P<offset>\d+)"
    r"|/sobjects/Opportunity/(?P<opp>\w+)|(?P<limits>/limits)/?)$"
)
_TOKEN = re.compile(
    r"""\s*(?:(?P<dt>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d))(?![\w:.])
    |(?P<bad>\d{4}-\d\d-\d\dT\S*)|(?P<date>\d{4}-\d\d-\d\d)(?![\w:])|(?P<num>-?\d+(?:\.\d+)?)(?![\w.])
    |(?P<str>'(?:[^'\\]|\\.)*')|(?P<op><=|>=|!=|<>|=|<|>)|(?P<p>[(),])|(?P<word>[A-Za-z_][\w.]*))""",
    re.X,
)


def sf_datetime(ms: int) -> str:
    """Epoch ms -> Salesforce's JSON datetime, e.g. 2024-09-13T20:23:03.000+0000."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}+0000"


def parse_datetime(text: Any) -> int | None:
    """ISO 8601 with a zone (Z, +hh:mm, +hhmm) -> epoch ms; None when it does not parse."""
    if not isinstance(text, str) or not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:?\d\d)", text):
        return None
    try:
        return round(datetime.fromisoformat(text).timestamp() * 1000)
    except ValueError:
        return None


class _Error(Exception):
    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.response = Response(status, [{"message": message, "errorCode": code, **extra}])


class _Soql:
    """Recursive-descent parser for the SOQL subset; compiles WHERE into a predicate over stored rows."""

    def __init__(self, fake: FakeSalesforce, text: str) -> None:
        self.fake, self.text, self.toks, pos = fake, text, [], 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if not m or not m.lastgroup:
                if text[pos:].strip():
                    self.fail(f"unexpected token: '{text[pos:].split()[0]}'", pos)
                break
            if m.lastgroup == "bad":
                end = m.end()
                self.fail(f"line 1:{end} no viable alternative at character '{text[end : end + 1] or '<EOF>'}'", end)
            self.toks.append((m.lastgroup, m.group(m.lastgroup), m.start(m.lastgroup)))
            pos = m.end()
        self.i = 0

    def fail(self, message: str, col: int | None = None, code: str = "MALFORMED_QUERY") -> None:
        col = len(self.text) if col is None else col
        snippet = f"\n{self.text}\n{' ' * col}^\nERROR at Row:1:Column:{col + 1}\n"
        raise _Error(400, code, snippet + message)

    def peek(self) -> tuple[str, str, int]:
        return self.toks[self.i] if self.i < len(self.toks) else ("eof", "<EOF>", len(self.text))

    def take(self, *words: str) -> bool:
        kind, text, _ = self.peek()
        if (kind == "word" and text.upper() in words) or (kind in ("p", "op") and text in words):
            self.i += 1
            return True
        return False

    def expect(self, word: str) -> None:
        if not self.take(word):
            self.fail(f"unexpected token: '{self.peek()[1]}'", self.peek()[2])

    def parse(self) -> tuple[list[str], Callable[[dict], bool] | None, list[tuple[str, bool]], int | None]:
        self.expect("SELECT")
        fields = [self.field()]
        while self.take(","):
            fields.append(self.field())
        self.expect("FROM")
        kind, obj, col = self.peek()
        if kind != "word" or obj.lower() != "opportunity":
            self.fail(f"sObject type '{obj}' is not supported.", col, "INVALID_TYPE")
        self.i += 1
        where = self.join("OR") if self.take("WHERE") else None
        order: list[tuple[str, bool]] = []
        if self.take("ORDER"):
            self.expect("BY")
            order.append(self.order_item())
            while self.take(","):
                order.append(self.order_item())
        limit = None
        if self.take("LIMIT"):
            kind, num, col = self.peek()
            if kind != "num" or not num.isdigit():
                self.fail(f"unexpected token: '{num}'", col)
            limit, self.i = int(num), self.i + 1
        if self.peek()[0] != "eof":
            self.fail(f"unexpected token: '{self.peek()[1]}'", self.peek()[2])
        return list(dict.fromkeys(fields)), where, order, limit

    def order_item(self) -> tuple[str, bool]:
        name, desc = self.field(), self.take("DESC")
        if not desc:
            self.take("ASC")
        return name, desc

    def field(self) -> str:
        kind, name, col = self.peek()
        if kind != "word" or name.upper() in RESERVED:
            self.fail(f"unexpected token: '{name}'", col)
        self.i += 1
        canonical = self.fake._canonical(name)
        if canonical is None:
            head, _, sub = name.rpartition(".")
            rel = next((r for r in RELATIONS if r.lower() == head.lower()), None)
            if head and rel is None:
                hint = CUSTOM % ("relationship", "the '__r' after the custom relationship name")
                self.fail(f"Didn't understand relationship '{head}' in field path. {hint}", col, "INVALID_FIELD")
            hint = CUSTOM % ("field", "the '__c' after the custom field name")
            entity = RELATIONS[rel][1] if rel else "Opportunity"
            self.fail(f"No such column '{sub}' on entity '{entity}'. {hint}", col, "INVALID_FIELD")
        return canonical  # type: ignore[return-value]

    def join(self, word: str) -> Callable[[dict], bool]:
        """OR of ANDs of comparisons or parenthesised conditions."""
        parts = [self.join("AND") if word == "OR" else self.comparison()]
        while self.take(word):
            parts.append(self.join("AND") if word == "OR" else self.comparison())
        combine = any if word == "OR" else all
        return parts[0] if len(parts) == 1 else lambda r: combine(p(r) for p in parts)

    def comparison(self) -> Callable[[dict], bool]:
        if self.take("("):
            inner = self.join("OR")
            self.expect(")")
            return inner
        name = self.field()
        kind, op, col = self.peek()
        if kind != "op":
            self.fail(f"unexpected token: '{op}'", col)
        self.i += 1
        value = self.value(name)
        if value is None:
            if op not in ("=", "!=", "<>"):
                self.fail(f"unexpected token: '{op}'", col)
            return lambda r: (self.fake._value(r, name) is None) == (op == "=")
        method = {"=": "__eq__", "!=": "__ne__", "<>": "__ne__", "<": "__lt__", "<=": "__le__", ">": "__gt__"}
        test = method.get(op, "__ge__")

        def check(r: dict) -> bool:
            x = self.fake._value(r, name)
            return x is not None and _kind(x) == _kind(value) and getattr(x, test)(value) is True

        return check

    def value(self, name: str) -> Any:
        kind, text, col = self.peek()
        self.i += 1
        if kind == "word" and text.lower() in ("null", "true", "false"):
            return {"null": None, "true": True, "false": False}[text.lower()]
        typed = "dateTime" if name in DATETIME else "date" if name == "CloseDate" else None
        if typed and kind != {"dateTime": "dt", "date": "date"}[typed]:
            msg = f"value of filter criterion for field '{name}' must be of type {typed}"
            self.fail(msg + " and should not be enclosed in quotes", col, "INVALID_FIELD")
        if kind == "dt":
            ms = parse_datetime(text)
            if ms is None:
                self.fail(f"Invalid datetime: {text}", col)
            return ms // 1000 * 1000  # type: ignore[operator]
        if kind == "str":
            return re.sub(r"\\(.)", r"\1", text[1:-1])
        if kind in ("num", "date"):
            return float(text) if kind == "num" else text
        self.fail(f"unexpected token: '{text}'", col)


class FakeSalesforce(FakeServer):
    MALFORMED_BODY = b'{"totalSize": 3, "done": fal'
    FAULT_KINDS = FAULT_KINDS
    FAULT_ROUTES = ("token", "query", "patch")
    service = "salesforce"

    def __init__(
        self,
        *,
        client_id: str = "sandbox-client-id",
        client_secret: str = "sandbox-client-secret",
        refresh_token: str = "sandbox-refresh-token",
        api_version: str = "v60.0",
        seed: int = 0,
    ) -> None:
        super().__init__(seed)
        self.client_id, self.client_secret, self.refresh_token = client_id, client_secret, refresh_token
        self.api_version = api_version
        self.opportunities: dict[str, dict] = {}
        self.accounts: dict[str, dict] = {}
        self.users: dict[str, dict] = {"0058d0000000001AAA": {"Id": "0058d0000000001AAA", "Name": "Sandbox User"}}
        self.custom_fields: set[str] = set()
        self.daily_limit = 15_000
        self._calls: deque[float] = deque()  # when each call of the rolling 24 hours was made (fake clock)
        self.locator_ttl = 2 * 86_400.0  # seconds a nextRecordsUrl stays valid (documented: two days)
        self.batch_cap: int | None = None  # serve at most this many rows per batch ("not guaranteed")
        # On by default, as Salesforce recommends: "For better security, enable refresh token rotation ... the
        # connected app issues a new refresh token along with the access token each time the flow is invoked. The
        # previous refresh token is automatically invalidated."
        # (https://help.salesforce.com/s/articleView?id=remoteaccess_oauth_refresh_token_flow.htm)
        self.rotate_refresh_token = True
        self.token_requests = self.query_requests = self.patch_requests = 0
        self.rate_limited = 0
        self.fault_kinds = ["500", "503", "drop"]
        self._tokens: set[str] = set()
        self._locators: dict[str, tuple[list[dict], float, int]] = {}
        self._raw: dict[str, dict] = {}
        self._next = {"006": 1, "001": 1}

    # -- helpers for tests -------------------------------------------------------------------------
    def add_opportunity(
        self,
        id: str | None = None,
        *,
        modstamp: float | str | None = None,
        created_at: float | str | None = None,
        **fields: Any,
    ) -> str:
        """Create an Opportunity; `Account="Acme"` links (or creates) an Account by name. `CreatedDate` is
        `created_at` (epoch s or ISO 8601), else the first modification time."""
        with self.lock:
            opp_id = id or self._new_id("006")
            ms = self._ms(modstamp)
            record: dict[str, Any] = {"Id": opp_id, "Name": f"Opportunity {opp_id[-6:]}", "StageName": "Prospecting"}
            record |= {"Amount": None, "CloseDate": time.strftime("%Y-%m-%d", time.gmtime(ms // 1000))}
            record |= {"OwnerId": next(iter(self.users)), "AccountId": None, "IsDeleted": False}
            record["CreatedDate"] = ms if created_at is None else self._ms(created_at)
            self.opportunities[opp_id] = record
            self._apply(record, fields, ms, system_only=False)
            return opp_id

    def update_opportunity(
        self, id: str, *, modstamp: float | str | None = None, system_only: bool = False, **fields: Any
    ) -> dict:
        """Change fields and bump SystemModstamp; `system_only=True` mimics automation (LastModifiedDate kept)."""
        with self.lock:
            record = self.opportunities[id]
            self._apply(record, fields, self._ms(modstamp), system_only)
            return record

    def delete_opportunity(self, id: str, *, modstamp: float | str | None = None) -> dict:
        """Move to the recycle bin: `IsDeleted` true, gone from `query`, still in `queryAll`."""
        return self.update_opportunity(id, modstamp=modstamp, system_only=True, IsDeleted=True)

    def undelete_opportunity(self, id: str, *, modstamp: float | str | None = None) -> dict:
        """Restore from the recycle bin (same Id and CreatedDate)."""
        return self.update_opportunity(id, modstamp=modstamp, system_only=True, IsDeleted=False)

    def add_raw_record(self, record: dict) -> str:
        """Store a record verbatim (malformed-record tests). It is returned as stored; if its SystemModstamp
        does not parse it matches every query and sorts last."""
        with self.lock:
            opp_id = str(record.get("Id") or self._new_id("006"))
            view = {k: parse_datetime(v) if k in DATETIME else v for k, v in record.items()}
            self.opportunities[opp_id], self._raw[opp_id] = {**view, "Id": opp_id}, record
            return opp_id

    def add_account(self, name: str, id: str | None = None, **fields: Any) -> str:
        with self.lock:
            account_id = id or self._new_id("001")
            self.accounts[account_id] = {"Id": account_id, "Name": name, **fields}
            return account_id

    @property
    def api_used(self) -> int:
        """Calls in the rolling 24 hours: "Limits are enforced against the aggregate of all API calls made to the
        org in a 24-hour period" (https://help.salesforce.com/s/articleView?id=xcloud.setup_system_overview_api.htm),
        so calls age out one by one, 24 hours after they were made."""
        horizon = self.now() - 86_400.0
        while self._calls and self._calls[0] <= horizon:
            self._calls.popleft()
        return len(self._calls)

    @api_used.setter
    def api_used(self, count: int) -> None:
        """Set the usage as `count` calls made now (they age out together, 24 hours from now)."""
        self._calls = deque([self.now()] * count)

    def add_field(self, name: str) -> None:
        """Declare a custom field (e.g. `Asana_Project__c`) so SELECT and PATCH accept it."""
        with self.lock:
            self.custom_fields.add(name)

    def expire_tokens(self) -> None:
        with self.lock:
            self._tokens.clear()

    def expire_locators(self) -> None:
        with self.lock:
            self._locators.clear()

    def _ms(self, at: float | str | None) -> int:
        ms = parse_datetime(at) if isinstance(at, str) else round((self.now() if at is None else at) * 1000)
        if ms is None:
            raise ValueError(f"unparseable modstamp {at!r}")
        return ms // 1000 * 1000

    def _new_id(self, prefix: str) -> str:
        n, self._next[prefix] = self._next[prefix], self._next[prefix] + 1
        return f"{prefix}8d{n:010d}AAA"  # 15-char id + case checksum ("AAA": no upper-case letters)

    def _apply(self, record: dict, fields: dict, ms: int, system_only: bool) -> None:
        if isinstance(account := fields.pop("Account", None), str):
            match = [a for a, acc in self.accounts.items() if acc["Name"] == account]
            fields["AccountId"] = match[0] if match else self.add_account(account)
        record.update(fields)
        self.custom_fields.update(k for k in fields if k.endswith("__c"))
        if "IsWon" not in fields:
            record["IsWon"] = record.get("StageName") in WON
        if "IsClosed" not in fields:
            record["IsClosed"] = record.get("StageName") in CLOSED
        if isinstance(record.get("Amount"), int):
            record["Amount"] = float(record["Amount"])
        record["SystemModstamp"] = ms
        if not system_only:
            record["LastModifiedDate"] = ms

    def _canonical(self, name: str) -> str | None:
        """Case-insensitive field name -> canonical API name (relationship paths too); None if unknown."""
        head, _, sub = name.partition(".")
        if sub:
            rel = next((r for r in RELATIONS if r.lower() == head.lower()), None)
            known = RELATED_FIELDS[RELATIONS[rel][1]] if rel else ()
            match = next((f for f in known if f.lower() == sub.lower()), None)
            return f"{rel}.{match}" if match else None
        return next((f for f in (*STANDARD, *sorted(self.custom_fields)) if f.lower() == name.lower()), None)

    def _related(self, record: dict, rel: str) -> dict | None:
        id_field, kind = RELATIONS[rel]
        return (self.accounts if kind == "Account" else self.users).get(record.get(id_field) or "")

    def _value(self, record: dict, name: str) -> Any:
        rel, _, sub = name.rpartition(".")
        target = self._related(record, rel) if rel else record
        return None if target is None else target.get(sub)

    def _render(self, record: dict, fields: list[str], version: str) -> dict:
        if record["Id"] in self._raw:
            return self._raw[record["Id"]]
        out: dict[str, Any] = {"attributes": self._attributes("Opportunity", record["Id"], version)}
        for name in fields:
            rel, _, sub = name.rpartition(".")
            if not rel:
                value = record.get(name)
                out[name] = sf_datetime(value) if name in DATETIME and isinstance(value, int) else value
                continue
            if rel not in out:
                target = self._related(record, rel)
                kind = RELATIONS[rel][1]
                out[rel] = None if target is None else {"attributes": self._attributes(kind, target["Id"], version)}
            if out[rel] is not None:
                out[rel][sub] = self._related(record, rel).get(sub)  # type: ignore[union-attr]
        return out

    @staticmethod
    def _attributes(kind: str, record_id: str, version: str) -> dict:
        return {"type": kind, "url": f"/services/data/{version}/sobjects/{kind}/{record_id}"}

    # -- HTTP ----------------------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        with self.lock:
            if request.path.rstrip("/") == "/services/oauth2/token" and request.method == "POST":
                self.token_requests += 1
                fault = self._next_fault("token")
                if fault and fault[0] != "slow" and not fault[1].get("apply"):
                    return self._fault(*fault)
                response = self._token(request)
                return self._fault(*fault, response) if fault else response
            m = _API.match(request.path)
            route = None
            if m and m["limits"] and request.method == "GET":
                route = "limits"
            elif m and m["opp"] is None and request.method == "GET":
                route = "query"
                self.query_requests += 1
            elif m and m["opp"] == "describe" and request.method == "GET":
                route = "describe"
            elif m and m["opp"] is not None and request.method == "PATCH":
                route = "patch"
                self.patch_requests += 1
            if request.path.startswith("/services/data/") and request.bearer not in self._tokens:
                return Response(401, SESSION)
            if route is None or m is None or float(m["v"][1:]) > float(self.api_version[1:]):
                return Response(404, NOT_FOUND)  # also for a version newer than the org's (`api_version`)
            fault = self._next_fault(route)
            if fault and fault[0] != "slow" and not fault[1].get("apply"):
                return self._fault(*fault, bearer=request.bearer)
            if self.api_used >= self.daily_limit:
                self.rate_limited += 1
                return Response(403, LIMIT_EXCEEDED, self._limit_header())
            self._calls.append(self.now())
            try:
                if route == "limits":
                    response = self._limits()
                elif route == "describe":
                    response = self._describe()
                elif route == "patch":
                    response = self._patch(m["opp"], request)
                elif m["locator"]:
                    response = self._more(m["v"], m["locator"], int(m["offset"]))
                else:
                    response = self._query(m["v"], request, include_deleted=bool(m["all"]))
            except _Error as error:
                response = error.response
            response.headers.update(self._limit_header())
            return self._fault(*fault, response, bearer=request.bearer) if fault else response

    def _limits(self) -> Response:
        """GET /services/data/vXX.X/limits: "Lists information about limits in your org. For each limit, this
        resource returns the maximum allocation and the remaining allocation based on usage", e.g.
        `"DailyApiRequests": {"Max": 15000, "Remaining": 14998}`
        (https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_limits.htm). (guess) The
        call counts against the allocation, and is refused when it is spent, like any other."""
        used = self.api_used
        return Response(200, {
            "DailyApiRequests": {"Max": self.daily_limit, "Remaining": max(0, self.daily_limit - used)},
            "ConcurrentAsyncGetReportInstances": {"Max": 200, "Remaining": 200},
            "DailyBulkApiBatches": {"Max": 15000, "Remaining": 15000},
        })  # fmt: skip

    def _describe(self) -> Response:
        """GET /services/data/vXX.X/sobjects/Opportunity/describe: "Completely describes the individual metadata at
        all levels for the specified object", each field with `name`, `label`, `type`, `custom` and `updateable`
        (https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_sobject_describe.htm).
        Types as the standard object reference gives them; a custom field is a string."""
        types = {"Id": "id", "Amount": "currency", "CloseDate": "date", "Probability": "percent", "IsWon": "boolean"}
        types |= {"IsClosed": "boolean", "IsDeleted": "boolean", "StageName": "picklist", "Type": "picklist"}
        types |= {"LeadSource": "picklist", "Description": "textarea", "OwnerId": "reference", "AccountId": "reference"}
        types |= {"CreatedById": "reference", "LastModifiedById": "reference", **dict.fromkeys(DATETIME, "datetime")}
        fields = [
            {"name": name, "label": name, "type": types.get(name, "string"), "custom": name in self.custom_fields,
             "updateable": name not in READ_ONLY, "nillable": name not in ("Id", "Name", "StageName", "CloseDate")}
            for name in (*STANDARD, *sorted(self.custom_fields))
        ]  # fmt: skip
        return Response(200, {"name": "Opportunity", "label": "Opportunity", "custom": False, "fields": fields})

    def _limit_header(self) -> dict[str, str]:
        return {"Sforce-Limit-Info": f"api-usage={self.api_used}/{self.daily_limit}"}

    def _fault(self, kind: str, params: dict, response: Response | None = None, bearer: str | None = None) -> Response:
        if (common := self._transport_fault(kind, params, response)) is not None:
            return common
        if kind == "request_limit":
            return Response(403, LIMIT_EXCEEDED, self._limit_header())
        if kind == "concurrent_limit":
            return Response(403, CONCURRENT_EXCEEDED, self._limit_header())
        if kind == "expired_session":
            self._tokens.discard(bearer or "")  # an expired session stays expired
            return Response(401, SESSION)
        if kind == "503":
            return Response(503, [{"message": "Server unavailable", "errorCode": "SERVER_UNAVAILABLE"}])
        error_id = f"{self._rng.randrange(10**9)}-{self._rng.randrange(10**5)} (-{self._rng.randrange(10**9)})"
        msg = f"An unexpected error occurred. Please include this ErrorId if you contact support: {error_id}"
        return Response(500, [{"message": msg, "errorCode": "UNKNOWN_EXCEPTION"}])

    # -- endpoints -------------------------------------------------------------------------------------
    def _token(self, request: Request) -> Response:
        form = {k: v[-1] for k, v in parse_qs(request.body.decode("utf-8", "replace")).items()}
        if form.get("grant_type") != "refresh_token":
            return Response(400, {"error": "unsupported_grant_type", "error_description": "grant type not supported"})
        if form.get("client_id") != self.client_id:
            return Response(400, {"error": "invalid_client_id", "error_description": "client identifier invalid"})
        if form.get("client_secret") != self.client_secret:
            return Response(400, {"error": "invalid_client", "error_description": "invalid client credentials"})
        if not self.refresh_token or form.get("refresh_token") != self.refresh_token:
            return Response(400, {"error": "invalid_grant", "error_description": "expired access/refresh token"})
        alphabet = string.ascii_letters + string.digits
        token = "00D8d0000000001!" + "".join(self._rng.choice(alphabet) for _ in range(96))
        self._tokens.add(token)
        issued_at = str(round(self.now() * 1000))
        identity = f"https://login.salesforce.com/id/00D8d0000000001EAA/{next(iter(self.users))}"
        digest = hmac.new(self.client_secret.encode(), (identity + issued_at).encode(), hashlib.sha256).digest()
        body = {"access_token": token, "instance_url": self.url, "id": identity, "token_type": "Bearer"}
        body |= {"issued_at": issued_at, "signature": base64.b64encode(digest).decode(), "scope": "api refresh_token"}
        if self.rotate_refresh_token:
            self.refresh_token = body["refresh_token"] = "5Aep" + "".join(self._rng.choice(alphabet) for _ in range(80))
        return Response(200, body)

    def _query(self, version: str, request: Request, include_deleted: bool = False) -> Response:
        text = request.query.get("q", "").strip()
        if not text:
            raise _Error(400, "MALFORMED_QUERY", "A query string has to be specified")
        fields, where, order, limit = _Soql(self, text).parse()
        rows = [r for i, r in self.opportunities.items() if i not in self._raw or r.get("SystemModstamp") is not None]
        rows = [r for r in rows if (include_deleted or r.get("IsDeleted") is not True) and (where is None or where(r))]
        for name, desc in reversed(order):  # stable sorts; nulls first ascending, last descending (SOQL)
            rows.sort(key=lambda r: _sort_key(self._value(r, name)), reverse=desc)
        rows += [r for i, r in self.opportunities.items() if i in self._raw and r.get("SystemModstamp") is None]
        rendered = [self._render(r, fields, version) for r in rows[:limit]]
        match = re.search(r"batchSize\s*=\s*(\d+)", request.headers.get("sforce-query-options", ""))
        batch = min(2000, max(200, int(match.group(1)))) if match else 2000
        batch = min(batch, self.batch_cap or batch)
        locator = "01gRO" + "".join(self._rng.choice(string.ascii_letters + string.digits) for _ in range(13))
        if len(rendered) > batch:
            self._locators[locator] = (rendered, self.now(), batch)
        return self._page(version, locator, rendered, 0, batch)

    def _more(self, version: str, locator: str, offset: int) -> Response:
        rows, created, batch = self._locators.get(locator, (None, 0.0, 0))
        if rows is None or self.now() - created > self.locator_ttl or offset > len(rows):
            raise _Error(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        return self._page(version, locator, rows, offset, batch)

    @staticmethod
    def _page(version: str, locator: str, rows: list[dict], offset: int, batch: int) -> Response:
        done = offset + batch >= len(rows)
        body: dict[str, Any] = {"totalSize": len(rows), "done": done}
        if not done:
            body["nextRecordsUrl"] = f"/services/data/{version}/query/{locator}-{offset + batch}"
        body["records"] = rows[offset : offset + batch]
        return Response(200, body)

    def _patch(self, opp_id: str, request: Request) -> Response:
        record_id = next(
            (i for i in self.opportunities if i == opp_id or (len(opp_id) == 15 and i[:15] == opp_id)), None
        )
        if record_id is None or record_id in self._raw:
            return Response(404, NOT_FOUND)
        if self.opportunities[record_id].get("IsDeleted") is True:
            return Response(404, IS_DELETED)
        try:
            body = request.json()
        except ValueError as exc:
            raise _Error(400, "JSON_PARSER_ERROR", f"Unexpected character: {exc}") from None
        if not isinstance(body, dict):
            raise _Error(400, "JSON_PARSER_ERROR", "Cannot deserialize instance of Opportunity from the request body")
        updates: dict[str, Any] = {}
        for name, value in body.items():
            canonical = self._canonical(name) if "." not in name else None
            if canonical is None:
                raise _Error(400, "INVALID_FIELD", f"No such column '{name}' on sobject of type Opportunity")
            if canonical in READ_ONLY:
                msg = f"Unable to create/update fields: {canonical}. Please check the security settings of this field "
                msg += "and verify that it is read/write for your profile or permission set."
                raise _Error(400, "INVALID_FIELD_FOR_INSERT_UPDATE", msg, fields=[canonical])
            updates[canonical] = value
        self._apply(self.opportunities[record_id], updates, self._ms(None), system_only=False)
        return Response(204)


def _sort_key(value: Any) -> tuple:
    if value is None:
        return (0, 0.0, "")
    return (1, float(value), "") if isinstance(value, bool | int | float) else (2, 0.0, str(value))


def _kind(value: Any) -> str:
    return "number" if isinstance(value, int | float) and not isinstance(value, bool) else type(value).__name__
