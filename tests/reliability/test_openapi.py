"""Every request syncd sends to Asana is valid by Asana's OpenAPI file, as judged by a validator we did not
write (openapi-core): parameters, body schemas, enums and formats. `test_contract.py` adds what openapi-core
does not check (unknown body fields, deprecated fields)."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator

import pytest
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest

from conftest import FAST, Syncd, assert_exactly_once, qualify, settle_until_done, unless_ci
from reliability.asana_contract import SPEC

pytestmark = unless_ci(not SPEC.exists(), f"Asana's OpenAPI spec is not at {SPEC}")
SERVER, PREFIX = "https://app.asana.com", "/api/1.0"


@pytest.fixture(scope="module")
def spec() -> Iterator[OpenAPI]:
    yield OpenAPI.from_file_path(str(SPEC))


def invalid(spec: OpenAPI, syncd: Syncd) -> list[str]:
    """What openapi-core finds wrong with each request the fake Asana received."""
    problems = []
    for sent in syncd.asana.requests:
        request = MockRequest(
            SERVER, sent.method.lower(), PREFIX + sent.path.removeprefix(PREFIX), args=dict(sent.query), data=sent.body
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the spec's own deprecations and OAuth scheme, not our requests
            try:
                spec.validate_request(request)
            except Exception as exc:  # openapi-core's validation errors share no public base class
                detail = "; ".join(str(e.message) for e in getattr(exc.__cause__, "schema_errors", ()))
                problems.append(f"{sent.method} {sent.path}: {exc} {detail}".strip())
    return problems


def test_the_validator_refuses_a_bad_request(spec: OpenAPI) -> None:
    bad = MockRequest(
        SERVER, "post", f"{PREFIX}/teams/1/projects", data=json.dumps({"data": {"color": "neon"}}).encode()
    )
    with warnings.catch_warnings(), pytest.raises(Exception, match="body"):
        warnings.simplefilter("ignore")
        spec.validate_request(bad)


def test_plain_projects_through_faults_are_valid_requests(spec: OpenAPI, syncd: Syncd) -> None:
    syncd.config(**FAST, flows=[{
        "name": "onboarding", "when": "stage == 'closedwon' and amount > 10000 and tier == 'Enterprise'",
        "project": {"name": "Onboarding: {name}", "color": "dark-green", "privacy": "private",
                    "due_days_after_close": 30},
    }])  # fmt: skip
    deals = qualify(syncd, 4)
    syncd.asana.inject("drop_after_create", route="create")
    syncd.asana.inject("503", route="create")
    syncd("once")
    syncd.tick(0.7)
    settle_until_done(syncd)
    assert_exactly_once(syncd, deals)
    checked = len(syncd.asana.requests)
    assert invalid(spec, syncd) == []
    print(f"openapi-core: {checked} Asana requests valid")


def test_template_task_and_update_requests_are_valid_too(spec: OpenAPI, syncd: Syncd) -> None:
    template = syncd.asana.add_template("Onboarding template", duration=0.0)
    syncd.config(**FAST, flows=[{
        "name": "onboarding", "when": "stage == 'closedwon' and amount > 10000 and tier == 'Enterprise'",
        "project": {"name": "Onboarding: {name}", "template": template},
        "tasks": [{"name": "Kickoff {name}", "due_days_after_close": 3}],
    }])  # fmt: skip
    qualify(syncd, 2)
    syncd.asana.inject("drop_after_create", route="task_create")
    syncd("once")
    syncd.tick(0.7)
    settle_until_done(syncd)
    syncd("once")
    kinds = {(r.method, r.path.split("/")[1]) for r in syncd.asana.requests}
    assert ("POST", "tasks") in kinds and ("GET", "jobs") in kinds
    assert invalid(spec, syncd) == []
    print(f"openapi-core: {len(syncd.asana.requests)} Asana requests valid (templates, jobs, tasks, updates)")
