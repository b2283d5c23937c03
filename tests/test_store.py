"""The store on both backends, no HTTP: real SQLite files in `tmp_path` and a fresh schema of a real PostgreSQL
(`postgres` in conftest): migrations, the ledger's state machine and its event log, the page transaction, the
due queues and the read side (DESIGN.md §3-§4). The same tests, the same assertions, on each."""

from __future__ import annotations

import dataclasses
import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlite_utils import Database

from syncd.config_values import PostgresState
from syncd.diff import Change
from syncd.errors import StoreError
from syncd.models import OP_STATES, Deal, Effect, NewEffect, NewOp, Op, Quarantined, State
from syncd.store import SqliteStore, Status, Store, open_store, read_history, read_status
from syncd.store.schema import connect, migrations

T0 = 1_760_000_000.0  # epoch seconds: every `now` below is T0 plus a few seconds
FLOW = "onboarding"
# the migrations this file knows about; later ones may follow them
MIGRATIONS = ["create_tables", "create_deal_versions", "create_effects", "one_event_log"]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "syncd.db"


INTEGRITY = (sqlite3.IntegrityError, psycopg.IntegrityError)
Place = Path | PostgresState


@pytest.fixture(params=["sqlite", "postgres"])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Place:
    """Where the state is: a SQLite file, or one account's rows in a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        return tmp_path / "syncd.db"
    return PostgresState(request.getfixturevalue("postgres"), "default", lease_seconds=30)


@pytest.fixture
def store(place: Place) -> Iterator[Store]:
    opened = open_store(place)
    yield opened
    opened.close()


def in_transaction(store: Any) -> bool:
    if isinstance(store, SqliteStore):
        return store.conn.in_transaction
    return store.conn.raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE


# -- values --------------------------------------------------------------------------------------------
def deal(deal_id: str, updated_at_ms: int = 1_000, **values: Any) -> Deal:
    return Deal(id=deal_id, updated_at_ms=updated_at_ms, name=values.pop("name", f"Deal {deal_id}"), properties=values)


def change(d: Deal, matches: bool = True, newly: tuple[str, ...] = (FLOW,)) -> Change:
    return Change(d, {FLOW: matches}, newly, {FLOW: 1} if matches else {})


def new_op(deal_id: str, effects: tuple[NewEffect, ...] = (), name: str | None = None) -> NewOp:
    key = f"{FLOW}:hubspot:default:{deal_id}"
    marker = f"[syncd:hubspot:default:{deal_id}:{FLOW}]"
    body = {"name": name or f"Onboarding: Deal {deal_id}", "notes": marker, "workspace": "1", "team": "2"}
    return NewOp(op_key=key, flow=FLOW, deal_id=deal_id, marker=marker, body=body, effects=effects)


def effect(deal_id: str, n: int, kind: str = "task") -> NewEffect:
    return NewEffect(f"{FLOW}:hubspot:default:{deal_id}/task{n}", kind, {"name": f"Task {n}"})


def queued(store: Store, deal_id: str, now: float = T0, effects: tuple[NewEffect, ...] = ()) -> NewOp:
    """A deal recorded with its newly qualifying op, pending."""
    op = new_op(deal_id, effects)
    assert store.record_page([change(deal(deal_id))], [op], [], 1_000, now) == 1
    return op


def created(store: Store, op: NewOp, now: float = T0, gid: str = "1210000000000001") -> None:
    assert store.ops.begin(op.op_key, now)
    store.ops.move(op.op_key, State.CREATED, now, f"created project {gid}", asana_gid=gid, asana_url=f"u/{gid}")


# -- reading the file behind the store's back ----------------------------------------------------------
def row(store: Any, table: str, key: str) -> Any:
    column = {"ops": "op_key", "effects": "effect_key"}[table]
    found = store.conn.execute(f"SELECT * FROM {table} WHERE {column} = ?", (key,)).fetchone()
    assert found is not None
    return found


def events(store: Any, ledger: str, key: str) -> list[tuple[str, str]]:
    rows = store.conn.execute(
        "SELECT state, detail FROM events WHERE ledger = ? AND key = ? ORDER BY id", (ledger, key)
    )
    return [(r["state"], r["detail"]) for r in rows]


def count(store: Any, table: str) -> int:
    return int(store.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


# -- migrations ----------------------------------------------------------------------------------------
def test_migrations_apply_on_a_fresh_file_and_are_idempotent_on_reopen(db_path: Path) -> None:
    first = SqliteStore.open(db_path)
    applied = [m.name for m in migrations.applied(first.db)]
    first.set_meta("probe", "kept")
    first.close()

    again = SqliteStore.open(db_path)
    try:
        assert applied[: len(MIGRATIONS)] == MIGRATIONS
        assert migrations.pending(again.db) == []
        assert [m.name for m in migrations.applied(again.db)] == applied  # nothing applied twice
        assert {"meta", "cursors", "deals", "deal_versions", "ops", "effects", "events", "quarantine"} <= tables(
            again.conn
        )
        assert again.get_meta("probe") == "kept"
        assert again.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert again.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    finally:
        again.close()


def test_a_database_from_before_one_event_log_keeps_its_op_history_in_events(db_path: Path) -> None:
    conn = connect(db_path)
    migrations.apply(Database(conn), stop_before="one_event_log")
    assert "op_events" in tables(conn) and "events" not in tables(conn)
    conn.execute(
        """INSERT INTO deals (id, updated_at_ms, properties, matches, first_seen_at, recorded_at)
           VALUES ('7', 1000, '{}', '{"onboarding": true}', ?, ?)""",
        (T0, T0),
    )
    conn.execute(
        """INSERT INTO ops (op_key, flow, deal_id, state, marker, body, next_attempt_at, created_at, updated_at)
           VALUES ('onboarding:hubspot:default:7', 'onboarding', '7', 'pending', '[syncd:hubspot:default:7:onboarding]',
                   '{}', ?, ?, ?)""",
        (T0, T0, T0),
    )
    conn.execute(
        "INSERT INTO op_events (op_key, at, state, detail) VALUES ('onboarding:hubspot:default:7', ?, 'pending', ?)",
        (T0, "deal newly qualifies"),
    )
    conn.close()

    store = SqliteStore.open(db_path)
    try:
        assert "op_events" not in tables(store.conn)
        assert events(store, "ops", "onboarding:hubspot:default:7") == [("pending", "deal newly qualifies")]
        assert [m.name for m in migrations.applied(store.db)][:4] == MIGRATIONS
        assert migrations.pending(store.db) == []
    finally:
        store.close()


# -- the ledger ----------------------------------------------------------------------------------------
def test_begin_moves_a_pending_op_to_in_flight_counts_the_attempt_and_writes_an_event(store: Store) -> None:
    op = queued(store, "7")

    assert store.ops.begin(op.op_key, T0 + 1) is True

    committed = row(store, "ops", op.op_key)
    assert (committed["state"], committed["attempts"], committed["last_attempt_at"]) == ("in_flight", 1, T0 + 1)
    assert events(store, "ops", op.op_key) == [
        ("pending", "deal newly qualifies"),
        ("in_flight", "committed before the create request"),
    ]


def test_a_second_begin_returns_false_and_changes_nothing(store: Store) -> None:
    op = queued(store, "7")
    assert store.ops.begin(op.op_key, T0 + 1)

    assert store.ops.begin(op.op_key, T0 + 2) is False

    assert row(store, "ops", op.op_key)["attempts"] == 1
    assert len(events(store, "ops", op.op_key)) == 2


@pytest.mark.parametrize("state", [State.UNKNOWN, State.CREATED, State.DEAD])
def test_begin_refuses_an_op_that_is_not_pending(store: Store, state: State) -> None:
    op = queued(store, "7")
    assert store.ops.begin(op.op_key, T0)
    store.ops.move(op.op_key, state, T0, "elsewhere", **({"asana_gid": "1"} if state == State.CREATED else {}))

    assert store.ops.begin(op.op_key, T0 + 1) is False
    assert row(store, "ops", op.op_key)["state"] == state


def test_begin_is_false_for_a_key_the_ledger_does_not_hold(store: Store) -> None:
    assert store.ops.begin("no-such-op", T0) is False
    assert count(store, "events") == 0


def test_move_writes_one_event_per_transition(store: Store) -> None:
    op = queued(store, "7")
    assert store.ops.begin(op.op_key, T0)
    store.ops.move(op.op_key, State.UNKNOWN, T0 + 1, "outcome unknown: reset")
    store.ops.move(op.op_key, State.PENDING, T0 + 2, "reconcile: no marker")
    assert store.ops.begin(op.op_key, T0 + 3)
    store.ops.move(op.op_key, State.CREATED, T0 + 4, "created project 9", asana_gid="9")

    assert [state for state, _ in events(store, "ops", op.op_key)] == [
        "pending",
        "in_flight",
        "unknown",
        "pending",
        "in_flight",
        "created",
    ]
    ats = [r[0] for r in store.conn.execute("SELECT at FROM events WHERE key = ? ORDER BY id", (op.op_key,))]
    assert ats == [T0, T0, T0 + 1, T0 + 2, T0 + 3, T0 + 4]


def test_last_error_is_the_detail_of_unknown_and_dead_and_cleared_otherwise(store: Store) -> None:
    op = queued(store, "7", effects=(effect("7", 1),))
    key = op.op_key

    def last_error() -> str | None:
        return row(store, "ops", key)["last_error"]

    assert store.ops.begin(key, T0)
    store.ops.move(key, State.UNKNOWN, T0, "outcome unknown: reset")
    assert last_error() == "outcome unknown: reset"
    store.ops.move(key, State.PENDING, T0, "reconcile: no marker")
    assert last_error() is None
    assert store.ops.begin(key, T0)
    store.ops.move(key, State.DEAD, T0, "Asana rejected the request")
    assert last_error() == "Asana rejected the request"
    store.ops.move(key, State.PENDING, T0, "syncd retry")
    assert last_error() is None
    created(store, op)
    assert last_error() is None

    effect_key = op.effects[0].effect_key
    assert store.effects.begin(effect_key, T0)
    store.effects.move(effect_key, State.UNKNOWN, T0, "task POST reset")
    assert row(store, "effects", effect_key)["last_error"] == "task POST reset"
    store.effects.move(effect_key, State.DONE, T0, "reconcile found task 5")
    assert row(store, "effects", effect_key)["last_error"] is None
    assert [s for s, _ in events(store, "effects", effect_key)] == ["in_flight", "unknown", "done"]


def test_created_without_a_gid_raises_and_the_transaction_rolls_back(store: Store) -> None:
    op = queued(store, "7")
    assert store.ops.begin(op.op_key, T0)
    before = events(store, "ops", op.op_key)

    with pytest.raises(INTEGRITY), store.write() as c:
        store.ops.move_in(c, op.op_key, State.UNKNOWN, T0 + 1, "outcome unknown")  # fine on its own
        store.ops.move_in(c, op.op_key, State.CREATED, T0 + 1, "created, but no gid")

    assert not in_transaction(store)
    kept = row(store, "ops", op.op_key)
    assert (kept["state"], kept["asana_gid"], kept["last_error"]) == ("in_flight", None, None)
    assert events(store, "ops", op.op_key) == before


@pytest.mark.parametrize(
    ("state", "fields"),
    [
        (State.PENDING, {"asana_gid": "9"}),  # a gid on an op that is not created
        (State.DONE, {}),  # an effect's end state on an op
        (State.PENDING, {"attempts": -1}),
        (State.UNKNOWN, {}),  # "may have been sent" for an op that was never attempted
    ],
    ids=["gid-without-created", "op-done", "negative-attempts", "unknown-never-attempted"],
)
def test_check_constraints_refuse_impossible_op_states(store: Store, state: State, fields: Any) -> None:
    op = queued(store, "7")

    with pytest.raises(INTEGRITY):
        store.ops.move(op.op_key, state, T0 + 1, "impossible", **fields)

    kept = row(store, "ops", op.op_key)
    assert (kept["state"], kept["asana_gid"], kept["attempts"]) == ("pending", None, 0)
    assert len(events(store, "ops", op.op_key)) == 1


def test_recover_in_flight_turns_every_in_flight_op_and_effect_into_unknown(store: Store) -> None:
    flying = queued(store, "1")
    assert store.ops.begin(flying.op_key, T0)
    done = queued(store, "2", effects=(effect("2", 1),))
    created(store, done)
    assert store.effects.begin(done.effects[0].effect_key, T0)
    waiting = queued(store, "3")

    assert store.recover_in_flight(T0 + 5) == 1

    assert row(store, "ops", flying.op_key)["state"] == "unknown"
    assert row(store, "effects", done.effects[0].effect_key)["state"] == "unknown"
    assert row(store, "ops", done.op_key)["state"] == "created"
    assert row(store, "ops", waiting.op_key)["state"] == "pending"
    state, startup = events(store, "ops", flying.op_key)[-1]
    assert state == "unknown" and startup.startswith("found in_flight") and "died" in startup
    assert events(store, "effects", done.effects[0].effect_key)[-1] == ("unknown", startup)
    assert row(store, "ops", flying.op_key)["last_error"] == startup
    assert store.recover_in_flight(T0 + 6) == 0


# -- one page, one transaction -------------------------------------------------------------------------
def test_record_page_writes_deals_ops_quarantine_and_cursor_together(store: Store) -> None:
    q = Quarantined("9", "amount 'lots' is not a number", '{"id": "9"}')

    new = store.record_page(
        [change(deal("7")), change(deal("8"), matches=False, newly=())], [new_op("7")], [q], 5_000, T0
    )

    assert new == 1
    assert count(store, "deals") == 2 and count(store, "deal_versions") == 2
    assert count(store, "ops") == 1 and count(store, "quarantine") == 1
    assert store.cursor() == 5_000


def test_a_failure_inside_record_page_leaves_no_partial_rows_and_the_cursor_unchanged(store: Store) -> None:
    queued(store, "1")  # cursor 1000, one deal, one op
    orphan = new_op("missing")  # its deal is not in the page: the foreign key fails inside the transaction
    q = Quarantined("9", "bad record", "{}")

    with pytest.raises(INTEGRITY, match=r"(?i)foreign key"):
        store.record_page([change(deal("2"))], [new_op("2"), orphan], [q], 9_000, T0 + 1)

    assert not in_transaction(store)
    assert store.cursor() == 1_000
    assert [r[0] for r in store.conn.execute("SELECT id FROM deals")] == ["1"]
    assert count(store, "deal_versions") == 1
    assert [r[0] for r in store.conn.execute("SELECT op_key FROM ops")] == [new_op("1").op_key]
    assert count(store, "quarantine") == 0
    assert count(store, "events") == 1
    assert store.record_page([change(deal("2"))], [new_op("2")], [], 9_000, T0 + 2) == 1  # the store still works


def test_the_cursor_never_moves_backwards(store: Store) -> None:
    store.record_page([], [], [], 5_000, T0)
    store.record_page([], [], [], 3_000, T0 + 1)
    assert store.cursor() == 5_000
    store.record_page([], [], [], 6_000, T0 + 2)
    assert store.cursor() == 6_000


def test_a_replayed_older_deal_version_does_not_overwrite_a_newer_one(store: Store) -> None:
    store.record_page([change(deal("7", 2_000, name="Acme (new)"), newly=())], [], [], 2_000, T0)

    store.record_page([change(deal("7", 1_000, name="Acme (old)"), matches=False, newly=())], [], [], 2_000, T0 + 1)

    kept = store.conn.execute("SELECT updated_at_ms, properties, matches, recorded_at FROM deals").fetchone()
    assert kept["updated_at_ms"] == 2_000
    assert '"Acme (new)"' in kept["properties"] and kept["matches"] == '{"onboarding": true}'
    assert kept["recorded_at"] == T0
    assert store.stored_deals(["7"])["7"].updated_at_ms == 2_000


def test_inserting_the_same_op_twice_is_idempotent_by_op_key(store: Store) -> None:
    op = new_op("7", effects=(effect("7", 1), effect("7", 2)))
    assert store.record_page([change(deal("7"))], [op], [], 1_000, T0) == 1
    changed = dataclasses.replace(op, body={**op.body, "name": "Something else"})

    assert store.record_page([change(deal("7", 2_000))], [changed], [], 2_000, T0 + 1) == 0
    assert store.queue_ops([op], T0 + 2, "backfill") == 0

    assert count(store, "ops") == 1 and count(store, "effects") == 2
    assert '"Onboarding: Deal 7"' in row(store, "ops", op.op_key)["body"]  # the body stays frozen
    assert events(store, "ops", op.op_key) == [("pending", "deal newly qualifies")]


# -- the due queues ------------------------------------------------------------------------------------
def test_a_held_flows_ops_are_neither_due_nor_wake_the_daemon(store: Store) -> None:
    """A paused flow's pending ops wait: `due_ops` leaves them out, and `next_due` does not count them, so
    `syncd run` does not cycle early, again and again, for work it will not do."""
    queued(store, "7")
    assert store.next_due(10) == T0 and len(store.due_ops(T0, 10)) == 1
    held = frozenset({FLOW})
    assert store.due_ops(T0, 10, held=held) == [] and store.next_due(10, held=held) is None


def test_due_ops_honours_next_attempt_at_for_pending_ops(store: Store) -> None:
    op = queued(store, "7")
    store.ops.move(op.op_key, State.PENDING, T0, "rate limited", next_attempt_at=T0 + 30)

    assert store.due_ops(T0 + 29.9, settle_seconds=10) == []
    (due,) = store.due_ops(T0 + 30, settle_seconds=10)
    assert isinstance(due, Op)
    assert (due.op_key, due.state, due.next_attempt_at, due.attempts) == (op.op_key, State.PENDING, T0 + 30, 0)


def test_due_ops_waits_the_settle_delay_after_the_last_attempt_of_an_unknown_op(store: Store) -> None:
    op = queued(store, "7")
    assert store.ops.begin(op.op_key, T0 + 1)
    store.ops.move(op.op_key, State.UNKNOWN, T0 + 1.2, "outcome unknown")

    assert store.due_ops(T0 + 10.9, settle_seconds=10) == []
    (due,) = store.due_ops(T0 + 11, settle_seconds=10)
    assert (due.state, due.attempts, due.last_attempt_at) == (State.UNKNOWN, 1, T0 + 1)
    assert due.last_error == "outcome unknown"


def test_due_ops_never_returns_in_flight_created_or_dead_ops(store: Store) -> None:
    for deal_id in ("1", "2", "3"):
        queued(store, deal_id)
        assert store.ops.begin(new_op(deal_id).op_key, T0)
    store.ops.move(new_op("2").op_key, State.CREATED, T0, "created", asana_gid="9")
    store.ops.move(new_op("3").op_key, State.DEAD, T0, "rejected")

    assert store.due_ops(T0 + 1_000_000, settle_seconds=0) == []


def test_due_effects_returns_the_next_effect_of_each_created_project_in_seq_order(store: Store) -> None:
    first = queued(store, "1", T0, effects=(effect("1", 1), effect("1", 2, "writeback"), effect("1", 3, "notify")))
    second = queued(store, "2", T0 + 1, effects=(effect("2", 1),))
    waiting = queued(store, "3", T0 + 2, effects=(effect("3", 1),))
    assert store.due_effects(T0 + 5, 10) == []  # no project exists yet

    created(store, second, gid="22")
    created(store, first, gid="11")
    due = store.due_effects(T0 + 5, 10)

    assert all(isinstance(e, Effect) for e in due)
    assert [(e.effect_key, e.op_key, e.asana_gid, e.deal_id) for e in due] == [
        (first.effects[0].effect_key, first.op_key, "11", "1"),
        (second.effects[0].effect_key, second.op_key, "22", "2"),
    ]
    assert (due[0].kind, due[0].state, due[0].asana_url) == ("task", State.PENDING, "u/11")
    assert due[0].body == {"name": "Task 1"}

    store.effects.move(first.effects[0].effect_key, State.DONE, T0 + 6, "sent")
    store.effects.move(second.effects[0].effect_key, State.DONE, T0 + 6, "sent")
    assert [e.effect_key for e in store.due_effects(T0 + 7, 10)] == [first.effects[1].effect_key]

    store.effects.move(first.effects[1].effect_key, State.PENDING, T0 + 7, "CRM busy", next_attempt_at=T0 + 60)
    assert store.due_effects(T0 + 8, 10) == []  # the third waits for the second: never skipped
    assert [e.kind for e in store.due_effects(T0 + 60, 10)] == ["writeback"]
    assert waiting.effects[0].effect_key not in {e.effect_key for e in store.due_effects(T0 + 60, 10)}


# -- the read side -------------------------------------------------------------------------------------
READERS = [lambda path: read_status(path, T0), lambda path: read_history(path, "7")]


def finish(store: Store, ok: bool, at: float = T0) -> None:
    cycle = store.start_cycle(at)
    store.finish_cycle(cycle, at + 1, ok=ok, error=None if ok else "asana: 500", deals_seen=1, created=0)


def test_status_before_any_cycle_is_unhealthy(store: Store, place: Place) -> None:
    status = read_status(place, T0)

    assert isinstance(status, Status)
    assert status.problems == ["no cycle has finished yet"]
    assert not status.healthy
    assert status.last_cycle is None and status.cursor_ms is None
    assert dict(status.ops) == dict.fromkeys(OP_STATES, 0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        status.deals = 5  # type: ignore[misc]


def test_status_is_healthy_after_a_good_cycle_and_not_after_a_failed_one(store: Store, place: Place) -> None:
    store.record_page([], [], [], 4_000_000, T0)
    store.mark_baseline_done(T0)
    finish(store, ok=True)
    good = read_status(place, T0 + 5)
    assert (good.healthy, good.problems) == (True, [])
    assert (good.baseline_recorded_at, good.cursor_ms) == (T0, 4_000_000)
    assert good.last_cycle is not None and good.last_cycle.ok and good.last_success_at == T0 + 1

    finish(store, ok=False, at=T0 + 10)
    failed = read_status(place, T0 + 15)
    assert failed.problems == ["the last cycle failed"]
    assert not failed.healthy
    assert failed.last_cycle is not None and failed.last_cycle.error == "asana: 500"
    assert failed.last_success_at == T0 + 1


def test_status_counts_dead_ops_and_dead_effects_as_problems(store: Store, place: Place) -> None:
    finish(store, ok=True)
    dead = queued(store, "7")
    store.ops.move(dead.op_key, State.DEAD, T0, "Asana rejected the request: color")
    with_effect = queued(store, "8", effects=(effect("8", 1),))
    created(store, with_effect)
    store.effects.move(with_effect.effects[0].effect_key, State.DEAD, T0, "the CRM refused the write-back")

    status = read_status(place, T0 + 5)

    assert status.problems == [
        "1 dead op(s) need a human",
        "1 dead follow-up(s) (task, write-back, message) need a human",
    ]
    assert not status.healthy
    assert status.ops[State.DEAD] == 1 and status.ops[State.CREATED] == 1
    ((op,),) = [status.dead_ops]
    assert (op.op_key, op.deal_id, op.flow, op.reason) == (dead.op_key, "7", FLOW, "Asana rejected the request: color")


def test_history_gives_a_deals_versions_and_its_ops_with_their_events(store: Store, place: Place) -> None:
    store.record_page([change(deal("7", 1_000, name="Acme"), matches=False, newly=())], [], [], 1_000, T0)
    op = new_op("7")
    store.record_page([change(deal("7", 2_000, name="Acme"))], [op], [], 2_000, T0 + 1)
    created(store, op, T0 + 2, gid="9")

    history = read_history(place, "7")

    assert history.deal_id == "7"
    assert [(v.updated_at_ms, dict(v.matches), v.newly) for v in history.versions] == [
        (1_000, {FLOW: False}, ()),
        (2_000, {FLOW: True}, (FLOW,)),
    ]
    assert history.versions[1].values["name"] == "Acme"
    ((seen,),) = [history.ops]
    assert (seen.op_key, seen.state, seen.attempts, seen.asana_gid) == (op.op_key, State.CREATED, 1, "9")
    assert [(e.state, e.at) for e in seen.events] == [
        (State.PENDING, T0 + 1),
        (State.IN_FLIGHT, T0 + 2),
        (State.CREATED, T0 + 2),
    ]
    assert read_history(place, "unknown-deal").versions == ()


@pytest.mark.parametrize("read", READERS, ids=["status", "history"])
def test_a_missing_database_is_a_store_error_with_a_sentence(tmp_path: Path, read: Any) -> None:
    missing = tmp_path / "nowhere.db"

    with pytest.raises(StoreError, match=r"There is no syncd database at .*nowhere\.db yet") as caught:
        read(missing)

    assert "Traceback" not in str(caught.value)
    assert not missing.exists()  # reading never creates it


@pytest.mark.parametrize("read", READERS, ids=["status", "history"])
def test_a_file_of_random_bytes_is_a_store_error_with_a_sentence(tmp_path: Path, read: Any) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(random.Random(7).randbytes(8192))

    with pytest.raises(StoreError, match=r"Could not read .*junk\.db \(file is not a database\)\. Is it a") as caught:
        read(junk)

    assert caught.value.__cause__ is None and caught.value.__suppress_context__  # `from None`: no chained traceback


def test_opening_a_file_of_random_bytes_for_writing_is_a_store_error_and_frees_the_lock(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(random.Random(7).randbytes(8192))

    with pytest.raises(StoreError, match=r"junk\.db is not a usable syncd database .* Restoring a backup is safe"):
        SqliteStore.open(junk)

    junk.unlink()
    SqliteStore.open(junk).close()  # the lock was released: a second open is not LockHeld


def test_a_pause_keeps_the_later_of_two_retry_afters(store: Store) -> None:
    """Two answers asked to wait until different times: the later one stands, whichever came last (the
    stored value is compared as a number; SQLite once compared it as text against a number and always took
    the newest)."""
    store.save_pause("asana", T0 + 60)
    store.save_pause("asana", T0 + 5)
    assert store.pause("asana") == pytest.approx(T0 + 60)
    store.save_pause("asana", T0 + 90)
    assert store.pause("asana") == pytest.approx(T0 + 90)
