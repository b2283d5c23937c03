"""Eventual consistency of Asana's listings, and the negative controls that prove the harness sees duplicates.

Asana creates the project but the answer is lost (`drop_after_create`), and listings show a new project only
`list_lag` seconds later. With the settle delay above the lag, reconcile decides correctly: 0 duplicates.
With the settle delay below the lag, or with reconcile switched off (blind retry), the same harness produces
duplicates, and these tests assert that it does: a zero that could not have been anything else proves nothing.
"""

from __future__ import annotations

import time

import pytest

from conftest import Syncd, qualify

LOST = 4  # creates whose answer is lost, per scenario


def run_scenario(syncd: Syncd, *, lag: float, settle: float, blind_retry: bool = False) -> dict[str, int]:
    syncd.config(http={"read_timeout": 0.5, "retry_base_seconds": 0}, asana={"settle_seconds": settle})
    deals = qualify(syncd, LOST)
    syncd.asana.list_lag = lag
    syncd.asana.inject("drop_after_create", times=LOST, route="create")
    deadline = time.time() + 30
    while time.time() < deadline:
        syncd("once", blind_retry=blind_retry)
        if set(syncd.op_states()) <= {"created", "dead"}:
            break
        syncd.tick(min(settle, 0.3) + 0.05)
    counts = {deal: len(syncd.asana.projects_with_marker(f":{deal}:onboarding]")) for deal in deals}
    control = " blind retry" if blind_retry else ""
    print(f"lag {lag}s settle {settle}s{control}: projects per deal {sorted(counts.values())}")
    return counts


@pytest.mark.parametrize("lag", [0.0, 0.5, 5.0])
def test_settle_above_the_listing_lag_gives_exactly_once(syncd: Syncd, lag: float) -> None:
    counts = run_scenario(syncd, lag=lag, settle=lag + 0.6)
    assert set(counts.values()) == {1}
    assert syncd.asana.duplicates() == {}


def test_negative_control_settle_below_the_lag_duplicates(syncd: Syncd) -> None:
    counts = run_scenario(syncd, lag=3.0, settle=0.6)
    assert max(counts.values()) > 1, "the harness could not see a duplicate: its zeros prove nothing"


def test_negative_control_blind_retry_without_reconcile_duplicates(syncd: Syncd) -> None:
    counts = run_scenario(syncd, lag=0.0, settle=0.6, blind_retry=True)
    assert sum(counts.values()) == 2 * LOST, "every lost answer became a second project"
