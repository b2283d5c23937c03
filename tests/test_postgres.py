"""PostgreSQL as the store (issue 15): the config that selects it, accounts sharing one database, the fenced
lease that keeps one active syncd per account, and the commands on it. Real PostgreSQL (the `postgres`
fixture: a fresh schema per test), real HTTP to the fakes; the store and lifecycle suites run on it too."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from test_store import T0, change, deal, new_op, queued

from syncd.config_values import PostgresState
from syncd.errors import LeaseLost, LockHeld
from syncd.metrics import Metrics
from syncd.models import State
from syncd.store import open_store, read_status
from syncd.store.pg_schema import MIGRATIONS, connect, migrate
from syncd.store.postgres import PgStore
from syncd.store.read import holder_name

from conftest import ASANA_TOKEN, Syncd, win

PASSWORD = "s3cret-canary-pg-pass"


def state(url: str, account: str = "default", lease: float = 30.0) -> PostgresState:
    return PostgresState(url, account, lease_seconds=lease)


def lease_row(url: str, account: str = "default") -> tuple[str, int, float]:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT holder, fence, extract(epoch FROM expires_at - now())::float8 FROM leases WHERE account = %s",
            (account,),
        ).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


def expire(url: str, account: str = "default", ago: float = 0.0) -> None:
    """Let the lease run out (`ago` seconds before the database's now), as if its holder froze or died."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "UPDATE leases SET expires_at = now() - make_interval(secs => %s) WHERE account = %s", (ago, account)
        )


# -- the config --------------------------------------------------------------------------------------------
def test_a_url_with_a_password_in_the_config_is_refused_with_the_fix(syncd: Syncd) -> None:
    syncd.config(state={"url": f"postgresql://syncd:{PASSWORD}@127.0.0.1:5432/syncd"})

    result = syncd("once")

    assert result.returncode == 78
    assert "[state]" in result.stderr and "url holds a password" in result.stderr
    assert "PGPASSWORD" in result.stderr and "url_env" in result.stderr
    assert PASSWORD not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_url_and_url_env_together_are_refused(syncd: Syncd) -> None:
    syncd.config(state={"url": "postgresql://syncd@127.0.0.1/syncd", "url_env": "SYNCD_STATE_URL"})
    result = syncd("status")
    assert result.returncode == 78 and "not both" in result.stderr


def test_a_lease_too_short_for_one_request_is_refused(syncd: Syncd) -> None:
    syncd.config(state={"url": "postgresql://syncd@127.0.0.1/syncd", "lease_seconds": 2})
    result = syncd("status")
    assert result.returncode == 78 and "lease_seconds = 2 must be longer than" in result.stderr


def test_a_url_from_url_env_is_a_secret_never_shown(syncd: Syncd, postgres: str) -> None:
    """The URL with its password comes from the environment; status, errors and the database never show it.
    (The test server trusts loopback connections, so the password is carried and never checked.)"""
    parts = urlsplit(postgres)
    url = urlunsplit(parts._replace(netloc=f"{parts.username}:{PASSWORD}@{parts.hostname}:{parts.port}"))
    syncd.config(state={"url_env": "SYNCD_STATE_URL"})
    deal_id = syncd.hubspot.add_deal(dealname="Acme", dealstage="contractsent", updated_at=syncd.ago(60))
    first = syncd("once", SYNCD_STATE_URL=url)
    status = syncd("status", "--json", SYNCD_STATE_URL=url)
    explained = syncd("explain", deal_id, SYNCD_STATE_URL=url)
    wrong = syncd("status", SYNCD_STATE_URL=urlunsplit(urlsplit(url)._replace(path="/no_such_database")))
    missing = syncd("status", SYNCD_STATE_URL=None)

    assert first.returncode == 0, first.stderr
    assert status.returncode == 0 and "postgresql://127.0.0.1" in status.stdout
    assert explained.returncode == 0
    assert wrong.returncode == 1 and "Could not use the PostgreSQL database" in wrong.stdout  # healthy NO
    assert missing.returncode == 78 and "SYNCD_STATE_URL" in missing.stderr
    for result in (first, status, explained, wrong, missing):
        assert PASSWORD not in result.stdout + result.stderr
    dumped = "\n".join(str(r) for t in ("meta", "events", "cycles") for r in syncd_rows(postgres, t))
    assert PASSWORD not in dumped and ASANA_TOKEN not in dumped


