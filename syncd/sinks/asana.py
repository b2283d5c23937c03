"""Asana: create a project (directly or from a template), its tasks, and find projects by the marker syncd
writes into their notes (or, for templates, their name).

Asana has no idempotency key for `POST /projects`, so the marker is how syncd learns what happened to a POST
whose answer it never saw, and whether a project exists before it creates one. `projects_by_marker` is
evidence of absence only because it is complete: it lists every page of the team's projects, archived and
not, every record carries the fields it asked for (a record without `notes` could hide a marker), and any
failure part-way raises instead of returning a partial answer.

`PROFILE` is what Asana's answers mean to the HTTP layer: an error body is `{"errors": [{"message", "help"}]}`.
Its rate limits are a standard 429 with `Retry-After`, which the HTTP layer handles itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from syncd.errors import RejectedError, TransientError
from syncd.http import GENERIC, HttpClient, Profile
from syncd.marker import markers_in
from syncd.models import Project

LIST_FIELDS = "name,notes,created_at,permalink_url,archived"


def error_text(status: int, body: Any) -> str:
    """Asana's own words: every `errors[].message`."""
    if isinstance(body, dict) and isinstance(body.get("errors"), list) and body["errors"]:
        return "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in body["errors"])
    return GENERIC.error_text(status, body)


PROFILE = Profile(error_text=error_text)


class AsanaSink:
    def __init__(self, http: HttpClient, *, workspace: str, team: str) -> None:
        self.http, self.workspace, self.team = http, workspace, team

    def create_project(self, body: dict[str, Any]) -> Project:
        """POST once, never retried here. An answer that cannot be read means "maybe created"."""
        reply = self.http.call("POST", "/projects", json={"data": body}, idempotent=False)
        data = reply.data.get("data") if isinstance(reply.data, dict) else None
        if not isinstance(data, dict) or not isinstance(data.get("gid"), str) or not data["gid"]:
            raise TransientError(
                f"asana: POST /projects answered {reply.status} without a project gid; the project may exist",
                service="asana",
                status=reply.status,
                sent=True,
            )
        return _project(data)

    def instantiate(self, body: dict[str, Any]) -> tuple[Project, str | None]:
        """POST instantiateProject once (never retried here): the job creates the project asynchronously.
        Returns the new project (gid known at once) and the job gid to follow."""
        data = {k: v for k, v in body.items() if k != "template"}
        reply = self.http.call(
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
        reply = self.http.call("GET", f"/jobs/{job_gid}", params={"opt_fields": "status"})
        data = reply.data.get("data") if isinstance(reply.data, dict) else None
        return str(data.get("status")) if isinstance(data, dict) else "unknown"

    def update_project(self, gid: str, fields: dict[str, Any]) -> Project:
        """PUT is idempotent (the same fields set twice are the same project), so it retries like a read."""
        reply = self.http.call("PUT", f"/projects/{gid}", json={"data": fields}, params={"opt_fields": LIST_FIELDS})
        return _project(reply.data["data"])

    def create_task(self, project_gid: str, body: dict[str, Any]) -> str:
        """POST once (never retried here). The task's external gid is how reconcile finds it afterwards."""
        reply = self.http.call("POST", "/tasks", json={"data": {**body, "projects": [project_gid]}}, idempotent=False)
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
        when Asana has none under that id, a complete listing of the project's tasks is searched for the
        marker in their notes. A listing that fails part-way raises: it proves nothing."""
        try:
            reply = self.http.call("GET", f"/tasks/external:{external_gid}", params={"opt_fields": "name"})
            data = reply.data.get("data") if isinstance(reply.data, dict) else None
            if isinstance(data, dict) and isinstance(data.get("gid"), str):
                return str(data["gid"])
        except RejectedError as exc:
            if exc.status != 404:
                raise
        offset: str | None = None
        while True:
            params = {"limit": 100, "opt_fields": "notes"} | ({"offset": offset} if offset else {})
            reply = self.http.call(
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
        me = self.http.call("GET", "/users/me", params={"opt_fields": "name,email"}).data.get("data", {})
        ws = self.http.call("GET", f"/workspaces/{self.workspace}", params={"opt_fields": "name"}).data.get("data", {})
        team = self.http.call("GET", f"/teams/{self.team}", params={"opt_fields": "name"}).data.get("data", {})
        return [
            f"Asana token belongs to {me.get('name', '?')} <{me.get('email', '?')}>",
            f"workspace {self.workspace}: {ws.get('name', '?')}",
            f"team {self.team}: {team.get('name', '?')} (projects are created and reconciled here)",
        ]

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
                data = self.http.call("GET", path, params=params, expect=_listing_problem(("name", "notes"))).data
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
