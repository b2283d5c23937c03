"""`syncd once` end to end: the fake HubSpot and fake Asana over HTTP, real SQLite, real subprocesses."""

from __future__ import annotations

import json

import pytest

from conftest import ASANA_TOKEN, HUBSPOT_TOKEN, Syncd, qualify, win


def seed(syncd: Syncd, n: int = 5, **props: str) -> list[str]:
    defaults = {"dealstage": "contractsent", "amount": "50000", "tier": "Enterprise"}
    return [
        syncd.hubspot.add_deal(dealname=f"Deal {i}", updated_at=syncd.ago(60), **{**defaults, **props})
        for i in range(n)
    ]


def project_names(syncd: Syncd) -> list[str]:
    return sorted(p["name"] for p in syncd.asana.projects)


def test_baseline_creates_nothing_even_for_deals_that_already_qualify(syncd: Syncd) -> None:
    seed(syncd, 3)
    seed(syncd, 2, dealstage="closedwon")
    result = syncd.ok("once")
    assert "Baseline recorded: 5 deals" in result.stdout
    assert syncd.asana.projects == []
    assert syncd.query("SELECT count(*) FROM deals") == [(5,)]
    assert syncd.query("SELECT count(*) FROM ops") == [(0,)]


def test_a_deal_that_newly_qualifies_gets_exactly_one_project_across_reruns(syncd: Syncd) -> None:
    small, big, other_tier = seed(syncd, 3)
    syncd.ok("once")
    win(syncd, small, amount="5000")
    win(syncd, big)
    win(syncd, other_tier, tier="Mid-Market")
    first = syncd.ok("once")
    assert "Created: Onboarding: Deal 1" in first.stdout
    for _ in range(3):
        syncd.ok("once")
    assert project_names(syncd) == ["Onboarding: Deal 1"]
    project = syncd.asana.projects[0]
    assert f"[syncd:hubspot:default:{big}:onboarding]" in project["notes"]
    assert project["team"]["gid"] == syncd.asana.team
    assert syncd.op_states() == {"created": 1}


def test_a_new_deal_created_already_won_after_the_baseline_gets_a_project(syncd: Syncd) -> None:
    seed(syncd, 1)
    syncd.ok("once")
    syncd.hubspot.add_deal(
        dealname="Fresh", dealstage="closedwon", amount="20000", tier="Enterprise", updated_at=syncd.ago()
    )
    syncd.ok("once")
    assert project_names(syncd) == ["Onboarding: Fresh"]


def test_a_deal_that_requalifies_after_reopening_gets_no_second_project(syncd: Syncd) -> None:
    (deal,) = qualify(syncd, 1)
    syncd.ok("once")
    syncd.hubspot.update_deal(deal, dealstage="contractsent", updated_at=syncd.ago(2.5))
    syncd.ok("once")
    syncd.tick(1.0)
    syncd.hubspot.update_deal(deal, dealstage="closedwon", updated_at=syncd.ago(2.0))
    result = syncd.ok("once")
    assert "1 changed" in result.stdout
    assert len(syncd.asana.projects) == 1
    assert syncd.asana.create_requests == 1


def test_several_flows_each_get_at_most_one_project_per_deal(syncd: Syncd) -> None:
    syncd.config(
        flows=[
            {"name": "onboarding", "when": "stage == 'closedwon'", "project": {"name": "Onboarding: {name}"}},
            {"name": "big", "when": "amount >= 100000", "project": {"name": "Exec sponsor: {name}"}},
        ]
    )
    (deal,) = seed(syncd, 1, amount="1000")
    syncd.ok("once")
    win(syncd, deal, amount="250000")
    syncd.ok("once")
    syncd.ok("once")
    assert project_names(syncd) == ["Exec sponsor: Deal 0", "Onboarding: Deal 0"]


