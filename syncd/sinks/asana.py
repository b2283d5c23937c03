"""Asana: create a project (directly or from a template), its tasks, and find projects by the marker syncd
writes into their notes (or, for templates, their name).

Asana has no idempotency key for creating a project, so the marker is how syncd learns what happened to a POST
whose answer it never saw, and whether a project exists before it creates one. `projects_by_marker` is
evidence of absence only because it is complete: it lists every page of the team's projects, archived and
not, every record carries the fields it asked for (a record without `notes` could hide a marker), and any
failure part-way raises instead of returning a partial answer.

`PROFILE` is what Asana's answers mean to the HTTP layer: an error body is `{"errors": [{"message", "help"}]}`.
Its rate limits are a standard 429 with `Retry-After`, which the HTTP layer handles itself.

Deprecations (https://developers.asana.com/docs/deprecations): Asana announces a breaking change with an
`Asana-Change: name=...;info=<url>[;affected=true]` header on its answers, and lets a client choose the old or
the new behaviour per request with `Asana-Enable` / `Asana-Disable` during the deprecation period. The sink
reads the header on every answer it gets, logs each change once per process (name, info URL, and whether
Asana says the request was affected) and keeps them in `changes_seen`.

Which changes syncd opts into: Asana recommends that an integration which handles a change's new behaviour
pass `Asana-Enable` with the change's name, so the default flipping on the activation date changes nothing.
`READY_FOR` lists the changes syncd is ready for, and is sent as `Asana-Enable`. It is empty: the one change
that touches syncd's requests, the deprecated `team` in `POST /projects`' body, is avoided rather than opted
into (projects are created with `POST /teams/{team_gid}/projects`, so no request carries `team`), and Asana
publishes no name for it that a header could carry (the spec only says the `Asana-Change` header "will
indicate an affected deprecation"). `enable` / `disable` pass other names through (an operator's choice,
e.g. to buy time with `Asana-Disable` after an activation date); nothing is sent when both are empty.

Custom fields and templates are read through `schema` (`syncd.sinks.asana_schema`): a flow names enum options
by name and template date variables by name, and the kept definitions turn them into gids before a request is
sent. A value that has no counterpart raises `Unmapped` (a RejectedError) and nothing is sent.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from syncd.errors import AuthError, RateLimited, RejectedError, TransientError
from syncd.http import HttpClient, Reply
from syncd.marker import markers_in
from syncd.models import Project
from syncd.profile import GENERIC, Profile
from syncd.sinks.asana_schema import Schema

if TYPE_CHECKING:
    from syncd.flows import Flow

log = logging.getLogger("syncd.sinks.asana")

LIST_FIELDS = "name,notes,created_at,permalink_url,archived"
READY_FOR: tuple[str, ...] = ()  # Asana changes whose new behaviour syncd handles: sent as Asana-Enable
_WARNED: set[str] = set()  # change names already logged by this process (one warning each)
_WARNED_LOCK = threading.Lock()


@dataclass(frozen=True)
class Change:
    """One `Asana-Change` announcement: the change's name, its info URL, and whether Asana says the request
    that got it is affected (Asana never claims `affected=false`: absent means "may be")."""

    name: str
    info: str | None
    affected: bool


def parse_changes(value: str | None) -> list[Change]:
    """Every change in an `Asana-Change` header value. Repeated headers arrive joined with ", " (RFC 9110);
    an entry starts at `name=`, so a comma inside an info URL does not split it."""
    changes = []
    for entry in re.split(r",\s*(?=name=)", value or ""):
        fields = dict(part.strip().partition("=")[::2] for part in entry.split(";") if "=" in part)
        if name := fields.get("name", "").strip():
            changes.append(Change(name, fields.get("info") or None, fields.get("affected", "").lower() == "true"))
    return changes


def error_text(status: int, body: Any) -> str:
    """Asana's own words: every `errors[].message`."""
    if isinstance(body, dict) and isinstance(body.get("errors"), list) and body["errors"]:
        return "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in body["errors"])
    return GENERIC.error_text(status, body)


