"""A faithful fake of Asana's projects API: create, list (paginated) and get projects.

Why: syncd must create exactly one Asana project per deal, and Asana has no idempotency key. The hard cases
are the ambiguous ones — a POST that timed out, was dropped, or got a 5xx after the backend had committed —
and listings that lag behind creation. The real service cannot produce those on demand; this fake does,
deterministically, and checks the client: `duplicates()` finds deals whose project was created twice, and
`early_requests` counts requests sent before a `Retry-After` had elapsed.

Written from Asana's documentation (OpenAPI spec, errors, pagination, rate-limit and deprecation pages), not
from syncd's client. Routes are served both at the root and under `/api/1.0`.
"""

from __future__ import annotations

import base64
import binascii
import html
import json
import math
import random
import re
import zlib
from collections import deque
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlencode

from syncd.sandbox.server import FakeServer, Request, Response

API_PREFIX = "/api/1.0"
HELP = (
    "For more information on API status codes and how to handle them, "
    "read the docs on errors: https://developers.asana.com/docs/errors"
)
# The spec (Jan 2026) says sending `team` or `private_to_team` yields an affected `Asana-Change` header but
# does not name the change; the name below is ours.
CHANGE = "name=project_team_deprecation;info=https://developers.asana.com/docs/deprecations;affected=true"
TOO_MANY = "You've made too many requests and hit a rate limit. Please retry after the given amount of time."
SERVER_ERRORS = {
    500: "Server Error",
    502: "Bad Gateway: there is an issue between the load balancers and Asana's API.",
    503: "Service Unavailable: the upstream service is unavailable to the API.",
    504: "This request took too long to complete.",
}
KINDS = ("500", "502", "503", "504", "429", "drop", "drop_after_create", "slow_after_create")
KINDS += ("500_after_create", "504_after_create", "malformed_after_create")
TEAM_REQUIRED = "team: Missing input. A team is required to create a project in an organization."
TOO_LARGE = "The result is too large. You should use pagination (may require specifying a workspace)!"
MALFORMED = b'{"data": {"gid": '
MARKER = re.compile(r"\[syncd:[^\]]+\]")
HUES = ("pink", "green", "blue", "red", "teal", "brown", "orange", "purple", "warm-gray")
COLORS = {f"{shade}-{hue}" for shade in ("dark", "light") for hue in HUES} | {"none"}
PRIVACY = {"public_to_workspace", "private_to_team", "private"}
OPT_IN = ("html_notes", "project_brief", "created_from_template")  # only returned when asked for
PHRASE_WORDS = (  # like node-asana-phrase: "6 sad squid snuggle softly"
    ("sad", "happy", "sleepy", "brave", "tiny", "grumpy"),
    ("squid", "otters", "pandas", "llamas", "robins", "yaks"),
    ("snuggle", "juggle", "wobble", "giggle", "paddle", "hum"),
    ("softly", "loudly", "bravely", "slowly", "gently", "wildly"),
)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _error(status: int, message: str, *, help: bool = True, **extra: str) -> Response:
    error = {"message": message, **({"help": HELP} if help else {}), **extra}
    return Response(status, {"errors": [error]})


def _route(method: str, path: str) -> tuple[str | None, dict[str, str]]:
    """Map a request to ("create" | "list" | "get" | None, ids taken from the path)."""
    path = path.removeprefix(API_PREFIX).rstrip("/")
    if path == "/projects":
        return {"POST": "create", "GET": "list"}.get(method), {}
    if m := re.fullmatch(r"/(team|workspace)s/([^/]+)/projects", path):
        return {"POST": "create", "GET": "list"}.get(method), {m[1]: m[2]}
    if (m := re.fullmatch(r"/projects/([^/]+)", path)) and method == "GET":
        return "get", {"project": m[1]}
    if (m := re.fullmatch(r"/(user|workspace|team)s/([^/]+)", path)) and method == "GET":
        return "get", {m[1]: m[2]}
    return None, {}


def _is_date(value: Any) -> bool:
    if not (isinstance(value, str) and re.fullmatch(r"\d{4}-\d\d-\d\d", value)):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _fields(request: Request) -> list[str] | None:
    raw = request.query.get("opt_fields")
    return None if raw is None else [f.split(".")[0] for f in raw.split(",") if f]