def test_dry_run_changes_nothing(syncd: Syncd) -> None:
    qualify(syncd, 1)
    before = syncd.query("SELECT value_ms FROM cursors"), syncd.query("SELECT id, updated_at_ms FROM deals")
    result = syncd.ok("once", "--dry-run")
    assert "Would create: Onboarding: Deal 0" in result.stdout
    assert (syncd.query("SELECT value_ms FROM cursors"), syncd.query("SELECT id, updated_at_ms FROM deals")) == before
    assert syncd.query("SELECT count(*) FROM ops") == [(0,)]
    assert syncd.asana.create_requests == 0
    syncd.ok("once")
    assert project_names(syncd) == ["Onboarding: Deal 0"]


def test_a_lost_asana_response_is_reconciled_into_exactly_one_project(syncd: Syncd) -> None:
    qualify(syncd, 1)
    syncd.asana.inject("drop_after_create", route="create")
    syncd.ok("once")
    assert syncd.op_states() == {"unknown": 1}
    assert len(syncd.asana.projects) == 1
    syncd.ok("once")  # too early: the settle delay has not passed, so nothing is decided
    assert syncd.op_states() == {"unknown": 1}
    syncd.tick(1.3)
    result = syncd.ok("once")
    assert "found by reconcile" in result.stdout
    assert syncd.op_states() == {"created": 1}
    assert syncd.asana.create_requests == 1
    gid = syncd.query("SELECT asana_gid FROM ops")[0][0]
    assert gid == syncd.asana.projects[0]["gid"]


def test_a_server_error_before_creation_is_reconciled_then_created_once(syncd: Syncd) -> None:
    qualify(syncd, 1)
    syncd.asana.inject("503", route="create")
    syncd.ok("once")
    assert syncd.op_states() == {"unknown": 1}
    assert syncd.asana.projects == []
    syncd.tick(1.3)
    syncd.ok("once")
    assert syncd.op_states() == {"created": 1}
    assert len(syncd.asana.projects) == 1
    assert syncd.asana.create_requests == 2


def test_asana_rejecting_the_request_makes_the_op_dead_with_the_reason_in_status(syncd: Syncd) -> None:
    syncd.config(asana={"team": "1299999999999999"})
    (deal,) = qualify(syncd, 1)
    result = syncd("once")
    assert result.returncode == 1
    assert syncd.op_states() == {"dead": 1}
    status = syncd("status", "--json")
    assert status.returncode == 1
    report = json.loads(status.stdout)
    assert report["ops"]["dead"] == 1
    assert report["dead_ops"][0]["deal_id"] == deal
    assert "404" in report["dead_ops"][0]["reason"]
    assert report["healthy"] is False


def test_status_json_has_the_documented_shape(syncd: Syncd) -> None:
    seed(syncd, 2)
    syncd.ok("once")
    report = json.loads(syncd.ok("status", "--json").stdout)
    assert set(report) >= {"cursor", "last_cycle", "deals", "ops", "quarantine", "healthy"}
    assert set(report["last_cycle"]) >= {"ok", "started_at", "finished_at", "error"}
    assert set(report["ops"]) == {"pending", "in_flight", "unknown", "created", "dead"}
    assert report["deals"] == 2 and report["healthy"] is True and report["cursor"].endswith("Z")
    human = syncd.ok("status").stdout
    assert "healthy      yes" in human


@pytest.mark.sqlite_file
def test_status_needs_no_tokens_and_never_writes(syncd: Syncd) -> None:
    seed(syncd, 1)
    syncd.ok("once")
    before = syncd.db_path.stat().st_mtime_ns
    result = syncd("status", HUBSPOT_TOKEN="", ASANA_TOKEN="")
    assert result.returncode == 0, result.stderr
    assert syncd.db_path.stat().st_mtime_ns == before


def test_status_before_any_run_says_what_to_do(syncd: Syncd) -> None:
    result = syncd("status")
    assert result.returncode == 1
    assert "healthy      NO: There is no syncd " in result.stdout and "Run 'syncd once' to create it" in result.stdout


