"""The fake Asana behaves as Asana's documentation says, over real HTTP, and misbehaves as advertised."""

from __future__ import annotations

import re
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from syncd.sandbox import server
from syncd.sandbox.asana import FakeAsana

SPEC = Path("/work/shared/specs/asana/asana_oas.yaml")
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
    found = set(schema.get("properties", {}))
    for part in schema.get("allOf", []):
        ref = part.get("$ref", "")
        found |= _schema_properties(text, ref.rsplit("/", 1)[1]) if ref else set(part.get("properties", {}))
    return found


def test_created_project_keys_are_those_of_project_response(fake):
    pytest.importorskip("yaml")
    if not SPEC.exists():
        pytest.skip("Asana OpenAPI spec not available")
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
    r = get(fake, "/tasks")
    assert r.status_code == 404 and r.json()["errors"][0]["message"]
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
    assert get(fake, "/projects").status_code == 429  # too early: counted
    assert fake.early_requests == 1 and fake.rate_limited == 2
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
