"""The fake Asana behaves as Asana's documentation says, over real HTTP, and misbehaves as advertised."""

from __future__ import annotations

import re
import textwrap
import time
from typing import Any

import pytest
import requests

from syncd.sandbox import server
from syncd.sandbox.asana import CHANGE, FakeAsana

from conftest import require
from reliability.asana_contract import SPEC

HELP = (
    "For more information on API status codes and how to handle them, "
    "read the docs on errors: https://developers.asana.com/docs/errors"
)


@pytest.fixture(autouse=True)
def _fast_stop(monkeypatch):
    """FakeServer.stop() waits out serve_forever's 0.5 s poll; poll faster so this file doesn't idle ~15 s."""

    class FastStopping(server.ThreadingHTTPServer):
        def serve_forever(self, poll_interval: float = 0.01) -> None:
            super().serve_forever(poll_interval)

    monkeypatch.setattr(server, "ThreadingHTTPServer", FastStopping)


@pytest.fixture
def fake():
    fake = FakeAsana().start()
    yield fake
    fake.stop()


def auth(fake: FakeAsana) -> dict[str, str]:
    return {"Authorization": f"Bearer {fake.token}"}


def create(fake: FakeAsana, path: str = "/projects", timeout: float = 5, **data: Any) -> requests.Response:
    if path == "/projects":
        data = {"workspace": fake.workspace, "team": fake.team, "name": "Deal", **data}
    data = {k: v for k, v in data.items() if v is not None}
    return requests.post(fake.url + path, json={"data": data}, headers=auth(fake), timeout=timeout)


def get(fake: FakeAsana, path: str, timeout: float = 5, **params: Any) -> requests.Response:
    return requests.get(fake.url + path, params=params, headers=auth(fake), timeout=timeout)


def message(response: requests.Response) -> str:
    return response.json()["errors"][0]["message"]


# -- auth and create ---------------------------------------------------------------------------------
def test_missing_or_wrong_token_is_401(fake):
    expected = {"errors": [{"message": "Not Authorized", "help": HELP}]}
    assert requests.get(fake.url + "/projects", timeout=5).json() == expected
    wrong = requests.post(fake.url + "/projects", headers={"Authorization": "Bearer nope"}, timeout=5)
    assert (wrong.status_code, wrong.json()) == (401, expected)
    assert fake.projects == []


def test_create_returns_the_full_project(fake):
    r = create(fake, name="ACME renewal", notes="Deal [syncd:hubspot:42]", due_on="2026-03-01")
    assert r.status_code == 201
    project = r.json()["data"]
    assert re.fullmatch(r"\d{16}", project["gid"])
    assert project["resource_type"] == "project"
    assert project["name"] == "ACME renewal" and project["due_on"] == "2026-03-01"
    assert project["notes"] == "Deal [syncd:hubspot:42]"
    assert project["archived"] is False and project["custom_fields"] == []
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", project["created_at"])
    assert project["permalink_url"] == f"https://app.asana.com/1/{fake.workspace}/project/{project['gid']}"
    workspace = {"gid": fake.workspace, "resource_type": "workspace", "name": "Sandbox Org"}
    assert project["workspace"] == workspace
    assert project["team"]["gid"] == fake.team and project["team"]["resource_type"] == "team"
    assert "html_notes" not in project  # opt-in field
    assert "name=project_team_deprecation" in r.headers["Asana-Change"]  # `team` in the body is deprecated
    assert [p["gid"] for p in fake.projects] == [project["gid"]] and fake.create_requests == 1
    second = create(fake).json()["data"]
    assert int(second["gid"]) > int(project["gid"])


def _schema_properties(text: str, name: str) -> set[str]:
    yaml = pytest.importorskip("yaml")
    block = re.search(rf"^    {name}:\n(.*?)(?=^    \S)", text, re.M | re.S)
    assert block, name
    schema = yaml.safe_load(textwrap.dedent(block.group(1)))
    if "$ref" in schema:  # e.g. JobResponse: $ref JobBase: $ref JobCompact
        return _schema_properties(text, schema["$ref"].rsplit("/", 1)[1])
    found = set(schema.get("properties", {}))
    for part in schema.get("allOf", []):
        ref = part.get("$ref", "")
        found |= _schema_properties(text, ref.rsplit("/", 1)[1]) if ref else set(part.get("properties", {}))
    return found


def test_created_project_keys_are_those_of_project_response(fake):
    require(not SPEC.exists(), f"Asana's OpenAPI spec is not at {SPEC}")
    allowed = _schema_properties(SPEC.read_text(), "ProjectResponse")
    keys = set(create(fake).json()["data"])
    assert keys <= allowed, keys - allowed
    assert {"gid", "resource_type", "name", "permalink_url", "workspace", "team", "created_at"} <= keys


def test_create_in_team_or_workspace_path(fake):
    r = create(fake, f"/teams/{fake.team}/projects", name="In team")
    assert r.status_code == 201 and "Asana-Change" not in r.headers
    assert r.json()["data"]["workspace"]["gid"] == fake.workspace
    r = create(fake, f"/workspaces/{fake.workspace}/projects", name="No team")
    assert r.status_code == 400 and "team" in message(r) and "organization" in message(r)
    r = create(fake, f"/workspaces/{fake.workspace}/projects", name="With team", team=fake.team)
    assert r.status_code == 201 and "Asana-Change" in r.headers
    r = create(fake, "/api/1.0/projects", workspace=fake.workspace, team=fake.team)
    assert r.status_code == 201
    assert len(fake.projects) == 3 and fake.create_requests == 4


@pytest.mark.parametrize(
    ("data", "status", "text"),
    [
        ({"workspace": None}, 400, "workspace: Missing input"),
        ({"team": None}, 400, "team: Missing input"),
        ({"workspace": "999"}, 404, "workspace: Unknown object: 999"),
        ({"team": "998"}, 404, "team: Unknown object: 998"),
        ({"start_on": "2026-01-01"}, 400, "start_on"),
        ({"due_on": "01/02/2026"}, 400, "due_on"),
        ({"color": "chartreuse"}, 400, "color"),
    ],
)
def test_create_rejects_bad_input(fake, data, status, text):
    r = create(fake, **data)
    assert r.status_code == status and text in message(r)
    assert r.json()["errors"][0]["help"] == HELP
    assert fake.projects == []


