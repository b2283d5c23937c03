"""Issue 12 row 4: Asana enum custom fields take an option **gid**. A flow names options by the name people see
in Asana; syncd reads the field's definition once (GET /custom_fields/{gid}), keeps it, and sends gids for
enum and multi_enum fields, numbers, dates and people in their own types. A name the field has no option
for stops the op before anything is sent (dead, with a sentence naming the key, the value and the options),
and `check_flows` (for `syncd check`) says the same."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from test_asana_sink import http_client

from syncd.flow_config import parse_flows
from syncd.flows import FieldValue, Template
from syncd.sandbox.asana import FakeAsana
from syncd.sinks.asana import AsanaSink

from conftest import FAST, Syncd, qualify

RULE = "stage == 'closedwon' and amount > 10000 and tier == 'Enterprise'"


def seed(syncd: Syncd, n: int = 1, **props: str) -> list[str]:
    return qualify(syncd, n, closedate="2026-09-30", **props)


def flow(custom_fields: dict, **project: object) -> dict:
    return {"name": "onboarding", "when": RULE, "project": {"name": "Onboarding: {name}", **project,
                                                             "custom_fields": custom_fields}}  # fmt: skip


def fields_asked(asana: FakeAsana) -> list[str]:
    return [r.path for r in asana.requests if r.method == "GET" and r.path.startswith("/custom_fields/")]


def test_enum_options_by_name_are_sent_as_gids_and_other_types_as_theirs(syncd: Syncd) -> None:
    asana = syncd.asana
    tier = asana.add_custom_field("Tier", options=("Startup", "Enterprise"))
    regions = asana.add_custom_field("Regions", "multi_enum", options=("EMEA", "APAC", "AMER"))
    labels = asana.add_custom_field("Labels", "multi_enum", options=("Onboarding", "Priority"))
    size = asana.add_custom_field("Deal size", "number")
    closed = asana.add_custom_field("Closed on", "date")
    people = asana.add_custom_field("Account team", "people")
    custom = {tier: "{tier}", regions: "{region}", labels: ["Onboarding", "priority"], size: "{amount}",
              closed: "{close_date}", people: "1200000000000003"}  # fmt: skip
    syncd.config(flows=[flow(custom)])
    seed(syncd, 2, region="EMEA;APAC")
    syncd.ok("once")
    assert len(asana.projects) == 2 and syncd.op_states() == {"created": 2}
    for project in asana.projects:
        assert asana.custom_value(project, tier) == "Enterprise"
        assert asana.custom_value(project, regions) == ["EMEA", "APAC"]
        assert asana.custom_value(project, labels) == ["Onboarding", "Priority"]  # names match ignoring case
        assert asana.custom_value(project, size) == 50000
        assert asana.custom_value(project, closed) == "2026-09-30"
        assert asana.custom_value(project, people) == ["1200000000000003"]
    sent = [r.json()["data"]["custom_fields"] for r in asana.requests if r.method == "POST"]
    assert sent[0][tier] == asana.option_gid(tier, "Enterprise") and sent[0][closed] == {"date": "2026-09-30"}
    assert sorted(fields_asked(asana)) == sorted(f"/custom_fields/{gid}" for gid in custom)  # once per process


def test_an_unknown_option_name_is_not_sent_and_the_op_is_dead_with_the_options(syncd: Syncd) -> None:
    tier = syncd.asana.add_custom_field("Tier", options=("Startup", "Enterprise"))
    syncd.config(http=FAST["http"], asana=FAST["asana"], flows=[flow({tier: "Enterprse"})])
    (deal,) = seed(syncd)
    syncd("once")
    assert syncd.asana.create_requests == 0 and syncd.asana.projects == []
    ((state, reason),) = syncd.query("SELECT state, last_error FROM ops")
    assert state == "dead"
    assert f'custom_fields "{tier}" (the enum field "Tier") = "Enterprse"' in reason
    assert 'Did you mean "Enterprise"?' in reason and "Its options are: Startup, Enterprise." in reason
    status = syncd("status")
    assert status.returncode == 1 and "Did you mean" in status.stdout
    syncd.config(http=FAST["http"], asana=FAST["asana"], flows=[flow({tier: "Enterprise"})])
    syncd.ok("retry", deal)
    syncd.tick(1.0)
    syncd.ok("once")
    (project,) = syncd.asana.projects
    assert syncd.asana.custom_value(project, tier) == "Enterprise"


def test_a_disabled_option_is_not_selectable(syncd: Syncd) -> None:
    tier = syncd.asana.add_custom_field("Tier", options=("Enterprise", "Legacy"), disabled=("Enterprise",))
    syncd.config(flows=[flow({tier: "{tier}"})])
    seed(syncd)
    syncd("once")
    ((reason,),) = syncd.query("SELECT last_error FROM ops WHERE state = 'dead'")
    assert "that option is disabled in Asana" in reason and syncd.asana.create_requests == 0


@pytest.fixture
def sink(asana: FakeAsana) -> Iterator[tuple[AsanaSink, list[float]]]:
    now = [0.0]
    http = http_client(asana)
    yield AsanaSink(http, workspace=asana.workspace, team=asana.team, timer=lambda: now[0]), now
    http.close()


def test_definitions_are_kept_for_an_hour_and_read_again_for_a_new_option(asana, sink) -> None:
    sink, now = sink
    tier = asana.add_custom_field("Tier", options=("Startup",))
    body = {"name": "P", "notes": "n", "workspace": asana.workspace, "team": asana.team}
    sink.create_project({**body, "custom_fields": {tier: "Startup"}})
    sink.create_project({**body, "custom_fields": {tier: "Startup"}})
    assert len(fields_asked(asana)) == 1
    now[0] = 3600.0
    sink.create_project({**body, "custom_fields": {tier: "Startup"}})
    assert len(fields_asked(asana)) == 2  # expired: read again
    asana.custom_fields[tier]["enum_options"].append(
        {"gid": "1299", "resource_type": "enum_option", "name": "Growth", "enabled": True, "color": "none"}
    )
    now[0] = 3700.0  # an option the kept reading lacks: read again (at most once a minute) before refusing
    sink.create_project({**body, "custom_fields": {tier: "Growth"}})
    assert len(fields_asked(asana)) == 3 and asana.custom_value(asana.projects[-1], tier) == "Growth"


def test_check_flows_names_the_flow_key_value_and_fix(asana, sink, tmp_path) -> None:
    sink, _ = sink
    tier = asana.add_custom_field("Tier", options=("Startup", "Enterprise"))
    size = asana.add_custom_field("Deal size", "number")
    flows = parse_flows(
        [
            {"name": "ok", "when": RULE, "project": {"custom_fields": {tier: "Startup", size: "{amount}"}}},
            {"name": "typo", "when": RULE, "project": {"custom_fields": {tier: "Entreprise"}}},
            {"name": "by_deal", "when": RULE, "project": {"custom_fields": {tier: "{tier}"}}},
            {"name": "nofield", "when": RULE, "project": {"custom_fields": {"42": "x"}}},
        ],
        tmp_path / "config.toml",
    )
    found = sink.check_flows(flows, {"tier": ["Enterprise", "startup", "Growth"]})
    assert found[0] == (
        f"""[flow 'typo' project] custom_fields "{tier}" (the enum field "Tier") = "Entreprise": the field has no """
        """option of that name. Did you mean "Enterprise"? Its options are: Startup, Enterprise. Fix the value """
        "in custom_fields, or add or enable the option in Asana; then 'syncd retry' the deal."
    )
    assert found[1].startswith(f'[flow \'by_deal\' project] custom_fields "{tier}" (the enum field "Tier") = "Growth"')
    assert found[2].startswith("[flow 'nofield' project] custom_fields \"42\": Asana has no custom field 42")
    assert len(found) == 3


def test_syncd_check_reports_an_option_name_the_field_does_not_have(syncd: Syncd) -> None:
    tier = syncd.asana.add_custom_field("Tier", options=("Startup", "Enterprise"))
    syncd.config(flows=[flow({tier: "Enterprse"})])
    result = syncd("check")
    assert result.returncode == 1
    assert f"""asana: [flow 'onboarding' project] custom_fields "{tier}" (the enum field "Tier")""" in result.stdout
    assert 'Did you mean "Enterprise"?' in result.stdout and "1 problem(s) found." in result.stdout
    syncd.config(flows=[flow({tier: "Enterprise"})])
    assert "All checks passed." in syncd.ok("check").stdout


def test_a_list_valued_deal_property_renders_as_its_items() -> None:
    """Pipedrive's set fields arrive as lists of labels: each is one option, not the list's repr."""
    assert FieldValue((Template.parse("{regions}"),)).render({"regions": ["EMEA", "APAC"]}) == ["EMEA", "APAC"]
    listed = FieldValue((Template.parse("{regions}"), Template.parse("Priority")), listed=True)
    assert listed.render({"regions": ["EMEA"]}) == ["EMEA", "Priority"]
    assert FieldValue((Template.parse("Tier {tier}"),)).render({"tier": ["x"]}) == "Tier ['x']"


def test_a_failed_definition_read_sends_no_post_and_leaves_the_op_pending(syncd: Syncd) -> None:
    """The read happens after `in_flight` is committed; its failure proves no POST was sent, so the op is
    pending again (not `unknown`, which would cost a listing and an attempt)."""
    tier = syncd.asana.add_custom_field("Tier", options=("Enterprise",))
    syncd.config(http=FAST["http"], asana=FAST["asana"], flows=[flow({tier: "{tier}"})])
    seed(syncd)
    syncd.asana.inject("503", times=4, route="get")  # every try of the HTTP layer's retries
    syncd("once")
    assert syncd.asana.create_requests == 0
    assert syncd.op_states() == {"pending": 1}
    ((reason,),) = syncd.query("SELECT detail FROM events WHERE ledger = 'ops' ORDER BY id DESC LIMIT 1")
    assert "before the POST, which was not sent" in reason
    syncd.tick(60)
    syncd.ok("once")
    assert syncd.op_states() == {"created": 1} and syncd.asana.create_requests == 1


def test_syncd_check_judges_a_property_template_by_the_crms_own_options(syncd: Syncd) -> None:
    """HubSpot declares `tier`'s options (Enterprise, Growth, Starter): each must be an option of Asana's field."""
    tier = syncd.asana.add_custom_field("Tier", options=("Startup", "Enterprise"))
    syncd.config(flows=[flow({tier: "{tier}"})])
    result = syncd("check")
    assert result.returncode == 1, result.stdout
    assert '= "Growth": the field has no option of that name' in result.stdout
    assert '= "Starter": the field has no option of that name. Did you mean "Startup"?' in result.stdout
    assert '= "Enterprise"' not in result.stdout
