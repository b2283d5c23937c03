"""Every request syncd sends to Asana is valid by Asana's OpenAPI file, as judged by a validator we did not
write (openapi-core): parameters, body schemas, enums and formats. `test_contract.py` adds what openapi-core
does not check (unknown body fields, deprecated fields).

The spec file's own quirks, where its schema contradicts its own words; the validator reads the file with
exactly these corrected (`QUIRKS`), and nothing else:
1. `custom_fields` in project and task requests declares `additionalProperties: {type: string}`, while its
   description says each value is "either an enum GID, string, number, or object (depending on the custom
   field type)" (a multi_enum takes a list of gids, a date `{"date": ...}`): any JSON value is allowed.
2. `DateVariableRequest.value` (instantiateProject's `requested_dates`) declares `format: date-time`, while
   its description says "This takes a date with `YYYY-MM-DD` format" and its example is '2022-01-01': it is
   validated as `format: date`.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest

from conftest import FAST, Syncd, assert_exactly_once, qualify, settle_until_done, unless_ci
from reliability.asana_contract import SPEC
from reliability.asana_contract import spec as asana_spec

pytestmark = unless_ci(not SPEC.exists(), f"Asana's OpenAPI spec is not at {SPEC}")
SERVER, PREFIX = "https://app.asana.com", "/api/1.0"


def corrected(document: dict[str, Any]) -> list[str]:
    """Correct the documented quirks in `document` (a parsed spec) in place; where each was found."""
    found = []
    for name, schema in document["components"]["schemas"].items():
        for part in [schema, *schema.get("allOf", [])]:
            custom = part.get("properties", {}).get("custom_fields", {})
            if custom.get("additionalProperties", {}).get("type") == "string" and "enum GID" in custom.get(
                "description", ""
            ):
                custom["additionalProperties"] = {}
                found.append(f"{name}.custom_fields")
    value = document["components"]["schemas"]["DateVariableRequest"]["properties"]["value"]
    if value.get("format") == "date-time" and "YYYY-MM-DD" in value.get("description", ""):
        value["format"] = "date"
        found.append("DateVariableRequest.value")
    return found


def keyed_by_strings(node: Any) -> Any:
    """A copy of the parsed YAML whose mapping keys are all strings (YAML reads `200:` as a number; OpenAPI's
    response codes are strings)."""
    if isinstance(node, dict):
        return {str(k): keyed_by_strings(v) for k, v in node.items()}
    if isinstance(node, list):
        return [keyed_by_strings(v) for v in node]
    return node


@pytest.fixture(scope="module")
def spec() -> Iterator[OpenAPI]:
    document = keyed_by_strings(asana_spec())
    found = corrected(document)
    assert "ProjectRequest.custom_fields" in found and "DateVariableRequest.value" in found, found
    yield OpenAPI.from_dict(document)


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
    asana = syncd.asana
    template = asana.add_template("Onboarding template", requested_dates=("1", ("3", "Kickoff")), duration=0.0)
    tier = asana.add_custom_field("Tier", options=("Startup", "Enterprise"))
    regions = asana.add_custom_field("Regions", "multi_enum", options=("EMEA", "APAC"))
    size, closed = asana.add_custom_field("Deal size", "number"), asana.add_custom_field("Closed on", "date")
    custom = {tier: "{tier}", regions: ["EMEA", "APAC"], size: "{amount}", closed: "{updated_at}"}
    syncd.config(**FAST, flows=[{
        "name": "onboarding", "when": "stage == 'closedwon' and amount > 10000 and tier == 'Enterprise'",
        "project": {"name": "Onboarding: {name}", "template": template, "privacy": "private", "color": "dark-red",
                    "owner": "1200000000000003", "due_days_after_close": 30, "custom_fields": custom,
                    "template_dates": {"Kickoff": "{updated_at}"}},
        "tasks": [{"name": "Kickoff {name}", "due_days_after_close": 3}],
    }, {
        "name": "plain", "when": "stage == 'closedwon' and amount > 10000 and tier == 'Enterprise'",
        "project": {"name": "Plain: {name}", "custom_fields": custom},
    }])  # fmt: skip
    qualify(syncd, 2)
    asana.inject("drop_after_create", route="task_create")
    asana.inject("503", route="update")  # the template's follow-up PUT is retried
    syncd("once")
    syncd.tick(0.7)
    settle_until_done(syncd)
    syncd("once")
    kinds = {(r.method, r.path.split("/")[1]) for r in asana.requests}
    assert ("POST", "tasks") in kinds and ("GET", "jobs") in kinds and ("PUT", "projects") in kinds
    assert ("GET", "custom_fields") in kinds and ("GET", "project_templates") in kinds
    assert syncd.op_states() == {"created": 4} and all(asana.custom_value(p, tier) for p in asana.projects)
    assert invalid(spec, syncd) == []
    print(f"openapi-core: {len(asana.requests)} Asana requests valid (templates, jobs, tasks, updates, custom fields)")