def test_bad_json_and_unknown_route(fake):
    r = requests.post(fake.url + "/projects", data=b"{nope", headers=auth(fake), timeout=5)
    assert r.status_code == 400 and "errors" in r.json()
    r = requests.post(fake.url + "/projects", json={"name": "no envelope"}, headers=auth(fake), timeout=5)
    assert r.status_code == 400 and message(r) == "data: Missing input"
    r = get(fake, "/stories")
    assert r.status_code == 404 and r.json()["errors"][0]["message"]
    r = requests.delete(fake.url + "/tasks", headers=auth(fake), timeout=5)
    assert r.status_code == 404 and message(r).startswith("No matching route")
    assert fake.projects == []


def test_get_project_by_gid(fake):
    gid = create(fake, notes="hello").json()["data"]["gid"]
    r = get(fake, f"/projects/{gid}")
    assert r.status_code == 200 and r.json()["data"]["notes"] == "hello"
    r = get(fake, f"/projects/{gid}", opt_fields="name,notes,html_notes")
    expected = {"gid": gid, "resource_type": "project", "name": "Deal", "notes": "hello"}
    assert r.json()["data"] == {**expected, "html_notes": "<body>hello</body>"}
    r = get(fake, "/projects/1219999999999999")
    assert r.status_code == 404 and message(r) == "project: Unknown object: 1219999999999999"


# -- listing -----------------------------------------------------------------------------------------
def test_paging_through_250_projects(fake):
    gids = [fake.add_project(name=f"P{i}")["gid"] for i in range(250)]
    seen, sizes, params = [], [], {"workspace": fake.workspace, "limit": 100}
    while True:
        body = get(fake, "/projects", **params).json()
        assert set(body["data"][0]) == {"gid", "resource_type", "name"}  # compact records
        seen += [p["gid"] for p in body["data"]]
        sizes.append(len(body["data"]))
        if body["next_page"] is None:
            break
        assert body["next_page"]["path"].startswith("/projects?")
        assert body["next_page"]["uri"] == fake.url + body["next_page"]["path"]
        params["offset"] = body["next_page"]["offset"]
    assert (sizes, seen) == ([100, 100, 50], gids)
    first = get(fake, f"/teams/{fake.team}/projects", limit=2).json()
    follow = requests.get(first["next_page"]["uri"], headers=auth(fake), timeout=5).json()
    assert [p["gid"] for p in first["data"] + follow["data"]] == gids[:4]
    in_workspace = get(fake, f"/workspaces/{fake.workspace}/projects", limit=3).json()
    assert [p["gid"] for p in in_workspace["data"]] == gids[:3]


def test_list_without_limit_is_unpaginated_up_to_1000(fake):
    for i in range(1000):
        fake.add_project(name=f"P{i}", notes="x")
    body = get(fake, "/projects", workspace=fake.workspace).json()
    assert len(body["data"]) == 1000 and "next_page" not in body
    fake.add_project(name="one too many")
    r = get(fake, "/projects", workspace=fake.workspace)
    assert r.status_code == 400 and "You should use pagination" in message(r)
    r = get(fake, "/projects", workspace=fake.workspace, limit=100, opt_fields="notes")
    assert r.status_code == 200 and r.json()["data"][0]["notes"] == "x"


def test_bad_limit_or_offset_is_400(fake):
    for i in range(5):
        fake.add_project(name=f"P{i}")
    for limit in ("0", "101", "ten"):
        r = get(fake, "/projects", limit=limit)
        assert r.status_code == 400 and message(r).startswith("limit:")
    r = get(fake, "/projects", limit=2, offset="not-a-token")
    assert r.status_code == 400 and message(r).startswith("offset:")
    offset = get(fake, "/projects", limit=2).json()["next_page"]["offset"]
    assert get(fake, "/projects", limit=2, archived="false", offset=offset).status_code == 400  # other query
    assert get(fake, "/projects", limit=2, offset=offset).status_code == 200
    fake.clock_offset += fake.offset_ttl + 1  # offset tokens expire
    assert get(fake, "/projects", limit=2, offset=offset).status_code == 400


def test_archived_filter(fake):
    a, b, c = (fake.add_project(name=n)["gid"] for n in "abc")
    fake.archive(b)
    names = lambda **q: [p["gid"] for p in get(fake, "/projects", **q).json()["data"]]  # noqa: E731
    assert names() == [a, b, c]
    assert names(archived="true") == [b]
    assert names(archived="false", limit=10) == [a, c]
    assert get(fake, "/projects", archived="maybe").status_code == 400


def test_unknown_team_or_workspace_in_listing_is_404(fake):
    assert get(fake, "/teams/42/projects").status_code == 404
    assert get(fake, "/projects", workspace="42").status_code == 404
    r = get(fake, "/projects", team=fake.team)
    assert r.status_code == 200 and "Asana-Change" in r.headers  # the team filter is deprecated


def test_announced_changes_ride_on_the_answers_of_their_route(fake):
    fake.announce("name=new_thing;info=https://forum.asana.com/t/1", route="list")
    fake.announce("name=everywhere;info=https://forum.asana.com/t/2;affected=true")
    r = get(fake, f"/teams/{fake.team}/projects")
    assert r.headers["Asana-Change"] == (
        "name=new_thing;info=https://forum.asana.com/t/1, name=everywhere;info=https://forum.asana.com/t/2;affected=true"
    )
    r = create(fake)  # `team` in the body: the fake's own deprecation comes first
    assert r.headers["Asana-Change"] == f"{CHANGE}, name=everywhere;info=https://forum.asana.com/t/2;affected=true"
    r = create(fake, f"/teams/{fake.team}/projects")
    assert r.headers["Asana-Change"] == "name=everywhere;info=https://forum.asana.com/t/2;affected=true"
    with pytest.raises(ValueError, match="unknown route"):
        fake.announce("name=x", route="nowhere")


