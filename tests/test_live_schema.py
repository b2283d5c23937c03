"""`syncd check` against the CRM's declared fields (issue 12, row 10): a misspelled rule or template name, a
write-back to a property that does not exist, and Salesforce's case-insensitive field names."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.sandbox.asana import FakeAsana
from syncd.sandbox.kit import DRIVERS

from conftest import CANARIES, CrmSyncd

TYPO = {"hubspot": "tierr", "salesforce": "Tierr__c", "pipedrive": "tierr"}
TIER = {"hubspot": "tier", "salesforce": "Tier__c", "pipedrive": "tier"}


@pytest.fixture(params=["hubspot", "salesforce", "pipedrive"])
def any_crm(request: pytest.FixtureRequest, tmp_path: Path, asana: FakeAsana) -> Iterator[CrmSyncd]:
    crm = DRIVERS[request.param](CANARIES).start()
    runner = CrmSyncd(tmp_path, crm, asana)
    yield runner
    crm.stop()


def test_check_names_each_unknown_field_with_the_nearest_known_one(any_crm: CrmSyncd) -> None:
    s = any_crm
    kind = s.crm.kind
    s.crm.add("Deal 1")  # declares the tier field where the CRM needs it declared
    target = s.crm.add_writeback()
    rule = s.crm.rule.replace(TIER[kind], TYPO[kind])
    flow = {"name": "onboarding", "when": rule, "project": {"name": "Onboarding {nmae}"}}
    s.config(flows=[{**flow, "writeback": {"property": target + "x"}}])
    result = s("check")
    assert result.returncode != 0
    out = result.stdout
    assert f"{TYPO[kind]!r} is not a" in out and f"did you mean {TIER[kind]!r}" in out, out
    assert "'nmae' is not a" in out and "did you mean 'name'" in out
    assert "[flow.writeback] property" in out and f"{target + 'x'!r}" in out
    assert "Traceback" not in result.stdout + result.stderr


def test_a_clean_config_passes_the_schema_checks(any_crm: CrmSyncd) -> None:
    s = any_crm
    s.crm.add("Deal 1")
    target = s.crm.add_writeback()
    s.config(flows=[{"name": "onboarding", "when": s.crm.rule, "writeback": {"property": target}}])
    result = s("check")
    assert "is not a" not in result.stdout and "read-only" not in result.stdout, result.stdout


def test_salesforce_fields_in_any_case_read_the_canonical_field(tmp_path: Path, asana: FakeAsana) -> None:
    crm = DRIVERS["salesforce"](CANARIES).start()
    try:
        s = CrmSyncd(tmp_path, crm, asana)
        s.config(
            crm={"fields": ["tier__c"]},
            flows=[{"name": "onboarding", "when": s.crm.rule.replace("Tier__c", "tier__c")}],
        )
        deal = s.crm.add("Deal 1")
        s.ok("once")
        s.crm.win(deal)
        s.ok("once")
        assert len(s.asana.projects) == 1, "tier__c reads Tier__c's value"
        assert "[crm] fields: 'tier__c' is 'Tier__c' in Salesforce" in s("check").stdout
    finally:
        crm.stop()


def test_run_refuses_to_start_with_a_name_the_crm_does_not_have(any_crm: CrmSyncd) -> None:
    s = any_crm
    s.crm.add("Deal 1")
    kind = s.crm.kind
    s.config(flows=[{"name": "onboarding", "when": s.crm.rule.replace(TIER[kind], TYPO[kind])}])
    daemon = s.start("run")
    out, err = daemon.communicate(timeout=60)
    assert daemon.returncode == 78, out + err
    assert f"{TYPO[kind]!r} is not a" in out + err and "Traceback" not in out + err