PROFILE = Profile(error_text=error_text)


class AsanaSink:
    def __init__(
        self,
        http: HttpClient,
        *,
        workspace: str,
        team: str,
        enable: Iterable[str] = READY_FOR,
        disable: Iterable[str] = (),
        oauth: bool = False,
        timer: Callable[[], float] = time.monotonic,
        schema_ttl: float = 3600.0,
    ) -> None:
        self.http, self.workspace, self.team = http, workspace, team
        self.oauth = oauth  # external ids on tasks: "This field is only available to OAuth applications"
        self.schema = Schema(self._data, timer, ttl=schema_ttl)  # custom fields and templates, kept
        self.changes_seen: dict[str, Change] = {}  # every Asana-Change this sink was told about, by name
        self.enable, self.disable = tuple(dict.fromkeys(enable)), tuple(dict.fromkeys(disable))
        # The client is this sink's own (one session per service): every request carries the choice.
        if self.enable:
            http.session.headers["Asana-Enable"] = ",".join(self.enable)
        if self.disable:
            http.session.headers["Asana-Disable"] = ",".join(self.disable)

    def _call(self, method: str, path: str, **kwargs: Any) -> Reply:
        reply = self.http.call(method, path, **kwargs)
        self._observe(method, path, reply.headers)
        return reply

    def _data(self, path: str, params: dict[str, Any]) -> Any:
        reply = self._call("GET", path, params=params)
        return reply.data.get("data") if isinstance(reply.data, dict) else None

    def _observe(self, method: str, path: str, headers: Mapping[str, str]) -> None:
        """Note every announced change; warn once per change name per process."""
        for change in parse_changes(headers.get("Asana-Change")):
            seen = self.changes_seen.get(change.name)
            if seen is None or (change.affected and not seen.affected):
                self.changes_seen[change.name] = change  # keep the first, or the first that says "affected"
            with _WARNED_LOCK:
                if change.name in _WARNED:
                    continue
                _WARNED.add(change.name)
            log.warning(
                "asana: Asana announces API change %r (%s) on %s %s; read %s, then opt in with Asana-Enable "
                "or out with Asana-Disable if it affects syncd",
                change.name,
                "this request is affected" if change.affected else "this request may be affected",
                method,
                path.split("?")[0],
                change.info or "https://developers.asana.com/docs/deprecations",
            )

    def create_project(self, body: dict[str, Any]) -> Project:
        """POST once, never retried here. An answer that cannot be read means "maybe created".

        The project is created in its team with `POST /teams/{team_gid}/projects` (the team from the frozen
        body, else the configured one); `team` in `POST /projects`' body is deprecated, so it is not sent."""
        team = body.get("team") or self.team
        path = f"/teams/{team}/projects"
        fields = before_post(lambda: self.schema.project_fields({k: v for k, v in body.items() if k != "team"}))
        reply = self._call("POST", path, json={"data": fields}, idempotent=False)
        data = reply.data.get("data") if isinstance(reply.data, dict) else None
        if not isinstance(data, dict) or not isinstance(data.get("gid"), str) or not data["gid"]:
            raise TransientError(
                f"asana: POST {path} answered {reply.status} without a project gid; the project may exist",
                service="asana",
                status=reply.status,
                sent=True,
            )
        return _project(data)

    def instantiate(self, body: dict[str, Any]) -> tuple[Project, str | None]:
        """POST instantiateProject once (never retried here): the job creates the project asynchronously.
        Returns the new project (gid known at once) and the job gid to follow. The template's date variables
        and roles come from its definition (`schema`); `is_strict` makes Asana refuse a missing date."""
        data = before_post(lambda: self.schema.instantiation(body))
        reply = self._call(
            "POST", f"/project_templates/{body['template']}/instantiateProject", json={"data": data}, idempotent=False
        )
        job = reply.data.get("data") if isinstance(reply.data, dict) else None
        project = job.get("new_project") if isinstance(job, dict) else None
        if not isinstance(project, dict) or not isinstance(project.get("gid"), str):
            raise TransientError(
                f"asana: instantiateProject answered {reply.status} without new_project; the project may exist",
                service="asana",
                status=reply.status,
                sent=True,
            )
        job_gid = job.get("gid") if isinstance(job, dict) else None
        return _project(project), job_gid if isinstance(job_gid, str) else None

    def job_status(self, job_gid: str) -> str:
        reply = self._call("GET", f"/jobs/{job_gid}", params={"opt_fields": "status"})
        data = reply.data.get("data") if isinstance(reply.data, dict) else None
        return str(data.get("status")) if isinstance(data, dict) else "unknown"

    def update_project(self, gid: str, fields: dict[str, Any]) -> Project:
        """PUT is idempotent (the same fields set twice are the same project), so it retries like a read.
        Custom field values are sent in Asana's types (option names become gids)."""
        fields = self.schema.project_fields(fields)
        reply = self._call("PUT", f"/projects/{gid}", json={"data": fields}, params={"opt_fields": LIST_FIELDS})
        return _project(reply.data["data"])

    def create_task(self, project_gid: str, body: dict[str, Any]) -> str:
        """POST once (never retried here). With an OAuth token the task carries its external gid, the quick way to
        find it afterwards; with any other token the marker in its notes is the only key (`find_task`)."""
        task = {**body, "projects": [project_gid]}
        if not self.oauth:
            task.pop("external", None)
        reply = self._call("POST", "/tasks", json={"data": task}, idempotent=False)
        data = reply.data.get("data") if isinstance(reply.data, dict) else None
        if not isinstance(data, dict) or not isinstance(data.get("gid"), str):
            raise TransientError(
                "asana: POST /tasks answered without a task gid; the task may exist",
                service="asana",
                status=reply.status,
                sent=True,
            )
        return str(data["gid"])

    def find_task(self, external_gid: str, project_gid: str, marker: str) -> str | None:
        """The task this effect created, or None when Asana proves there is none.

        First by its external gid (`GET /tasks/external:<gid>`); external ids are an OAuth-app feature, so
        when Asana has none under that id, or refuses the lookup (a personal access token), a complete
        listing of the project's tasks is searched for the marker in their notes. A listing that fails
        part-way raises: it proves nothing."""
        try:
            if self.oauth:
                reply = self._call("GET", f"/tasks/external:{external_gid}", params={"opt_fields": "name"})
                data = reply.data.get("data") if isinstance(reply.data, dict) else None
                if isinstance(data, dict) and isinstance(data.get("gid"), str):
                    return str(data["gid"])
        except (RejectedError, AuthError):
            pass  # not found, or not available to this token (external data needs OAuth): ask the listing
        offset: str | None = None
        while True:
            params = {"limit": 100, "opt_fields": "notes"} | ({"offset": offset} if offset else {})
            reply = self._call(
                "GET", f"/projects/{project_gid}/tasks", params=params, expect=_listing_problem(("notes",))
            )
            for task in reply.data["data"]:
                if (
                    isinstance(task, dict)
                    and marker in str(task.get("notes") or "")
                    and isinstance(task.get("gid"), str)
                ):
                    return str(task["gid"])
            next_page = reply.data.get("next_page")
            offset = next_page.get("offset") if isinstance(next_page, dict) else None
            if not offset:
                return None

    def check(self) -> list[str]:
        """`syncd check`: who the token is, and that the workspace and team exist and are visible to it.
        Raises RemoteError (AuthError, RejectedError...) with the reason."""
        me = self._call("GET", "/users/me", params={"opt_fields": "name,email"}).data.get("data", {})
        ws = self._call("GET", f"/workspaces/{self.workspace}", params={"opt_fields": "name"}).data.get("data", {})
        team = self._call("GET", f"/teams/{self.team}", params={"opt_fields": "name"}).data.get("data", {})
        lines = [
            f"Asana token belongs to {me.get('name', '?')} <{me.get('email', '?')}>",
            f"workspace {self.workspace}: {ws.get('name', '?')}",
            f"team {self.team}: {team.get('name', '?')} (projects are created and reconciled here)",
        ]
        for change in self.changes_seen.values():
            lines.append(
                f"Asana announces API change {change.name!r}"
                f"{' (this request is affected)' if change.affected else ''}: read "
                f"{change.info or 'https://developers.asana.com/docs/deprecations'}, then set [asana] enable_changes "
                "or disable_changes"
            )
        return lines

    def check_flows(self, flows: Iterable[Flow], choices: Mapping[str, Iterable[str]] | None = None) -> list[str]:
        """`syncd check` (and a start or reload that wants to refuse a bad config): one sentence per custom
        field value that maps to no option and per template date variable or role the flows get wrong, each
        naming the flow, the key and the fix. `choices`: the values a deal property can take (e.g. the CRM's
        enum options), so that `"{tier}"` is judged for each. Raises RemoteError when Asana cannot be asked."""
        return self.schema.findings(flows, choices or {})

    def projects_by_marker(
        self, team: str | None = None, on_page: Callable[[], object] = lambda: None
    ) -> dict[str, list[Project]]:
        """Every syncd marker in a team's projects (default: the configured team) -> the projects carrying it,
        oldest first. `on_page()` is called after each page: a long listing is progress, not a hang."""
        found: dict[str, dict[str, Project]] = {}
        for archived in ("false", "true"):
            offset: str | None = None
            while True:
                params = {"limit": 100, "archived": archived, "opt_fields": LIST_FIELDS}
                if offset:
                    params["offset"] = offset
                path = f"/teams/{team or self.team}/projects"
                data = self._call("GET", path, params=params, expect=_listing_problem(("name", "notes"))).data
                on_page()
                for raw in data["data"]:
                    project = _project(raw)
                    for marker in markers_in(f"{project.name or ''}\n{project.notes or ''}"):
                        found.setdefault(marker, {})[project.gid] = project
                next_page = data.get("next_page")
                offset = next_page.get("offset") if isinstance(next_page, dict) else None
                if not offset:
                    break
        return {
            m: sorted(ps.values(), key=lambda p: (p.created_at or "", int(p.gid) if p.gid.isdigit() else 0))
            for m, ps in found.items()
        }