class FakeAsana(FakeServer):
    service = "asana"

    def __init__(
        self,
        token: str = "sandbox-asana-token",
        *,
        workspace: str = "1200000000000001",
        team: str = "1200000000000002",
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.token, self.workspace, self.team = token, workspace, team
        self.projects: list[dict[str, Any]] = []
        self.list_lag = 0.0
        self.rate_per_minute: int | None = None
        self.offset_ttl = 600.0  # pagination tokens expire (documented; the lifetime is our guess)
        self.fault_rate = 0.0
        self.fault_kinds: list[str] = list(KINDS)
        self.create_requests = self.rate_limited = self.early_requests = self.faults_injected = 0
        self._random, self._phrases = random.Random(seed), random.Random(seed + 1)
        self._queued: list[list[Any]] = []  # [kind, times left, route, params]
        self._next_gid = 1210000000000001
        self._born: dict[str, float] = {}
        self._by_gid: dict[str, dict[str, Any]] = {}
        self._windows: dict[str, deque[float]] = {}
        self._not_before: dict[str, float] = {}
        self._workspace = {"gid": workspace, "resource_type": "workspace", "name": "Sandbox Org"}
        self._team = {"gid": team, "resource_type": "team", "name": "Sandbox Team"}
        self._user = {"gid": "1200000000000003", "resource_type": "user", "name": "Sandbox User"}

    # -- knobs and inspection ----------------------------------------------------------------------
    def reseed(self, seed: int) -> None:
        """Restart the random fault schedule from `seed`, so a failing test's run can be replayed."""
        with self.lock:
            self._random.seed(seed)

    def inject(self, kind: str, times: int = 1, route: str | None = None, **params: Any) -> None:
        """Make the next `times` requests on `route` ("create" | "list" | "get" | None = any) misbehave."""
        if kind not in KINDS or route not in (None, "create", "list", "get"):
            raise ValueError(f"unknown fault {kind!r} or route {route!r}")
        with self.lock:
            self._queued.append([kind, times, route, params])

    def archive(self, gid: str) -> None:
        with self.lock:
            project = self._by_gid[gid]
            project["archived"], project["modified_at"] = True, _iso(self.now())

    def add_project(self, **data: Any) -> dict[str, Any]:
        """Create a project directly, as if someone had made it in the Asana UI (no request counted)."""
        with self.lock:
            project = self._new_project({"workspace": self.workspace, "team": self.team, **data})
        if isinstance(project, Response):
            raise ValueError(project.body["errors"][0]["message"])
        return project

    def projects_with_marker(self, text: str) -> list[dict[str, Any]]:
        with self.lock:
            return [p for p in self.projects if text in (p["notes"] or "")]

    def duplicates(self) -> dict[str, int]:
        with self.lock:
            counts: dict[str, int] = {}
            for project in self.projects:
                for marker in set(MARKER.findall(project["notes"] or "")):
                    counts[marker] = counts.get(marker, 0) + 1
            return {marker: n for marker, n in counts.items() if n > 1}

    # -- request handling --------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        with self.lock:
            key, now = request.bearer or "", self.now()
            if request.received_at + self.clock_offset < self._not_before.get(key, 0.0):
                self.early_requests += 1
            route, ids = _route(request.method, request.path)
            if route == "create":
                self.create_requests += 1
            if request.bearer != self.token:
                return _error(401, "Not Authorized")
            if (limited := self._rate_limit(key, now)) is not None:
                return limited
            if route is None:
                return _error(404, f"No matching route for request: {request.method} {request.path}")
            # `*_after_create` faults let a create take effect, then spoil the answer; elsewhere they act
            # like their plain kind (`slow_after_create` still answers correctly, only late).
            fault = self._take_fault(route)
            late = fault and (fault[0] == "slow_after_create" or (route == "create" and "_after" in fault[0]))
            if fault and not late:
                return self._fault_response(fault, key, now, 200)
            if route == "create":
                response = self._create(ids, request)
            elif route == "list":
                response = self._list(ids, request, now)
            elif "project" in ids:
                project = self._by_gid.get(ids["project"])
                if project is None:
                    return _error(404, f"project: Unknown object: {ids['project']}")
                response = Response(200, {"data": self._render(project, _fields(request), True)})
            else:
                response = self._get_object(ids)
            if fault and response.status < 300:
                if fault[0] == "slow_after_create":
                    response.delay = float(fault[1].get("delay", 2.0))
                else:
                    response = self._fault_response(fault, key, now, response.status)
            return response

    def _get_object(self, ids: dict[str, str]) -> Response:
        """GET /users/me, /workspaces/{gid}, /teams/{gid}: what a client checks its configuration with."""
        ((kind, gid),) = ids.items()
        if kind == "user" and gid in ("me", self._user["gid"]):
            return Response(
                200, {"data": {**self._user, "email": "sandbox@example.com", "workspaces": [self._workspace]}}
            )
        if kind == "workspace" and gid == self.workspace:
            return Response(200, {"data": {**self._workspace, "is_organization": True}})
        if kind == "team" and gid == self.team:
            return Response(200, {"data": {**self._team, "organization": self._workspace}})
        return _error(404, f"{kind}: Unknown object: {gid}")

    def _rate_limit(self, key: str, now: float) -> Response | None:
        if self.rate_per_minute is None:
            return None
        window = self._windows.setdefault(key, deque())
        while window and window[0] <= now - 60:
            window.popleft()
        window.append(now)  # rejected requests count too, as documented
        if len(window) <= self.rate_per_minute:
            return None
        self.rate_limited += 1
        # The next request fits once the rate_per_minute-th newest entry has left the window.
        frees_at = window[-self.rate_per_minute] + 60 if self.rate_per_minute else now + 60
        return self._too_many(key, now, max(1, math.ceil(frees_at - now)))

    def _too_many(self, key: str, now: float, retry_after: float | None) -> Response:
        response = _error(429, TOO_MANY, help=False)
        if retry_after is not None:
            response.headers["Retry-After"] = str(retry_after)
            self._not_before[key] = max(self._not_before.get(key, 0.0), now + float(retry_after))
        return response

    def _take_fault(self, route: str) -> tuple[str, dict[str, Any]] | None:
        for entry in self._queued:
            if entry[2] in (None, route):
                entry[1] -= 1
                if entry[1] <= 0:
                    self._queued.remove(entry)
                self.faults_injected += 1
                return entry[0], entry[3]
        if self.fault_rate and self.fault_kinds and self._random.random() < self.fault_rate:
            self.faults_injected += 1
            return self._random.choice(self.fault_kinds), {}
        return None

    def _fault_response(self, fault: tuple[str, dict[str, Any]], key: str, now: float, ok: int) -> Response:
        kind, params = fault[0].removesuffix("_after_create"), fault[1]
        if kind == "drop":
            return Response(0, drop=True)
        if kind == "malformed":
            return Response(ok, MALFORMED)
        if kind == "429":
            return self._too_many(key, now, params.get("retry_after", 1))
        status = int(kind)
        if status == 500:
            words = " ".join(self._phrases.choice(w) for w in PHRASE_WORDS)
            return _error(500, SERVER_ERRORS[500], phrase=f"{self._phrases.randint(2, 99)} {words}")
        return _error(status, SERVER_ERRORS[status])

    # -- endpoints ---------------------------------------------------------------------------------
    def _create(self, ids: dict[str, str], request: Request) -> Response:
        try:
            body = request.json()
        except ValueError:
            return _error(400, "Could not parse request data, invalid JSON")
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict):
            return _error(400, "data: Missing input")
        data = {**data, **ids}
        if "team" in ids and not data.get("workspace"):
            data["workspace"] = self.workspace  # a team belongs to exactly one workspace
        result = self._new_project(data)
        if isinstance(result, Response):
            return result
        deprecated = "team" in body["data"] or data.get("privacy_setting") == "private_to_team"
        headers = {"Asana-Change": CHANGE} if deprecated else {}
        return Response(201, {"data": self._render(result, _fields(request), True)}, headers)

    def _new_project(self, data: dict[str, Any]) -> dict[str, Any] | Response:
        if not data.get("workspace"):
            return _error(400, "workspace: Missing input")
        if data["workspace"] != self.workspace:
            return _error(404, f"workspace: Unknown object: {data['workspace']}")
        if not data.get("team"):
            return _error(400, TEAM_REQUIRED)
        if data["team"] != self.team:
            return _error(404, f"team: Unknown object: {data['team']}")
        if (color := data.get("color")) is not None and color not in COLORS:
            return _error(400, f"color: Invalid value: {color}")
        privacy = data.get("privacy_setting", "public_to_workspace")
        if privacy not in PRIVACY:
            return _error(400, f"privacy_setting: Invalid value: {privacy}")
        for name in ("due_on", "start_on"):
            if (value := data.get(name)) is not None and not _is_date(value):
                return _error(400, f"{name}: Invalid date: {value}")
        if data.get("start_on") and not data.get("due_on"):
            return _error(400, "start_on: due_on or due_at must be present when setting start_on")
        if data.get("start_on") and data.get("start_on") == data.get("due_on"):
            return _error(400, "start_on: start_on and due_on cannot be the same date")
        custom = data.get("custom_fields") or {}
        if not isinstance(custom, dict):
            return _error(400, "custom_fields: Value is not an object")
        notes, html_notes = data.get("notes"), data.get("html_notes")
        if notes is None:
            notes = html.unescape(re.sub(r"<[^>]+>", "", html_notes or ""))
        if html_notes is None:
            html_notes = f"<body>{html.escape(notes)}</body>"
        owner = data.get("owner", "me")
        if owner in ("me", self._user["gid"]):
            owner = self._user
        elif owner is not None:
            owner = {"gid": str(owner), "resource_type": "user", "name": None}
        values = [
            {"gid": str(k), "resource_type": "custom_field", "display_value": None if v is None else str(v)}
            for k, v in custom.items()
        ]
        now = self.now()
        gid, self._next_gid = str(self._next_gid), self._next_gid + 1
        # fmt: off
        project = {
            "gid": gid, "resource_type": "project", "name": data.get("name", ""), "notes": notes,
            "html_notes": html_notes, "archived": False, "created_at": _iso(now), "modified_at": _iso(now),
            "permalink_url": f"https://app.asana.com/1/{self.workspace}/project/{gid}",
            "workspace": self._workspace, "team": self._team, "color": data.get("color"), "icon": "list",
            "due_on": data.get("due_on"), "due_date": data.get("due_on"), "start_on": data.get("start_on"),
            "privacy_setting": privacy, "public": privacy == "public_to_workspace", "owner": owner,
            "custom_fields": values, "custom_field_settings": [],
            "default_view": data.get("default_view", "list"), "default_access_level": "editor",
            "minimum_access_level_for_customization": "admin", "minimum_access_level_for_sharing": "admin",
            "current_status": None, "current_status_update": None,
            "completed": False, "completed_at": None, "completed_by": None, "members": [self._user],
            "followers": [self._user], "project_brief": None, "created_from_template": None,
        }
        # fmt: on
        self.projects.append(project)
        self._by_gid[gid], self._born[gid] = project, now
        return project

    def _render(self, project: dict[str, Any], fields: list[str] | None, full: bool = False) -> dict:
        """opt_fields lists the exact fields to return; gid and resource_type always come along."""
        if fields is None:
            keys = [k for k in project if k not in OPT_IN] if full else ["gid", "resource_type", "name"]
        else:
            keys = ["gid", "resource_type", *(f for f in fields if f in project)]
        return {k: project[k] for k in dict.fromkeys(keys)}

    def _list(self, ids: dict[str, str], request: Request, now: float) -> Response:
        query = request.query
        workspace, team = ids.get("workspace", query.get("workspace")), ids.get("team", query.get("team"))
        if workspace is not None and workspace != self.workspace:
            return _error(404, f"workspace: Unknown object: {workspace}")
        if team is not None and team != self.team:
            return _error(404, f"team: Unknown object: {team}")
        archived = query.get("archived")
        if archived not in (None, "true", "false"):
            return _error(400, f"archived: Value is not a boolean: {archived}")
        horizon = now - self.list_lag
        matching = [p for p in self.projects if self._born[p["gid"]] <= horizon]
        if archived is not None:
            matching = [p for p in matching if p["archived"] == (archived == "true")]
        fields, limit = _fields(request), query.get("limit")
        where = [request.path.removeprefix(API_PREFIX), workspace, team, archived]
        signature = zlib.crc32(json.dumps(where).encode())
        start = 0
        if query.get("offset"):
            try:
                raw = query["offset"] + "=" * (-len(query["offset"]) % 4)
                token = json.loads(base64.urlsafe_b64decode(raw.encode()))
                if token["q"] != signature or now - token["t"] > self.offset_ttl:
                    raise ValueError("stale or foreign token")
                start = sum(1 for p in matching if int(p["gid"]) <= int(token["after"]))
            except (ValueError, KeyError, TypeError, binascii.Error):
                return _error(400, "offset: Your pagination token is invalid or has expired.")
        headers = {"Asana-Change": CHANGE} if "team" in query else {}  # the team filter is deprecated
        if limit is None:  # not paginated: every match, and no next_page at all
            if len(matching) - start > 1000:
                return _error(400, TOO_LARGE)
            return Response(200, {"data": [self._render(p, fields) for p in matching[start:]]}, headers)
        if not (re.fullmatch(r"\d{1,3}", limit) and 1 <= int(limit) <= 100):
            return _error(400, f"limit: Value {limit} is not in the range [1, 100]")
        page = matching[start : start + int(limit)]
        body = {"data": [self._render(p, fields) for p in page], "next_page": None}
        if start + len(page) < len(matching):
            token = {"after": page[-1]["gid"], "q": signature, "t": now}
            offset = base64.urlsafe_b64encode(json.dumps(token).encode()).decode().rstrip("=")
            path = request.path.removeprefix(API_PREFIX) + "?"
            path += urlencode({**query, "offset": offset}, safe=",")
            base = self.url + (API_PREFIX if request.path.startswith(API_PREFIX) else "")
            body["next_page"] = {"offset": offset, "path": path, "uri": base + path}
        return Response(200, body, headers)
