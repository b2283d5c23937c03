"""`syncd history`, `syncd quarantine [--clear ID]` and `syncd check --offline`."""

from __future__ import annotations

import json
import random

import pytest

from conftest import Syncd, qualify


def test_history_lists_recent_cycles_with_outcome_counts_and_duration(syncd: Syncd) -> None:
    qualify(syncd, 2)  # a baseline cycle
    syncd.ok("once")  # creates the two projects
    assert syncd("once", HUBSPOT_TOKEN="wrong").returncode == 1  # a failed cycle
    text = syncd.ok("history").stdout.splitlines()
    assert text[0].startswith("#3  ") and "  failed  " in text[0] and "error: hubspot rejected" in text[1]
    assert "  ok  " in text[2] and "2 deals, 2 created" in text[2]
    rows = json.loads(syncd.ok("history", "--json", "-n", "2").stdout)
    assert [r["outcome"] for r in rows] == ["failed", "ok"] and rows[1]["created"] == 2
    assert all(r["seconds"] is not None and r["seconds"] >= 0 for r in rows)
    assert syncd("history", "-n", "0").returncode == 2


def test_history_shows_a_cycle_whose_process_died(syncd: Syncd) -> None:
    syncd.ok("once")
    qualify(syncd, 1)
    crashed = syncd("once", crash_at="after_inflight_commit")
    assert crashed.returncode != 0
    line = syncd.ok("history", "-n", "1").stdout
    assert "  died  " in line and "no end recorded" in line
    assert json.loads(syncd.ok("history", "--json", "-n", "1").stdout)[0]["outcome"] == "died"
    status = syncd("status")
    assert status.returncode == 1 and "never finished: its process (pid " in status.stdout
    assert "is gone (killed or crashed)" in status.stdout


def test_quarantine_lists_and_clears(syncd: Syncd) -> None:
    syncd.ok("once")
    assert syncd.ok("quarantine").stdout.strip() == "Nothing is quarantined."
    syncd.hubspot.add_raw_deal({"id": "777", "properties": {"hs_lastmodifieddate": "garbage", "amount": "x"}})
    syncd.ok("once")
    listing = syncd.ok("quarantine").stdout
    assert "record 777" in listing and "not a timestamp" in listing
    assert syncd("quarantine", "--clear", "424242").returncode == 1
    assert "Cleared 1 quarantine entry of record 777" in syncd.ok("quarantine", "--clear", "777").stdout
    assert syncd.ok("quarantine").stdout.strip() == "Nothing is quarantined."


@pytest.mark.sqlite_file
def test_check_offline_needs_no_token_and_no_network(syncd: Syncd) -> None:
    syncd.hubspot.stop()
    result = syncd("check", "--offline", HUBSPOT_TOKEN=None, ASANA_TOKEN=None)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "flow onboarding: when stage == 'closedwon'" in result.stdout
    assert "(reads: amount, stage, tier)" in result.stdout
    assert "All checks passed." in result.stdout
    syncd.db_path.write_bytes(random.Random(7).randbytes(8192))
    broken = syncd("check", "--offline", HUBSPOT_TOKEN=None, ASANA_TOKEN=None)
    assert broken.returncode == 1 and "file is not a database" in broken.stdout