def syncd_rows(url: str, table: str) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as conn:
        return [tuple(r) for r in conn.execute(f"SELECT * FROM {table}").fetchall()]


# -- the schema and accounts ------------------------------------------------------------------------------
def test_migrations_are_numbered_applied_once_and_safe_to_race(postgres: str) -> None:
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            conn = connect(postgres)
            migrate(conn)
            conn.close()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    applied = syncd_rows(postgres, "syncd_migrations")
    assert [(n, name) for n, name, _ in applied] == [(i, m[0]) for i, m in enumerate(MIGRATIONS, 1)]


def test_accounts_share_the_database_and_never_see_each_others_rows(postgres: str) -> None:
    a, b = open_store(state(postgres, "acme")), open_store(state(postgres, "globex"))
    try:
        queued(a, "7")
        b.record_page([change(deal("7", 5_000))], [], [], 5_000, T0)

        assert a.cursor() == 1_000 and b.cursor() == 5_000
        assert [op.deal_id for op in a.due_ops(T0 + 1, 0)] == ["7"] and b.due_ops(T0 + 1, 0) == []
        assert b.op_count(State.PENDING) == 0 and a.ops.begin(new_op("7").op_key, T0)
        assert b.ops.begin(new_op("7").op_key, T0) is False  # the same key in another account is another row
    finally:
        a.close()
        b.close()


# -- the lease ----------------------------------------------------------------------------------------------
def test_a_second_writer_for_the_account_is_refused_while_the_lease_is_held(postgres: str) -> None:
    holder = open_store(state(postgres))
    try:
        with pytest.raises(LockHeld, match=r"Another syncd \(.+:\d+\) holds the lease on account 'default'"):
            open_store(state(postgres))
        open_store(state(postgres, "other")).close()  # another account is free
    finally:
        holder.close()
    open_store(state(postgres)).close()  # a clean close frees it at once


def test_a_write_under_a_stale_fence_fails_and_changes_nothing(postgres: str) -> None:
    old = open_store(state(postgres))
    op = queued(old, "7")
    expire(postgres)
    new = open_store(state(postgres), settle_seconds=0)
    try:
        assert lease_row(postgres)[1] == 2
        with pytest.raises(LeaseLost, match="lost its lease on account 'default'"):
            old.ops.begin(op.op_key, T0 + 1)
        with pytest.raises(LeaseLost):
            old.record_page([change(deal("8"))], [new_op("8")], [], 9_000, T0 + 1)
        assert new.op_count(State.PENDING) == 1 and new.cursor() == 1_000
        assert new.ops.begin(op.op_key, T0 + 2)
    finally:
        old.close()  # releasing under a stale fence leaves the new holder's lease alone
        assert lease_row(postgres)[1] == 2 and lease_row(postgres)[2] > 10
        new.close()


def test_the_pre_post_check_needs_the_requests_time_left_on_the_lease(postgres: str) -> None:
    store = open_store(state(postgres, lease=10), post_seconds=4)
    try:
        store.check_lease()  # just acquired: about 10 s left
        with psycopg.connect(postgres, autocommit=True) as conn:
            conn.execute("UPDATE leases SET expires_at = now() + interval '3 seconds'")
        with pytest.raises(LeaseLost, match=r"s left, a request needs 4s"):
            store.check_lease()
        store.set_meta("probe", "1")  # a write renews it
        store.check_lease()
    finally:
        store.close()


def test_the_heartbeat_renews_the_lease_between_writes(postgres: str) -> None:
    store = open_store(state(postgres, lease=1.5))
    try:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:  # twice the lease with no write
            assert lease_row(postgres)[2] > 0
            time.sleep(0.1)
    finally:
        store.close()


