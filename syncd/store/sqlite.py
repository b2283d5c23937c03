"""The state database on SQLite (sqlite-utils): deals, the cursor, the ledger, quarantine, cycles.

One writer: `SqliteStore.open` runs under the single-instance lock (`syncd.lock`), and every write is one
`BEGIN IMMEDIATE` transaction. No HTTP call ever happens inside one. The read side (`syncd status`,
`syncd explain`) is `syncd.store.read`, on a read-only connection that needs no lock.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from syncd import lock
from syncd.diff import Change, Stored
from syncd.models import Effect, NewEffect, NewOp, Op, Quarantined, State, iso_s
from syncd.store.failures import is_storage, store_error
from syncd.store.ledger import Ledger
from syncd.store.rows import effect_of, op_of
from syncd.store.schema import connect, migrations


class SqliteStore:
    """The one writer. `ops` and `effects` are the two ledgers (`syncd.store.ledger`)."""

    def __init__(self, path: Path, conn: sqlite3.Connection, lock_fd: int | None) -> None:
        self.path, self.conn, self._lock_fd = path, conn, lock_fd
        self.db = Database(conn)
        self.ops = Ledger(self.write, "ops", "op_key", State.CREATED, "the create request")
        self.effects = Ledger(self.write, "effects", "effect_key", State.DONE, "the request")

    @classmethod
    def open(cls, path: Path, lock_fd: int | None = None) -> SqliteStore:
        """Open for writing under the single-instance lock: taken here (and released by `close`) unless the
        caller passes the descriptor it already holds."""
        owned = lock.acquire(path) if lock_fd is None else None
        try:
            store = cls(path, connect(path), owned)
            migrations.apply(store.db)
        except sqlite3.DatabaseError as exc:
            if owned is not None:
                lock.release(owned)
            raise store_error(path, exc) from None
        return store

    def close(self) -> None:
        self.conn.close()
        if self._lock_fd is not None:
            lock.release(self._lock_fd)
            self._lock_fd = None

    def check_lease(self) -> None:
        """The `flock` is held for the life of the store: nothing to check before a request."""

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One `BEGIN IMMEDIATE` transaction. A full disk or an I/O error is a `StoreError` that says so: the
        transaction did not happen, and everything committed before it is intact."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if not is_storage(exc):
                raise
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise store_error(self.path, exc) from None

    # -- meta: baseline, pauses, alert and health facts ------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self.write() as c:
            c.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def baseline_done(self) -> bool:
        return self.get_meta("baseline_done") is not None

    def mark_baseline_done(self, now: float) -> None:
        with self.write() as c:
            c.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('baseline_done', ?)", (iso_s(now),))

    def flow_baselines(self) -> dict[str, tuple[str, float]]:
        """Per flow: the rule its recorded state was judged by, and when that baseline was recorded."""
        rows = self.conn.execute("SELECT flow, rule, at FROM flow_baselines ORDER BY id")
        return {row[0]: (row[1], row[2]) for row in rows}

    def record_flow_baselines(self, baselines: list[tuple[str, str, str]], now: float) -> None:
        """(flow, rule, reason) for each flow whose baseline this process just recorded."""
        with self.write() as c:
            c.executemany(
                "INSERT INTO flow_baselines (flow, rule, at, reason) VALUES (?, ?, ?, ?)",
                [(flow, rule, now, reason) for flow, rule, reason in baselines],
            )

    def pause(self, service: str) -> float:
        """The wall-clock time until which `service` asked us to wait (Retry-After), surviving restarts."""
        return float(self.get_meta(f"paused_until:{service}") or 0.0)

    def save_pause(self, service: str, until: float) -> None:
        with self.write() as c:
            c.execute(
                """INSERT INTO meta (key, value) VALUES (?, ?)
                   ON CONFLICT (key) DO UPDATE SET value = max(CAST(value AS REAL), excluded.value)""",
                (f"paused_until:{service}", repr(until)),
            )

    # -- one page, one transaction ---------------------------------------------------------------------
    def cursor(self) -> int | None:
        row = self.conn.execute("SELECT value_ms FROM cursors WHERE name = 'crm'").fetchone()
        return None if row is None else int(row[0])

    def stored_deals(self, ids: Iterable[str]) -> dict[str, Stored]:
        ids = list(ids)
        found: dict[str, Stored] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self.conn.execute(
                f"SELECT id, updated_at_ms, matches, entries FROM deals WHERE id IN ({marks})", chunk
            )
            for row in rows:
                found[row["id"]] = Stored(row["updated_at_ms"], json.loads(row["matches"]), json.loads(row["entries"]))
        return found

    def record_page(
        self, changes: list[Change], ops: list[NewOp], quarantined: list[Quarantined], cursor_ms: int, now: float
    ) -> int:
        """Deals, new ops, quarantine and the cursor, atomically. Returns how many ops were really new."""
        versions = [
            (ch.deal.id, ch.deal.updated_at_ms, json.dumps(ch.deal.values()), json.dumps(ch.matches)) for ch in changes
        ]
        with self.write() as c:
            c.executemany(
                """INSERT INTO deals (id, updated_at_ms, properties, matches, entries, first_seen_at, recorded_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (id) DO UPDATE SET updated_at_ms = excluded.updated_at_ms,
                       properties = excluded.properties, matches = excluded.matches, entries = excluded.entries,
                       recorded_at = excluded.recorded_at
                   WHERE excluded.updated_at_ms >= deals.updated_at_ms""",
                [(*v, json.dumps(ch.entries), now, now) for v, ch in zip(versions, changes, strict=True)],
            )
            c.executemany(
                """INSERT INTO deal_versions (deal_id, updated_at_ms, properties, matches, newly, recorded_at)
                   VALUES (?, ?, ?, ?, ?, ?)""",
                [(*v, json.dumps(list(ch.newly)), now) for v, ch in zip(versions, changes, strict=True)],
            )
            c.executemany("DELETE FROM quarantine WHERE record_id = ?", [(ch.deal.id,) for ch in changes])
            created = self._insert_ops(c, ops, now, "deal newly qualifies")
            c.executemany(
                "INSERT INTO quarantine (record_id, reason, excerpt, seen_at) VALUES (?, ?, ?, ?)",
                [(q.record_id, q.reason, q.excerpt, now) for q in quarantined],
            )
            c.execute(
                """INSERT INTO cursors (name, value_ms, updated_at) VALUES ('crm', ?, ?)
                   ON CONFLICT (name) DO UPDATE SET value_ms = max(value_ms, excluded.value_ms),
                       updated_at = excluded.updated_at""",
                (max(cursor_ms, 0), now),
            )
        return created

    def queue_ops(self, ops: list[NewOp], now: float, detail: str) -> int:
        with self.write() as c:
            return self._insert_ops(c, ops, now, detail)

    def _insert_ops(self, c: sqlite3.Connection, ops: list[NewOp], now: float, detail: str) -> int:
        """Insert ops that do not exist yet (the op key is the ledger's guarantee); return how many were new."""
        created = 0
        for op in ops:
            if known := self._known_as(c, op):
                self.ops.event(
                    c, known, now, State(self._state(c, known)), f"{op.op_key} is the same project: not queued"
                )
                continue
            cur = c.execute(
                """INSERT INTO ops (op_key, flow, deal_id, state, marker, body, next_attempt_at, created_at, updated_at,
                                    aliases)
                   VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING""",
                (
                    op.op_key,
                    op.flow,
                    op.deal_id,
                    op.marker,
                    json.dumps(op.body),
                    now,
                    now,
                    now,
                    json.dumps([a.marker for a in op.aliases]),
                ),
            )
            if cur.rowcount:
                created += 1
                self.ops.event(c, op.op_key, now, State.PENDING, detail)
                c.executemany(
                    """INSERT INTO effects (effect_key, op_key, seq, kind, state, body, next_attempt_at, created_at,
                                            updated_at) VALUES (?, ?, ?, ?, 'pending', ?, ?, ?, ?)""",
                    [
                        (e.effect_key, op.op_key, seq, e.kind, json.dumps(e.body), now, now, now)
                        for seq, e in enumerate(op.effects, 1)
                    ],
                )
        return created

    @staticmethod
    def _known_as(c: sqlite3.Connection, op: NewOp) -> str | None:
        """The key of an op that already stands for this project under another name, if any."""
        keys = [a.key for a in op.aliases]
        if not keys:
            return None
        row = c.execute(
            f"SELECT op_key FROM ops WHERE op_key IN ({','.join('?' * len(keys))}) LIMIT 1", keys
        ).fetchone()
        return None if row is None else str(row[0])

    @staticmethod
    def _state(c: sqlite3.Connection, key: str) -> str:
        return str(c.execute("SELECT state FROM ops WHERE op_key = ?", (key,)).fetchone()[0])

    # -- the ledger's queues ---------------------------------------------------------------------------
    def recover_in_flight(self, now: float) -> int:
        """At startup: an `in_flight` op or effect may or may not have been sent by a process that died."""
        with self.write() as c:
            found = self.ops.recover_in_flight(c, now)
            self.effects.recover_in_flight(c, now)
        return found

    def due_ops(self, now: float, settle_seconds: float) -> list[Op]:
        rows = self.conn.execute(
            """SELECT * FROM ops WHERE (state = 'pending' AND next_attempt_at <= ?)
                                   OR (state = 'unknown' AND last_attempt_at <= ?)
               ORDER BY created_at, op_key""",
            (now, now - settle_seconds),
        )
        return [op_of(row) for row in rows]

    def dead_ops(self, deal_id: str) -> list[Op]:
        rows = self.conn.execute("SELECT * FROM ops WHERE deal_id = ? AND state = 'dead' ORDER BY op_key", (deal_id,))
        return [op_of(row) for row in rows]

    def ledger_flows(self) -> list[str]:
        return [row[0] for row in self.conn.execute("SELECT DISTINCT flow FROM ops ORDER BY flow")]

    def op_count(self, state: State) -> int:
        return int(self.conn.execute("SELECT count(*) FROM ops WHERE state = ?", (state.value,)).fetchone()[0])

    def deals_without_op(self, flows: tuple[str, ...], since_ms: int) -> list[tuple[str, int, dict[str, Any]]]:
        """Latest recorded versions, modified at or after `since_ms`, of deals with no op for any of `flows`
        (a flow's name and its previous names), for backfill to judge by the current rule."""
        marks = ",".join("?" * len(flows))
        rows = self.conn.execute(
            f"""SELECT d.id, d.updated_at_ms, d.properties FROM deals d
               WHERE d.updated_at_ms >= ?
                 AND NOT EXISTS (SELECT 1 FROM ops o WHERE o.deal_id = d.id AND o.flow IN ({marks}))
               ORDER BY d.updated_at_ms, d.id""",
            (since_ms, *flows),
        )
        return [(r[0], r[1], json.loads(r[2])) for r in rows]

    def replace_effects(self, op_key: str, effects: tuple[NewEffect, ...], now: float) -> None:
        """`syncd retry`: the follow-ups not yet done are rendered again from the current config."""
        with self.write() as c:
            c.execute("DELETE FROM effects WHERE op_key = ? AND state != 'done'", (op_key,))
            c.executemany(
                """INSERT OR IGNORE INTO effects (effect_key, op_key, seq, kind, state, body, next_attempt_at,
                                                  created_at, updated_at) VALUES (?, ?, ?, ?, 'pending', ?, ?, ?, ?)""",
                [
                    (e.effect_key, op_key, seq, e.kind, json.dumps(e.body), now, now, now)
                    for seq, e in enumerate(effects, 1)
                ],
            )

    def latest_version(self, deal_id: str) -> tuple[int, dict[str, Any]] | None:
        row = self.conn.execute("SELECT updated_at_ms, properties FROM deals WHERE id = ?", (deal_id,)).fetchone()
        return None if row is None else (int(row[0]), json.loads(row[1]))

    def due_effects(self, now: float, settle_seconds: float) -> list[Effect]:
        """The next effect of each created project, when it is due: effects run in order, one at a time."""
        rows = self.conn.execute(
            """SELECT e.*, o.asana_gid, o.asana_url, o.job_gid, o.deal_id FROM effects e
               JOIN ops o ON o.op_key = e.op_key
               WHERE o.state = 'created'
                 AND ((e.state = 'pending' AND e.next_attempt_at <= ?)
                      OR (e.state = 'unknown' AND e.last_attempt_at <= ?))
                 AND NOT EXISTS (SELECT 1 FROM effects p WHERE p.op_key = e.op_key AND p.seq < e.seq
                                 AND p.state != 'done')
               ORDER BY o.created_at, e.op_key, e.seq""",
            (now, now - settle_seconds),
        )
        return [effect_of(r) for r in rows]

    # -- cycles ----------------------------------------------------------------------------------------
    def start_cycle(self, now: float) -> int:
        with self.write() as c:
            return int(c.execute("INSERT INTO cycles (started_at) VALUES (?)", (now,)).lastrowid or 0)

    def finish_cycle(
        self, cycle_id: int, now: float, *, ok: bool, error: str | None, deals_seen: int, created: int
    ) -> None:
        with self.write() as c:
            c.execute(
                "UPDATE cycles SET finished_at = ?, ok = ?, error = ?, deals_seen = ?, created = ? WHERE id = ?",
                (now, int(ok), error, deals_seen, created, cycle_id),
            )
            c.execute("DELETE FROM cycles WHERE id <= ? - 1000", (cycle_id,))
