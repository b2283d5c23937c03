"""The core scenarios for every CRM, through one parametrised suite (drivers in syncd.sandbox.kit): the
guarantees do not depend on which CRM the deals come from."""

from __future__ import annotations

import json
import signal
import time

from conftest import CANARIES, FAST, CrmSyncd, assert_exactly_once, integrity_ok, settle_until_done


def seed(s: CrmSyncd, n: int) -> list[str]:
    deals = [s.crm.add(f"Deal {i}") for i in range(n)]
    s.ok("once")  # baseline
    return deals


def test_baseline_then_exactly_one_project_per_newly_qualifying_deal(crm_syncd: CrmSyncd) -> None:
    s = crm_syncd
    already = s.crm.add("Already won", won=True)
    small, big, other = seed(s, 3)
    assert s.asana.projects == [] and s.query("SELECT count(*) FROM deals") == [(4,)]
    s.crm.win(small, amount=5000)
    s.crm.win(big)
    s.crm.win(other, tier="Mid-Market")
    for _ in range(3):
        s.ok("once")
    assert [p["name"] for p in s.asana.projects] == ["Onboarding: Deal 1"]
    assert f"[syncd:{s.crm.kind}:default:{big}:onboarding]" in s.asana.projects[0]["notes"]
    assert already not in s.asana.projects[0]["notes"]


def test_reopened_and_won_again_gets_no_second_project(crm_syncd: CrmSyncd) -> None:
    s = crm_syncd
    (deal,) = seed(s, 1)
    s.crm.win(deal)
    s.ok("once")
    crm_syncd.tick(1.1)  # whole-second timestamps (Salesforce, Pipedrive): the next version must be newer
    s.crm.reopen(deal)
    s.ok("once")
    crm_syncd.tick(1.1)
    s.crm.win(deal)
    s.ok("once")
    assert len(s.asana.projects) == 1 and s.asana.create_requests == 1


def test_ties_on_one_timestamp_across_pages(crm_syncd: CrmSyncd) -> None:
    s = crm_syncd
    minimum = {"hubspot": 1, "salesforce": 200, "pipedrive": 1}[s.crm.kind]
    s.config(crm={"page_size": max(minimum, 7)})
    seed(s, 0)
    stamp = s.ago(5)
    deals = [s.crm.add(f"Tied {i}", won=True, at=stamp) for i in range(230 if minimum > 1 else 30)]
    s.ok("once")
    settle_until_done(s)
    assert len(s.asana.projects) == len(deals)
    assert s.asana.duplicates() == {}


def test_crm_faults_and_a_malformed_record_lose_nothing(crm_syncd: CrmSyncd) -> None:
    s = crm_syncd
    s.config(http=FAST["http"], asana=FAST["asana"])
    deals = seed(s, 3)
    for deal in deals:
        s.crm.win(deal)
    s.crm.add_malformed("990001")
    s.crm.inject("503", times=2)
    s.crm.inject("malformed_json")
    s.asana.inject("drop_after_create", route="create")
    s("once")
    crm_syncd.tick(0.7)
    settle_until_done(s)
    assert_exactly_once(s, deals, crm=s.crm.kind)
    report = json.loads(s.ok("status", "--json").stdout)
    assert report["quarantine"] >= 1 and report["quarantined_records"][0]["reason"]


def test_kill_9_mid_run_then_reruns_keep_exactly_once(crm_syncd: CrmSyncd) -> None:
    s = crm_syncd
    s.config(http=FAST["http"], asana={**FAST["asana"], "requests_per_minute": 300})
    deals = seed(s, 6)
    for deal in deals:
        s.crm.win(deal)
    for after in (0.3, 0.5, 0.7):
        process = s.start("once")
        time.sleep(after)
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=10)
        integrity_ok(s)
    crashed = s("once", crash_at="after_inflight_commit")
    assert crashed.returncode in (-signal.SIGKILL, 0)
    crm_syncd.tick(0.7)
    settle_until_done(s)
    assert_exactly_once(s, deals, crm=s.crm.kind)


def test_credentials_never_leak(crm_syncd: CrmSyncd) -> None:
    s = crm_syncd
    deals = seed(s, 1)
    s.crm.win(deals[0])
    s.crm.add_malformed("990002")
    outputs = [s("-vv", "once"), s("status", "--json"), s("-vv", "once", "--dry-run")]
    for result in outputs:
        for secret in CANARIES.values():
            assert secret not in result.stdout + result.stderr
    for path in s.workdir.glob("syncd.db*"):
        for secret in CANARIES.values():
            assert secret.encode() not in path.read_bytes()