def test_list_lag_hides_new_projects_from_listings_only(fake):
    fake.list_lag = 5.0
    gid = create(fake).json()["data"]["gid"]
    assert get(fake, "/projects", workspace=fake.workspace).json()["data"] == []
    assert get(fake, f"/projects/{gid}").status_code == 200
    fake.clock_offset += 5.1
    assert [p["gid"] for p in get(fake, "/projects", workspace=fake.workspace).json()["data"]] == [gid]


# -- rate limit and Retry-After ----------------------------------------------------------------------
def test_rate_limit_429_with_honest_retry_after(fake):
    fake.rate_per_minute = 2
    assert get(fake, "/projects").status_code == 200
    fake.clock_offset += 30
    assert get(fake, "/projects").status_code == 200
    r = get(fake, "/projects")
    assert r.status_code == 429
    assert r.json() == {
        "errors": [
            {
                "message": "You've made too many requests and hit a rate limit. "
                "Please retry after the given amount of time."
            }
        ]
    }
    retry_after = int(r.headers["Retry-After"])
    # The rejected request counts too, so the first slot to free is the one taken at +30 s, not at 0 s.
    assert retry_after == 60 and fake.rate_limited == 1 and fake.early_requests == 0
    told_at = fake.now()
    assert get(fake, "/projects").status_code == 429  # too early: counted, with when it was told to wait
    assert fake.early_requests == 1 and fake.rate_limited == 2
    [(sent, told)] = fake.early_log
    assert told <= told_at <= sent
    fake.clock_offset += 61
    assert get(fake, "/projects").status_code == 200
    assert fake.early_requests == 1


def test_injected_429(fake):
    fake.inject("429", retry_after=3)
    r = create(fake)
    assert r.status_code == 429 and r.headers["Retry-After"] == "3" and fake.projects == []
    assert create(fake).status_code == 201 and fake.early_requests == 1
    fake.inject("429", retry_after=None)
    r = get(fake, "/projects")
    assert r.status_code == 429 and "Retry-After" not in r.headers
    assert fake.faults_injected == 2


# -- faults ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_create_nothing(fake, status):
    fake.inject(str(status))
    r = create(fake)
    assert r.status_code == status and message(r)
    assert ("phrase" in r.json()["errors"][0]) == (status == 500)
    assert fake.projects == [] and fake.faults_injected == 1 and fake.create_requests == 1
    assert create(fake).status_code == 201


def test_500_phrase_looks_like_asanas(fake):
    fake.inject("500")
    assert re.fullmatch(r"\d+ \w+ \w+ \w+ \w+", get(fake, "/projects").json()["errors"][0]["phrase"])


def test_drop_creates_nothing(fake):
    fake.inject("drop")
    with pytest.raises(requests.ConnectionError):
        create(fake)
    assert fake.projects == [] and fake.create_requests == 1


def test_drop_after_create_loses_the_answer_not_the_project(fake):
    fake.inject("drop_after_create")
    with pytest.raises(requests.ConnectionError):
        create(fake, notes="[syncd:d1]")
    assert len(fake.projects_with_marker("[syncd:d1]")) == 1 and fake.create_requests == 1


def test_slow_after_create_times_out_but_the_project_exists(fake):
    fake.inject("slow_after_create", delay=0.6)
    started = time.monotonic()
    with pytest.raises(requests.ReadTimeout):
        create(fake, notes="[syncd:d2]", timeout=0.2)
    assert len(fake.projects_with_marker("[syncd:d2]")) == 1
    assert get(fake, "/projects").status_code == 200  # the slow answer does not block others
    assert time.monotonic() - started < 0.6


@pytest.mark.parametrize("status", [500, 504])
def test_error_after_create(fake, status):
    fake.inject(f"{status}_after_create")
    r = create(fake, notes="[syncd:d3]")
    assert r.status_code == status and message(r)
    assert len(fake.projects) == 1


def test_malformed_after_create(fake):
    fake.inject("malformed_after_create")
    r = create(fake)
    assert r.status_code == 201
    with pytest.raises(ValueError):
        r.json()
    assert len(fake.projects) == 1


def test_after_create_kinds_act_plainly_on_other_routes(fake):
    gid = fake.add_project(name="x")["gid"]
    fake.inject("drop_after_create", route="list")
    with pytest.raises(requests.ConnectionError):
        get(fake, "/projects")
    fake.inject("504_after_create", route="get")
    assert get(fake, f"/projects/{gid}").status_code == 504
    fake.inject("malformed_after_create", route="list")
    r = get(fake, "/projects")
    assert r.status_code == 200 and r.content == b'{"data": {"gid": '
    fake.inject("slow_after_create", route="get", delay=0.3)
    started = time.monotonic()
    assert get(fake, f"/projects/{gid}").json()["data"]["gid"] == gid
    assert time.monotonic() - started >= 0.3
    assert len(fake.projects) == 1 and fake.faults_injected == 4


def test_faults_only_hit_their_route_and_count(fake):
    fake.inject("503", times=2, route="create")
    assert get(fake, "/projects").status_code == 200
    assert [create(fake).status_code for _ in range(3)] == [503, 503, 201]
    assert fake.faults_injected == 2
    with pytest.raises(ValueError):
        fake.inject("teapot")


def test_random_faults_are_seeded():
    statuses = []
    for _ in range(2):
        fake = FakeAsana(seed=7).start()
        try:
            fake.fault_rate, fake.fault_kinds = 0.5, ["500", "503"]
            statuses.append([get(fake, "/projects").status_code for _ in range(20)])
        finally:
            fake.stop()
    assert statuses[0] == statuses[1]
    assert {200, 500, 503} == set(statuses[0])


# -- checks on the client ----------------------------------------------------------------------------
def test_duplicates_and_markers(fake):
    for notes in ("Deal [syncd:hubspot:1]", "again [syncd:hubspot:1]", "[syncd:hubspot:2]", "no marker"):
        assert create(fake, notes=notes).status_code == 201
    assert fake.duplicates() == {"[syncd:hubspot:1]": 2}
    assert [p["notes"] for p in fake.projects_with_marker("[syncd:hubspot:2]")] == ["[syncd:hubspot:2]"]


