"""Every word is true: a dry run touches nothing on disk and counts what it names, the cursor is "not set"
only when it is not, a failed first run recorded no baseline, a baseline counts deals, `explain` knows a
quarantined deal and counts the create requests it sent, and `--json` prints JSON."""

from __future__ import annotations

import json
import re

from conftest import FAST, Syncd, qualify, win


def deal(syncd: Syncd, name: str, stage: str = "contractsent") -> str:
    return syncd.hubspot.add_deal(
        dealname=name, dealstage=stage, amount="50000", tier="Enterprise", updated_at=syncd.ago(60)
    )


def files(syncd: Syncd) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in syncd.workdir.iterdir() if not p.name.endswith(("-wal", "-shm"))}


def test_a_first_dry_run_creates_no_database_and_no_lock_file(syncd: Syncd) -> None:
    deal(syncd, "Acme")
    before = sorted(p.name for p in syncd.workdir.iterdir())
    result = syncd.ok("once", "--dry-run")
    assert "Baseline would be recorded: 1 deals" in result.stdout
    assert sorted(p.name for p in syncd.workdir.iterdir()) == before  # no syncd.db, no syncd.db.lock


def test_a_dry_run_counts_what_it_names_and_shows_the_cursor_it_leaves(syncd: Syncd) -> None:
    ids = qualify(syncd, 2)
    before = files(syncd)
    result = syncd.ok("once", "--dry-run")
    assert "2 changed, 2 newly qualifying" in result.stdout
    assert result.stdout.count("Would create: ") == len(ids)
    [cursor] = syncd.query("SELECT value_ms FROM cursors")
    assert re.search(r"Cursor: 20\d\d-\S+Z \(a dry run does not move it\)", result.stdout), result.stdout
    assert "not set" not in result.stdout and cursor
    assert files(syncd) == before and syncd.asana.projects == []


def test_a_failed_first_run_does_not_claim_a_baseline(syncd: Syncd) -> None:
    deal(syncd, "Acme")
    result = syncd("once", HUBSPOT_TOKEN="wrong-token")
    assert result.returncode == 1
    assert "Baseline recorded" not in result.stdout
    assert "Baseline not recorded: 0 deals were read before the error below" in result.stdout


def test_a_baseline_counts_deals_not_the_versions_its_pages_re_read(syncd: Syncd) -> None:
    """Keyset pages re-read the deals that share the page's newest timestamp: 30 deals in 10 timestamps,
    4 per page, read some deals twice. Before, each read was counted."""
    for group in range(10):
        syncd.hubspot.bulk_add(3, updated_at=syncd.ago(100 - group), dealname="Tied", dealstage="closedwon")
    syncd.config(crm={"page_size": 4})
    result = syncd.ok("once")
    assert "Baseline recorded: 30 deals." in result.stdout, result.stdout


def test_explain_on_a_quarantined_deal_says_so(syncd: Syncd) -> None:
    syncd.ok("once")
    syncd.hubspot.add_raw_deal({"id": "777", "properties": {"hs_lastmodifieddate": "garbage", "amount": "x"}})
    syncd.ok("once")
    text = syncd.ok("explain", "777").stdout
    assert "QUARANTINED" in text and "not a timestamp" in text and "never polled" not in text
    data = json.loads(syncd.ok("explain", "777", "--json").stdout)
    assert "not a timestamp" in data["quarantined"][0]["reason"]


def test_explain_counts_every_create_request_sent(syncd: Syncd) -> None:
    """A 429 costs no attempt but is a request sent: before, explain said "attempts: 1" after two POSTs."""
    syncd.config(**FAST)
    (won,) = qualify(syncd, 1)
    syncd.asana.inject("429", route="create", retry_after=0)
    syncd("once")
    syncd.ok("once")
    assert syncd.asana.create_requests == 2
    text = syncd.ok("explain", won).stdout
    assert "create requests sent: 2; 1 counted toward max_attempts" in text
    assert json.loads(syncd.ok("explain", won, "--json").stdout)["ops"][0]["posts_sent"] == 2


def test_every_json_output_is_json(syncd: Syncd) -> None:
    no_database = syncd("explain", "424242", "--json")
    assert no_database.returncode == 74 and "Run 'syncd once'" in json.loads(no_database.stdout)["error"]
    syncd.ok("once")
    never = syncd("explain", "424242", "--json")
    assert never.returncode == 1 and json.loads(never.stdout)["recorded"] is False
    win(syncd, deal(syncd, "Acme"))
    syncd.ok("once")
    assert json.loads(syncd.ok("status", "--json").stdout)["healthy"] is True
