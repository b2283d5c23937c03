"""Exactly once for the whole life of a deployment (issue 11): what operators and CRMs do around the process.

Each test is one row of the issue's table, over the fakes (HTTP on 127.0.0.1), on real SQLite files and on a
real PostgreSQL (each test whose guarantee is not about the SQLite file runs on both). The common thread: the
ledger is a cache that can go back in time, so Asana is asked before any create.
"""

from __future__ import annotations

import resource
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest

from syncd.sandbox.asana import FakeAsana
from syncd.sandbox.hubspot import FakeHubSpot

from conftest import Syncd, win

FLOW = {"name": "onboarding", "when": "stage == 'closedwon' and amount > 10000 and tier == 'Enterprise'"}
SQLITE_ONLY = pytest.mark.parametrize("syncd", ["sqlite"], indirect=True)  # about the file: backups, WAL, disk


@pytest.fixture(params=["sqlite", "postgres"])
def syncd(request: pytest.FixtureRequest, tmp_path: Path, hubspot: FakeHubSpot, asana: FakeAsana) -> Syncd:
    runner = Syncd(
        tmp_path, hubspot, asana, postgres=request.getfixturevalue("postgres") if request.param == "postgres" else None
    )
    runner.config()
    return runner


def seed(syncd: Syncd, n: int = 2) -> list[str]:
    return [
        syncd.hubspot.add_deal(
            dealname=f"Deal {i}", dealstage="contractsent", amount="50000", tier="Enterprise", updated_at=syncd.ago(60)
        )
        for i in range(n)
    ]


def backup(db: Path, to: Path) -> None:
    """A correct backup, as an operator takes one: the SQLite online backup API."""
    source, target = sqlite3.connect(db), sqlite3.connect(to)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()