def before_post(prepare: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A body prepared by reads before a POST: a read that failed sent no POST, whatever the read's own
    `sent` says, so the op is simply pending again (never `unknown`)."""
    try:
        return prepare()
    except TransientError as exc:
        if isinstance(exc, RateLimited):
            raise
        raise TransientError(
            f"{exc} (before the POST, which was not sent)", service="asana", status=exc.status, sent=False
        ) from exc


def _listing_problem(fields: tuple[str, ...]) -> Callable[[Any], str | None]:
    """What makes a listing page no proof of absence: no `data` list, or a record without a gid or without a
    field that was asked for."""

    def problem(data: Any) -> str | None:
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            return "a listing page without a 'data' list"
        for raw in data["data"]:
            if not isinstance(raw, dict) or not isinstance(raw.get("gid"), str):
                return "a listing record without a gid"
            if missing := [name for name in fields if name not in raw]:
                return f"listing records without {', '.join(missing)} (asked for): they prove nothing"
        return None

    return problem


def _project(data: dict[str, Any]) -> Project:
    return Project(
        gid=data["gid"],
        url=data.get("permalink_url") if isinstance(data.get("permalink_url"), str) else None,
        name=data.get("name") if isinstance(data.get("name"), str) else None,
        notes=data.get("notes") if isinstance(data.get("notes"), str) else None,
        created_at=data.get("created_at") if isinstance(data.get("created_at"), str) else None,
    )