# -- project templates and jobs ----------------------------------------------------------------------
def post(fake: FakeAsana, path: str, timeout: float = 5, **data: Any) -> requests.Response:
    return requests.post(fake.url + path, json={"data": data}, headers=auth(fake), timeout=timeout)


def put(fake: FakeAsana, path: str, **data: Any) -> requests.Response:
    return requests.put(fake.url + path, json={"data": data}, headers=auth(fake), timeout=5)


def instantiate(fake: FakeAsana, template: str, timeout: float = 5, **data: Any) -> requests.Response:
    data = {"name": "From template", "requested_dates": DATES, **data}
    return post(fake, f"/project_templates/{template}/instantiateProject", timeout=timeout, **data)


DATES = [{"gid": "1", "value": "2026-03-01"}, {"gid": "2", "value": "2026-04-01"}]


def spec_keys(name: str) -> set[str]:
    require(not SPEC.exists(), f"Asana's OpenAPI spec is not at {SPEC}")
    return _schema_properties(SPEC.read_text(), name)


def test_templates_get_and_list(fake):
    gid = fake.add_template("Onboarding", roles=("Designer",), description="Template notes")
    other = fake.add_template("Renewal", requested_dates=())
    template = get(fake, f"/project_templates/{gid}").json()["data"]
    assert template["resource_type"] == "project_template" and template["name"] == "Onboarding"
    assert [d["gid"] for d in template["requested_dates"]] == ["1", "2"]
    assert template["requested_dates"][0]["name"] == "Start Date"
    assert [r["name"] for r in template["requested_roles"]] == ["Designer"]
    assert template["team"]["gid"] == fake.team and template["description"] == "Template notes"
    assert not any(k.startswith("_") for k in template)
    compact = [{"gid": gid, "resource_type": "project_template", "name": "Onboarding"}]
    compact.append({"gid": other, "resource_type": "project_template", "name": "Renewal"})
    assert get(fake, f"/teams/{fake.team}/project_templates").json()["data"] == compact
    assert get(fake, "/project_templates", workspace=fake.workspace).json()["data"] == compact
    page = get(fake, "/project_templates", team=fake.team, limit=1).json()
    assert page["data"] == compact[:1] and page["next_page"]["offset"]
    assert get(fake, "/project_templates").status_code == 400
    assert get(fake, "/teams/42/project_templates").status_code == 404
    r = get(fake, "/project_templates/42")
    assert r.status_code == 404 and message(r) == "project_template: Unknown object: 42"


def test_template_keys_are_those_of_project_template_response(fake):
    allowed = spec_keys("ProjectTemplateResponse")
    keys = set(get(fake, f"/project_templates/{fake.add_template('T', roles=('R',))}").json()["data"])
    assert keys <= allowed, keys - allowed


def test_instantiate_runs_a_job_that_succeeds_after_its_duration(fake):
    template = fake.add_template("Onboarding", duration=30, tasks=("a", "b", "c", "d"), description="From T")
    r = instantiate(fake, template, name="ACME onboarding", notes="[syncd:ignored]")
    assert r.status_code == 201
    job = r.json()["data"]
    assert job["resource_type"] == "job" and job["resource_subtype"] == "instantiate_project"
    assert job["status"] == "in_progress" and job["new_task"] is None and job["new_project_template"] is None
    project_gid = job["new_project"]["gid"]
    assert job["new_project"] == {"gid": project_gid, "resource_type": "project", "name": "ACME onboarding"}
    project = get(fake, f"/projects/{project_gid}").json()["data"]  # exists while the job runs
    assert project["notes"] == "From T"  # the template's; the instantiate call cannot set notes
    assert (project["start_on"], project["due_on"]) == ("2026-03-01", "2026-04-01")
    assert project["team"]["gid"] == fake.team  # defaults to the template's team
    assert len(get(fake, f"/projects/{project_gid}/tasks").json()["data"]) == 2  # half-made so far
    assert get(fake, f"/jobs/{job['gid']}").json()["data"]["status"] == "in_progress"
    fake.clock_offset += 29
    assert get(fake, f"/jobs/{job['gid']}").json()["data"]["status"] == "in_progress"
    fake.clock_offset += 2
    assert get(fake, f"/jobs/{job['gid']}").json()["data"] == {**job, "status": "succeeded"}
    names = [t["name"] for t in get(fake, f"/projects/{project_gid}/tasks").json()["data"]]
    assert names == ["a", "b", "c", "d"]
    created_from = get(fake, f"/projects/{project_gid}", opt_fields="created_from_template").json()["data"]
    assert created_from["created_from_template"]["gid"] == template
    assert fake.instantiate_requests == 1 and fake.create_requests == 0 and len(fake.projects) == 1
    assert fake.projects_with_marker("[syncd:ignored]") == []


def test_instantiate_without_duration_succeeds_at_once_and_assigns_roles(fake):
    template = fake.add_template("T", roles=("Owner",), tasks=({"name": "kickoff", "notes": "n", "role": "Owner"},))
    role = get(fake, f"/project_templates/{template}").json()["data"]["requested_roles"][0]["gid"]
    r = instantiate(fake, template, requested_roles=[{"gid": role, "value": "me"}], privacy_setting="private")
    job = r.json()["data"]
    assert r.status_code == 201 and job["status"] == "succeeded" and "Asana-Change" not in r.headers
    project = fake.projects[0]
    assert project["privacy_setting"] == "private" and project["gid"] == job["new_project"]["gid"]
    (task,) = fake.tasks
    assert (task["name"], task["notes"], task["assignee"]["gid"]) == ("kickoff", "n", "1200000000000003")
    assert [p["gid"] for p in task["projects"]] == [project["gid"]]
    r = instantiate(fake, template, requested_roles=[{"gid": role, "value": "42"}])
    assert r.status_code == 404 and message(r) == "user: Unknown object: 42"
    r = instantiate(fake, template, requested_roles=[{"gid": "9", "value": "me"}])
    assert r.status_code == 400 and message(r).startswith("requested_roles:")
    r = instantiate(fake, template, privacy_setting="private_to_team")
    assert r.status_code == 201 and "name=project_team_deprecation" in r.headers["Asana-Change"]