def test_tokens_never_reach_output_logs_or_the_database(syncd: Syncd) -> None:
    (deal,) = seed(syncd, 1)
    syncd.asana.inject("500", route="create")
    outputs = [syncd("-vv", "once")]
    win(syncd, deal)
    outputs.append(syncd("-vv", "once"))
    syncd.config(asana={"team": "1299999999999999"})
    outputs += [syncd("-vv", "once"), syncd("status", "--json"), syncd("status")]
    for result in outputs:
        for token in (HUBSPOT_TOKEN, ASANA_TOKEN):
            assert token not in result.stdout and token not in result.stderr
    assert "GET" in outputs[0].stderr or "POST" in outputs[0].stderr  # the logs really were on
    for path in syncd.workdir.glob("syncd.db*"):
        data = path.read_bytes()
        assert HUBSPOT_TOKEN.encode() not in data and ASANA_TOKEN.encode() not in data


def test_wrong_asana_token_keeps_the_op_pending_and_names_the_variable(syncd: Syncd) -> None:
    qualify(syncd, 1)
    result = syncd("once", ASANA_TOKEN="wrong-token-123")
    assert result.returncode == 1
    assert "token_env" in result.stdout
    assert syncd.op_states() == {"pending": 1}
    syncd.ok("once")
    assert len(syncd.asana.projects) == 1


def test_a_rejected_hubspot_token_fails_the_cycle_and_names_the_key(syncd: Syncd) -> None:
    result = syncd("once", HUBSPOT_TOKEN="wrong")
    assert result.returncode == 1
    assert "[crm] token_env" in result.stdout
    assert syncd.query("SELECT count(*) FROM cursors") == [(0,)]


def test_an_unreadable_page_leaves_the_cursor_and_the_next_run_recovers(syncd: Syncd) -> None:
    (deal,) = seed(syncd, 1)
    syncd.ok("once")
    cursor = syncd.query("SELECT value_ms FROM cursors")
    win(syncd, deal)
    syncd.hubspot.inject("wrong_envelope", times=4, route="search")  # more than one cycle retries
    result = syncd("once")
    assert result.returncode == 1 and "cursor stays where it was" in result.stdout
    assert syncd.query("SELECT value_ms FROM cursors") == cursor
    syncd.ok("once")
    assert project_names(syncd) == ["Onboarding: Deal 0"]


def test_a_malformed_deal_is_quarantined_and_does_not_block_the_cursor(syncd: Syncd) -> None:
    (deal,) = seed(syncd, 1)
    syncd.ok("once")
    syncd.hubspot.add_raw_deal({"id": "777", "properties": {"hs_lastmodifieddate": "garbage", "amount": "x"}})
    win(syncd, deal)
    syncd.ok("once")
    assert project_names(syncd) == ["Onboarding: Deal 0"]
    report = json.loads(syncd.ok("status", "--json").stdout)
    assert report["quarantine"] >= 1
    assert report["quarantined_records"][0]["record_id"] == "777"
    assert "not a timestamp" in report["quarantined_records"][0]["reason"]
    assert "quarantined: record 777" in syncd.ok("status").stdout


def test_hubspot_string_booleans_match_a_boolean_rule(syncd: Syncd) -> None:
    """HubSpot sends booleans as the strings "true"/"false"; `hs_is_closed_won == true` must still fire."""
    syncd.config(flows=[{"name": "onboarding", "when": "hs_is_closed_won == true"}])
    deal = syncd.hubspot.add_deal(dealname="Acme", hs_is_closed_won="false", updated_at=syncd.ago(60))
    syncd.ok("once")
    syncd.hubspot.update_deal(deal, hs_is_closed_won="true", updated_at=syncd.ago())
    syncd.ok("once")
    assert project_names(syncd) == ["Onboarding: Acme"]
