"""The state on PostgreSQL (psycopg 3, the `syncd[postgres]` extra): the same tables, ledger and read side as
SQLite, with every row keyed by account, for several hosts and many accounts on one database.

One writer per account, by lease (`syncd.store.lease`) instead of `flock`: every write is one transaction that
first renews the lease under this process's fencing number, so a process that lost its lease cannot write.
No HTTP call ever happens inside a transaction.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from syncd.config_values import PostgresState
from syncd.diff import Change, Stored
from syncd.errors import NoStateYet, StoreError
from syncd.models import Effect, NewEffect, NewOp, Op, Quarantined, State, iso_s
from syncd.store.lease import Lease, Taken
from syncd.store.ledger import Ledger
from syncd.store.pg_schema import PgConnection, connect, migrate
from syncd.store.rows import effect_of, op_of
from syncd.store.scope import Scope

log = logging.getLogger("syncd.store")


def unreachable(state: PostgresState, exc: psycopg.Error) -> StoreError:
    return StoreError(
        f"Could not use the PostgreSQL database {state.shown} ({type(exc).__name__}: {exc}). Check that the "
        "server is up, the URL ([state] url or url_env) and the password (PGPASSWORD, PGPASSFILE or the URL)."
    )


class PgStore:
    """The one writer of one account. `ops` and `effects` are the same ledgers as on SQLite."""

    def __init__(self, state: PostgresState, conn: PgConnection, lease: Lease) -> None:
        self.state, self.conn, self.lease, self.account = state, conn, lease, state.account
        self.scope = Scope(state.account)
        self.ops = Ledger(self.write, "ops", "op_key", State.CREATED, "the create request", self.scope)
        self.effects = Ledger(self.write, "effects", "effect_key", State.DONE, "the request", self.scope)
        self.taken: Taken | None = None

    @classmethod
    def open(cls, state: PostgresState, *, settle_seconds: float, post_seconds: float) -> PgStore:
        """Connect, migrate and take the lease (`LockHeld` when another holds it). After a takeover, wait
        until `settle_seconds` after the previous lease's expiry, renewing, before returning."""
        try:
            conn = connect(state.url)
        except psycopg.Error as exc:
            raise unreachable(state, exc) from None
        try:
            migrate(conn)
            store = cls(state, conn, Lease(state.url, state.account, state.lease_seconds, post_seconds, state.shown))
            taken = store.taken = store.lease.acquire(conn, settle_seconds)
        except BaseException as exc:
            conn.close()
            if isinstance(exc, psycopg.Error):
                raise unreachable(state, exc) from None
            raise
        store.lease.start_heartbeat()
        if taken.wait_seconds > 0:
            log.warning(
                "took over the lease on account %r from %s (fence %d): its requests may still land, so nothing "
                "is sent for %.1fs",
                state.account,
                taken.previous,
                taken.fence,
                taken.wait_seconds,
            )
            time.sleep(taken.wait_seconds)
        elif taken.previous:
            log.info("took the lease on account %r (fence %d) after %s", state.account, taken.fence, taken.previous)
        return store

    def close(self) -> None:
        self.lease.stop_heartbeat()
        try:
            with self.conn.raw.transaction():
                self.lease.release(self.conn)
        except psycopg.Error as exc:
            log.warning("could not release the lease (%s); it expires by itself", exc)
        self.conn.close()

    @contextmanager
    def write(self) -> Iterator[PgConnection]:
        """One transaction that first renews the lease under this process's fence (`LeaseLost` otherwise)."""
        try:
            with self.conn.raw.transaction():
                self.lease.renew(self.conn)
                yield self.conn
        except psycopg.OperationalError as exc:
            raise unreachable(self.state, exc) from None

    def check_lease(self) -> None:
        """Before each POST: `LeaseLost` unless the request can end before the lease does."""
        self.lease.check(self.conn)

    def _one(self, sql: str, *params: Any) -> Any:
        return self.conn.execute(sql, (*params, self.account)).fetchone()

    # -- meta: baseline, pauses, alert and health facts ------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self._one("SELECT value FROM meta WHERE key = ? AND account = ?", key)
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self.write() as c:
            c.execute(
                """INSERT INTO meta (key, value, account) VALUES (?, ?, ?)
                   ON CONFLICT (account, key) DO UPDATE SET value = excluded.value""",
                (key, value, self.account),
            )

    def baseline_done(self) -> bool:
        return self.get_meta("baseline_done") is not None

    def mark_baseline_done(self, now: float) -> None:
        with self.write() as c:
            c.execute(
                "INSERT INTO meta (key, value, account) VALUES ('baseline_done', ?, ?) ON CONFLICT DO NOTHING",
                (iso_s(now), self.account),
            )

    def flow_baselines(self) -> dict[str, tuple[str, float]]:
        rows = self.conn.execute(
            "SELECT flow, rule, at FROM flow_baselines WHERE account = ? ORDER BY id", (self.account,)
        )
        return {row[0]: (row[1], row[2]) for row in rows}

    def record_flow_baselines(self, baselines: list[tuple[str, str, str]], now: float) -> None:
        with self.write() as c:
            c.executemany(
                "INSERT INTO flow_baselines (flow, rule, at, reason, account) VALUES (?, ?, ?, ?, ?)",
                [(flow, rule, now, reason, self.account) for flow, rule, reason in baselines],
            )

    def pause(self, service: str) -> float:
        return float(self.get_meta(f"paused_until:{service}") or 0.0)

    def save_pause(self, service: str, until: float) -> None:
        with self.write() as c:
            c.execute(
                """INSERT INTO meta (key, value, account) VALUES (?, ?, ?) ON CONFLICT (account, key)
                   DO UPDATE SET value = GREATEST(meta.value::float8, excluded.value::float8)::text""",
                (f"paused_until:{service}", repr(until), self.account),
            )

    # -- one page, one transaction ---------------------------------------------------------------------
    def cursor(self) -> int | None:
        row = self._one("SELECT value_ms FROM cursors WHERE name = 'crm' AND account = ?")
        return None if row is None else int(row[0])

    def stored_deals(self, ids: Iterable[str]) -> dict[str, Stored]:
        rows = self.conn.execute(
            "SELECT id, updated_at_ms, matches, entries FROM deals WHERE id = ANY(?) AND account = ?",
            (list(ids), self.account),
        )
        return {r["id"]: Stored(r["updated_at_ms"], json.loads(r["matches"]), json.loads(r["entries"])) for r in rows}

    def record_page(
        self, changes: list[Change], ops: list[NewOp], quarantined: list[Quarantined], cursor_ms: int, now: float
    ) -> int:
        """Deals, new ops, quarantine and the cursor, atomically. Returns how many ops were really new."""
        a = self.account
        versions = [
            (ch.deal.id, ch.deal.updated_at_ms, json.dumps(ch.deal.values()), json.dumps(ch.matches)) for ch in changes
        ]
        with self.write() as c:
            c.executemany(
                """INSERT INTO deals (id, updated_at_ms, properties, matches, entries, first_seen_at, recorded_at,
                                      account) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (account, id) DO UPDATE SET updated_at_ms = excluded.updated_at_ms,
                       properties = excluded.properties, matches = excluded.matches, entries = excluded.entries,
                       recorded_at = excluded.recorded_at
                   WHERE excluded.updated_at_ms >= deals.updated_at_ms""",
                [(*v, json.dumps(ch.entries), now, now, a) for v, ch in zip(versions, changes, strict=True)],
            )
            c.executemany(
                """INSERT INTO deal_versions (deal_id, updated_at_ms, properties, matches, newly, recorded_at, account)
                   VALUES (?, ?, ?, ?, ?, ?, ?)""",
                [(*v, json.dumps(list(ch.newly)), now, a) for v, ch in zip(versions, changes, strict=True)],
            )
            c.executemany(
                "DELETE FROM quarantine WHERE record_id = ? AND account = ?", [(ch.deal.id, a) for ch in changes]
            )
            created = self._insert_ops(c, ops, now, "deal newly qualifies")
            c.executemany(
                "INSERT INTO quarantine (record_id, reason, excerpt, seen_at, account) VALUES (?, ?, ?, ?, ?)",
                [(q.record_id, q.reason, q.excerpt, now, a) for q in quarantined],
            )
            c.execute(
                """INSERT INTO cursors (name, value_ms, updated_at, account) VALUES ('crm', ?, ?, ?)
                   ON CONFLICT (account, name) DO UPDATE SET
                       value_ms = GREATEST(cursors.value_ms, excluded.value_ms), updated_at = excluded.updated_at""",
                (max(cursor_ms, 0), now, a),
            )
        return created

    def queue_ops(self, ops: list[NewOp], now: float, detail: str) -> int:
        with self.write() as c:
            return self._insert_ops(c, ops, now, detail)

    def _insert_ops(self, c: PgConnection, ops: list[NewOp], now: float, detail: str) -> int:
        """Insert ops that do not exist yet (the op key is the ledger's guarantee); return how many were new."""
        created, a = 0, self.account
        for op in ops:
            keys = [alias.key for alias in op.aliases]
            known = (
                keys
                and c.execute(
                    "SELECT op_key, state FROM ops WHERE op_key = ANY(?) AND account = ? LIMIT 1", (keys, a)
                ).fetchone()
            )
            if known:
                self.ops.event(c, known[0], now, State(known[1]), f"{op.op_key} is the same project: not queued")
                continue
            cur = c.execute(
                """INSERT INTO ops (op_key, flow, deal_id, state, marker, body, next_attempt_at, created_at, updated_at,
                                    aliases, account)
                   VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING""",
                (op.op_key, op.flow, op.deal_id, op.marker, json.dumps(op.body), now, now, now,
                 json.dumps([alias.marker for alias in op.aliases]), a),
            )  # fmt: skip
            if cur.rowcount:
                created += 1
                self.ops.event(c, op.op_key, now, State.PENDING, detail)
                c.executemany(
                    """INSERT INTO effects (effect_key, op_key, seq, kind, state, body, next_attempt_at, created_at,
                                            updated_at, account) VALUES (?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?)""",
                    [
                        (e.effect_key, op.op_key, seq, e.kind, json.dumps(e.body), now, now, now, a)
                        for seq, e in enumerate(op.effects, 1)
                    ],
                )
        return created

    # -- the ledger's queues ---------------------------------------------------------------------------
    def recover_in_flight(self, now: float) -> int:
        """An `in_flight` op or effect may have been sent by a process that died or lost its lease: this one
        holds the lease now (every write is fenced), so none is its own."""
        why = "found in_flight by the lease holder: the process that committed it died or lost its lease mid-call"
        with self.write() as c:
            found = self.ops.recover_in_flight(c, now, why)
            self.effects.recover_in_flight(c, now, why)
        return found

    def due_ops(self, now: float, settle_seconds: float) -> list[Op]:
        rows = self.conn.execute(
            """SELECT * FROM ops WHERE account = ? AND ((state = 'pending' AND next_attempt_at <= ?)
                                                     OR (state = 'unknown' AND last_attempt_at <= ?))
               ORDER BY created_at, op_key""",
            (self.account, now, now - settle_seconds),
        )
        return [op_of(row) for row in rows]

    def dead_ops(self, deal_id: str) -> list[Op]:
        rows = self.conn.execute(
            "SELECT * FROM ops WHERE deal_id = ? AND state = 'dead' AND account = ? ORDER BY op_key",
            (deal_id, self.account),
        )
        return [op_of(row) for row in rows]

    def ledger_flows(self) -> list[str]:
        rows = self.conn.execute("SELECT DISTINCT flow FROM ops WHERE account = ? ORDER BY flow", (self.account,))
        return [row[0] for row in rows]

    def op_count(self, state: State) -> int:
        return int(self._one("SELECT count(*) FROM ops WHERE state = ? AND account = ?", state.value)[0])

    def deals_without_op(self, flows: tuple[str, ...], since_ms: int) -> list[tuple[str, int, dict[str, Any]]]:
        rows = self.conn.execute(
            """SELECT d.id, d.updated_at_ms, d.properties FROM deals d
               WHERE d.account = ? AND d.updated_at_ms >= ?
                 AND NOT EXISTS (SELECT 1 FROM ops o WHERE o.account = d.account AND o.deal_id = d.id
                                 AND o.flow = ANY(?))
               ORDER BY d.updated_at_ms, d.id""",
            (self.account, since_ms, list(flows)),
        )
        return [(r[0], r[1], json.loads(r[2])) for r in rows]

    def replace_effects(self, op_key: str, effects: tuple[NewEffect, ...], now: float) -> None:
        with self.write() as c:
            c.execute(
                "DELETE FROM effects WHERE op_key = ? AND state != 'done' AND account = ?", (op_key, self.account)
            )
            c.executemany(
                """INSERT INTO effects (effect_key, op_key, seq, kind, state, body, next_attempt_at, created_at,
                                        updated_at, account) VALUES (?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?)
                   ON CONFLICT DO NOTHING""",
                [
                    (e.effect_key, op_key, seq, e.kind, json.dumps(e.body), now, now, now, self.account)
                    for seq, e in enumerate(effects, 1)
                ],
            )

    def latest_version(self, deal_id: str) -> tuple[int, dict[str, Any]] | None:
        row = self._one("SELECT updated_at_ms, properties FROM deals WHERE id = ? AND account = ?", deal_id)
        return None if row is None else (int(row[0]), json.loads(row[1]))

    def due_effects(self, now: float, settle_seconds: float) -> list[Effect]:
        rows = self.conn.execute(
            """SELECT e.*, o.asana_gid, o.asana_url, o.job_gid, o.deal_id FROM effects e
               JOIN ops o ON o.account = e.account AND o.op_key = e.op_key
               WHERE e.account = ? AND o.state = 'created'
                 AND ((e.state = 'pending' AND e.next_attempt_at <= ?)
                      OR (e.state = 'unknown' AND e.last_attempt_at <= ?))
                 AND NOT EXISTS (SELECT 1 FROM effects p WHERE p.account = e.account AND p.op_key = e.op_key
                                 AND p.seq < e.seq AND p.state != 'done')
               ORDER BY o.created_at, e.op_key, e.seq""",
            (self.account, now, now - settle_seconds),
        )
        return [effect_of(r) for r in rows]

    # -- cycles ----------------------------------------------------------------------------------------
    def start_cycle(self, now: float) -> int:
        with self.write() as c:
            row = c.execute("INSERT INTO cycles (started_at, account) VALUES (?, ?) RETURNING id", (now, self.account))
            return int(row.fetchone()[0])  # type: ignore[index]

    def finish_cycle(
        self, cycle_id: int, now: float, *, ok: bool, error: str | None, deals_seen: int, created: int
    ) -> None:
        with self.write() as c:
            c.execute(
                """UPDATE cycles SET finished_at = ?, ok = ?, error = ?, deals_seen = ?, created = ?
                   WHERE id = ? AND account = ?""",
                (now, int(ok), error, deals_seen, created, cycle_id, self.account),
            )
            c.execute(
                """DELETE FROM cycles WHERE account = ? AND id < (SELECT min(id) FROM (
                       SELECT id FROM cycles WHERE account = ? ORDER BY id DESC LIMIT 1000) AS kept)""",
                (self.account, self.account),
            )


@contextmanager
def read_only(state: PostgresState) -> Iterator[PgConnection]:
    """A connection in one read-only transaction, for `syncd status` and `explain`: no lease needed."""
    try:
        conn = connect(state.url, application="syncd status")
    except psycopg.Error as exc:
        raise unreachable(state, exc) from None
    try:
        with conn.raw.transaction():
            conn.execute("SET TRANSACTION READ ONLY")
            yield conn
    except psycopg.errors.UndefinedTable:
        raise NoStateYet(f"There is no syncd state in {state.shown} yet. Run 'syncd once' to create it.") from None
    except psycopg.Error as exc:
        raise unreachable(state, exc) from None
    finally:
        conn.close()