def test_failed_job_leaves_a_half_made_project(fake):
    template = fake.add_template("Broken", fails=True, duration=10, tasks=("a", "b", "c", "d"))
    job = instantiate(fake, template).json()["data"]
    assert job["status"] == "in_progress"
    fake.clock_offset += 10
    assert get(fake, f"/jobs/{job['gid']}").json()["data"]["status"] == "failed"
    project = get(fake, f"/projects/{job['new_project']['gid']}")
    assert project.status_code == 200  # (guess) left behind, with only the tasks copied before it failed
    assert [t["name"] for t in get(fake, f"/projects/{job['new_project']['gid']}/tasks").json()["data"]] == ["a", "b"]


def test_failed_job_can_take_its_project_away(fake):
    fake.failed_jobs_keep_project = False
    template = fake.add_template("Broken", fails=True, duration=10, tasks=("a", "b"))
    fake.add_project(name="unrelated")
    job = instantiate(fake, template).json()["data"]
    gid = job["new_project"]["gid"]
    assert get(fake, f"/projects/{gid}").status_code == 200 and len(fake.tasks) == 1
    fake.clock_offset += 10
    assert get(fake, f"/jobs/{job['gid']}").json()["data"]["status"] == "failed"
    assert get(fake, f"/projects/{gid}").status_code == 404
    assert [p["name"] for p in fake.projects] == ["unrelated"] and fake.tasks == []
    now_failed = fake.add_template("Fails at once", fails=True)
    job = instantiate(fake, now_failed).json()["data"]
    assert job["status"] == "failed" and get(fake, f"/projects/{job['new_project']['gid']}").status_code == 404


def test_strict_instantiation_needs_every_date(fake):
    template = fake.add_template("T")
    r = instantiate(fake, template, is_strict=True, requested_dates=DATES[:1])
    assert r.status_code == 422 and "Due Date" in message(r)  # "Unprocessable Entity", as the spec says
    fake.strict_status = 400
    assert instantiate(fake, template, is_strict=True, requested_dates=[]).status_code == 400
    r = instantiate(fake, template, is_strict=True, requested_dates=[*DATES[:1], {"gid": "2", "value": None}])
    assert r.status_code == 400
    assert fake.projects == [] and fake.jobs == {}
    assert instantiate(fake, template, is_strict=True).status_code == 201
    r = instantiate(fake, template, requested_dates=DATES[:1])  # not strict: today stands in
    project = get(fake, f"/projects/{r.json()['data']['new_project']['gid']}").json()["data"]
    assert project["start_on"] == "2026-03-01" and re.fullmatch(r"\d{4}-\d\d-\d\d", project["due_on"])
    assert fake.instantiate_requests == 5


@pytest.mark.parametrize(
    ("data", "status", "text"),
    [
        ({"name": None}, 400, "name: Missing input"),
        ({"team": "998"}, 404, "team: Unknown object: 998"),
        ({"privacy_setting": "secret"}, 400, "privacy_setting"),
        ({"is_strict": "yes"}, 400, "is_strict"),
        ({"requested_dates": [{"gid": "7", "value": "2026-01-01"}]}, 400, "Unknown date variable: 7"),
        ({"requested_dates": [{"gid": "1", "value": "01/02/2026"}]}, 400, "Invalid date"),
    ],
)
def test_instantiate_rejects_bad_input(fake, data, status, text):
    template = fake.add_template("T")
    r = instantiate(fake, template, **data)
    assert r.status_code == status and text in message(r)
    assert fake.projects == [] and fake.jobs == {}


def test_instantiate_unknown_template_and_job(fake):
    r = instantiate(fake, "42")
    assert r.status_code == 404 and message(r) == "project_template: Unknown object: 42"
    r = get(fake, "/jobs/42")
    assert r.status_code == 404 and message(r) == "job: Unknown object: 42"


def test_job_keys_are_those_of_job_response(fake):
    allowed = spec_keys("JobResponse")
    assert allowed == spec_keys("JobCompact")
    job = instantiate(fake, fake.add_template("T")).json()["data"]
    assert set(job) <= allowed, set(job) - allowed
    assert set(get(fake, f"/jobs/{job['gid']}").json()["data"]) <= allowed
    assert get(fake, f"/jobs/{job['gid']}", opt_fields="status").json()["data"] == {
        "gid": job["gid"], "resource_type": "job", "status": "succeeded"
    }  # fmt: skip


# -- tasks -------------------------------------------------------------------------------------------
def test_task_create_with_external_gid_and_lookup(fake):
    project = fake.add_project(name="P")["gid"]
    external = {"gid": "hubspot:deal-42", "data": '{"v": 1}'}
    r = post(fake, "/tasks", name="Kickoff", notes="[syncd:hubspot:42:t1]", projects=[project], external=external)
    assert r.status_code == 201
    task = r.json()["data"]
    assert re.fullmatch(r"\d{16}", task["gid"]) and task["resource_type"] == "task"
    assert task["name"] == "Kickoff" and task["notes"] == "[syncd:hubspot:42:t1]" and not task["completed"]
    assert task["projects"] == [{"gid": project, "resource_type": "project", "name": "P"}]
    assert task["external"] == external and task["workspace"]["gid"] == fake.workspace
    assert task["permalink_url"] == f"https://app.asana.com/1/{fake.workspace}/task/{task['gid']}"
    assert "html_notes" not in task  # opt-in
    assert get(fake, "/tasks/external:hubspot:deal-42").json()["data"] == task
    assert get(fake, "/tasks/external%3Ahubspot%3Adeal-42").json()["data"]["gid"] == task["gid"]
    assert get(fake, f"/tasks/{task['gid']}").json()["data"] == task
    r = get(fake, "/tasks/external:nope")
    assert r.status_code == 404 and message(r) == "task: Unknown object: external:nope"
    plain = post(fake, "/tasks", name="No external", workspace=fake.workspace).json()["data"]
    assert "external" not in plain and plain["projects"] == []
    assert get(fake, f"/tasks/{plain['gid']}", opt_fields="external,html_notes").json()["data"] == {
        "gid": plain["gid"], "resource_type": "task", "external": None, "html_notes": "<body></body>"
    }  # fmt: skip
    assert fake.task_create_requests == 2 and fake.create_requests == 0
    assert [t["gid"] for t in fake.tasks_with_marker("[syncd:hubspot:42:t1]")] == [task["gid"]]
    assert [t["gid"] for t in fake.tasks_with_marker("hubspot:deal-42")] == [task["gid"]]