def restore(backup_file: Path, db: Path) -> None:
    for leftover in (db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        leftover.unlink(missing_ok=True)
    db.write_bytes(backup_file.read_bytes())


def markers(syncd: Syncd) -> list[str]:
    return sorted(p["notes"].splitlines()[-1] for p in syncd.asana.projects)


@SQLITE_ONLY
def test_a_restored_backup_does_not_create_the_projects_made_since_again(syncd: Syncd, tmp_path: Path) -> None:
    deals = seed(syncd)
    syncd.ok("once")  # baseline
    backup(syncd.db_path, tmp_path / "backup.db")
    for deal in deals:
        win(syncd, deal)
    syncd.ok("once")
    assert syncd.asana.create_requests == 2
    restore(tmp_path / "backup.db", syncd.db_path)
    result = syncd.ok("once")
    assert syncd.asana.create_requests == 2, result.stdout
    assert "(already in Asana)" in result.stdout
    assert syncd.op_states() == {"created": 2}
    assert syncd.asana.duplicates() == {}


@SQLITE_ONLY
def test_a_lost_wal_after_a_kill_does_not_create_a_project_twice(syncd: Syncd, tmp_path: Path) -> None:
    (deal,) = seed(syncd, 1)
    syncd.ok("once")
    snapshot = tmp_path / "before.db"
    backup(syncd.db_path, snapshot)  # what the main file held before the WAL was checkpointed
    win(syncd, deal)
    syncd.ok("once")
    restore(snapshot, syncd.db_path)  # the operator deleted the -wal: every commit since is gone
    syncd.ok("once")
    assert syncd.asana.create_requests == 1
    assert len(syncd.asana.projects_with_marker(f"[syncd:hubspot:default:{deal}:onboarding]")) == 1


@SQLITE_ONLY
def test_a_second_database_for_the_same_account_finds_the_first_ones_projects(syncd: Syncd) -> None:
    deals = seed(syncd)
    syncd.ok("once")
    syncd.config(state={"path": "second.db"})
    syncd.ok("once")  # the second database records its own baseline
    for deal in deals:
        win(syncd, deal)
    syncd.config(state={"path": "syncd.db"})
    syncd.ok("once")
    syncd.config(state={"path": "second.db"})
    second = syncd.ok("once")
    assert syncd.asana.create_requests == 2, second.stdout
    assert syncd.asana.duplicates() == {}


@SQLITE_ONLY
def test_deleting_the_database_of_a_per_entry_flow_does_not_post_entry_two_again(syncd: Syncd) -> None:
    syncd.config(flows=[{**FLOW, "refire": "per_entry"}])
    (deal,) = seed(syncd, 1)
    syncd.ok("once")
    for _ in range(2):  # entries 1 and 2
        win(syncd, deal)
        syncd.ok("once")
        reopen(syncd, deal)
        syncd.ok("once")
        syncd.tick(1.0)
    assert syncd.asana.create_requests == 2
    for leftover in syncd.workdir.glob("syncd.db*"):
        leftover.unlink()
    syncd.ok("once")  # a new baseline: the deal is not won now
    win(syncd, deal)
    syncd.ok("once")  # the new ledger counts this as entry #2 again, which Asana already has
    assert syncd.asana.create_requests == 2
    assert markers(syncd) == [
        f"[syncd:hubspot:default:{deal}:onboarding#2]",
        f"[syncd:hubspot:default:{deal}:onboarding]",
    ]


def reopen(syncd: Syncd, deal: str) -> None:
    syncd.tick(1.0)
    syncd.hubspot.update_deal(deal, dealstage="contractsent", updated_at=syncd.ago(2))


def test_a_renamed_flow_keeps_its_projects_when_a_won_deal_is_reopened_and_won_again(syncd: Syncd) -> None:
    (deal,) = seed(syncd, 1)
    syncd.ok("once")
    win(syncd, deal)
    syncd.ok("once")
    syncd.config(flows=[{**FLOW, "name": "welcome", "previous_names": ["onboarding"]}])
    reopen(syncd, deal)
    syncd.ok("once")
    syncd.tick(1.0)
    win(syncd, deal)
    result = syncd.ok("once")
    assert syncd.asana.create_requests == 1, result.stdout
    assert "Baseline" not in result.stdout  # the rename is the same flow: no re-baseline either


def test_a_flow_added_after_the_baseline_gets_its_own_baseline_and_then_fires(syncd: Syncd) -> None:
    early, late = seed(syncd, 2)
    syncd.hubspot.update_deal(early, hs_priority="high", updated_at=syncd.ago(50))
    syncd.ok("once")
    priority = {"name": "priority", "when": "hs_priority == 'high'", "project": {"name": "Priority: {name}"}}
    syncd.config(flows=[FLOW, priority])
    added = syncd.ok("once")
    assert "Flow priority: baseline recorded (a new flow)" in added.stdout
    assert syncd.asana.create_requests == 0  # the early deal already matched: it is existing, not new
    syncd.tick(1.0)
    syncd.hubspot.update_deal(late, hs_priority="high", updated_at=syncd.ago(2))
    syncd.ok("once")
    assert [p["name"] for p in syncd.asana.projects] == ["Priority: Deal 1"]


def test_editing_a_rule_rebaselines_the_flow_instead_of_a_deferred_flood(syncd: Syncd) -> None:
    deals = seed(syncd, 3)
    for deal in deals:
        syncd.hubspot.update_deal(deal, dealstage="closedwon", amount="5000", updated_at=syncd.ago(50))
    syncd.ok("once")  # baseline: none match (amounts too small)
    syncd.config(flows=[{**FLOW, "when": "stage == 'closedwon' and tier == 'Enterprise'"}])
    edited = syncd.ok("once")
    assert "baseline recorded (its rule changed" in edited.stdout
    syncd.tick(1.0)
    syncd.hubspot.update_deal(deals[0], dealname="Renamed", updated_at=syncd.ago(2))  # an unrelated edit
    syncd.ok("once")
    assert syncd.asana.projects == []  # the edit is not an entry into the rule: no flood, early or late
    explained = syncd.ok("explain", deals[0])
    assert "rule changed" in explained.stdout


def test_retry_after_fixing_a_project_mistake_sends_the_fixed_body(syncd: Syncd) -> None:
    syncd.config(flows=[{**FLOW, "project": {"name": "Onboarding: {name}", "template": "1299999999999998"}}])
    (deal,) = seed(syncd, 1)
    syncd.ok("once")
    win(syncd, deal)
    assert syncd("once").returncode == 1 and syncd.op_states() == {"dead": 1}  # no such template
    syncd.config(flows=[{**FLOW, "project": {"name": "Welcome: {name}", "color": "dark-green"}}])
    syncd.ok("retry", deal)
    assert syncd.op_states() == {"created": 1}
    [project] = syncd.asana.projects
    assert project["name"] == "Welcome: Deal 0" and project["color"] == "dark-green"
    assert project["notes"].endswith(f"[syncd:hubspot:default:{deal}:onboarding]")


def test_backfill_judges_by_the_current_rules_and_says_what_it_cannot_judge(syncd: Syncd) -> None:
    small = syncd.hubspot.add_deal(
        dealname="Small", dealstage="closedwon", amount="5000", tier="Enterprise", updated_at=syncd.ago(60)
    )
    syncd.ok("once")  # baseline: nothing qualifies (the amount is too small)
    syncd.config(flows=[{**FLOW, "when": "stage == 'closedwon' and tier == 'Enterprise'"}])
    dry = syncd.ok("backfill", "--since", "2020-01-01", "--dry-run")
    assert "Would queue 1 project(s)" in dry.stdout and f"deal {small}" in dry.stdout
    syncd.config(flows=[FLOW, {"name": "vip", "when": "hs_priority == 'high'"}])
    unjudged = syncd.ok("backfill", "--flow", "vip", "--since", "2020-01-01", "--dry-run")
    assert "Queued" not in unjudged.stdout and "Cannot judge 1 deal(s)" in unjudged.stdout, unjudged.stdout


@SQLITE_ONLY  # on PostgreSQL accounts share the database: tests/test_postgres.py
def test_a_database_refuses_another_accounts_config(syncd: Syncd) -> None:
    seed(syncd, 1)
    syncd.ok("once")
    syncd.config(crm={"account": "portal-b"})
    before = len(syncd.hubspot.requests), len(syncd.asana.requests)
    refused = syncd("once")
    assert refused.returncode == 78
    assert "[state] path" in refused.stderr and "[crm] account = 'portal-b'" in refused.stderr
    assert (len(syncd.hubspot.requests), len(syncd.asana.requests)) == before  # refused before any request


@SQLITE_ONLY
def test_cycles_killed_before_they_finish_make_status_unhealthy_and_fire_the_stale_alert(syncd: Syncd) -> None:
    syncd.config(schedule={"interval_seconds": 30}, alerts={"stale_after_minutes": 1})
    (deal,) = seed(syncd, 1)
    syncd.ok("once")
    assert syncd("status").returncode == 0
    for _ in range(7):  # 70 s of runs that all die mid-cycle, after their cycle row was written
        syncd.tick(10)
        killed = syncd("once", crash_at="after_page_commit")
        assert killed.returncode == -9, killed.stderr
        win(syncd, deal)
    status = syncd("status")
    assert status.returncode == 1, status.stdout
    assert (
        "no successful cycle for 7" in status.stdout and "7 cycle(s) started since and did not finish" in status.stdout
    )
    alerts = syncd.query("SELECT value FROM meta WHERE key = 'alerts'")
    assert alerts and "stale" in alerts[0][0]


@SQLITE_ONLY
def test_a_full_disk_is_reported_as_a_full_disk_and_loses_nothing(syncd: Syncd) -> None:
    """A real process whose file-size limit runs out (the kernel's EFBIG, as on a full disk)."""
    deals = seed(syncd, 300)
    syncd.ok("once")
    committed = syncd.query("SELECT count(*) FROM deals")
    for deal in deals:
        syncd.hubspot.update_deal(deal, dealname="A much longer name " * 20, updated_at=syncd.ago(2))

    def limit_file_size() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        size = max(f.stat().st_size for f in syncd.workdir.glob("syncd.db*"))
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + 4096, size + 4096))

    full = subprocess.run(
        syncd.command("once"), env=syncd.env(), capture_output=True, text=True, timeout=60, preexec_fn=limit_file_size
    )
    assert full.returncode == 74, full.stdout + full.stderr
    assert "Could not write" in full.stderr and "MB free" in full.stderr and "Nothing was lost" in full.stderr
    assert "Traceback" not in full.stderr and "Restore" not in full.stderr
    assert syncd.query("PRAGMA integrity_check") == [("ok",)]
    assert syncd.query("SELECT count(*) FROM deals") == committed
    syncd.ok("once")  # space again: the same pages are recorded now


