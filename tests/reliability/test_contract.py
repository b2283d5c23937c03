"""Every request syncd sends to Asana, through faults, reconciles and retries, is one Asana's spec defines."""

from __future__ import annotations

from conftest import FAST, Syncd, assert_exactly_once, qualify, settle_until_done, unless_ci
from reliability.asana_contract import SPEC, operation, violations

pytestmark = unless_ci(not SPEC.exists(), f"Asana's OpenAPI spec is not at {SPEC} (set SYNCD_ASANA_SPEC)")


def check_requests(syncd: Syncd) -> tuple[list[str], list[str]]:
    """Every request the fake Asana received, checked against the spec; prints what was covered."""
    problems = []
    for request in syncd.asana.requests:
        body = request.json() if request.body else None
        problems += violations(request.method, request.path, request.query, body)
    kinds = sorted({f"{r.method} {operation(r.method, r.path)[0]}" for r in syncd.asana.requests})
    print(f"{len(syncd.asana.requests)} Asana requests checked against the spec ({', '.join(kinds)})")
    return problems, kinds


def test_the_checker_catches_a_bad_request() -> None:
    assert violations("POST", "/projects", {}, {"data": {"name": "x", "bogus_field": 1}}) == [
        "POST /projects: body field 'bogus_field' is not in the schema"
    ]
    assert violations("GET", "/teams/1/projects", {"limit": "500"}, None)
    assert violations("POST", "/projects", {}, {"data": {"name": "x", "workspace": "1", "team": "2"}}) == [
        "POST /projects: body field 'team' is deprecated"
    ]
    deprecated_filter = ["GET /projects: query parameter 'team' is deprecated"]
    assert violations("GET", "/projects", {"team": "2"}, None) == deprecated_filter
    assert violations("POST", "/teams/2/projects", {}, {"data": {"name": "x", "workspace": "1"}}) == []
    assert violations("DELETE", "/nothing/here", {}, None)


def test_every_asana_request_matches_the_openapi_spec(syncd: Syncd) -> None:
    syncd.config(**FAST)
    deals = qualify(syncd, 5)
    syncd.asana.inject("drop_after_create", route="create")
    syncd.asana.inject("503", route="create")
    syncd.asana.inject("429", route="list", retry_after=0)
    syncd("once")
    syncd.tick(0.7)
    settle_until_done(syncd)
    assert_exactly_once(syncd, deals)
    problems, kinds = check_requests(syncd)
    assert "POST /teams/{team_gid}/projects" in kinds and "GET /teams/{team_gid}/projects" in kinds
    assert "POST /projects" not in kinds  # `team` in its body is deprecated
    assert problems == []


def test_template_task_and_update_requests_match_the_spec_too(syncd: Syncd) -> None:
    asana = syncd.asana
    template = asana.add_template("Onboarding template", requested_dates=("1", ("3", "Kickoff")), roles=("AM",))
    tier = asana.add_custom_field("Tier", options=("Startup", "Enterprise"))
    rule = "stage == 'closedwon' and amount > 10000 and tier == 'Enterprise'"
    project = {"name": "Onboarding: {name}", "custom_fields": {tier: "{tier}"}, "owner": "1200000000000003"}
    syncd.config(
        **FAST,
        flows=[
            {
                "name": "onboarding",
                "when": rule,
                "project": {
                    **project,
                    "template": template,
                    "privacy": "private",
                    "template_dates": {"Kickoff": "{updated_at}"},
                    "template_roles": {"AM": "1200000000000003"},
                },
                "tasks": [{"name": "Kickoff {name}", "due_days_after_close": 3}],
            },
            {"name": "plain", "when": rule, "project": project},
        ],
    )
    qualify(syncd, 3)
    asana.inject("drop_after_create", route="task_create")
    syncd("once")
    syncd.tick(0.7)
    settle_until_done(syncd)
    syncd("once")
    problems, kinds = check_requests(syncd)
    assert any("instantiateProject" in k for k in kinds) and any("/tasks" in k for k in kinds)
    assert "GET /custom_fields/{custom_field_gid}" in kinds and "PUT /projects/{project_gid}" in kinds
    assert "GET /project_templates/{project_template_gid}" in kinds
    assert syncd.op_states() == {"created": 6} and all(asana.custom_value(p, tier) for p in asana.projects)
    assert problems == []