def test_task_keys_are_those_of_task_response(fake):
    allowed = spec_keys("TaskResponse")
    r = post(fake, "/tasks", name="T", workspace=fake.workspace, external={"gid": "x"})
    opted_in = get(fake, f"/tasks/{r.json()['data']['gid']}", opt_fields="html_notes").json()["data"]
    keys = set(r.json()["data"]) | set(opted_in)
    assert keys <= allowed, keys - allowed


def test_duplicate_external_gid_is_rejected(fake):
    project = fake.add_project(name="P")["gid"]
    first = post(fake, "/tasks", name="a", projects=[project], external={"gid": "deal-1"}).json()["data"]
    r = post(fake, "/tasks", name="b", projects=[project], external={"gid": "deal-1"})
    assert r.status_code == 400 and "deal-1" in message(r) and message(r).startswith("external.gid:")
    assert len(fake.tasks) == 1 and fake.duplicates() == {}
    fake.unique_external_gids = False  # if Asana allowed it after all
    assert post(fake, "/tasks", name="b", projects=[project], external={"gid": "deal-1"}).status_code == 201
    assert fake.duplicates() == {"task:external:deal-1": 2}
    assert get(fake, "/tasks/external:deal-1").json()["data"]["gid"] == first["gid"]  # the oldest


@pytest.mark.parametrize(
    ("data", "status", "text"),
    [
        ({"projects": ["1219999999999999"]}, 404, "project: Unknown object: 1219999999999999"),
        ({"projects": None}, 400, "workspace: Missing input"),
        ({"workspace": "999"}, 404, "workspace: Unknown object: 999"),
        ({"start_on": "2026-01-01"}, 400, "start_on"),
        ({"due_on": "tomorrow"}, 400, "due_on"),
        ({"external": "deal-1"}, 400, "external"),
        ({"external": {"gid": "x" * 1025}}, 400, "external.gid"),
        ({"completed": "no"}, 400, "completed"),
    ],
)
def test_task_create_rejects_bad_input(fake, data, status, text):
    project = fake.add_project(name="P")["gid"]
    body = {k: v for k, v in {"name": "T", "projects": [project], **data}.items() if v is not None}
    r = post(fake, "/tasks", **body)
    assert r.status_code == status and text in message(r)
    assert fake.tasks == []


def test_task_listings_page_and_lag(fake):
    project = fake.add_project(name="P")["gid"]
    other = fake.add_project(name="Q")["gid"]
    fake.list_lag = 5.0
    gids = [post(fake, "/tasks", name=f"t{i}", projects=[project]).json()["data"]["gid"] for i in range(3)]
    elsewhere = post(fake, "/tasks", name="elsewhere", projects=[other], assignee="me").json()["data"]["gid"]
    assert get(fake, f"/projects/{project}/tasks").json()["data"] == []
    assert get(fake, "/tasks", project=project).json()["data"] == []
    assert get(fake, f"/tasks/{gids[0]}").status_code == 200  # reads by gid do not lag
    fake.clock_offset += 5.1
    body = get(fake, f"/projects/{project}/tasks", limit=2).json()
    assert [t["gid"] for t in body["data"]] == gids[:2]
    assert body["data"][0] == {
        "gid": gids[0],
        "resource_type": "task",
        "name": "t0",
        "resource_subtype": "default_task",
    }
    follow = requests.get(body["next_page"]["uri"], headers=auth(fake), timeout=5).json()
    assert [t["gid"] for t in follow["data"]] == gids[2:] and follow["next_page"] is None
    assert [t["gid"] for t in get(fake, "/tasks", project=project).json()["data"]] == gids
    mine = get(fake, "/tasks", assignee="me", workspace=fake.workspace, opt_fields="notes").json()["data"]
    assert [t["gid"] for t in mine] == [elsewhere] and set(mine[0]) == {"gid", "resource_type", "notes"}
    r = get(fake, "/tasks")
    assert r.status_code == 400 and "Must specify" in message(r)
    assert get(fake, "/tasks", workspace=fake.workspace).status_code == 400
    assert get(fake, "/projects/1219999999999999/tasks").status_code == 404
    put(fake, f"/tasks/{gids[0]}", completed=True)
    assert [t["gid"] for t in get(fake, "/tasks", project=project, completed_since="now").json()["data"]] == gids[1:]
    assert get(fake, "/tasks", project=project, completed_since="2000-01-01T00:00:00Z").json()["data"] != []
    assert get(fake, "/tasks", project=project, completed_since="yesterday").status_code == 400


def test_put_task(fake):
    project = fake.add_project(name="P")["gid"]
    task = post(fake, "/tasks", name="T", projects=[project], external={"gid": "deal-7"}).json()["data"]
    r = put(fake, "/tasks/external:deal-7", notes="now [syncd:x]", completed=True, projects=["ignored"])
    assert r.status_code == 200
    updated = r.json()["data"]
    assert updated["gid"] == task["gid"] and updated["notes"] == "now [syncd:x]" and updated["completed"]
    assert updated["completed_at"] and updated["projects"] == task["projects"] and updated["name"] == "T"
    assert put(fake, f"/tasks/{task['gid']}", start_on="2026-01-01").status_code == 400
    assert put(fake, "/tasks/42", name="x").status_code == 404
    other = post(fake, "/tasks", name="U", projects=[project]).json()["data"]
    assert put(fake, f"/tasks/{other['gid']}", external={"gid": "deal-7"}).status_code == 400
    assert put(fake, f"/tasks/{task['gid']}", external={"data": "blob"}).json()["data"]["external"] == {
        "gid": "deal-7", "data": "blob"
    }  # fmt: skip