def test_a_takeover_waits_the_settle_delay_then_finds_the_in_flight_op_unknown(postgres: str) -> None:
    old = open_store(state(postgres))
    op = queued(old, "7")
    assert old.ops.begin(op.op_key, T0)  # then it froze, mid-call
    old.lease.stop_heartbeat()
    expire(postgres)

    new = open_store(state(postgres), settle_seconds=1.0)
    try:
        assert isinstance(new, PgStore) and new.taken is not None
        assert new.taken.wait_seconds > 0.9  # nothing may be sent until settle_seconds after the old expiry
        assert new.taken.previous and new.taken.fence == 2
        assert new.recover_in_flight(T0 + 5) == 1
        (due,) = new.due_ops(T0 + 100, settle_seconds=1.0)
        assert due.state == State.UNKNOWN and "lost its lease" in (due.last_error or "")
    finally:
        new.close()
        old.close()


def test_a_clean_release_lets_the_next_holder_start_without_the_settle_wait(postgres: str) -> None:
    open_store(state(postgres)).close()
    after_clean = open_store(state(postgres), settle_seconds=30)
    after_clean.close()
    assert isinstance(after_clean, PgStore) and after_clean.taken is not None
    assert after_clean.taken.wait_seconds == 0 and after_clean.taken.fence == 2


# -- the commands -------------------------------------------------------------------------------------------
def test_once_exits_75_while_another_process_holds_the_lease(pg_syncd: Syncd) -> None:
    pg_syncd.ok("once")
    holder = open_store(state(pg_syncd.postgres or ""))
    try:
        result = pg_syncd("once")
    finally:
        holder.close()
    assert result.returncode == 75, result.stderr
    assert "holds the lease on account 'default'" in result.stderr and "This run did nothing" in result.stderr
    pg_syncd.ok("once")


def test_status_and_explain_read_the_accounts_rows(pg_syncd: Syncd) -> None:
    deal_id = pg_syncd.hubspot.add_deal(
        dealname="Acme", dealstage="contractsent", amount="50000", tier="Enterprise", updated_at=pg_syncd.ago(60)
    )
    pg_syncd.ok("once")
    win(pg_syncd, deal_id)
    pg_syncd.ok("once")

    status = pg_syncd.ok("status")
    explained = pg_syncd.ok("explain", deal_id)

    assert "postgresql://127.0.0.1" in status.stdout and "(account default)" in status.stdout
    assert "created" in status.stdout and "Onboarding: Acme" in str(pg_syncd.asana.projects)
    assert "committed before the create request" in explained.stdout
    assert pg_syncd.op_states() == {"created": 1}


def test_status_before_any_run_says_how_to_start(pg_syncd: Syncd) -> None:
    result = pg_syncd("status")
    assert result.returncode == 1 and "There is no syncd state in postgresql://" in result.stdout


def test_the_example_config_url_is_a_postgres_url_without_password(tmp_path: Path) -> None:
    text = (Path(__file__).parent.parent / "config.toml").read_text()
    assert '# url = "postgresql://syncd@db.internal:5432/syncd"' in text


# -- operating it -------------------------------------------------------------------------------------------
def test_status_shows_the_holder_its_fence_and_the_lease_expiry(pg_syncd: Syncd) -> None:
    pg_syncd.ok("once")
    released = pg_syncd.ok("status")
    holder = open_store(state(pg_syncd.postgres or ""))
    try:
        held = pg_syncd.ok("status", "--json")
        text = pg_syncd.ok("status").stdout
    finally:
        holder.close()

    assert "lease        free: " in released.stdout and "(fence 1) stopped cleanly" in released.stdout
    lease = json.loads(held.stdout)["lease"]
    assert (lease["account"], lease["fence"], lease["live"]) == ("default", 2, True)
    assert lease["holder"] == holder_name() and 20 < lease["expires_in_seconds"] <= 30
    assert f"lease        held by {holder_name()} (fence 2), expires in" in text


