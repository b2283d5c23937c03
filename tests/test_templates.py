"""Issue 12 row 5: instantiateProject needs `requested_dates` for the template's own date variables, takes
`is_strict` and `privacy_setting`, and cannot set owner, color, due date or custom fields. syncd reads the
template's date variables and roles once (GET /project_templates/{gid}), dates every variable (from
`template_dates`, default the close date), and after the job succeeds sets the rest with one idempotent PUT
through the effect ledger."""

from __future__ import annotations

from test_custom_fields import RULE, http_client, seed

from syncd.flow_config import parse_flows
from syncd.sinks.asana import AsanaSink

from conftest import FAST, Syncd

USER = "1200000000000003"  # the fake's user


def template_flow(template: str, **project: object) -> dict:
    return {"name": "onboarding", "when": RULE, "project": {"name": "Onboarding: {name}", "template": template,
                                                             **project}}  # fmt: skip


def sent(syncd: Syncd, method: str, start: str) -> list[dict]:
    return [r.json()["data"] for r in syncd.asana.requests if r.method == method and r.path.startswith(start)]


def test_every_date_variable_gets_a_date_strictly_and_roles_and_privacy_are_sent(syncd: Syncd) -> None:
    template = syncd.asana.add_template(
        "Onboarding", requested_dates=("1", "2", ("3", "Kickoff")), roles=("Account manager",),
        tasks=({"name": "Welcome call", "role": "Account manager"},),
    )  # fmt: skip
    flow = template_flow(
        template,
        privacy="private",
        template_dates={"Kickoff": "{kickoff_date}"},
        template_roles={"Account manager": USER},
    )
    syncd.config(flows=[flow])
    seed(syncd, 2, kickoff_date="2026-10-15")
    syncd.ok("once")
    syncd.ok("once")
    bodies = sent(syncd, "POST", "/project_templates/")
    assert len(bodies) == 2 and syncd.op_states() == {"created": 2}
    (role,) = syncd.asana.templates[template]["requested_roles"]
    for body in bodies:
        assert body["is_strict"] is True and body["privacy_setting"] == "private"
        assert body["requested_dates"] == [
            {"gid": "1", "value": "2026-09-30"},
            {"gid": "2", "value": "2026-09-30"},
            {"gid": "3", "value": "2026-10-15"},
        ]
        assert body["requested_roles"] == [{"gid": role["gid"], "value": USER}]
    assert all(p["privacy_setting"] == "private" for p in syncd.asana.projects)
    assert {t["assignee"]["gid"] for t in syncd.asana.tasks if t["name"] == "Welcome call"} == {USER}
    template_reads = [r for r in syncd.asana.requests if r.method == "GET" and r.path.startswith("/project_templates/")]
    assert len(template_reads) == 1  # once per process, for both deals


def test_after_the_job_one_put_sets_owner_color_due_date_and_custom_fields_exactly_once(syncd: Syncd) -> None:
    template = syncd.asana.add_template("Onboarding", duration=1.0)
    tier = syncd.asana.add_custom_field("Tier", options=("Startup", "Enterprise"))
    flow = template_flow(
        template, owner=USER, color="dark-teal", due_days_after_close=30, custom_fields={tier: "{tier}"}
    )
    syncd.config(http=FAST["http"], asana=FAST["asana"], flows=[flow])
    (deal,) = seed(syncd)
    syncd.asana.inject("503", route="update")  # the first PUT fails: the follow-up is retried
    syncd.ok("once")  # instantiated; the job is still running
    assert sent(syncd, "PUT", "/projects/") == []
    for _ in range(8):
        syncd.tick(5.0)
        syncd("once")
    (project,) = syncd.asana.projects
    puts = sent(syncd, "PUT", "/projects/")
    assert len(puts) == 2 and puts[0] == puts[1]  # one refused by the 503, one landed; never again
    assert set(puts[0]) == {"name", "notes", "owner", "color", "due_on", "custom_fields"}
    assert puts[0]["custom_fields"] == {tier: syncd.asana.option_gid(tier, "Enterprise")}
    assert project["owner"]["gid"] == USER and project["color"] == "dark-teal"
    assert project["due_on"] == "2026-10-30" and syncd.asana.custom_value(project, tier) == "Enterprise"
    assert f"[syncd:hubspot:default:{deal}:onboarding]" in project["notes"]
    assert syncd.query("SELECT state FROM effects") == [("done",)]
    assert syncd.op_states() == {"created": 1} and syncd.asana.instantiate_requests == 1


def test_a_name_the_template_does_not_have_stops_the_op_before_the_post(syncd: Syncd, tmp_path) -> None:
    template = syncd.asana.add_template("Onboarding", requested_dates=("1", ("3", "Kickoff")))
    tier = syncd.asana.add_custom_field("Tier", options=("Enterprise",))
    flow = template_flow(template, template_dates={"Kikoff": "{close_date}"})
    syncd.config(flows=[flow, {**template_flow(template, custom_fields={tier: "Gold"}), "name": "gold"}])
    seed(syncd)
    syncd("once")
    assert syncd.asana.instantiate_requests == 0 and syncd.asana.projects == []
    reasons = dict(syncd.query("SELECT flow, last_error FROM ops WHERE state = 'dead'"))
    assert f'template_dates "Kikoff": template {template} ("Onboarding") has no date variable' in reasons["onboarding"]
    assert 'Did you mean "Kickoff"?' in reasons["onboarding"]
    assert '"Gold": the field has no option of that name' in reasons["gold"]  # checked before the POST too


def test_check_flows_reports_template_names_that_do_not_exist(asana, tmp_path) -> None:
    template = asana.add_template("Onboarding", requested_dates=("1",), roles=("Designer",))
    flows = parse_flows(
        [
            {"name": "dates", "when": RULE, "project": {"template": template, "template_dates": {"Start": "x"}}},
            {"name": "roles", "when": RULE, "project": {"template": template, "template_roles": {"Dezigner": USER}}},
            {"name": "fine", "when": RULE, "project": {"template": template, "template_dates": {"Start Date": "x"}}},
            {"name": "missing", "when": RULE, "project": {"template": "42"}},
        ],
        tmp_path / "config.toml",
    )
    http = http_client(asana)
    found = AsanaSink(http, workspace=asana.workspace, team=asana.team).check_flows(flows)
    http.close()
    assert len(found) == 3
    assert found[0].startswith("[flow 'dates' project] template_dates \"Start\": template")
    assert 'Did you mean "Start Date"?' in found[0]
    assert found[1].startswith("[flow 'roles' project] template_roles \"Dezigner\"") and "Designer" in found[1]
    assert found[2].startswith("[flow 'missing' project] template: Asana has no template 42")