def test_changing_the_team_while_an_outcome_is_unknown_reconciles_in_the_team_it_was_sent_to(syncd: Syncd) -> None:
    syncd.config(asana={"settle_seconds": 0.6}, http={"read_timeout": 0.5})
    (deal,) = seed(syncd, 1)
    syncd.ok("once")
    win(syncd, deal)
    syncd.asana.inject("drop_after_create", route="create")
    syncd("once")
    assert syncd.op_states() == {"unknown": 1}
    syncd.asana.add_team("1200000000000099", "Onboarding Team")
    syncd.config(asana={"settle_seconds": 0.6, "team": "1200000000000099"}, http={"read_timeout": 0.5})
    syncd.tick(1.0)
    result = syncd.ok("once")
    assert "(found by reconcile)" in result.stdout
    assert syncd.asana.create_requests == 1 and syncd.op_states() == {"created": 1}


def test_a_flow_renamed_without_previous_names_is_reported_with_the_fix(syncd: Syncd) -> None:
    (deal,) = seed(syncd, 1)
    syncd.ok("once")
    win(syncd, deal)
    syncd.ok("once")
    syncd.config(flows=[{**FLOW, "name": "welcome"}])
    fix = 'add previous_names = ["onboarding"]'
    assert fix in syncd("once").stdout
    assert fix in syncd("status").stdout
    check = syncd("check")
    assert check.returncode == 1 and fix in check.stdout


