"""Operator commands beside a running `syncd run`: `retry`, `backfill` and `flow pause|resume` leave a request
(or a pause) in one short transaction, never wait for the lock, and the daemon acts at its next cycle. Without
a daemon they act at once, and a backfill creates exactly what its dry run promised, nothing more."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

from conftest import FAST, RULE, Syncd, assert_exactly_once, qualify, running_daemon, win


def deal(syncd: Syncd, name: str, stage: str = "contractsent") -> str:
    return syncd.hubspot.add_deal(
        dealname=name, dealstage=stage, amount="50000", tier="Enterprise", updated_at=syncd.ago(60)
    )


def eventually(check: Callable[[], bool], within: float = 15.0) -> None:
    deadline = time.time() + within
    while not check():
        assert time.time() < deadline, "the daemon did not act in time"
        time.sleep(0.05)


def daemon_holds_the_lock(syncd: Syncd) -> Callable[[], bool]:
    """True once `syncd run` has recorded itself (pid, interval) in the database: it holds the lock."""
    return lambda: "pid" in str(syncd.db_path.exists() and syncd.query("SELECT value FROM meta WHERE key = 'daemon'"))


def stopped(daemon: object) -> None:
    daemon.send_signal(signal.SIGTERM)  # type: ignore[attr-defined]
    daemon.communicate(timeout=10)  # type: ignore[attr-defined]


def test_retry_while_the_daemon_runs_is_applied_at_its_next_cycle(syncd: Syncd) -> None:
    syncd.config(http=FAST["http"], asana={**FAST["asana"], "team": "1299999999999999"})
    (dead,) = qualify(syncd, 1)
    assert syncd("once").returncode == 1 and syncd.op_states() == {"dead": 1}
    syncd.config(schedule={"interval_seconds": 1}, **FAST)
    with running_daemon(syncd.start("run"), until=daemon_holds_the_lock(syncd)) as daemon:
        assert "has no dead op" in syncd("retry", "424242").stdout  # answered now, no request left
        result = syncd("retry", dead)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "this is request #1" in result.stdout
        assert "applies it at the start of its next cycle" in result.stdout and "a cycle every 1s" in result.stdout
        eventually(lambda: syncd.op_states() == {"created": 1})
        stopped(daemon)
    assert_exactly_once(syncd, [dead])
    [(outcome,)] = syncd.query("SELECT outcome FROM requests WHERE done_at IS NOT NULL")
    assert outcome == "1 dead op(s) sent back through reconcile"


def test_retry_all_sends_every_dead_op_back(syncd: Syncd) -> None:
    syncd.config(http=FAST["http"], asana={**FAST["asana"], "team": "1299999999999999"})
    deals = qualify(syncd, 2)
    assert syncd("once").returncode == 1 and syncd.op_states() == {"dead": 2}
    syncd.config(**FAST)
    assert syncd("retry").returncode == 2
    result = syncd.ok("retry", "--all")
    assert "Reconciling 2 op(s) of every deal" in result.stdout
    assert_exactly_once(syncd, deals)
    assert "There is no dead op" in syncd("retry", "--all").stdout


def test_backfill_while_the_daemon_runs_and_its_dry_run_beside_it(syncd: Syncd) -> None:
    old = deal(syncd, "Hooli", "closedwon")
    syncd.config(schedule={"interval_seconds": 1}, **FAST)
    syncd.ok("once")  # the baseline, so the dry run beside the daemon has the deal to judge
    with running_daemon(syncd.start("run"), until=daemon_holds_the_lock(syncd)) as daemon:
        dry = syncd.ok("backfill", "--since", "2020-01-01", "--dry-run")
        assert "Would queue 1 project(s)" in dry.stdout and "Onboarding: Hooli" in dry.stdout
        result = syncd.ok("backfill", "--since", "2020-01-01")
        assert "this is request #1" in result.stdout
        eventually(lambda: syncd.op_states() == {"created": 1})
        stopped(daemon)
    assert_exactly_once(syncd, [old])


def test_a_backfill_makes_exactly_what_its_dry_run_promised_and_runs_no_normal_cycle(syncd: Syncd) -> None:
    """Before, the real backfill also ran a normal cycle: the dry run promised 1 project, it made 3."""
    deal(syncd, "Hooli", "closedwon")
    later = [deal(syncd, "Acme"), deal(syncd, "Initech")]
    syncd.config(**FAST)
    syncd.ok("once")  # baseline
    for d in later:
        win(syncd, d)  # newly qualifying in the CRM, not yet polled: the next `once` creates them, not backfill
    dry = syncd.ok("backfill", "--since", "2020-01-01", "--dry-run")
    assert "Would queue 1 project(s)" in dry.stdout
    result = syncd.ok("backfill", "--since", "2020-01-01")
    assert "Queued 1 project(s)" in result.stdout
    assert [p["name"] for p in syncd.asana.projects] == ["Onboarding: Hooli"]


def test_a_backfill_dry_run_touches_nothing_and_needs_no_token(syncd: Syncd) -> None:
    deal(syncd, "Hooli", "closedwon")
    syncd.ok("once")
    before = files(syncd)
    dry = syncd("backfill", "--since", "2020-01-01", "--dry-run", ASANA_TOKEN=None, HUBSPOT_TOKEN=None)
    assert dry.returncode == 0, dry.stderr
    assert "Would queue 1 project(s)" in dry.stdout
    assert files(syncd) == before


def files(syncd: Syncd) -> dict[str, int]:
    """Every file and its mtime, but SQLite's own -wal and -shm, which any reader of a WAL database opens."""
    return {p.name: p.stat().st_mtime_ns for p in syncd.workdir.iterdir() if not p.name.endswith(("-wal", "-shm"))}


