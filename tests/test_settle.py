"""Settle by what is known (issue 14): an ambiguous create waits for reconcile only as long as its kind of
failure needs, and the invariant holds: an op that was ever `unknown` is POSTed again only after a complete
listing, taken after its settle, found no marker.

- Asana answered (a 5xx after the create took effect) or hung up on the whole request (`drop_after_create`):
  the server is done with it, so the op settles for `listing_lag_seconds` only.
- No answer within the read timeout, or a crash mid-call: the request may still be running, so the op keeps
  `settle_seconds`, which exceeds the read timeout.
"""

from __future__ import annotations

import time

import pytest

from syncd.daemon import early
from syncd.models import CycleReport

from conftest import FAST, Syncd, assert_exactly_once, qualify, running_daemon

LONG = {"settle_seconds": 30, "listing_lag_seconds": 0.5}


@pytest.mark.parametrize(("fault", "doubt"), [("500_after_create", "answered"), ("drop_after_create", "reset")])
def test_a_create_the_server_was_done_with_settles_for_the_listing_lag_only(
    syncd: Syncd, fault: str, doubt: str
) -> None:
    syncd.config(http=FAST["http"], asana=LONG)
    (deal,) = qualify(syncd, 1)
    syncd.asana.list_lag = 0.4  # the listing shows the project 0.4 s after it was created
    syncd.asana.inject(fault, route="create")
    syncd("once")
    assert syncd.query("SELECT state, doubt FROM ops") == [("unknown", doubt)]
    syncd.tick(0.3)
    syncd("once")
    assert syncd.op_states() == {"unknown": 1}, "reconciled before the listing lag had passed"
    syncd.tick(0.3)
    result = syncd.ok("once")
    assert "found by reconcile" in result.stdout
    assert syncd.asana.create_requests == 1
    assert_exactly_once(syncd, [deal])


def test_an_answered_failure_that_created_nothing_is_posted_again_after_the_listing_lag(syncd: Syncd) -> None:
    syncd.config(http=FAST["http"], asana=LONG)
    (deal,) = qualify(syncd, 1)
    syncd.asana.inject("503", route="create")  # refused before anything was created
    syncd("once")
    assert syncd.query("SELECT state, doubt FROM ops") == [("unknown", "answered")]
    syncd.tick(0.6)
    syncd.ok("once")
    assert syncd.asana.create_requests == 2
    assert_exactly_once(syncd, [deal])


def test_a_read_timeout_keeps_the_settle_past_the_read_timeout(syncd: Syncd) -> None:
    syncd.config(http=FAST["http"], asana=LONG)
    (deal,) = qualify(syncd, 1)
    syncd.asana.inject("slow_after_create", route="create", delay=1.0)  # created, answered after read_timeout
    syncd("once")
    assert syncd.query("SELECT state, doubt FROM ops") == [("unknown", "timeout")]
    syncd.tick(5)
    syncd("once")
    assert syncd.op_states() == {"unknown": 1}, "a request that may still be running was reconciled early"
    syncd.tick(26)
    assert "found by reconcile" in syncd.ok("once").stdout
    assert syncd.asana.create_requests == 1
    assert_exactly_once(syncd, [deal])


def test_a_crash_mid_call_keeps_the_settle_past_the_read_timeout(syncd: Syncd) -> None:
    syncd.config(http=FAST["http"], asana=LONG)
    (deal,) = qualify(syncd, 1)
    assert syncd("once", crash_at="after_post").returncode == -9
    syncd.tick(5)
    syncd("once")
    assert syncd.query("SELECT state, doubt FROM ops") == [("unknown", "crash")]
    syncd.tick(26)
    assert "found by reconcile" in syncd.ok("once").stdout
    assert syncd.asana.create_requests == 1
    assert_exactly_once(syncd, [deal])


def test_syncd_run_reconciles_when_the_settle_ends_not_an_interval_later(syncd: Syncd) -> None:
    """The daemon runs a cycle of its own for an op that falls due before the next tick."""
    syncd.config(http=FAST["http"], asana=LONG, schedule={"interval_seconds": 3600})
    (deal,) = qualify(syncd, 1)
    syncd.asana.inject("500_after_create", route="create")
    created = False
    with running_daemon(syncd.start("run"), until=lambda: syncd.asana.create_requests > 0) as daemon:
        deadline = time.time() + 15
        while time.time() < deadline and not (created := syncd.op_states() == {"created": 1}):
            time.sleep(0.1)
        daemon.terminate()
        daemon.communicate(timeout=15)
    assert created, f"still {syncd.op_states()} long after the 0.5 s settle"
    assert syncd.asana.create_requests == 1
    assert_exactly_once(syncd, [deal])


def test_early_follows_an_op_that_falls_due_before_the_tick_only() -> None:
    assert early(CycleReport(next_due_in=None), 10.0) is None
    assert early(CycleReport(next_due_in=-1.0), 10.0) is None  # already due: held by the breaker or a pause
    assert early(CycleReport(next_due_in=2.0), 10.0) == pytest.approx(2.05)
    assert early(CycleReport(next_due_in=12.0), 10.0) is None  # the tick comes first
    assert early(None, 10.0) is None
