"""Every read and write of the state tables, written once for both backends.

Why one class: the ledger's guarantees live in these statements (a page, its ops and the cursor in one
transaction; an op inserted once under its key and its aliases), and two copies would drift. A backend
(`syncd.store.sqlite.SqliteStore`, `syncd.store.postgres.PgStore`) supplies the connection, `write()` (its
transaction: `BEGIN IMMEDIATE` under the `flock`, or one that renews the fenced lease) and its `Scope`; the
SQL here uses `?` placeholders, ends each WHERE with the scope, and names only what both engines speak
(`GREATEST` is the one word that differs, see `greatest`). No HTTP call happens inside a transaction.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from syncd.config_values import PostgresState
from syncd.diff import Change, Stored
from syncd.errors import SERVER_DONE
from syncd.models import Effect, NewEffect, NewOp, Op, Quarantined, State, iso_s
from syncd.store.inbox import Inbox
from syncd.store.ledger import Ledger
from syncd.store.read import Status, Watched, status_on, watched_on
from syncd.store.rows import effect_of, op_of
from syncd.store.scope import Cursor, Scope

_DONE = ", ".join(f"'{doubt}'" for doubt in SERVER_DONE)
CHUNK = 500  # ids per `IN (...)`: well below SQLite's and PostgreSQL's parameter limits
KEPT_CYCLES = 1000
TRIM_EVERY = 50


class Writable(Protocol):
    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...
    def executemany(self, sql: str, rows: Sequence[Sequence[Any]], /) -> Any: ...


def marks(values: Sequence[Any]) -> str:
    return ",".join("?" * len(values))


class Tables:
    """The state of one account, over a backend's connection. Subclasses set `conn`, `scope`, `greatest` and
    `write`, then call `Tables.__init__`."""

    conn: Writable
    scope: Scope
    location: Path | PostgresState  # what `syncd status` names as the database
    greatest = "max"  # SQLite's two-argument max(); PostgreSQL's GREATEST
    recovered = "found in_flight at startup: the last run died mid-call"  # the event of `recover_in_flight`

    def __init__(self) -> None:
        self.ops = Ledger(self.write, "ops", "op_key", State.CREATED, "the create request", self.scope)
        self.effects = Ledger(self.write, "effects", "effect_key", State.DONE, "the request", self.scope)
        self.inbox = Inbox(self.write, self.conn, self.scope)

    def write(self) -> AbstractContextManager[Writable]:
        raise NotImplementedError

    def status(self, now: float, stale_after_seconds: float | None = None) -> Status:
        """What `syncd status` shows, read on this store's connection: the writer opens none of its own."""
        return status_on(self.conn, self.scope, self.location, now, stale_after_seconds)

    def watched(self) -> Watched:
        """What the alerts watch after each cycle: the dead ops and the last success."""
        return watched_on(self.conn, self.scope)

    def _rows(self, sql: str, *params: Any) -> Cursor:
        """`sql` with `{w}` (a WHERE of its own) or `{a}` (the end of one) for the scope, whose value goes last."""
        s = self.scope
        return self.conn.execute(sql.format(w=s.where, a=s.and_), (*params, *s.params))

    # -- meta: baseline, pauses, alert and health facts ------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self._rows("SELECT value FROM meta WHERE key = ?{a}", key).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        s = self.scope
        with self.write() as c:
            c.execute(
                f"""INSERT INTO meta (key, value{s.column}) VALUES (?, ?{s.mark})
                    ON CONFLICT ({s.key("key")}) DO UPDATE SET value = excluded.value""",
                (key, value, *s.params),
            )

    def delete_meta(self, key: str) -> bool:
        with self.write() as c:
            s = self.scope
            return c.execute(f"DELETE FROM meta WHERE key = ?{s.and_}", (key, *s.params)).rowcount > 0

    def baseline_done(self) -> bool:
        return self.get_meta("baseline_done") is not None

    def mark_baseline_done(self, now: float) -> None:
        s = self.scope
        with self.write() as c:
            c.execute(
                f"INSERT INTO meta (key, value{s.column}) VALUES ('baseline_done', ?{s.mark}) ON CONFLICT DO NOTHING",
                (iso_s(now), *s.params),
            )

    def flow_baselines(self) -> dict[str, tuple[str, float]]:
        """Per flow: the rule its recorded state was judged by, and when that baseline was recorded."""
        return {
            row[0]: (row[1], row[2]) for row in self._rows("SELECT flow, rule, at FROM flow_baselines{w} ORDER BY id")
        }

    def record_flow_baselines(self, baselines: list[tuple[str, str, str]], now: float) -> None:
        """(flow, rule, reason) for each flow whose baseline this process just recorded."""
        s = self.scope
        with self.write() as c:
            c.executemany(
                f"INSERT INTO flow_baselines (flow, rule, at, reason{s.column}) VALUES (?, ?, ?, ?{s.mark})",
                [(flow, rule, now, reason, *s.params) for flow, rule, reason in baselines],
            )

    def pause(self, service: str) -> float:
        """The wall-clock time until which `service` asked us to wait (Retry-After), surviving restarts."""
        return float(self.get_meta(f"paused_until:{service}") or 0.0)

    def save_pause(self, service: str, until: float) -> None:
        s, real = self.scope, "DOUBLE PRECISION"
        with self.write() as c:
            c.execute(
                f"""INSERT INTO meta (key, value{s.column}) VALUES (?, ?{s.mark}) ON CONFLICT ({s.key("key")})
                    DO UPDATE SET value = CAST({self.greatest}(CAST(meta.value AS {real}),
                                                               CAST(excluded.value AS {real})) AS TEXT)""",
                (f"paused_until:{service}", repr(until), *s.params),
            )

    # -- one page, one transaction ---------------------------------------------------------------------
    def cursor(self) -> int | None:
        row = self._rows("SELECT value_ms FROM cursors WHERE name = 'crm'{a}").fetchone()
        return None if row is None else int(row[0])

    def stored_deals(self, ids: Iterable[str]) -> dict[str, Stored]:
        ids = list(ids)
        found: dict[str, Stored] = {}
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            rows = self._rows(
                f"SELECT id, updated_at_ms, matches, entries FROM deals WHERE id IN ({marks(chunk)}){{a}}", *chunk
            )
            for row in rows:
                found[row["id"]] = Stored(row["updated_at_ms"], json.loads(row["matches"]), json.loads(row["entries"]))
        return found

    def record_page(
        self, changes: list[Change], ops: list[NewOp], quarantined: list[Quarantined], cursor_ms: int, now: float
    ) -> int:
        """Deals, new ops, quarantine and the cursor, atomically. Returns how many ops were really new."""
        s, a = self.scope, self.scope.params
        versions = [
            (ch.deal.id, ch.deal.updated_at_ms, json.dumps(ch.deal.values()), json.dumps(ch.matches)) for ch in changes
        ]
        with self.write() as c:
            c.executemany(
                f"""INSERT INTO deals (id, updated_at_ms, properties, matches, entries, first_seen_at, recorded_at
                                       {s.column}) VALUES (?, ?, ?, ?, ?, ?, ?{s.mark})
                   ON CONFLICT ({s.key("id")}) DO UPDATE SET updated_at_ms = excluded.updated_at_ms,
                       properties = excluded.properties, matches = excluded.matches, entries = excluded.entries,
                       recorded_at = excluded.recorded_at
                   WHERE excluded.updated_at_ms >= deals.updated_at_ms""",
                [(*v, json.dumps(ch.entries), now, now, *a) for v, ch in zip(versions, changes, strict=True)],
            )
            c.executemany(
                f"""INSERT INTO deal_versions (deal_id, updated_at_ms, properties, matches, newly, recorded_at
                                               {s.column}) VALUES (?, ?, ?, ?, ?, ?{s.mark})""",
                [(*v, json.dumps(list(ch.newly)), now, *a) for v, ch in zip(versions, changes, strict=True)],
            )
            c.executemany(f"DELETE FROM quarantine WHERE record_id = ?{s.and_}", [(ch.deal.id, *a) for ch in changes])
            created = self._insert_ops(c, ops, now, "deal newly qualifies")
            c.executemany(
                f"INSERT INTO quarantine (record_id, reason, excerpt, seen_at{s.column}) VALUES (?, ?, ?, ?{s.mark})",
                [(q.record_id, q.reason, q.excerpt, now, *a) for q in quarantined],
            )
            c.execute(
                f"""INSERT INTO cursors (name, value_ms, updated_at{s.column}) VALUES ('crm', ?, ?{s.mark})
                   ON CONFLICT ({s.key("name")}) DO UPDATE SET updated_at = excluded.updated_at,
                       value_ms = {self.greatest}(cursors.value_ms, excluded.value_ms)""",
                (max(cursor_ms, 0), now, *a),
            )
        return created

    def queue_ops(self, ops: list[NewOp], now: float, detail: str) -> int:
        with self.write() as c:
            return self._insert_ops(c, ops, now, detail)

    def _insert_ops(self, c: Writable, ops: list[NewOp], now: float, detail: str) -> int:
        """Insert ops that do not exist yet (the op key is the ledger's guarantee, and an op known under one of
        its aliases is the same project); return how many were new."""
        s, a = self.scope, self.scope.params
        created = 0
        for op in ops:
            keys = [alias.key for alias in op.aliases]
            known = (
                keys
                and c.execute(
                    f"SELECT op_key, state FROM ops WHERE op_key IN ({marks(keys)}){s.and_} LIMIT 1", (*keys, *a)
                ).fetchone()
            )
            if known:
                self.ops.event(c, known[0], now, State(known[1]), f"{op.op_key} is the same project: not queued")
                continue
            cur = c.execute(
                f"""INSERT INTO ops (op_key, flow, deal_id, state, marker, body, next_attempt_at, created_at,
                                     updated_at, aliases{s.column})
                   VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?{s.mark}) ON CONFLICT DO NOTHING""",
                (op.op_key, op.flow, op.deal_id, op.marker, json.dumps(op.body), now, now, now,
                 json.dumps([alias.marker for alias in op.aliases]), *a),
            )  # fmt: skip
            if cur.rowcount:
                created += 1
                self.ops.event(c, op.op_key, now, State.PENDING, detail)
                self._insert_effects(c, op.op_key, op.effects, now)
        return created

    def _insert_effects(self, c: Writable, op_key: str, effects: tuple[NewEffect, ...], now: float) -> None:
        s = self.scope
        c.executemany(
            f"""INSERT INTO effects (effect_key, op_key, seq, kind, state, body, next_attempt_at, created_at,
                                     updated_at{s.column}) VALUES (?, ?, ?, ?, 'pending', ?, ?, ?, ?{s.mark})
                ON CONFLICT DO NOTHING""",
            [
                (e.effect_key, op_key, seq, e.kind, json.dumps(e.body), now, now, now, *s.params)
                for seq, e in enumerate(effects, 1)
            ],
        )

    # -- the ledger's queues ---------------------------------------------------------------------------
    def recover_in_flight(self, now: float) -> int:
        """At startup (or on taking a lease over): an `in_flight` op or effect may or may not have been sent by
        a process that died, and none is this process's own. Nothing in flight (every cycle of a healthy
        process) costs one read and no write: only the writer makes rows `in_flight`, and it is this one."""
        if not self._rows(
            "SELECT 1 FROM ops WHERE state = 'in_flight'{a} "
            "UNION ALL SELECT 1 FROM effects WHERE state = 'in_flight'{a}",
            *self.scope.params,
        ).fetchone():
            return 0
        with self.write() as c:
            found = self.ops.recover_in_flight(c, now, self.recovered)
            self.effects.recover_in_flight(c, now, self.recovered)
        return found

    def due_ops(
        self,
        now: float,
        settle_seconds: float,
        settle_done_seconds: float | None = None,
        held: frozenset[str] = frozenset(),
    ) -> list[Op]:
        """Pending ops whose time has come, and `unknown` ops whose settle is over: `settle_done_seconds` after
        the attempt when the server was done with the request (`SERVER_DONE`), else `settle_seconds`; except
        those of the `held` (paused) flows."""
        done = settle_seconds if settle_done_seconds is None else settle_done_seconds
        rows = self._rows(
            f"""SELECT * FROM ops WHERE ((state = 'pending' AND next_attempt_at <= ?)
                                      OR (state = 'unknown' AND last_attempt_at <= ?)
                                      OR (state = 'unknown' AND doubt IN ({_DONE}) AND last_attempt_at <= ?)){{a}}
               ORDER BY created_at, op_key""",
            now,
            now - settle_seconds,
            now - done,
        )
        return [op for op in map(op_of, rows) if op.flow not in held]

    def next_due(
        self, settle_seconds: float, settle_done_seconds: float | None = None, held: frozenset[str] = frozenset()
    ) -> float | None:
        """When the soonest waiting op (pending later, or `unknown` settling) falls due, ops of the `held`
        (paused) flows aside; None when none waits."""
        done = settle_seconds if settle_done_seconds is None else settle_done_seconds
        flows = sorted(held)
        row = self._rows(
            f"""SELECT min(CASE WHEN state = 'pending' THEN next_attempt_at
                                WHEN doubt IN ({_DONE}) THEN last_attempt_at + ?
                                ELSE last_attempt_at + ? END)
               FROM ops WHERE state IN ('pending', 'unknown') AND flow NOT IN ({marks(flows) or "''"}){{a}}""",
            done,
            settle_seconds,
            *flows,
        ).fetchone()
        return None if row[0] is None else float(row[0])

    def dead_ops(self, deal_id: str | None) -> list[Op]:
        """A deal's dead ops, or every dead op (`deal_id` None)."""
        deal = () if deal_id is None else (deal_id,)
        rows = self._rows(
            f"SELECT * FROM ops WHERE state = 'dead'{' AND deal_id = ?' * len(deal)}{{a}} ORDER BY op_key", *deal
        )
        return [op_of(row) for row in rows]

    def ledger_flows(self) -> list[str]:
        return [row[0] for row in self._rows("SELECT DISTINCT flow FROM ops{w} ORDER BY flow")]

    def op_count(self, state: State) -> int:
        return int(self._rows("SELECT count(*) FROM ops WHERE state = ?{a}", state.value).fetchone()[0])

    def deals_without_op(self, flows: tuple[str, ...], since_ms: int) -> list[tuple[str, int, dict[str, Any]]]:
        """Latest recorded versions, modified at or after `since_ms`, of deals with no op for any of `flows`
        (a flow's name and its previous names), for backfill to judge by the current rule."""
        s = self.scope
        rows = self.conn.execute(
            f"""SELECT d.id, d.updated_at_ms, d.properties FROM deals d
               WHERE d.updated_at_ms >= ?{s.of("d")}
                 AND NOT EXISTS (SELECT 1 FROM ops o WHERE o.deal_id = d.id{s.same("o", "d")}
                                 AND o.flow IN ({marks(flows)}))
               ORDER BY d.updated_at_ms, d.id""",
            (since_ms, *s.params, *flows),
        )
        return [(r[0], r[1], json.loads(r[2])) for r in rows]

    def replace_effects(self, op_key: str, effects: tuple[NewEffect, ...], now: float) -> None:
        """`syncd retry`: the follow-ups not yet done are rendered again from the current config."""
        s = self.scope
        with self.write() as c:
            c.execute(f"DELETE FROM effects WHERE op_key = ? AND state != 'done'{s.and_}", (op_key, *s.params))
            self._insert_effects(c, op_key, effects, now)

    def latest_version(self, deal_id: str) -> tuple[int, dict[str, Any]] | None:
        row = self._rows("SELECT updated_at_ms, properties FROM deals WHERE id = ?{a}", deal_id).fetchone()
        return None if row is None else (int(row[0]), json.loads(row[1]))

    def due_effects(self, now: float, settle_seconds: float) -> list[Effect]:
        """The next effect of each created project, when it is due: effects run in order, one at a time."""
        s = self.scope
        rows = self.conn.execute(
            f"""SELECT e.*, o.asana_gid, o.asana_url, o.job_gid, o.deal_id FROM effects e
               JOIN ops o ON o.op_key = e.op_key{s.same("o", "e")}
               WHERE o.state = 'created'{s.of("e")}
                 AND ((e.state = 'pending' AND e.next_attempt_at <= ?)
                      OR (e.state = 'unknown' AND e.last_attempt_at <= ?))
                 AND NOT EXISTS (SELECT 1 FROM effects p WHERE p.op_key = e.op_key{s.same("p", "e")}
                                 AND p.seq < e.seq AND p.state != 'done')
               ORDER BY o.created_at, e.op_key, e.seq""",
            (*s.params, now, now - settle_seconds),
        )
        return [effect_of(r) for r in rows]

    # -- cycles ----------------------------------------------------------------------------------------
    def last_cycle_times(self) -> tuple[float | None, float | None]:
        """(started_at, finished_at) of the newest cycle, (None, None) before the first."""
        row = self._rows("SELECT started_at, finished_at FROM cycles{w} ORDER BY id DESC LIMIT 1").fetchone()
        return (None, None) if row is None else (row[0], row[1])

    def start_cycle(self, now: float) -> int:
        s = self.scope
        with self.write() as c:
            cur = c.execute(
                f"INSERT INTO cycles (started_at, pid{s.column}) VALUES (?, ?{s.mark}) RETURNING id",
                (now, os.getpid(), *s.params),
            )
            return int(cur.fetchone()[0])

    def finish_cycle(
        self,
        cycle_id: int,
        now: float,
        *,
        ok: bool,
        error: str | None,
        deals_seen: int,
        created: int,
        interrupted: str | None = None,
    ) -> None:
        """`interrupted`: the signal that stopped the cycle after its step in progress. Keeps the newest
        KEPT_CYCLES cycles of the account (trimmed every TRIM_EVERY cycles: cheap when many accounts share a
        database)."""
        s = self.scope
        with self.write() as c:
            c.execute(
                f"""UPDATE cycles SET finished_at = ?, ok = ?, error = ?, deals_seen = ?, created = ?, interrupted = ?
                   WHERE id = ?{s.and_}""",
                (now, int(ok), error, deals_seen, created, interrupted, cycle_id, *s.params),
            )
            if cycle_id % TRIM_EVERY == 0:
                c.execute(
                    f"""DELETE FROM cycles WHERE id < (SELECT min(id) FROM (
                            SELECT id FROM cycles{s.where} ORDER BY id DESC LIMIT {KEPT_CYCLES}) AS kept){s.and_}""",
                    (*s.params, *s.params),
                )