def test_put_project(fake):
    gid = fake.add_project(name="P", notes="old", due_on="2026-05-01")["gid"]
    r = put(fake, f"/projects/{gid}", notes="Deal [syncd:hubspot:9]", color="dark-blue", start_on="2026-04-01")
    assert r.status_code == 200 and "Asana-Change" not in r.headers
    project = r.json()["data"]
    assert project["notes"] == "Deal [syncd:hubspot:9]" and project["color"] == "dark-blue"
    assert (project["start_on"], project["due_on"], project["name"]) == ("2026-04-01", "2026-05-01", "P")
    assert set(project) <= spec_keys("ProjectResponse")
    html_notes = get(fake, f"/projects/{gid}", opt_fields="notes,html_notes").json()["data"]["html_notes"]
    assert html_notes == "<body>Deal [syncd:hubspot:9]</body>"
    assert [p["gid"] for p in fake.projects_with_marker("[syncd:hubspot:9]")] == [gid]
    r = put(fake, f"/projects/{gid}", html_notes="<body>Hi &amp; bye</body>", archived=True, owner=None)
    project = r.json()["data"]
    assert project["notes"] == "Hi & bye" and project["archived"] and project["owner"] is None
    assert put(fake, f"/projects/{gid}", team=fake.team).headers["Asana-Change"] == CHANGE
    assert put(fake, f"/projects/{gid}", color="chartreuse").status_code == 400
    assert put(fake, f"/projects/{gid}", due_on=None).status_code == 400  # start_on needs a due date
    assert put(fake, f"/projects/{gid}", archived="yes").status_code == 400
    status = fake.add_custom_field("Status", options=("On Hold", "Not Started"))
    on_hold = fake.option_gid(status, "On Hold")
    (value,) = put(fake, f"/projects/{gid}", custom_fields={status: on_hold}).json()["data"]["custom_fields"]
    assert value["gid"] == status and value["display_value"] == "On Hold" and value["enum_value"]["gid"] == on_hold
    assert put(fake, f"/projects/{gid}", custom_fields={"11": on_hold}).status_code == 404  # no such field
    assert put(fake, "/projects/1219999999999999", notes="x").status_code == 404


# -- memberships -------------------------------------------------------------------------------------
def test_memberships_share_a_project_with_a_team(fake):
    project = fake.add_project(name="P")["gid"]
    r = post(fake, "/memberships", parent=project, member=fake.team, access_level="editor")
    assert r.status_code == 201
    membership = r.json()["data"]
    assert membership == {
        "gid": membership["gid"], "resource_type": "membership", "resource_subtype": "project_membership",
        "parent": {"gid": project, "resource_type": "project", "name": "P"},
        "member": {"gid": fake.team, "resource_type": "team", "name": "Sandbox Team"}, "access_level": "editor",
    }  # fmt: skip
    assert set(membership) <= spec_keys("ProjectMembershipCompactResponse")
    again = post(fake, "/memberships", parent=project, member=fake.team, access_level="commenter")
    assert again.status_code == 201  # (guess) idempotent: the same membership, its access level updated
    assert again.json()["data"] == {**membership, "access_level": "commenter"} and len(fake.memberships) == 1
    listed = get(fake, "/memberships", parent=project).json()["data"]
    assert listed == [{**membership, "access_level": "commenter"}]
    by_team = get(fake, "/memberships", member=fake.team, resource_subtype="project_membership").json()["data"]
    assert [m["gid"] for m in by_team] == [membership["gid"]]
    assert get(fake, "/memberships", member=fake.team).status_code == 400
    user = post(fake, "/memberships", parent=project, member="me").json()["data"]
    assert user["member"]["resource_type"] == "user" and user["access_level"] == "editor"  # project default
    fake.duplicate_memberships = "reject"
    r = post(fake, "/memberships", parent=project, member=fake.team)
    assert r.status_code == 400 and len(fake.memberships) == 2


@pytest.mark.parametrize(
    ("data", "status", "text"),
    [
        ({"parent": None}, 400, "parent: Missing input"),
        ({"parent": "42"}, 404, "parent: Unknown object: 42"),
        ({"member": None}, 400, "member: Missing input"),
        ({"member": "42"}, 404, "member: Unknown object: 42"),
        ({"access_level": "owner"}, 400, "access_level"),
    ],
)
def test_membership_rejects_bad_input(fake, data, status, text):
    project = fake.add_project(name="P")["gid"]
    body = {k: v for k, v in {"parent": project, "member": fake.team, **data}.items() if v is not None}
    r = post(fake, "/memberships", **body)
    assert r.status_code == status and text in message(r)
    assert fake.memberships == []


# -- faults on the new routes ------------------------------------------------------------------------
def test_drop_after_create_on_instantiate_still_instantiates(fake):
    template = fake.add_template("T", tasks=("a",), description="notes of T")
    fake.inject("drop_after_create", route="instantiate")
    with pytest.raises(requests.ConnectionError):
        instantiate(fake, template, name="Lost answer")
    assert [p["name"] for p in fake.projects] == ["Lost answer"] and len(fake.jobs) == 1
    assert len(fake.tasks) == 1 and fake.instantiate_requests == 1


def test_drop_after_create_on_task_create_still_creates(fake):
    project = fake.add_project(name="P")["gid"]
    fake.inject("drop_after_create", route="task_create")
    with pytest.raises(requests.ConnectionError):
        post(fake, "/tasks", name="T", notes="[syncd:d9]", projects=[project], external={"gid": "d9"})
    assert len(fake.tasks_with_marker("[syncd:d9]")) == 1 and fake.task_create_requests == 1
    assert get(fake, "/tasks/external:d9").status_code == 200  # a retry could find it by its external gid
    fake.inject("504_after_create", route="task_create")
    r = post(fake, "/tasks", name="T2", projects=[project])
    assert r.status_code == 504 and len(fake.tasks) == 2
    fake.inject("504_after_create", route="membership")
    assert post(fake, "/memberships", parent=project, member=fake.team).status_code == 504
    assert len(fake.memberships) == 1