def test_a_deal_hubspot_merged_from_a_deal_with_a_project_gets_no_second_project(syncd: Syncd) -> None:
    seed(syncd, 1)
    syncd.ok("once")
    syncd.tick(400)  # past the baseline's window: deals created from now on are new
    won = syncd.hubspot.add_deal(
        dealname="Acme", dealstage="closedwon", amount="50000", tier="Enterprise", updated_at=syncd.ago(2)
    )
    other = syncd.hubspot.add_deal(dealname="Acme (dup)", dealstage="contractsent", updated_at=syncd.ago(2))
    syncd.ok("once")
    assert syncd.asana.create_requests == 1
    syncd.tick(1.0)
    merged = syncd.hubspot.merge_deals(won, other)
    assert merged not in (won, other)  # HubSpot makes a new deal carrying hs_merged_object_ids
    syncd.tick(2.0)  # past the delay: the merged deal is in the window
    result = syncd.ok("once")
    assert "1 deals seen" in result.stdout and syncd.asana.create_requests == 1, result.stdout
    assert f"onboarding:hubspot:default:{merged} is the same project" in syncd.ok("explain", won).stdout


def test_a_won_deal_restored_from_the_recycle_bin_after_the_baseline_is_existing_not_new(syncd: Syncd) -> None:
    old = syncd.hubspot.add_deal(
        dealname="Old win", dealstage="closedwon", amount="50000", tier="Enterprise",
        updated_at=syncd.ago(3000), created_at=syncd.ago(3600),
    )  # fmt: skip
    seed(syncd, 1)
    syncd.hubspot.archive_deal(old)  # in the recycle bin while the baseline is taken
    syncd.ok("once")
    syncd.tick(1.0)
    syncd.hubspot.restore_deal(old)
    syncd.tick(2.0)
    result = syncd.ok("once")
    assert "1 changed" in result.stdout and syncd.asana.projects == [], result.stdout
