"""Operator commands: explain, backfill, check."""

from __future__ import annotations

import json

from conftest import Syncd, win


def deal(syncd: Syncd, name: str, stage: str = "contractsent") -> str:
    return syncd.hubspot.add_deal(
        dealname=name, dealstage=stage, amount="50000", tier="Enterprise", updated_at=syncd.ago(60)
    )


def test_explain_tells_why_a_deal_did_and_did_not_get_a_project(syncd: Syncd) -> None:
    won_later = deal(syncd, "Acme")
    already = deal(syncd, "Hooli", "closedwon")
    syncd.ok("once")
    win(syncd, won_later)
    syncd.ok("once")
    text = syncd.ok("explain", won_later).stdout
    assert "2 version(s) recorded" in text and "onboarding TRUE (entered the rule)" in text
    assert "stage == 'closedwon'  [stage='closedwon'] -> true" in text
    assert "created project" in text and "in_flight" in text and "committed before the create request" in text
    text = syncd.ok("explain", already).stdout
    assert "already matching during the baseline gets no project" in text
    data = json.loads(syncd.ok("explain", won_later, "--json").stdout)
    assert data["ops"][0]["state"] == "created" and len(data["versions"]) == 2
    assert syncd("explain", "999999").returncode == 1


def test_backfill_creates_projects_for_deals_won_before_the_baseline_once(syncd: Syncd) -> None:
    old = deal(syncd, "Hooli", "closedwon")
    deal(syncd, "Acme")
    syncd.ok("once")
    assert syncd.asana.projects == []
    dry = syncd.ok("backfill", "--since", "2020-01-01", "--dry-run")
    assert "Would queue 1 project(s)" in dry.stdout and syncd.query("SELECT count(*) FROM ops") == [(0,)]
    syncd.ok("backfill", "--since", "2020-01-01")
    again = syncd.ok("backfill", "--since", "2020-01-01")
    assert "Queued 0 project(s)" in again.stdout
    assert [p["name"] for p in syncd.asana.projects] == ["Onboarding: Hooli"]
    assert f":{old}:onboarding]" in syncd.asana.projects[0]["notes"]
    assert "Queued 0" in syncd.ok("backfill", "--since", "2999-01-01").stdout
    assert syncd("backfill", "--since", "yesterday").returncode == 2


def test_check_reaches_both_apis_and_names_what_is_wrong(syncd: Syncd) -> None:
    result = syncd.ok("check")
    assert "hubspot: ok" in result.stdout and "team 1200000000000002: Sandbox Team" in result.stdout
    assert "All checks passed." in result.stdout
    bad = syncd("check", ASANA_TOKEN="wrong-token-xyz")
    assert bad.returncode == 1 and "the token in ASANA_TOKEN was rejected" in bad.stdout
    syncd.config(asana={"team": "1299999999999999"})
    bad = syncd("check", HUBSPOT_TOKEN="wrong-hubspot")
    assert "hubspot: the credentials were rejected (401)" in bad.stdout
    assert "Check [asana] workspace and team" in bad.stdout and "2 problem(s) found." in bad.stdout
