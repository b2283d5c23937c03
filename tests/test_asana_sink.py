"""`AsanaSink` over the fake Asana on 127.0.0.1: projects are created in their team's path (never with the
deprecated `team` in `POST /projects`' body), and the `Asana-Change` headers Asana answers with are read, kept
and logged once per change (https://developers.asana.com/docs/deprecations)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from syncd.http import HttpClient, RetryPolicy
from syncd.ratelimit import TokenBucket
from syncd.sandbox.asana import FakeAsana
from syncd.sinks import asana as asana_sink
from syncd.sinks.asana import AsanaSink, Change, parse_changes

from conftest import ASANA_TOKEN

DEPRECATION = "project_team_deprecation"  # the name the fake gives `team` in POST /projects (Asana gives none)


def http_client(asana: FakeAsana) -> HttpClient:
    return HttpClient(
        "asana",
        asana.url,
        {"Authorization": f"Bearer {ASANA_TOKEN}"},
        {"default": TokenBucket(rate=1e6, capacity=1e6, tokens=1e6)},
        asana_sink.PROFILE,
        timeout=(1.0, 1.0),
        retry=RetryPolicy(max_tries=1),
        sleep=lambda seconds: None,
    )


@pytest.fixture
def sink(asana: FakeAsana) -> Iterator[AsanaSink]:
    http = http_client(asana)
    yield AsanaSink(http, workspace=asana.workspace, team=asana.team)
    http.close()


def frozen_body(asana: FakeAsana, marker: str, **extra: Any) -> dict[str, Any]:
    """The shape `flows.new_op` freezes for a plain flow: `team` is in it, and stays in the op."""
    return {
        "name": "Onboarding: Acme",
        "notes": f"Deal 7\n\n{marker}",
        "workspace": asana.workspace,
        "team": asana.team,
        **extra,
    }


def sink_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "syncd.sinks.asana" and r.levelno == logging.WARNING]


def test_create_posts_to_the_team_path_without_team_in_the_body(asana, sink, caplog):
    caplog.set_level(logging.WARNING, logger="syncd.sinks.asana")
    body = frozen_body(asana, "[syncd:hubspot:default:7:onboarding]", color="dark-green")

    project = sink.create_project(body)

    (post,) = [r for r in asana.requests if r.method == "POST"]
    assert post.path == f"/teams/{asana.team}/projects"
    assert post.json()["data"] == {k: v for k, v in body.items() if k != "team"}  # workspace stays: the spec has it
    assert "team" in body  # the op's frozen body is not changed
    (made,) = asana.projects
    assert (made["gid"], made["team"]["gid"], made["workspace"]["gid"]) == (project.gid, asana.team, asana.workspace)
    assert sink.changes_seen == {}  # our own request triggers no deprecation
    assert not [r for r in sink_warnings(caplog) if DEPRECATION in r.getMessage()]
    assert "asana-enable" not in post.headers and "asana-disable" not in post.headers  # see READY_FOR


def test_the_team_comes_from_the_frozen_body_else_the_sinks_own(asana, sink):
    asana.add_team("1200000000000099", "Sales")
    sink.create_project(frozen_body(asana, "[syncd:a]", team="1200000000000099"))
    sink.create_project({k: v for k, v in frozen_body(asana, "[syncd:b]").items() if k != "team"})
    assert [r.path for r in asana.requests if r.method == "POST"] == [
        "/teams/1200000000000099/projects",
        f"/teams/{asana.team}/projects",
    ]
    assert [p["team"]["gid"] for p in asana.projects] == ["1200000000000099", asana.team]


def test_reconcile_still_lists_the_team_and_finds_the_marker(asana, sink):
    marker = "[syncd:hubspot:default:7:onboarding]"
    project = sink.create_project(frozen_body(asana, marker))
    found = sink.projects_by_marker()
    assert [p.gid for p in found[marker]] == [project.gid]
    assert {r.path for r in asana.requests if r.method == "GET"} == {f"/teams/{asana.team}/projects"}
    assert sink.changes_seen == {}


def test_an_announced_change_is_logged_once_and_kept(asana, sink, caplog):
    caplog.set_level(logging.WARNING, logger="syncd.sinks.asana")
    name = f"new_thing_{uuid.uuid4().hex[:8]}"  # warnings are once per process: a name no other test used
    info = "https://forum.asana.com/t/new-thing/1"
    asana.announce(f"name={name};info={info};affected=true", route="list")

    sink.create_project(frozen_body(asana, "[syncd:c]"))  # no announcement on create
    assert sink.changes_seen == {}
    sink.projects_by_marker()  # two listings (archived and not): two answers carry the header
    sink.projects_by_marker()

    assert sink.changes_seen == {name: Change(name, info, affected=True)}
    (record,) = [r for r in sink_warnings(caplog) if name in r.getMessage()]
    assert info in record.getMessage() and f"GET /teams/{asana.team}/projects" in record.getMessage()
    assert ASANA_TOKEN not in record.getMessage()

    other = AsanaSink(http_client(asana), workspace=asana.workspace, team=asana.team)
    other.projects_by_marker()  # another sink in the same process: kept, not logged again
    assert name in other.changes_seen
    assert len([r for r in sink_warnings(caplog) if name in r.getMessage()]) == 1
    other.http.close()


def test_enable_and_disable_go_out_on_every_request(asana):
    http = http_client(asana)
    sink = AsanaSink(http, workspace=asana.workspace, team=asana.team, enable=["a", "b", "a"], disable=["c"])
    sink.check()
    assert {(r.headers.get("asana-enable"), r.headers.get("asana-disable")) for r in asana.requests} == {("a,b", "c")}
    http.close()


def test_parse_changes_reads_repeated_headers():
    joined = "name=security_headers;info=https://asa.na/api-sh;affected=true, name=other;info=https://x.test/a,b"
    assert parse_changes(joined) == [
        Change("security_headers", "https://asa.na/api-sh", affected=True),
        Change("other", "https://x.test/a,b", affected=False),
    ]
    assert parse_changes(None) == [] and parse_changes("garbage") == []
