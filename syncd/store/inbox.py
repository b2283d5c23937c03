"""The operator's inbox: requests that `syncd retry` and `syncd backfill` leave while another syncd holds the
lock, the flows `syncd flow pause` holds back, and `syncd quarantine --clear`.

Why a table and not the lock: a command that waited for the lock would wait for the daemon to stop. Instead it
writes one row in one short `BEGIN IMMEDIATE` transaction (the `busy_timeout` waits out a page commit of the
cycle in progress), and the lock holder applies the request at the start of its next cycle, under its lock,
as it would have done itself. A paused flow is state, not work: the cycle reads it when it starts.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from syncd.store.scope import EVERY_ROW, Connection, Scope


@dataclass(frozen=True)
class Request:
    id: int
    kind: str  # "retry" | "backfill"
    args: dict[str, Any]
    requested_at: float


class Inbox:
    """Requests and pauses over one connection and `scope`; `write()` is the store's write transaction (on
    PostgreSQL, for a command beside the lease holder, a plain one: a request changes no ledger row)."""

    def __init__(
        self, write: Callable[[], AbstractContextManager[Connection]], conn: Connection, scope: Scope = EVERY_ROW
    ):
        self.write, self.conn, self.scope = write, conn, scope

    def ask(self, kind: str, args: dict[str, Any], now: float) -> int:
        s = self.scope
        with self.write() as c:
            cur = c.execute(
                f"INSERT INTO requests (kind, args, requested_at{s.column}) VALUES (?, ?, ?{s.mark}) RETURNING id",
                (kind, json.dumps(args), now, *s.params),
            )
            return int(cur.fetchone()[0])

    def pending(self) -> list[Request]:
        s = self.scope
        rows = self.conn.execute(
            f"SELECT id, kind, args, requested_at FROM requests WHERE done_at IS NULL{s.and_} ORDER BY id", s.params
        ).fetchall()
        return [Request(r[0], r[1], json.loads(r[2]), r[3]) for r in rows]

    def done(self, request_id: int, now: float, outcome: str) -> None:
        s = self.scope
        with self.write() as c:
            c.execute(
                f"UPDATE requests SET done_at = ?, outcome = ? WHERE id = ?{s.and_}",
                (now, outcome, request_id, *s.params),
            )
            c.execute(
                f"DELETE FROM requests WHERE done_at IS NOT NULL AND id <= ? - 200{s.and_}", (request_id, *s.params)
            )

    def paused(self) -> frozenset[str]:
        s = self.scope
        return frozenset(row[0] for row in self.conn.execute(f"SELECT flow FROM flow_pauses{s.where}", s.params))

    def set_paused(self, flow: str, paused: bool, now: float) -> bool:
        """Pause or resume `flow`; False when it already was so."""
        s = self.scope
        with self.write() as c:
            if paused:
                cur = c.execute(
                    f"INSERT INTO flow_pauses (flow, at{s.column}) VALUES (?, ?{s.mark}) ON CONFLICT DO NOTHING",
                    (flow, now, *s.params),
                )
            else:
                cur = c.execute(f"DELETE FROM flow_pauses WHERE flow = ?{s.and_}", (flow, *s.params))
            return bool(cur.rowcount)

    def clear_quarantine(self, record_id: str) -> int:
        """Forget why `record_id` was quarantined (the record is read again at its next change); how many
        entries were cleared."""
        s = self.scope
        with self.write() as c:
            return c.execute(f"DELETE FROM quarantine WHERE record_id = ?{s.and_}", (record_id, *s.params)).rowcount