def test_an_account_whose_holder_died_with_no_standby_is_unhealthy(pg_syncd: Syncd) -> None:
    pg_syncd.ok("once")
    died = open_store(state(pg_syncd.postgres or ""))
    died.lease.stop_heartbeat()
    expire(pg_syncd.postgres or "", ago=5)
    try:
        result = pg_syncd("status")
    finally:
        died.close()
    assert result.returncode == 1
    assert "no live holder: the lease of" in result.stdout and "without a clean stop" in result.stdout


def test_the_leader_metric_is_one_in_the_holder_only(pg_syncd: Syncd) -> None:
    pg_syncd.ok("once")
    place = state(pg_syncd.postgres or "")
    holder, metrics = open_store(place), Metrics()
    try:
        metrics.observe_status(read_status(place, time.time()))
        mine = metrics.registry.get_sample_value("syncd_leader", {"account": "default"})
    finally:
        holder.close()
    metrics.observe_status(read_status(place, time.time()))
    assert (mine, metrics.registry.get_sample_value("syncd_leader", {"account": "default"})) == (1.0, 0.0)


def test_a_holder_killed_on_this_host_is_taken_over_at_once_not_when_its_lease_ends(pg_syncd: Syncd) -> None:
    """As the kernel frees a dead process's flock: cron's next `syncd once` after a kill -9 does not exit 75
    for the rest of the dead one's lease (60 s here). It waits nothing: the op the dead one left in flight
    waits its own settle (by this host's clock, as on SQLite), is reconciled, and created once."""
    deal_id = pg_syncd.hubspot.add_deal(
        dealname="Acme", dealstage="contractsent", amount="50000", tier="Enterprise", updated_at=pg_syncd.ago(60)
    )
    pg_syncd.ok("once")
    win(pg_syncd, deal_id)
    killed = pg_syncd("once", crash_at="after_inflight_commit")
    assert killed.returncode == -9 and pg_syncd.op_states() == {"in_flight": 1}
    assert lease_row(pg_syncd.postgres or "")[2] > 30  # the dead one's lease has most of its 60 s left

    early = pg_syncd.ok("once")  # taken over at once; the op settles first
    assert pg_syncd.op_states() == {"unknown": 1} and pg_syncd.asana.create_requests == 0, early.stdout
    pg_syncd.tick(60)
    result = pg_syncd.ok("once")

    assert "(found by reconcile)" not in result.stdout and "Onboarding: Acme" in result.stdout
    assert pg_syncd.asana.create_requests == 1 and pg_syncd.op_states() == {"created": 1}
    assert lease_row(pg_syncd.postgres or "")[1] == 4  # the baseline run, the killed one, these two


def test_check_reaches_a_fresh_database_and_counts_it_as_no_problem(pg_syncd: Syncd) -> None:
    result = pg_syncd("check")
    assert "state: reachable; nothing recorded yet" in result.stdout, result.stdout
    assert result.returncode == 0, result.stdout


def test_a_takeover_and_each_write_its_stale_fence_refuses_are_counted(postgres: str) -> None:
    first, first_metrics = open_store(state(postgres)), Metrics()
    assert isinstance(first, PgStore) and first.taken is not None
    first_metrics.took(first.lease, first.taken)
    op = queued(first, "7")
    expire(postgres)
    second, second_metrics = open_store(state(postgres), settle_seconds=0), Metrics()
    assert isinstance(second, PgStore) and second.taken is not None
    second_metrics.took(second.lease, second.taken)
    try:
        for _ in range(2):
            with pytest.raises(LeaseLost):
                first.ops.begin(op.op_key, T0 + 1)
    finally:
        first.close()
        second.close()

    def counts(metrics: Metrics) -> tuple[float | None, float | None]:
        sample = metrics.registry.get_sample_value
        return sample("syncd_takeovers_total"), sample("syncd_fenced_writes_total")

    assert counts(first_metrics) == (0.0, 2.0)
    assert counts(second_metrics) == (1.0, 0.0)
