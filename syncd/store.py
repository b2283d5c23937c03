"""The state database (SQLite through sqlite-utils): deals, the cursor, the ops ledger, quarantine, cycles.

Durability rules (DESIGN.md §4): WAL, `synchronous=FULL` (an `in_flight` commit must survive power loss),
`busy_timeout`, `BEGIN IMMEDIATE` for every write, `foreign_keys=ON`, and constraints that make impossible
states impossible. One writer: `Store.open` runs under the single-instance lock (`syncd.lock`).
`read_status` opens the database read-only and needs no lock.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from syncd import lock
from syncd.diff import Change, Stored
from syncd.errors import StoreError
from syncd.models import OP_STATES, NewOp, Op, Quarantined, iso_ms, iso_s

migrations = Migrations("syncd")


@migrations()
def create_tables(db: Database) -> None:
    states = ", ".join(f"'{s}'" for s in OP_STATES)
    db.executescript(f"""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE cursors (
            name TEXT PRIMARY KEY,
            value_ms INTEGER NOT NULL CHECK (value_ms >= 0),
            updated_at REAL NOT NULL
        );
        CREATE TABLE deals (
            id TEXT PRIMARY KEY,
            updated_at_ms INTEGER NOT NULL,
            properties TEXT NOT NULL,
            matches TEXT NOT NULL,
            first_seen_at REAL NOT NULL,
            recorded_at REAL NOT NULL
        );
        CREATE TABLE ops (
            op_key TEXT PRIMARY KEY,
            flow TEXT NOT NULL,
            deal_id TEXT NOT NULL REFERENCES deals(id),
            state TEXT NOT NULL CHECK (state IN ({states})),
            marker TEXT NOT NULL UNIQUE,
            body TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
            next_attempt_at REAL NOT NULL,
            last_attempt_at REAL,
            asana_gid TEXT UNIQUE,
            asana_url TEXT,
            last_error TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            CHECK ((state = 'created') = (asana_gid IS NOT NULL)),
            CHECK (state = 'pending' OR last_attempt_at IS NOT NULL OR state = 'dead')
        );
        CREATE INDEX ops_state_due ON ops (state, next_attempt_at);
        CREATE TABLE op_events (
            id INTEGER PRIMARY KEY,
            op_key TEXT NOT NULL REFERENCES ops(op_key),
            at REAL NOT NULL,
            state TEXT NOT NULL,
            detail TEXT
        );
        CREATE INDEX op_events_op ON op_events (op_key, id);
        CREATE TABLE quarantine (
            id INTEGER PRIMARY KEY,
            record_id TEXT,
            reason TEXT NOT NULL,
            excerpt TEXT NOT NULL,
            seen_at REAL NOT NULL
        );
        CREATE INDEX quarantine_record ON quarantine (record_id);
        CREATE TABLE cycles (
            id INTEGER PRIMARY KEY,
            started_at REAL NOT NULL,
            finished_at REAL,
            ok INTEGER,
            error TEXT,
            deals_seen INTEGER NOT NULL DEFAULT 0,
            created INTEGER NOT NULL DEFAULT 0
        );
    """)


@migrations()
def create_deal_versions(db: Database) -> None:
    """Every version of a deal syncd recorded, for `syncd explain` ("why did / didn't this deal get a project?")."""
    db.executescript("""
        CREATE TABLE deal_versions (
            id INTEGER PRIMARY KEY,
            deal_id TEXT NOT NULL,
            updated_at_ms INTEGER NOT NULL,
            properties TEXT NOT NULL,
            matches TEXT NOT NULL,
            newly TEXT NOT NULL,
            recorded_at REAL NOT NULL
        );
        CREATE INDEX deal_versions_deal ON deal_versions (deal_id, updated_at_ms);
    """)


@migrations()
def create_effects(db: Database) -> None:
    """Follow-up side effects of a project (template completion, tasks, CRM write-back, Slack message), each
    exactly once, run in `seq` order once their project exists; and per-flow entry counts for re-firing."""
    db.executescript("""
        ALTER TABLE deals ADD COLUMN entries TEXT NOT NULL DEFAULT '{}';
        ALTER TABLE ops ADD COLUMN job_gid TEXT;
        CREATE TABLE effects (
            effect_key TEXT PRIMARY KEY,
            op_key TEXT NOT NULL REFERENCES ops(op_key),
            seq INTEGER NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('template', 'task', 'writeback', 'notify')),
            state TEXT NOT NULL CHECK (state IN ('pending', 'in_flight', 'unknown', 'done', 'dead')),
            body TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL NOT NULL,
            last_attempt_at REAL,
            result TEXT,
            last_error TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            UNIQUE (op_key, seq)
        );
        CREATE INDEX effects_due ON effects (state, next_attempt_at);
    """)


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5, isolation_level=None)
    else:
        # check_same_thread=False: `syncd run` opens the store once and cycles in one scheduler thread at a time.
        conn = sqlite3.connect(path, timeout=5, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.row_factory = sqlite3.Row
    return conn


class Store:
    """The one writer. Every method that writes runs in its own `BEGIN IMMEDIATE` transaction."""

    def __init__(self, path: Path, conn: sqlite3.Connection, lock_fd: int | None) -> None:
        self.path, self.conn, self._lock_fd = path, conn, lock_fd
        self.db = Database(conn)

    @classmethod
    def open(cls, path: Path, lock_fd: int | None = None) -> Store:
        """Open for writing under the single-instance lock: taken here (and released by `close`) unless the
        caller passes the descriptor it already holds."""
        owned = lock.acquire(path) if lock_fd is None else None
        try:
            conn = connect(path)
            store = cls(path, conn, owned)
            migrations.apply(store.db)
        except sqlite3.DatabaseError as exc:
            if owned is not None:
                lock.release(owned)
            raise StoreError(
                f"{path} is not a usable syncd database ({exc}). Restore it or point [state] path elsewhere."
            ) from None
        return store

    def close(self) -> None:
        self.conn.close()
        if self._lock_fd is not None:
            lock.release(self._lock_fd)
            self._lock_fd = None

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self.write() as c:
            c.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    # -- cursor, baseline ----------------------------------------------------------------------------
    def cursor(self) -> int | None:
        row = self.conn.execute("SELECT value_ms FROM cursors WHERE name = 'crm'").fetchone()
        return None if row is None else int(row[0])

    def baseline_done(self) -> bool:
        return self.conn.execute("SELECT 1 FROM meta WHERE key = 'baseline_done'").fetchone() is not None

    def mark_baseline_done(self, now: float) -> None:
        with self.write() as c:
            c.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('baseline_done', ?)", (iso_s(now),))

    def pause(self, service: str) -> float:
        """The wall-clock time until which `service` asked us to wait (Retry-After), surviving restarts."""
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (f"paused_until:{service}",)).fetchone()
        return float(row[0]) if row else 0.0

    def save_pause(self, service: str, until: float) -> None:
        with self.write() as c:
            c.execute(
                """INSERT INTO meta (key, value) VALUES (?, ?)
                   ON CONFLICT (key) DO UPDATE SET value = max(CAST(value AS REAL), excluded.value)""",
                (f"paused_until:{service}", repr(until)),
            )

    # -- one page, one transaction -----------------------------------------------------------------
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
        with self.write() as c:
            c.executemany(
                """INSERT INTO deals (id, updated_at_ms, properties, matches, entries, first_seen_at, recorded_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (id) DO UPDATE SET updated_at_ms = excluded.updated_at_ms,
                       properties = excluded.properties, matches = excluded.matches, entries = excluded.entries,
                       recorded_at = excluded.recorded_at
                   WHERE excluded.updated_at_ms > deals.updated_at_ms""",
                [
                    (
                        ch.deal.id,
                        ch.deal.updated_at_ms,
                        json.dumps(ch.deal.values()),
                        json.dumps(ch.matches),
                        json.dumps(ch.entries),
                        now,
                        now,
                    )
                    for ch in changes
                ],
            )
            c.executemany(
                """INSERT INTO deal_versions (deal_id, updated_at_ms, properties, matches, newly, recorded_at)
                   VALUES (?, ?, ?, ?, ?, ?)""",
                [
                    (
                        ch.deal.id,
                        ch.deal.updated_at_ms,
                        json.dumps(ch.deal.values()),
                        json.dumps(ch.matches),
                        json.dumps(list(ch.newly)),
                        now,
                    )
                    for ch in changes
                ],
            )
            if changes:
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

    # -- ops ---------------------------------------------------------------------------------------
    def recover_in_flight(self, now: float) -> int:
        """At startup: an `in_flight` op or effect may or may not have been sent by a process that died."""
        with self.write() as c:
            keys = [r[0] for r in c.execute("SELECT op_key FROM ops WHERE state = 'in_flight'")]
            for key in keys:
                self._transition(c, key, "unknown", now, "found in_flight at startup: the last run died mid-call")
            c.execute(
                """UPDATE effects SET state = 'unknown', updated_at = ?,
                   last_error = 'found in_flight at startup: the last run died mid-call' WHERE state = 'in_flight'""",
                (now,),
            )
        return len(keys)

    def due_ops(self, now: float, settle_seconds: float) -> list[Op]:
        rows = self.conn.execute(
            """SELECT * FROM ops WHERE (state = 'pending' AND next_attempt_at <= ?)
                                   OR (state = 'unknown' AND last_attempt_at <= ?)
               ORDER BY created_at, op_key""",
            (now, now - settle_seconds),
        )
        return [_op(row) for row in rows]

    def history(self, deal_id: str) -> dict[str, Any]:
        """Everything syncd knows about one deal: its versions, its ops and their state history."""
        versions = [
            {
                "updated_at": iso_ms(r["updated_at_ms"]),
                "values": json.loads(r["properties"]),
                "matches": json.loads(r["matches"]),
                "newly": json.loads(r["newly"]),
                "recorded_at": iso_s(r["recorded_at"]),
            }
            for r in self.conn.execute(
                "SELECT * FROM deal_versions WHERE deal_id = ? ORDER BY updated_at_ms, id", (deal_id,)
            )
        ]
        ops = []
        for op in self.conn.execute("SELECT * FROM ops WHERE deal_id = ? ORDER BY op_key", (deal_id,)):
            events = [
                {"at": iso_s(e["at"]), "state": e["state"], "detail": e["detail"]}
                for e in self.conn.execute("SELECT * FROM op_events WHERE op_key = ? ORDER BY id", (op["op_key"],))
            ]
            ops.append(
                {
                    **{
                        k: op[k]
                        for k in (
                            "op_key",
                            "flow",
                            "state",
                            "marker",
                            "attempts",
                            "asana_gid",
                            "asana_url",
                            "last_error",
                        )
                    },
                    "events": events,
                }
            )
        return {"deal_id": deal_id, "versions": versions, "ops": ops}

    def qualifying_without_op(self, flow: str, since_ms: int) -> list[tuple[str, int, dict[str, Any]]]:
        """Deals whose newest recorded version satisfies `flow` and that have no op for it (backfill)."""
        rows = self.conn.execute(
            """SELECT d.id, d.updated_at_ms, d.properties FROM deals d
               WHERE d.updated_at_ms >= ? AND json_extract(d.matches, '$.' || json_quote(?)) = 1
                 AND NOT EXISTS (SELECT 1 FROM ops o WHERE o.deal_id = d.id AND o.flow = ?)
               ORDER BY d.updated_at_ms, d.id""",
            (since_ms, flow, flow),
        )
        return [(r[0], r[1], json.loads(r[2])) for r in rows]

    def queue_ops(self, ops: list[NewOp], now: float, detail: str) -> int:
        with self.write() as c:
            return self._insert_ops(c, ops, now, detail)

    def _insert_ops(self, c: sqlite3.Connection, ops: list[NewOp], now: float, detail: str) -> int:
        """Insert ops that do not exist yet (the op key is the ledger's guarantee); return how many were new."""
        created = 0
        for op in ops:
            cur = c.execute(
                """INSERT INTO ops (op_key, flow, deal_id, state, marker, body, next_attempt_at, created_at, updated_at)
                   VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING""",
                (op.op_key, op.flow, op.deal_id, op.marker, json.dumps(op.body), now, now, now),
            )
            if cur.rowcount:
                created += 1
                self._event(c, op.op_key, now, "pending", detail)
                c.executemany(
                    """INSERT INTO effects (effect_key, op_key, seq, kind, state, body, next_attempt_at, created_at,
                                            updated_at) VALUES (?, ?, ?, ?, 'pending', ?, ?, ?, ?)""",
                    [
                        (e.effect_key, op.op_key, seq, e.kind, json.dumps(e.body), now, now, now)
                        for seq, e in enumerate(op.effects, 1)
                    ],
                )
        return created

    # -- effects -------------------------------------------------------------------------------------
    def due_effects(self, now: float, settle_seconds: float) -> list[dict[str, Any]]:
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
        return [{**dict(row), "body": json.loads(row["body"])} for row in rows]

    def begin_effect(self, key: str, now: float) -> bool:
        with self.write() as c:
            cur = c.execute(
                """UPDATE effects SET state = 'in_flight', attempts = attempts + 1, last_attempt_at = ?,
                   updated_at = ? WHERE effect_key = ? AND state = 'pending'""",
                (now, now, key),
            )
            return cur.rowcount == 1

    def effect_transition(self, key: str, state: str, now: float, detail: str | None, **fields: Any) -> None:
        columns = {"state": state, "updated_at": now, "last_error": detail if state != "done" else None, **fields}
        sets = ", ".join(f"{name} = ?" for name in columns)
        with self.write() as c:
            c.execute(f"UPDATE effects SET {sets} WHERE effect_key = ?", (*columns.values(), key))

    def op_count(self, state: str) -> int:
        return self.conn.execute("SELECT count(*) FROM ops WHERE state = ?", (state,)).fetchone()[0]

    def dead_ops(self, deal_id: str) -> list[Op]:
        rows = self.conn.execute("SELECT * FROM ops WHERE deal_id = ? AND state = 'dead' ORDER BY op_key", (deal_id,))
        return [_op(row) for row in rows]

    def begin_attempt(self, op_key: str, now: float) -> bool:
        """Commit `in_flight` (attempts + 1) before the POST. False if the op is no longer pending."""
        with self.write() as c:
            cur = c.execute(
                """UPDATE ops SET state = 'in_flight', attempts = attempts + 1, last_attempt_at = ?, updated_at = ?
                   WHERE op_key = ? AND state = 'pending'""",
                (now, now, op_key),
            )
            if cur.rowcount == 1:
                self._event(c, op_key, now, "in_flight", "committed before the create request")
            return cur.rowcount == 1

    def transition(self, op_key: str, state: str, now: float, detail: str, **fields: Any) -> None:
        with self.write() as c:
            self._transition(c, op_key, state, now, detail, **fields)

    def _transition(self, c: sqlite3.Connection, op_key: str, state: str, now: float, detail: str, **fields: Any):
        columns = {"state": state, "updated_at": now, **fields}
        if state in ("dead", "unknown", "pending") and "last_error" not in fields:
            columns["last_error"] = detail if state != "pending" else None
        sets = ", ".join(f"{name} = ?" for name in columns)
        c.execute(f"UPDATE ops SET {sets} WHERE op_key = ?", (*columns.values(), op_key))
        self._event(c, op_key, now, state, detail)

    @staticmethod
    def _event(c: sqlite3.Connection, op_key: str, now: float, state: str, detail: str) -> None:
        c.execute("INSERT INTO op_events (op_key, at, state, detail) VALUES (?, ?, ?, ?)", (op_key, now, state, detail))

    # -- cycles ------------------------------------------------------------------------------------
    def start_cycle(self, now: float) -> int:
        with self.write() as c:
            return int(c.execute("INSERT INTO cycles (started_at) VALUES (?)", (now,)).lastrowid or 0)

    def finish_cycle(self, cycle_id: int, now: float, *, ok: bool, error: str | None, deals_seen: int, created: int):
        with self.write() as c:
            c.execute(
                "UPDATE cycles SET finished_at = ?, ok = ?, error = ?, deals_seen = ?, created = ? WHERE id = ?",
                (now, int(ok), error, deals_seen, created, cycle_id),
            )
            c.execute("DELETE FROM cycles WHERE id <= ? - 1000", (cycle_id,))


def _op(row: sqlite3.Row) -> Op:
    return Op(
        op_key=row["op_key"],
        flow=row["flow"],
        deal_id=row["deal_id"],
        state=row["state"],
        marker=row["marker"],
        body=json.loads(row["body"]),
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        last_attempt_at=row["last_attempt_at"],
        asana_gid=row["asana_gid"],
        asana_url=row["asana_url"],
        last_error=row["last_error"],
    )


@contextmanager
def open_readonly(path: Path) -> Iterator[Store]:
    """A Store for reading only (`syncd explain`): no lock, no migrations, writes fail."""
    if not path.exists():
        raise StoreError(f"There is no syncd database at {path} yet. Run 'syncd once' to create it.")
    conn = connect(path, readonly=True)
    try:
        yield Store(path, conn, None)
    finally:
        conn.close()


def read_status(path: Path, now: float) -> dict[str, Any]:
    """What `syncd status` shows, read from a read-only connection. Needs no lock and no token."""
    if not path.exists():
        raise StoreError(f"There is no syncd database at {path} yet. Run 'syncd once' to create it.")
    conn = connect(path, readonly=True)
    try:
        one = conn.execute
        cursor = one("SELECT value_ms, updated_at FROM cursors WHERE name = 'crm'").fetchone()
        last = one("SELECT * FROM cycles WHERE finished_at IS NOT NULL ORDER BY id DESC LIMIT 1").fetchone()
        last_ok = one("SELECT max(finished_at) FROM cycles WHERE ok = 1").fetchone()[0]
        ops = dict.fromkeys(OP_STATES, 0)
        ops.update({r[0]: r[1] for r in one("SELECT state, count(*) FROM ops GROUP BY state")})
        dead = [
            {"op_key": r["op_key"], "deal_id": r["deal_id"], "flow": r["flow"], "reason": r["last_error"]}
            for r in one("SELECT op_key, deal_id, flow, last_error FROM ops WHERE state = 'dead' ORDER BY op_key")
        ]
        quarantine = [
            {"record_id": r["record_id"], "reason": r["reason"], "seen_at": iso_s(r["seen_at"])}
            for r in one("SELECT record_id, reason, seen_at FROM quarantine ORDER BY id DESC LIMIT 20")
        ]
        quarantined = one("SELECT count(*) FROM quarantine").fetchone()[0]
        effects = {r[0]: r[1] for r in one("SELECT state, count(*) FROM effects GROUP BY state")}
        deals = one("SELECT count(*) FROM deals").fetchone()[0]
        baseline = one("SELECT value FROM meta WHERE key = 'baseline_done'").fetchone()
        health_row = one("SELECT value FROM meta WHERE key = 'health'").fetchone()
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"Could not read {path} ({exc}). Is it a syncd database?") from None
    finally:
        conn.close()
    health = json.loads(health_row[0]) if health_row else {}
    last_cycle = None
    if last is not None:
        last_cycle = {
            "ok": bool(last["ok"]),
            "started_at": iso_s(last["started_at"]),
            "finished_at": iso_s(last["finished_at"]),
            "error": last["error"],
        }
    problems = []
    if last_cycle is None:
        problems.append("no cycle has finished yet")
    elif not last_cycle["ok"]:
        problems.append("the last cycle failed")
    if ops["dead"]:
        problems.append(f"{ops['dead']} dead op(s) need a human")
    if effects.get("dead"):
        problems.append(f"{effects['dead']} dead follow-up(s) (task, write-back, message) need a human")
    return {
        "database": str(path),
        "cursor": iso_ms(cursor["value_ms"]) if cursor else None,
        "cursor_age_seconds": round(now - cursor["value_ms"] / 1000, 1) if cursor else None,
        "baseline_recorded_at": baseline[0] if baseline else None,
        "last_cycle": last_cycle,
        "last_success_at": iso_s(last_ok),
        "deals": deals,
        "ops": ops,
        "dead_ops": dead,
        "quarantine": quarantined,
        "quarantined_records": quarantine,
        "healthy": not problems,
        "problems": problems,
        "breaker": health.get("breaker", "closed"),
        "quota": health.get("quota", {}),
        "next_run_at": iso_s(health.get("next_run_at")),
        "alerts_firing": health.get("alerts_firing", []),
        "effects": effects,
    }