def test_a_paused_flow_records_deals_creates_nothing_and_resumes_while_the_daemon_runs(syncd: Syncd) -> None:
    (first,) = qualify(syncd, 1)
    assert syncd.ok("flow", "pause", "onboarding").stdout.startswith("Flow onboarding paused.")
    result = syncd.ok("once")
    assert "flow onboarding is paused" in result.stdout
    assert syncd.asana.projects == [] and syncd.op_states() == {"pending": 1}
    assert "was already paused" in syncd.ok("flow", "pause", "onboarding").stdout
    assert syncd("flow", "pause", "nosuch").returncode == 2
    syncd.config(schedule={"interval_seconds": 1}, **FAST)
    with running_daemon(syncd.start("run"), until=daemon_holds_the_lock(syncd)) as daemon:
        resumed = syncd.ok("flow", "resume", "onboarding")
        assert "sees it at the start of its next cycle" in resumed.stdout
        eventually(lambda: syncd.op_states() == {"created": 1})
        stopped(daemon)
    assert_exactly_once(syncd, [first])


def test_a_flow_with_enabled_false_queues_but_creates_nothing(syncd: Syncd) -> None:
    (first,) = qualify(syncd, 1)
    syncd.config(flows=[{"name": "onboarding", "when": RULE, "enabled": False}])
    result = syncd.ok("once")
    assert "flow onboarding is off (enabled = false)" in result.stdout
    assert syncd.asana.projects == [] and syncd.op_states() == {"pending": 1}
    syncd.config()
    syncd.ok("once")
    assert_exactly_once(syncd, [first])


def test_a_request_during_a_cycle_in_progress_is_written_at_once_and_waits_for_the_next_cycle(syncd: Syncd) -> None:
    """The daemon is inside a slow poll (its write transactions come and go); the command neither waits for
    the lock nor fails on a busy database, and says the request waits for the cycle in progress to end."""
    syncd.config(http=FAST["http"], asana={**FAST["asana"], "team": "1299999999999999"})
    (dead,) = qualify(syncd, 1)
    assert syncd("once").returncode == 1 and syncd.op_states() == {"dead": 1}
    syncd.config(
        schedule={"interval_seconds": 1}, http={"read_timeout": 5, "max_tries": 1}, asana={"settle_seconds": 6}
    )
    with running_daemon(syncd.start("run"), until=daemon_holds_the_lock(syncd)) as daemon:
        eventually(lambda: syncd.query("SELECT count(*) FROM cycles WHERE finished_at IS NULL")[0][0] == 0)
        syncd.hubspot.inject("slow", delay=2.0)  # the next cycle's poll
        eventually(lambda: syncd.query("SELECT count(*) FROM cycles WHERE finished_at IS NULL")[0][0] == 1)
        result = syncd.ok("retry", dead)
        assert "this is request #1" in result.stdout
        assert any(words in result.stdout for words in ("the one in progress", "the cycle in progress ends"))
        assert syncd.query("SELECT count(*) FROM requests WHERE done_at IS NULL") == [(1,)]
        eventually(lambda: syncd.op_states() == {"created": 1})
        stopped(daemon)
    assert_exactly_once(syncd, [dead])
