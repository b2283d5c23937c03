"""The operator's inbox: requests that `syncd retry` and `syncd backfill` leave while another syncd holds the
lock, the flows `syncd flow pause` holds back, and `syncd quarantine --clear`.

Why a table and not the lock: a command that waited for the lock would wait for the daemon to stop. Instead it
writes one row in one short `BEGIN IMMEDIATE` transaction (the `busy_timeout` waits out a page commit of the
cycle in progress), and the lock holder applies the request at the start of its next cycle, under its lock,
as it would have done itself. A paused flow is state, not work: the cycle reads it when it starts.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Request:
    id: int
    kind: str  # "retry" | "backfill"
    args: dict[str, Any]
    requested_at: float


class Inbox:
    """Requests and pauses over one connection; `write()` is the store's `BEGIN IMMEDIATE` transaction."""

    def __init__(self, write: Callable[[], AbstractContextManager[sqlite3.Connection]], conn: sqlite3.Connection):
        self.write, self.conn = write, conn

    def ask(self, kind: str, args: dict[str, Any], now: float) -> int:
        with self.write() as c:
            cur = c.execute(
                "INSERT INTO requests (kind, args, requested_at) VALUES (?, ?, ?)", (kind, json.dumps(args), now)
            )
            return int(cur.lastrowid or 0)

    def pending(self) -> list[Request]:
        rows = self.conn.execute(
            "SELECT id, kind, args, requested_at FROM requests WHERE done_at IS NULL ORDER BY id"
        ).fetchall()
        return [Request(r[0], r[1], json.loads(r[2]), r[3]) for r in rows]

    def done(self, request_id: int, now: float, outcome: str) -> None:
        with self.write() as c:
            c.execute("UPDATE requests SET done_at = ?, outcome = ? WHERE id = ?", (now, outcome, request_id))
            c.execute("DELETE FROM requests WHERE done_at IS NOT NULL AND id <= ? - 200", (request_id,))

    def paused(self) -> frozenset[str]:
        return frozenset(row[0] for row in self.conn.execute("SELECT flow FROM flow_pauses"))

    def set_paused(self, flow: str, paused: bool, now: float) -> bool:
        """Pause or resume `flow`; False when it already was so."""
        with self.write() as c:
            if paused:
                cur = c.execute("INSERT OR IGNORE INTO flow_pauses (flow, at) VALUES (?, ?)", (flow, now))
            else:
                cur = c.execute("DELETE FROM flow_pauses WHERE flow = ?", (flow,))
            return bool(cur.rowcount)

    def clear_quarantine(self, record_id: str) -> int:
        """Forget why `record_id` was quarantined (the record is read again at its next change); how many
        entries were cleared."""
        with self.write() as c:
            return c.execute("DELETE FROM quarantine WHERE record_id = ?", (record_id,)).rowcount
