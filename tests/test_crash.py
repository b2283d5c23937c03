"""Crashes and concurrency: `kill -9` anywhere, at every named step, and a second syncd while one runs.

Invariants checked after every scenario: each qualifying deal has exactly one project with its marker, no
other projects exist, no op is left in_flight/unknown after a final clean run, and the database passes
PRAGMA integrity_check after every kill.
"""

from __future__ import annotations

import fcntl
import signal

import pytest

from conftest import FAST, Syncd, assert_exactly_once, integrity_ok, qualify, running_daemon, settle_until_done

POINTS = [
    "before_page_commit",
    "after_page_commit",
    "after_inflight_commit",
    "after_post",
    "after_created_commit",
]


@pytest.mark.parametrize("hit", [1, 2, 3])
@pytest.mark.parametrize("point", POINTS)
def test_a_crash_at_each_step_then_reruns_keep_exactly_once(syncd: Syncd, point: str, hit: int) -> None:
    syncd.config(**FAST)
    deals = qualify(syncd, 4)
    crashed = syncd("once", crash_at=f"{point}:{hit}")
    integrity_ok(syncd)
    if point.endswith("page_commit") and hit > 1:
        assert crashed.returncode == 0  # one page only: the n-th hit never comes
    else:
        assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    settle_until_done(syncd)
    assert_exactly_once(syncd, deals)


def test_a_crash_after_a_failed_post_is_reconciled(syncd: Syncd) -> None:
    syncd.config(**FAST)
    deals = qualify(syncd, 2)
    syncd.asana.inject("500_after_create", route="create")
    crashed = syncd("once", crash_at="after_failed_post")
    assert crashed.returncode == -signal.SIGKILL
    settle_until_done(syncd)
    assert_exactly_once(syncd, deals)


def test_a_second_syncd_exits_75_while_the_daemon_runs_and_runs_after_it_is_killed(syncd: Syncd) -> None:
    deals = qualify(syncd, 1)
    syncd.config(schedule={"interval_seconds": 3600})
    with running_daemon(syncd.start("run"), until=lambda: syncd.op_states().get("created")) as daemon:
        second = syncd("once")  # how fast it exits is bench's start-up row, not a test's business
        assert second.returncode == 75, second.stderr
        assert "Another syncd" in second.stderr  # "is using <db>", or on PostgreSQL "holds the lease"
        daemon.kill()
    assert syncd("once").returncode == 0  # kill -9 released the lock: no stale lock file
    assert_exactly_once(syncd, deals)


@pytest.mark.sqlite_file
def test_concurrent_onces_one_runs_the_others_exit_75(syncd: Syncd) -> None:
    deals = qualify(syncd, 3)
    with open(f"{syncd.db_path}.lock", "a+") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        blocked = [syncd.start("once") for _ in range(5)]
        codes = [p.wait(timeout=10) for p in blocked]
        for p in blocked:
            _, err = p.communicate()
            assert "database is locked" not in err
    assert codes == [75] * 5
    results = [syncd.start("once") for _ in range(4)]
    codes = sorted(p.wait(timeout=30) for p in results)
    for p in results:
        p.communicate()
    assert codes.count(0) >= 1 and set(codes) <= {0, 75}
    settle_until_done(syncd)
    assert_exactly_once(syncd, deals)


def test_sigterm_stops_the_daemon_cleanly(syncd: Syncd) -> None:
    qualify(syncd, 1)
    with running_daemon(syncd.start("run"), until=lambda: syncd.op_states().get("created")) as daemon:
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=10)
    assert daemon.returncode == 0, err
    assert "syncd stopped" in err
    assert syncd.op_states() == {"created": 1}