def test_plain_faults_on_new_routes(fake):
    project = fake.add_project(name="P")["gid"]
    template = fake.add_template("T")
    fake.inject("503", route="instantiate")
    assert instantiate(fake, template).status_code == 503 and fake.jobs == {} and len(fake.projects) == 1
    job = instantiate(fake, template).json()["data"]["gid"]
    fake.inject("500", route="job")
    assert get(fake, f"/jobs/{job}").status_code == 500
    assert get(fake, f"/jobs/{job}").status_code == 200
    fake.inject("500", route="update")
    assert put(fake, f"/projects/{project}", notes="x").status_code == 500
    assert fake.projects[0]["notes"] == ""  # a plain 500 commits nothing
    fake.inject("drop_after_create", route="task_list")  # not a create: acts like a plain drop
    with pytest.raises(requests.ConnectionError):
        get(fake, f"/projects/{project}/tasks")
    fake.inject("503", route="task_create")
    assert post(fake, "/tasks", name="T", projects=[project]).status_code == 503 and fake.tasks == []
    fake.inject("429", route="membership", retry_after=2)
    assert post(fake, "/memberships", parent=project, member=fake.team).status_code == 429
    assert fake.memberships == [] and fake.faults_injected == 6
    with pytest.raises(ValueError):
        fake.inject("500", route="tasks")


def test_duplicates_counts_task_markers_apart_from_projects(fake):
    project = fake.add_project(name="P", notes="[syncd:hubspot:1]")["gid"]
    for _ in range(2):
        post(fake, "/tasks", name="T", notes="first [syncd:hubspot:1:kickoff]", projects=[project])
    post(fake, "/tasks", name="T", notes="[syncd:hubspot:1]", projects=[project])
    assert fake.duplicates() == {"task:[syncd:hubspot:1:kickoff]": 2}
    fake.add_project(name="P2", notes="again [syncd:hubspot:1]")
    assert fake.duplicates() == {"task:[syncd:hubspot:1:kickoff]": 2, "[syncd:hubspot:1]": 2}


# -- opt_fields on listings, and records that lack fields -----------------------------------------------
def test_listings_are_compact_without_opt_fields_and_exact_with_them(fake):
    project = fake.add_project(name="P", notes="[syncd:hubspot:1]")
    task = fake.add_task(name="T", notes="n", projects=[project["gid"]])
    team_projects = get(fake, f"/teams/{fake.team}/projects").json()["data"]
    assert team_projects == [{"gid": project["gid"], "resource_type": "project", "name": "P"}]
    tasks = get(fake, f"/projects/{project['gid']}/tasks", limit=10).json()["data"]
    assert tasks == [{"gid": task["gid"], "resource_type": "task", "name": "T", "resource_subtype": "default_task"}]
    opted = get(fake, f"/teams/{fake.team}/projects", opt_fields="notes,archived").json()["data"]
    assert opted == [
        {"gid": project["gid"], "resource_type": "project", "notes": "[syncd:hubspot:1]", "archived": False}
    ]
    opted = get(fake, f"/projects/{project['gid']}/tasks", opt_fields="name,notes,html_notes").json()["data"]
    assert opted == [
        {"gid": task["gid"], "resource_type": "task", "name": "T", "notes": "n", "html_notes": "<body>n</body>"}
    ]


def test_fields_missing_fault_leaves_asked_for_fields_out_of_one_listing(fake):
    first = fake.add_project(name="A", notes="[syncd:hubspot:1]")
    second = fake.add_project(name="B", notes="[syncd:hubspot:2]")
    path, params = f"/teams/{fake.team}/projects", {"opt_fields": "name,notes", "limit": 10}
    fake.inject("fields_missing", route="list")
    assert get(fake, f"/projects/{first['gid']}", opt_fields="notes").json()["data"]["notes"]  # other routes: fine
    spoiled = get(fake, path, **params)
    assert spoiled.status_code == 200 and spoiled.json()["next_page"] is None
    assert spoiled.json()["data"] == [
        {"gid": first["gid"], "resource_type": "project"},
        {"gid": second["gid"], "resource_type": "project"},
    ]
    assert get(fake, path, **params).json()["data"][0]["notes"] == "[syncd:hubspot:1]"  # once, then whole again
    fake.inject("fields_missing", route="list", fields="notes", gids=[second["gid"]])
    partly = get(fake, path, **params).json()["data"]
    assert partly[0] == {"gid": first["gid"], "resource_type": "project", "name": "A", "notes": "[syncd:hubspot:1]"}
    assert partly[1] == {"gid": second["gid"], "resource_type": "project", "name": "B"}
    assert fake.projects[1]["notes"] == "[syncd:hubspot:2]" and fake.faults_injected == 2  # the store keeps them


def test_fields_missing_on_task_listings_and_compact_records(fake):
    project = fake.add_project(name="P")["gid"]
    task = fake.add_task(name="T", notes="[syncd:hubspot:1]", projects=[project])["gid"]
    fake.inject("fields_missing", route="task_list")
    listed = get(fake, f"/projects/{project}/tasks", opt_fields="notes,name").json()["data"]
    assert listed == [{"gid": task, "resource_type": "task"}]
    fake.inject("fields_missing", route="task_list")
    assert get(fake, f"/projects/{project}/tasks").json()["data"] == [{"gid": task, "resource_type": "task"}]
    fake.inject("fields_missing", route="task_list")
    assert get(fake, "/tasks", project=project, opt_fields="notes").json()["data"] == [
        {"gid": task, "resource_type": "task"}
    ]
    assert "fields_missing" not in fake.fault_kinds and "fields_missing" in fake.FAULT_KINDS
