"""A faithful fake of the parts of Asana's API that syncd uses: projects, project templates and their jobs,
tasks, and memberships.

Why: syncd must create exactly one Asana project per deal, and Asana has no idempotency key. The hard cases
are the ambiguous ones — a POST that timed out, was dropped, or got a 5xx after the backend had committed —
and listings that lag behind creation. The real service cannot produce those on demand; this fake does,
deterministically, and checks the client: `duplicates()` finds deals whose project (or task) was created
twice, and `early_requests` counts requests sent before a `Retry-After` had elapsed.

Written from Asana's documentation (OpenAPI spec, errors, pagination, rate-limit, jobs, custom-external-data
and deprecation pages), not from syncd's client. Routes are served both at the root and under `/api/1.0`.

Where the documentation is silent the fake makes a choice, marked "(guess)" below and in the knobs:

- an instantiation job's `resource_subtype` is "instantiate_project" (the spec only shows "duplicate_task");
- `is_strict` with a missing date answers `strict_status` (422, "Unprocessable Entity" as the spec words it;
  the operation lists no 422, so set it to 400 if the real service turns out to say that);
- a failed instantiation leaves its project behind half-made (the jobs page only warns that objects are
  inconsistent until the job succeeds); `failed_jobs_keep_project = False` removes it instead;
- a second task with an `external.gid` already in use is a 400 (`unique_external_gids = False` allows it);
- adding a member to a project twice returns the existing membership, 201 (`duplicate_memberships = "reject"`
  makes it a 400).

`opt_fields`: "Some requests return *compact* representations of objects ... This option allows you to list
the exact set of fields that the API should be sure to return for the objects. ... The id of included objects
will always be returned, regardless of the field options." (spec, `components.parameters.fields`; also
https://developers.asana.com/docs/inputoutput-options). Listings ("Returns the compact project records for all
projects in the team", "Returns the compact task records for all tasks within the given project") without
`opt_fields` return the compact schema: `gid`, `resource_type`, `name`, and for tasks also `resource_subtype`
(TaskCompact in the spec). The `fields_missing` fault makes the records of one answer lack fields that were
asked for; the docs promise the opposite ("should be sure to return"), and only hint that some fields are
*Conditional* or "not available" for some objects, so this is a defensive test of the client, not a
documented behaviour. `inject("fields_missing", route="list")` (project and template listings) or
`route="task_list"`; params `fields=` (names to leave out; default: every field asked for in `opt_fields`
except `gid` and `resource_type`, or without `opt_fields` the compact ones except those two) and `gids=`
(only these records lose them; default: all). It is never drawn at random (`fault_kinds` leaves it out).
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
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlencode

from syncd.sandbox import asana_fields
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
KINDS: tuple[str, ...] = ("500", "502", "503", "504", "429", "drop", "drop_after_create", "slow_after_create")
KINDS += ("500_after_create", "504_after_create", "malformed_after_create", "fields_missing")
# Route names for `inject(route=...)`: what a request does, coarsely.
ROUTES = ("create", "list", "get", "instantiate", "job", "task_create", "task_list", "update", "membership")
# Endpoints that commit before answering: `*_after_create` faults let them take effect, then spoil the answer.
CREATES = {"project_create", "instantiate", "task_create", "membership_create"}
COUNTERS = {"project_create": "create_requests", "instantiate": "instantiate_requests"}
COUNTERS |= {"task_create": "task_create_requests"}
TEAM_REQUIRED = "team: Missing input. A team is required to create a project in an organization."
TOO_LARGE = "The result is too large. You should use pagination (may require specifying a workspace)!"
TASK_FILTER = "Must specify exactly one of project, tag, section, user task list, or assignee + workspace"
MALFORMED = b'{"data": {"gid": '
MARKER = re.compile(r"\[syncd:[^\]]+\]")
HUES = ("pink", "green", "blue", "red", "teal", "brown", "orange", "purple", "warm-gray")
COLORS = {f"{shade}-{hue}" for shade in ("dark", "light") for hue in HUES} | {"none"}
PRIVACY = {"public_to_workspace", "private_to_team", "private"}
ACCESS_LEVELS = ("admin", "editor", "commenter")  # what createMembership accepts for projects
OPT_IN = ("html_notes", "project_brief", "created_from_template")  # only returned when asked for
COMPACT = {"task": ("gid", "resource_type", "name", "resource_subtype")}  # others: gid, resource_type, name
ALWAYS = ("gid", "resource_type")
DATE_VARIABLES = {  # the spec: date variable `1` is the project's start date, `2` its due date
    "1": ("Start Date", "Choose a start date for your project."),
    "2": ("Due Date", "Choose a due date for your project."),
}
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


def _route(method: str, path: str) -> tuple[str | None, str | None, dict[str, str]]:
    """Map a request to (route for faults, endpoint, ids taken from the path); (None, None, {}) if unknown."""
    path = path.removeprefix(API_PREFIX).rstrip("/")
    table: dict[str, tuple[str, str]] = {}
    ids: dict[str, str] = {}
    if path == "/projects":
        table = {"POST": ("create", "project_create"), "GET": ("list", "project_list")}
    elif m := re.fullmatch(r"/(team|workspace)s/([^/]+)/projects", path):
        table, ids = {"POST": ("create", "project_create"), "GET": ("list", "project_list")}, {m[1]: m[2]}
    elif m := re.fullmatch(r"/projects/([^/]+)", path):
        table, ids = {"GET": ("get", "project_get"), "PUT": ("update", "project_update")}, {"project": m[1]}
    elif m := re.fullmatch(r"/projects/([^/]+)/tasks", path):
        table, ids = {"GET": ("task_list", "task_list")}, {"project": m[1]}
    elif path == "/project_templates":
        table = {"GET": ("list", "template_list")}
    elif m := re.fullmatch(r"/teams/([^/]+)/project_templates", path):
        table, ids = {"GET": ("list", "template_list")}, {"team": m[1]}
    elif m := re.fullmatch(r"/project_templates/([^/]+)", path):
        table, ids = {"GET": ("get", "template_get")}, {"project_template": m[1]}
    elif m := re.fullmatch(r"/project_templates/([^/]+)/instantiateProject", path):
        table, ids = {"POST": ("instantiate", "instantiate")}, {"project_template": m[1]}
    elif m := re.fullmatch(r"/jobs/([^/]+)", path):
        table, ids = {"GET": ("job", "job_get")}, {"job": m[1]}
    elif path == "/tasks":
        table = {"POST": ("task_create", "task_create"), "GET": ("task_list", "task_list")}
    elif m := re.fullmatch(r"/tasks/([^/]+)", path):  # `external:<gid>` may come percent-encoded
        table, ids = {"GET": ("get", "task_get"), "PUT": ("update", "task_update")}, {"task": unquote(m[1])}
    elif m := re.fullmatch(r"/custom_fields/([^/]+)", path):
        table, ids = {"GET": ("get", "custom_field_get")}, {"custom_field": m[1]}
    elif path == "/memberships":
        table = {"POST": ("membership", "membership_create"), "GET": ("membership", "membership_list")}
    elif m := re.fullmatch(r"/(user|workspace|team)s/([^/]+)", path):
        table, ids = {"GET": ("get", "object_get")}, {m[1]: m[2]}
    if method not in table:
        return None, None, {}
    return *table[method], ids


def _fields(request: Request) -> list[str] | None:
    raw = request.query.get("opt_fields")
    return None if raw is None else [f.split(".")[0] for f in raw.split(",") if f]


def _read_data(request: Request) -> dict[str, Any] | Response:
    """The `data` object of a request body, or the 400 Asana answers when there is none."""
    try:
        body = request.json()
    except ValueError:
        return _error(400, "Could not parse request data, invalid JSON")
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict):
        return _error(400, "data: Missing input")
    return data


def _notes(notes: Any, html_notes: Any) -> tuple[str, str]:
    """Asana keeps `notes` and `html_notes` in step: either one sets the other."""
    if notes is None:
        notes = html.unescape(re.sub(r"<[^>]+>", "", html_notes or ""))
    if html_notes is None:
        html_notes = f"<body>{html.escape(notes)}</body>"
    return notes, html_notes


def _check_dates(data: dict[str, Any]) -> Response | None:
    for name in ("due_on", "start_on"):
        if (value := data.get(name)) is not None and not asana_fields.is_date(value):
            return _error(400, f"{name}: Invalid date: {value}")
    if data.get("start_on") and not data.get("due_on"):
        return _error(400, "start_on: due_on or due_at must be present when setting start_on")
    if data.get("start_on") and data.get("start_on") == data.get("due_on"):
        return _error(400, "start_on: start_on and due_on cannot be the same date")
    return None


def _check_project(data: dict[str, Any]) -> Response | None:
    """What createProject and updateProject both validate."""
    if (color := data.get("color")) is not None and color not in COLORS:
        return _error(400, f"color: Invalid value: {color}")
    privacy = data.get("privacy_setting", "public_to_workspace")
    if privacy not in PRIVACY:
        return _error(400, f"privacy_setting: Invalid value: {privacy}")
    if (error := _check_dates(data)) is not None:
        return error
    if not isinstance(data.get("custom_fields") or {}, dict):
        return _error(400, "custom_fields: Value is not an object")
    return None


def _compact(obj: dict[str, Any]) -> dict[str, Any]:
    return {"gid": obj["gid"], "resource_type": obj["resource_type"], "name": obj.get("name")}


class FakeAsana(FakeServer):
    FAULT_KINDS = KINDS
    FAULT_ROUTES = ROUTES
    service = "asana"

    def __init__(
        self,
        token: str = "sandbox-asana-token",
        *,
        workspace: str = "1200000000000001",
        team: str = "1200000000000002",
        seed: int = 0,
    ) -> None:
        super().__init__(seed)
        self.fault_kinds = [k for k in KINDS if k != "fields_missing"]  # only injected on purpose
        self.token, self.workspace, self.team = token, workspace, team
        self.projects: list[dict[str, Any]] = []
        self.tasks: list[dict[str, Any]] = []
        self.templates: dict[str, dict[str, Any]] = {}
        self.custom_fields: dict[str, dict[str, Any]] = {}  # definitions, by gid (`add_custom_field`)
        self.jobs: dict[str, dict[str, Any]] = {}
        self.memberships: list[dict[str, Any]] = []
        self.list_lag = 0.0
        self.rate_per_minute: int | None = None
        self.offset_ttl = 600.0  # pagination tokens expire (documented; the lifetime is our guess)
        self.strict_status = 422  # is_strict without a date: "Unprocessable Entity" (guess: no code given)
        self.failed_jobs_keep_project = True  # a failed instantiation leaves its project half-made (guess)
        self.unique_external_gids = True  # a second task with the same external.gid is a 400 (guess)
        self.ignore_external = False  # True: like a personal access token, `external` is silently dropped
        self.external_lookup_status: int | None = None  # e.g. 400/403: `GET /tasks/external:...` is refused
        self.duplicate_memberships = "return_existing"  # or "reject": 400 (guess)
        self.announcements: list[tuple[str | None, str]] = []  # (route or None: every route, Asana-Change value)
        self.create_requests = self.rate_limited = self.early_requests = 0
        self.instantiate_requests = self.task_create_requests = 0
        self._phrases = random.Random(seed + 1)
        self._next_gid = 1210000000000001
        self._born: dict[str, float] = {}
        self._by_gid: dict[str, dict[str, Any]] = {}
        self._tasks_by_gid: dict[str, dict[str, Any]] = {}
        self._windows: dict[str, deque[float]] = {}
        self._not_before: dict[str, float] = {}
        self._told_at: dict[str, float] = {}  # when the 429 that set `_not_before[key]` was answered
        self.early_log: list[tuple[float, float]] = []  # (early request received at, its 429 answered at)
        self._workspace = {"gid": workspace, "resource_type": "workspace", "name": "Sandbox Org"}
        self._team = {"gid": team, "resource_type": "team", "name": "Sandbox Team"}
        self.teams: dict[str, dict[str, Any]] = {team: self._team}  # `add_team` for more teams in the workspace
        self._user = {"gid": "1200000000000003", "resource_type": "user", "name": "Sandbox User"}
        self._email = "sandbox@example.com"

    # -- knobs and inspection ----------------------------------------------------------------------
    def archive(self, gid: str) -> None:
        with self.lock:
            project = self._by_gid[gid]
            project["archived"], project["modified_at"] = True, _iso(self.now())

    def announce(self, change: str, *, route: str | None = None) -> None:
        """Announce an ongoing API change: `change` (`name=...;info=<url>[;affected=true]`) goes out as an
        `Asana-Change` header on every answer of `route` (default: every route). The deprecations page: "the
        API will begin sending Asana-Change headers in the responses ... This header may be present multiple
        times in the response if there are multiple ongoing changes"
        (https://developers.asana.com/docs/deprecations). Several are joined with ", ", which means the same
        as repeated headers (RFC 9110 section 5.3)."""
        if route is not None and route not in ROUTES:
            raise ValueError(f"unknown route {route!r}; one of {', '.join(ROUTES)}")
        with self.lock:
            self.announcements.append((route, change))

    def add_team(self, gid: str, name: str = "Another Team") -> None:
        """Another team in the sandbox workspace: projects are created in and listed by their own team."""
        with self.lock:
            self.teams[gid] = {"gid": gid, "resource_type": "team", "name": name}

    def add_project(self, **data: Any) -> dict[str, Any]:
        """Create a project directly, as if someone had made it in the Asana UI (no request counted)."""
        with self.lock:
            project = self._new_project({"workspace": self.workspace, "team": self.team, **data})
        if isinstance(project, Response):
            raise ValueError(project.body["errors"][0]["message"])
        return project

    def add_task(self, **data: Any) -> dict[str, Any]:
        """Create a task directly, as if someone had made it in the Asana UI (no request counted)."""
        with self.lock:
            task = self._new_task({"workspace": self.workspace, **data})
        if isinstance(task, Response):
            raise ValueError(task.body["errors"][0]["message"])
        return task

    def add_template(
        self,
        name: str,
        *,
        requested_dates: tuple[str | tuple[str, str], ...] = ("1", "2"),
        roles: tuple[str, ...] = (),
        fails: bool = False,
        duration: float = 0.0,
        tasks: tuple[str | dict[str, Any], ...] = (),
        description: str = "",
        color: str | None = None,
    ) -> str:
        """Add a project template to the sandbox team and return its gid.

        `requested_dates` are the template's date variables ("1" start, "2" due; a `(gid, name)` pair for one
        of the template's own, e.g. ("3", "Kickoff")), served by `GET /project_templates/{gid}` as
        `{gid, name, description}` (DateVariableCompact); `roles` names its template
        roles; `tasks` are copied into each instantiated project (a name, or a dict with `name`, `notes` and
        `role`: the task goes to whoever is given that role). An instantiation job runs `duration` seconds of
        fake time, then succeeds, or fails if `fails`. `description` becomes the new project's notes.
        """
        if color is not None and color not in COLORS:
            raise ValueError(f"color: Invalid value: {color}")
        with self.lock:
            gid = self._gid()
            # fmt: off
            self.templates[gid] = {
                "gid": gid, "resource_type": "project_template", "name": name, "description": description,
                "html_description": _notes(description, None)[1], "public": False, "owner": self._user,
                "team": self._team, "color": color,
                "requested_dates": [
                    {"gid": g, "name": n or DATE_VARIABLES.get(g, (f"Date {g}", ""))[0],
                     "description": DATE_VARIABLES.get(g, ("", "Choose a date."))[1]}
                    for g, n in ((d, None) if isinstance(d, str) else d for d in requested_dates)
                ],
                "requested_roles": [{"gid": self._gid(), "resource_type": "template_role", "name": r} for r in roles],
                "_fails": fails, "_duration": float(duration),
                "_tasks": [{"name": t} if isinstance(t, str) else dict(t) for t in tasks],
            }
            # fmt: on
            return gid

    def add_custom_field(
        self, name: str, subtype: str = "enum", *, options: tuple[str, ...] = (), disabled: tuple[str, ...] = ()
    ) -> str:
        """Add a custom field to the workspace and return its gid. `options` are an enum or multi_enum field's
        option names; those in `disabled` exist but are no longer selectable (Asana never deletes an option)."""
        if subtype not in asana_fields.SUBTYPES:
            raise ValueError(f"resource_subtype: Invalid value: {subtype}")
        with self.lock:
            gid = self._gid()
            # fmt: off
            choices = [
                {"gid": self._gid(), "resource_type": "enum_option", "name": option,
                 "enabled": option not in disabled, "color": "none"}
                for option in options
            ]
            # fmt: on
            self.custom_fields[gid] = asana_fields.definition(gid, name, subtype, choices)
            return gid

    def option_gid(self, field_gid: str, name: str) -> str:
        """The gid of the option called `name` of custom field `field_gid`."""
        with self.lock:
            return next(o["gid"] for o in self.custom_fields[field_gid]["enum_options"] if o["name"] == name)

    def custom_value(self, project: dict[str, Any], field_gid: str) -> Any:
        """What a project's custom field holds: an option name, a list of them, a number, a date or a text."""
        with self.lock:
            value = next((v for v in project["custom_fields"] if v["gid"] == field_gid), None)
        if value is None:
            return None
        for key, read in (("enum_value", lambda o: o["name"]), ("date_value", lambda d: d["date"])):
            if key in value:
                return read(value[key])
        if "multi_enum_values" in value:
            return [o["name"] for o in value["multi_enum_values"]]
        if "people_value" in value:
            return [u["gid"] for u in value["people_value"]]
        return value.get("number_value", value.get("text_value"))

    def projects_with_marker(self, text: str) -> list[dict[str, Any]]:
        with self.lock:
            self._settle(self.now())
            return [p for p in self.projects if text in (p["notes"] or "")]

    def tasks_with_marker(self, text: str) -> list[dict[str, Any]]:
        """Tasks whose notes, or external gid, contain `text`."""
        with self.lock:
            self._settle(self.now())
            return [t for t in self.tasks if text in (t["notes"] or "") or text in self._external_gid(t)]

    def duplicates(self) -> dict[str, int]:
        """Markers found on more than one project, and (keys prefixed `task:`) on more than one task.

        A task counts under each `[syncd:…]` marker in its notes and under `task:external:<gid>`.
        """
        with self.lock:
            self._settle(self.now())
            counts: dict[str, int] = {}
            for project in self.projects:
                for marker in set(MARKER.findall(project["notes"] or "")):
                    counts[marker] = counts.get(marker, 0) + 1
            for task in self.tasks:
                keys = {f"task:{marker}" for marker in MARKER.findall(task["notes"] or "")}
                if external := self._external_gid(task):
                    keys.add(f"task:external:{external}")
                for key in keys:
                    counts[key] = counts.get(key, 0) + 1
            return {marker: n for marker, n in counts.items() if n > 1}

    # -- request handling --------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        with self.lock:
            key, now = request.bearer or "", self.now()
            if request.received_at + self.clock_offset < self._not_before.get(key, 0.0):
                self.early_requests += 1
                self.early_log.append((request.received_at + self.clock_offset, self._told_at[key]))
            route, endpoint, ids = _route(request.method, request.path)
            if counter := COUNTERS.get(endpoint or ""):
                setattr(self, counter, getattr(self, counter) + 1)
            if request.bearer != self.token:
                return _error(401, "Not Authorized")
            if (limited := self._rate_limit(key, now)) is not None:
                return limited
            if route is None or endpoint is None:
                return _error(404, f"No matching route for request: {request.method} {request.path}")
            self._settle(now)
            # `*_after_create` faults let a create take effect, then spoil the answer; elsewhere they act
            # like their plain kind (`slow_after_create` still answers correctly, only late).
            fault = self._next_fault(route)
            late = fault and (
                fault[0] in ("slow_after_create", "fields_missing") or (endpoint in CREATES and "_after" in fault[0])
            )
            if fault and not late:
                return self._fault_response(fault, key, now, 200)
            response: Response = getattr(self, f"_{endpoint}")(ids, request, now)
            if fault and response.status < 300:
                if fault[0] == "slow_after_create":
                    response.delay = float(fault[1].get("delay", 2.0))
                elif fault[0] == "fields_missing":
                    self._leave_out_fields(response, _fields(request), fault[1])
                else:
                    response = self._fault_response(fault, key, now, response.status)
            announced = [change for where, change in self.announcements if where in (None, route)]
            if announced and not response.drop:
                own = response.headers.get("Asana-Change")
                response.headers["Asana-Change"] = ", ".join([own, *announced] if own else announced)
            return response

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
            if now + float(retry_after) > self._not_before.get(key, 0.0):
                self._not_before[key], self._told_at[key] = now + float(retry_after), now
        return response

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

    @staticmethod
    def _leave_out_fields(response: Response, asked: list[str] | None, params: dict[str, Any]) -> None:
        """The `fields_missing` fault: the answer's records lack some of the fields the request asked for."""
        names = params.get("fields")
        if names is None:
            names = asked if asked is not None else ("name", "resource_subtype")
        drop = set([names] if isinstance(names, str) else names) - set(ALWAYS)
        gids = params.get("gids")
        data = response.body.get("data") if isinstance(response.body, dict) else None
        for record in data if isinstance(data, list) else [data] if isinstance(data, dict) else []:
            if gids is None or record.get("gid") in gids:
                for name in drop:
                    record.pop(name, None)

    # -- shared machinery --------------------------------------------------------------------------
    def _gid(self) -> str:
        gid, self._next_gid = str(self._next_gid), self._next_gid + 1
        return gid

    def _render(self, obj: dict[str, Any], fields: list[str] | None, full: bool = False) -> dict:
        """opt_fields lists the exact fields to return; gid and resource_type always come along.

        Keys starting with `_` are the fake's bookkeeping and never leave it; a task's `external` is only
        returned when it is set or asked for, as documented.
        """
        if fields is None:
            if full:
                keys = [k for k in obj if k not in OPT_IN and not k.startswith("_")]
                keys = [k for k in keys if not (k == "external" and obj[k] is None)]
            else:
                keys = [k for k in COMPACT.get(obj["resource_type"], (*ALWAYS, "name")) if k in obj]
        else:
            keys = [*ALWAYS, *(f for f in fields if f in obj and not f.startswith("_"))]
        return {k: obj[k] for k in dict.fromkeys(keys)}

    def _paginate(
        self,
        request: Request,
        matching: list[dict[str, Any]],
        where: list[Any],
        now: float,
        headers: dict[str, str] | None = None,
        full: bool = False,
    ) -> Response:
        """Asana's offset pagination over `matching` (in gid order); `where` tells queries apart."""
        query, headers = request.query, headers or {}
        fields, limit = _fields(request), query.get("limit")
        signature = zlib.crc32(json.dumps([request.path.removeprefix(API_PREFIX), *where]).encode())
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
        if limit is None:  # not paginated: every match, and no next_page at all
            if len(matching) - start > 1000:
                return _error(400, TOO_LARGE)
            return Response(200, {"data": [self._render(p, fields, full) for p in matching[start:]]}, headers)
        if not (re.fullmatch(r"\d{1,3}", limit) and 1 <= int(limit) <= 100):
            return _error(400, f"limit: Value {limit} is not in the range [1, 100]")
        page = matching[start : start + int(limit)]
        body: dict[str, Any] = {"data": [self._render(p, fields, full) for p in page], "next_page": None}
        if start + len(page) < len(matching):
            token = {"after": page[-1]["gid"], "q": signature, "t": now}
            offset = base64.urlsafe_b64encode(json.dumps(token).encode()).decode().rstrip("=")
            path = request.path.removeprefix(API_PREFIX) + "?"
            path += urlencode({**query, "offset": offset}, safe=",")
            base = self.url + (API_PREFIX if request.path.startswith(API_PREFIX) else "")
            body["next_page"] = {"offset": offset, "path": path, "uri": base + path}
        return Response(200, body, headers)

    def _visible(self, items: list[dict[str, Any]], now: float) -> list[dict[str, Any]]:
        """What a listing shows: objects created more than `list_lag` seconds ago."""
        horizon = now - self.list_lag
        return [item for item in items if self._born[item["gid"]] <= horizon]

    def _resolve_user(self, value: Any) -> dict[str, Any] | None:
        """A user given as "me", a gid or an email; unknown gids become bare compact users."""
        if value is None:
            return None
        if value in ("me", self._user["gid"], self._email):
            return self._user
        return {"gid": str(value), "resource_type": "user", "name": None}

    # -- projects ----------------------------------------------------------------------------------
    def _object_get(self, ids: dict[str, str], request: Request, now: float) -> Response:
        """GET /users/me, /workspaces/{gid}, /teams/{gid}: what a client checks its configuration with."""
        ((kind, gid),) = ids.items()
        if kind == "user" and gid in ("me", self._user["gid"]):
            return Response(200, {"data": {**self._user, "email": self._email, "workspaces": [self._workspace]}})
        if kind == "workspace" and gid == self.workspace:
            return Response(200, {"data": {**self._workspace, "is_organization": True}})
        if kind == "team" and gid in self.teams:
            return Response(200, {"data": {**self.teams[gid], "organization": self._workspace}})
        return _error(404, f"{kind}: Unknown object: {gid}")

    def _project_create(self, ids: dict[str, str], request: Request, now: float) -> Response:
        data = _read_data(request)
        if isinstance(data, Response):
            return data
        given, data = data, {**data, **ids}
        if "team" in ids and not data.get("workspace"):
            data["workspace"] = self.workspace  # a team belongs to exactly one workspace
        result = self._new_project(data)
        if isinstance(result, Response):
            return result
        deprecated = "team" in given or data.get("privacy_setting") == "private_to_team"
        headers = {"Asana-Change": CHANGE} if deprecated else {}
        return Response(201, {"data": self._render(result, _fields(request), True)}, headers)

    def _new_project(self, data: dict[str, Any]) -> dict[str, Any] | Response:
        if not data.get("workspace"):
            return _error(400, "workspace: Missing input")
        if data["workspace"] != self.workspace:
            return _error(404, f"workspace: Unknown object: {data['workspace']}")
        if not data.get("team"):
            return _error(400, TEAM_REQUIRED)
        if data["team"] not in self.teams:
            return _error(404, f"team: Unknown object: {data['team']}")
        if (error := _check_project(data)) is not None:
            return error
        custom = self._custom_values([], data.get("custom_fields") or {})
        if isinstance(custom, Response):
            return custom
        privacy = data.get("privacy_setting", "public_to_workspace")
        notes, html_notes = _notes(data.get("notes"), data.get("html_notes"))
        now = self.now()
        gid = self._gid()
        # fmt: off
        project = {
            "gid": gid, "resource_type": "project", "name": data.get("name", ""), "notes": notes,
            "html_notes": html_notes, "archived": False, "created_at": _iso(now), "modified_at": _iso(now),
            "permalink_url": f"https://app.asana.com/1/{self.workspace}/project/{gid}",
            "workspace": self._workspace, "team": self.teams[data["team"]], "color": data.get("color"), "icon": "list",
            "due_on": data.get("due_on"), "due_date": data.get("due_on"), "start_on": data.get("start_on"),
            "privacy_setting": privacy, "public": privacy == "public_to_workspace",
            "owner": self._resolve_user(data.get("owner", "me")),
            "custom_fields": custom, "custom_field_settings": [],
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

    def _custom_values(self, current: list[dict[str, Any]], given: dict[str, Any]) -> list[dict[str, Any]] | Response:
        """The project's custom field values with `given` set, or Asana's error for the first bad one: a field
        the workspace does not have (404) or a value of the wrong kind, e.g. an option's label (400)."""
        values = {v["gid"]: v for v in current}
        for gid, value in given.items():
            field = self.custom_fields.get(str(gid))
            if field is None:
                return _error(404, f"custom_field: Unknown object: {gid}")
            stored = asana_fields.value_of(field, value)
            if isinstance(stored, str):
                return _error(400, stored)
            values[str(gid)] = stored
        return list(values.values())

    def _custom_field_get(self, ids: dict[str, str], request: Request, now: float) -> Response:
        """GET /custom_fields/{gid}: the definition, with its enum options (enabled or not)."""
        field = self.custom_fields.get(ids["custom_field"])
        if field is None:
            return _error(404, f"custom_field: Unknown object: {ids['custom_field']}")
        return Response(200, {"data": self._render(field, _fields(request), True)})

    def _project_get(self, ids: dict[str, str], request: Request, now: float) -> Response:
        project = self._by_gid.get(ids["project"])
        if project is None:
            return _error(404, f"project: Unknown object: {ids['project']}")
        return Response(200, {"data": self._render(project, _fields(request), True)})

    def _project_update(self, ids: dict[str, str], request: Request, now: float) -> Response:
        """PUT /projects/{gid}: only the fields given change; returns the complete updated project."""
        project = self._by_gid.get(ids["project"])
        if project is None:
            return _error(404, f"project: Unknown object: {ids['project']}")
        data = _read_data(request)
        if isinstance(data, Response):
            return data
        # Dates are checked together only when the request changes one of them: a project whose template gave
        # it equal start and due dates can still be renamed.
        fields = ("color", "privacy_setting", "due_on", "start_on") if {"due_on", "start_on"} & data.keys() else ()
        current = {k: project[k] for k in fields}
        if (error := _check_project({**current, **data})) is not None:
            return error
        custom = self._custom_values(project["custom_fields"], data.get("custom_fields") or {})
        if isinstance(custom, Response):
            return custom
        if "archived" in data and not isinstance(data["archived"], bool):
            return _error(400, f"archived: Value is not a boolean: {data['archived']}")
        if data.get("team") is not None and data["team"] not in self.teams:
            return _error(404, f"team: Unknown object: {data['team']}")
        if "notes" in data or "html_notes" in data:
            project["notes"], project["html_notes"] = _notes(data.get("notes"), data.get("html_notes"))
        for name in ("name", "color", "due_on", "start_on", "archived", "default_view"):
            if name in data:
                project[name] = data[name]
        project["due_date"] = project["due_on"]
        if "privacy_setting" in data:
            project["privacy_setting"] = data["privacy_setting"]
            project["public"] = data["privacy_setting"] == "public_to_workspace"
        if "owner" in data:
            project["owner"] = self._resolve_user(data["owner"])
        project["custom_fields"] = custom
        project["modified_at"] = _iso(now)
        deprecated = "team" in data or data.get("privacy_setting") == "private_to_team"
        headers = {"Asana-Change": CHANGE} if deprecated else {}
        return Response(200, {"data": self._render(project, _fields(request), True)}, headers)

    def _project_list(self, ids: dict[str, str], request: Request, now: float) -> Response:
        query = request.query
        workspace, team = ids.get("workspace", query.get("workspace")), ids.get("team", query.get("team"))
        if workspace is not None and workspace != self.workspace:
            return _error(404, f"workspace: Unknown object: {workspace}")
        if team is not None and team not in self.teams:
            return _error(404, f"team: Unknown object: {team}")
        archived = query.get("archived")
        if archived not in (None, "true", "false"):
            return _error(400, f"archived: Value is not a boolean: {archived}")
        matching = self._visible(self.projects, now)
        if team is not None:
            matching = [p for p in matching if p["team"]["gid"] == team]
        if archived is not None:
            matching = [p for p in matching if p["archived"] == (archived == "true")]
        headers = {"Asana-Change": CHANGE} if "team" in query else {}  # the team filter is deprecated
        return self._paginate(request, matching, [workspace, team, archived], now, headers)

    def _remove_project(self, project: dict[str, Any]) -> None:
        """Take a project away, with the tasks that were only in it and its memberships."""
        gid = project["gid"]
        self.projects.remove(project)
        del self._by_gid[gid]
        for task in list(self.tasks):
            if [p["gid"] for p in task["projects"]] == [gid]:
                self.tasks.remove(task)
                del self._tasks_by_gid[task["gid"]]
        self.memberships = [m for m in self.memberships if m["parent"]["gid"] != gid]

    # -- project templates and jobs ----------------------------------------------------------------
    def _template_get(self, ids: dict[str, str], request: Request, now: float) -> Response:
        template = self.templates.get(ids["project_template"])
        if template is None:
            return _error(404, f"project_template: Unknown object: {ids['project_template']}")
        return Response(200, {"data": self._render(template, _fields(request), True)})

    def _template_list(self, ids: dict[str, str], request: Request, now: float) -> Response:
        """GET /project_templates?workspace=|team=, GET /teams/{gid}/project_templates (no listing lag)."""
        query = request.query
        workspace, team = query.get("workspace"), ids.get("team", query.get("team"))
        if workspace is None and team is None:
            return _error(400, "workspace: Missing input")  # (guess) the spec asks for a team or workspace
        if workspace is not None and workspace != self.workspace:
            return _error(404, f"workspace: Unknown object: {workspace}")
        if team is not None and team != self.team:
            return _error(404, f"team: Unknown object: {team}")
        return self._paginate(request, list(self.templates.values()), [workspace, team], now)

    def _instantiate(self, ids: dict[str, str], request: Request, now: float) -> Response:
        """POST /project_templates/{gid}/instantiateProject: 201 with a job; the project exists at once.

        The body cannot set the project's notes: they come from the template's description (any `notes` in
        the body is ignored). Half the template's tasks are copied when the job starts, the rest when it
        succeeds; a failed job stops there (or, with `failed_jobs_keep_project = False`, takes its project
        away again).
        """
        template = self.templates.get(ids["project_template"])
        if template is None:
            return _error(404, f"project_template: Unknown object: {ids['project_template']}")
        data = _read_data(request)
        if isinstance(data, Response):
            return data
        if not data.get("name") or not isinstance(data["name"], str):
            return _error(400, "name: Missing input")
        team = data.get("team") or template["team"]["gid"]
        if team not in self.teams:
            return _error(404, f"team: Unknown object: {team}")
        privacy = data.get("privacy_setting", "public_to_workspace")
        if privacy not in PRIVACY:
            return _error(400, f"privacy_setting: Invalid value: {privacy}")
        strict = data.get("is_strict", False)
        if not isinstance(strict, bool):
            return _error(400, f"is_strict: Value is not a boolean: {strict}")
        dates = self._requested_dates(template, data.get("requested_dates"), strict, now)
        if isinstance(dates, Response):
            return dates
        roles = self._requested_roles(template, data.get("requested_roles"))
        if isinstance(roles, Response):
            return roles
        project = self._new_project(
            {"workspace": self.workspace, "team": team, "name": data["name"], "privacy_setting": privacy,
             "notes": template["description"], "html_notes": template["html_description"],
             "color": template["color"]}
        )  # fmt: skip
        assert not isinstance(project, Response)
        project["start_on"], project["due_on"] = dates.get("1"), dates.get("2")
        project["due_date"] = project["due_on"]
        project["created_from_template"] = _compact(template)
        tasks = [{**spec, "assignee": roles.get(spec.get("role", ""))} for spec in template["_tasks"]]
        half = len(tasks) // 2
        for spec in tasks[:half]:
            self._copy_task(project, spec)
        gid = self._gid()
        # fmt: off
        self.jobs[gid] = {
            "gid": gid, "resource_type": "job", "resource_subtype": "instantiate_project",
            "status": "in_progress", "new_project": _compact(project), "new_task": None,
            "new_project_template": None,
            "_ends": now + template["_duration"], "_fails": template["_fails"], "_pending": tasks[half:],
        }
        # fmt: on
        self._settle(now)
        headers = {"Asana-Change": CHANGE} if privacy == "private_to_team" else {}
        return Response(201, {"data": self._render(self.jobs[gid], _fields(request), True)}, headers)

    def _requested_dates(
        self, template: dict[str, Any], given: Any, strict: bool, now: float
    ) -> dict[str, str] | Response:
        """Date variables' values; unfulfilled ones default to today, or are an error when strict."""
        if given is None:
            given = []
        if not isinstance(given, list):
            return _error(400, "requested_dates: Value is not an array")
        known = {d["gid"]: d for d in template["requested_dates"]}
        values: dict[str, str] = {}
        for item in given:
            gid = item.get("gid") if isinstance(item, dict) else None
            if gid is None or gid not in known:
                return _error(400, f"requested_dates: Unknown date variable: {gid}")
            value = item.get("value")
            if value is not None and not asana_fields.is_date(value):
                return _error(400, f"requested_dates: Invalid date: {value}")
            if value is not None:
                values[gid] = value
        missing = [gid for gid in known if gid not in values]
        if missing and strict:
            name = known[missing[0]]["name"]
            return _error(self.strict_status, f"requested_dates: No value given for date variable {name}")
        today = datetime.fromtimestamp(now, UTC).date().isoformat()
        return {**dict.fromkeys(missing, today), **values}

    def _requested_roles(self, template: dict[str, Any], given: Any) -> dict[str, str] | Response:
        """{role name: user gid} from `requested_roles`."""
        if given is None:
            given = []
        if not isinstance(given, list):
            return _error(400, "requested_roles: Value is not an array")
        known = {r["gid"]: r["name"] for r in template["requested_roles"]}
        roles: dict[str, str] = {}
        for item in given:
            gid = item.get("gid") if isinstance(item, dict) else None
            if gid not in known:
                return _error(400, f"requested_roles: Unknown template role: {gid}")
            value = item.get("value")
            if value not in ("me", self._user["gid"], self._email):
                return _error(404, f"user: Unknown object: {value}")
            roles[known[gid]] = self._user["gid"]
        return roles

    def _copy_task(self, project: dict[str, Any], spec: dict[str, Any]) -> None:
        data = {"name": spec.get("name", ""), "notes": spec.get("notes", ""), "projects": [project["gid"]]}
        task = self._new_task({**data, "assignee": spec.get("assignee")})
        assert not isinstance(task, Response)

    def _settle(self, now: float) -> None:
        """Finish the jobs whose time has come: succeeded (rest of the tasks copied) or failed."""
        for job in self.jobs.values():
            if job["status"] != "in_progress" or now < job["_ends"]:
                continue
            project = self._by_gid.get(job["new_project"]["gid"])
            if job["_fails"]:
                job["status"] = "failed"
                if project is not None and not self.failed_jobs_keep_project:
                    self._remove_project(project)
            else:
                job["status"] = "succeeded"
                if project is not None:
                    for spec in job["_pending"]:
                        self._copy_task(project, spec)
            job["_pending"] = []

    def _job_get(self, ids: dict[str, str], request: Request, now: float) -> Response:
        job = self.jobs.get(ids["job"])
        if job is None:
            return _error(404, f"job: Unknown object: {ids['job']}")
        return Response(200, {"data": self._render(job, _fields(request), True)})

    # -- tasks -------------------------------------------------------------------------------------
    @staticmethod
    def _external_gid(task: dict[str, Any]) -> str:
        return str((task.get("external") or {}).get("gid") or "")

    def _find_task(self, gid: str) -> dict[str, Any] | None:
        """By gid, or by `external:<external gid>` (the oldest such task, if several share it)."""
        if gid.startswith("external:"):
            external = gid.removeprefix("external:")
            return next((t for t in self.tasks if external and self._external_gid(t) == external), None)
        return self._tasks_by_gid.get(gid)

    def _check_external(self, value: Any, task: dict[str, Any] | None = None) -> Response | None:
        if value is None:
            return None
        if not isinstance(value, dict) or not set(value) <= {"gid", "data"}:
            return _error(400, "external: Value is not an object with gid and data")
        gid, blob = value.get("gid"), value.get("data")
        if gid is not None and not (isinstance(gid, str) and len(gid) <= 1024):
            return _error(400, "external.gid: Value is not a string of at most 1024 characters")
        if blob is not None and not (isinstance(blob, str) and len(blob) <= 32768):
            return _error(400, "external.data: Value is not a string of at most 32768 characters")
        if gid and self.unique_external_gids:
            for other in self.tasks:
                if other is not task and self._external_gid(other) == gid:
                    # (guess) undocumented; our wording
                    return _error(400, f"external.gid: {gid} is already used by another task: {other['gid']}")
        return None

    def _new_task(self, data: dict[str, Any]) -> dict[str, Any] | Response:
        projects = data.get("projects") or []
        if isinstance(projects, str):
            projects = [p for p in projects.split(",") if p]
        if not isinstance(projects, list) or not all(isinstance(p, str) for p in projects):
            return _error(400, "projects: Value is not an array of gids")
        for gid in projects:
            if gid not in self._by_gid:
                return _error(404, f"project: Unknown object: {gid}")
        workspace = data.get("workspace")
        if not workspace and not projects:
            return _error(400, "workspace: Missing input")
        if workspace and workspace != self.workspace:
            return _error(404, f"workspace: Unknown object: {workspace}")
        if (error := _check_dates(data)) is not None:
            return error
        if not isinstance(data.get("completed", False), bool):
            return _error(400, f"completed: Value is not a boolean: {data['completed']}")
        if (error := self._check_external(data.get("external"))) is not None:
            return error
        notes, html_notes = _notes(data.get("notes"), data.get("html_notes"))
        now, gid, completed = self.now(), self._gid(), data.get("completed", False)
        external = data.get("external")
        # fmt: off
        task = {
            "gid": gid, "resource_type": "task", "resource_subtype": "default_task", "name": data.get("name", ""),
            "notes": notes, "html_notes": html_notes, "completed": completed,
            "completed_at": _iso(now) if completed else None, "created_at": _iso(now), "modified_at": _iso(now),
            "due_on": data.get("due_on"), "due_at": None, "start_on": data.get("start_on"),
            "assignee": self._resolve_user(data.get("assignee")),
            "projects": [_compact(self._by_gid[p]) for p in dict.fromkeys(projects)],
            "workspace": self._workspace, "parent": None, "followers": [self._user], "tags": [],
            "permalink_url": f"https://app.asana.com/1/{self.workspace}/task/{gid}",
            "external": None if external is None or self.ignore_external else {"gid": None, "data": None, **external},
        }
        # fmt: on
        self.tasks.append(task)
        self._tasks_by_gid[gid], self._born[gid] = task, now
        return task

    def _task_create(self, ids: dict[str, str], request: Request, now: float) -> Response:
        data = _read_data(request)
        if isinstance(data, Response):
            return data
        task = self._new_task(data)
        if isinstance(task, Response):
            return task
        return Response(201, {"data": self._render(task, _fields(request), True)})

    def _task_get(self, ids: dict[str, str], request: Request, now: float) -> Response:
        if self.external_lookup_status and ids["task"].startswith("external:"):
            # (guess) external data is app-specific and needs OAuth (developers.asana.com/docs/custom-external-data);
            # what a personal access token's lookup answers is not documented
            return _error(self.external_lookup_status, "external: Not available for this authentication")
        task = self._find_task(ids["task"])
        if task is None:
            return _error(404, f"task: Unknown object: {ids['task']}")
        return Response(200, {"data": self._render(task, _fields(request), True)})

    def _task_update(self, ids: dict[str, str], request: Request, now: float) -> Response:
        """PUT /tasks/{gid}: only the fields given change; `projects` and `workspace` are create-only."""
        task = self._find_task(ids["task"])
        if task is None:
            return _error(404, f"task: Unknown object: {ids['task']}")
        data = _read_data(request)
        if isinstance(data, Response):
            return data
        if (error := _check_dates({"due_on": task["due_on"], "start_on": task["start_on"], **data})) is not None:
            return error
        if not isinstance(data.get("completed", False), bool):
            return _error(400, f"completed: Value is not a boolean: {data['completed']}")
        if (error := self._check_external(data.get("external"), task)) is not None:
            return error
        if "notes" in data or "html_notes" in data:
            task["notes"], task["html_notes"] = _notes(data.get("notes"), data.get("html_notes"))
        for name in ("name", "due_on", "start_on"):
            if name in data:
                task[name] = data[name]
        if "assignee" in data:
            task["assignee"] = self._resolve_user(data["assignee"])
        if "external" in data:
            task["external"] = None if data["external"] is None else {**(task["external"] or {}), **data["external"]}
        if "completed" in data and data["completed"] != task["completed"]:
            task["completed"], task["completed_at"] = data["completed"], _iso(now) if data["completed"] else None
        task["modified_at"] = _iso(now)
        return Response(200, {"data": self._render(task, _fields(request), True)})

    def _task_list(self, ids: dict[str, str], request: Request, now: float) -> Response:
        """GET /projects/{gid}/tasks, GET /tasks?project= | ?assignee=&workspace= (compact, paginated)."""
        query = request.query
        project = ids.get("project", query.get("project"))
        assignee, workspace = query.get("assignee"), query.get("workspace")
        if project is not None:
            if project not in self._by_gid:
                return _error(404, f"project: Unknown object: {project}")
            matching = [t for t in self.tasks if project in (p["gid"] for p in t["projects"])]
        elif assignee and workspace:
            if workspace != self.workspace:
                return _error(404, f"workspace: Unknown object: {workspace}")
            user = self._resolve_user(assignee) or {}
            matching = [t for t in self.tasks if (t["assignee"] or {}).get("gid") == user.get("gid")]
        else:
            return _error(400, TASK_FILTER)
        if (since := query.get("completed_since")) is not None:
            if since == "now":
                matching = [t for t in matching if not t["completed"]]
            else:
                try:
                    cutoff = datetime.fromisoformat(since.replace("Z", "+00:00"))
                    if cutoff.tzinfo is None:
                        cutoff = cutoff.replace(tzinfo=UTC)
                except ValueError:
                    return _error(400, f"completed_since: Invalid date-time: {since}")
                matching = [t for t in matching if not t["completed"] or self._completed(t) >= cutoff]
        where = [project, assignee, workspace, since]
        return self._paginate(request, self._visible(matching, now), where, now)

    @staticmethod
    def _completed(task: dict[str, Any]) -> datetime:
        return datetime.fromisoformat(task["completed_at"].replace("Z", "+00:00"))

    # -- memberships -------------------------------------------------------------------------------
    def _membership_create(self, ids: dict[str, str], request: Request, now: float) -> Response:
        """POST /memberships {parent: project, member: team or user, access_level?} → 201 membership."""
        data = _read_data(request)
        if isinstance(data, Response):
            return data
        if not data.get("parent"):
            return _error(400, "parent: Missing input")
        project = self._by_gid.get(data["parent"])
        if project is None:  # goals, portfolios, custom fields: not in this fake
            return _error(404, f"parent: Unknown object: {data['parent']}")
        if not data.get("member"):
            return _error(400, "member: Missing input")
        if data["member"] == self.team:
            member = self._team
        elif data["member"] in ("me", self._user["gid"]):
            member = self._user
        else:
            return _error(404, f"member: Unknown object: {data['member']}")
        given = data.get("access_level", data.get("role"))  # `role` is the deprecated name
        access = given or project["default_access_level"]
        if access not in ACCESS_LEVELS:
            return _error(400, f"access_level: Invalid value: {access}")
        for membership in self.memberships:
            if membership["parent"]["gid"] == project["gid"] and membership["member"]["gid"] == member["gid"]:
                if self.duplicate_memberships == "reject":
                    return _error(400, f"member: {member['gid']} is already a member of {project['gid']}")
                if given:
                    membership["access_level"] = access
                return Response(201, {"data": self._render(membership, _fields(request), True)})
        gid = self._gid()
        membership = {
            "gid": gid, "resource_type": "membership", "resource_subtype": "project_membership",
            "parent": _compact(project), "member": dict(member), "access_level": access,
        }  # fmt: skip
        self.memberships.append(membership)
        self._born[gid] = now
        if member is self._user and self._user not in project["members"]:
            project["members"].append(self._user)
        return Response(201, {"data": self._render(membership, _fields(request), True)})

    def _membership_list(self, ids: dict[str, str], request: Request, now: float) -> Response:
        """GET /memberships?parent=[&member=] or ?member=<team>&resource_subtype=project_membership."""
        query = request.query
        parent, member, subtype = query.get("parent"), query.get("member"), query.get("resource_subtype")
        if parent is None and not (member and subtype):
            return _error(400, "parent: Missing input")
        if subtype not in (None, "project_membership"):
            return _error(400, f"resource_subtype: Invalid value: {subtype}")
        matching = [
            m
            for m in self.memberships
            if (parent is None or m["parent"]["gid"] == parent) and (member is None or m["member"]["gid"] == member)
        ]
        return self._paginate(request, matching, [parent, member, subtype], now, full=True)
