"""The exactly-once ledger: one state machine, two tables (`ops` for projects, `effects` for follow-ups).

Both follow DESIGN.md §3 with the same states, the same event log and the same invariant: a request is sent
only for a row whose durable state is a freshly committed `in_flight` (`begin` returns True), and every
transition writes an event in the same transaction. The only difference is the name of the end state
(`created` for a project, `done` for a follow-up).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

from syncd.models import State

Writer = Callable[[], AbstractContextManager[sqlite3.Connection]]
ERROR_STATES = (State.UNKNOWN, State.DEAD)


class Ledger:
    """Transitions of one table's rows. `write()` opens one `BEGIN IMMEDIATE` transaction on the store."""

    def __init__(self, write: Writer, table: str, key: str, done: State, request: str) -> None:
        self._write, self.table, self.key, self.done = write, table, key, done
        self.request = request  # what `begin` precedes, for the event log

    def begin(self, key: str, now: float) -> bool:
        """Commit `in_flight` (attempts + 1) before the request. False when the row is no longer pending."""
        with self._write() as c:
            cur = c.execute(
                f"""UPDATE {self.table} SET state = 'in_flight', attempts = attempts + 1, last_attempt_at = ?,
                    updated_at = ?, doubt = NULL WHERE {self.key} = ? AND state = 'pending'""",
                (now, now, key),
            )
            if cur.rowcount == 1:
                self.event(c, key, now, State.IN_FLIGHT, f"committed before {self.request}")
            return cur.rowcount == 1

    def move(self, key: str, state: State, now: float, detail: str, **fields: Any) -> None:
        """One transition with its event. `last_error` is the detail of an `unknown` or `dead` row and is
        cleared otherwise, unless `fields` sets it."""
        with self._write() as c:
            self.move_in(c, key, state, now, detail, **fields)

    def move_in(self, c: sqlite3.Connection, key: str, state: State, now: float, detail: str, **fields: Any) -> None:
        """`move` inside a transaction the caller holds."""
        columns: dict[str, Any] = {"state": state.value, "updated_at": now}
        columns["last_error"] = detail if state in ERROR_STATES else None
        columns.update(fields)
        sets = ", ".join(f"{name} = ?" for name in columns)
        c.execute(f"UPDATE {self.table} SET {sets} WHERE {self.key} = ?", (*columns.values(), key))
        self.event(c, key, now, state, detail)

    def recover_in_flight(self, c: sqlite3.Connection, now: float) -> int:
        """At startup: a row left `in_flight` by a process that died may or may not have been sent."""
        keys = [r[0] for r in c.execute(f"SELECT {self.key} FROM {self.table} WHERE state = 'in_flight'")]
        for key in keys:
            detail = "found in_flight at startup: the last run died mid-call"
            self.move_in(c, key, State.UNKNOWN, now, detail, doubt="crash")
        return len(keys)

    def event(self, c: sqlite3.Connection, key: str, now: float, state: State, detail: str) -> None:
        c.execute(
            "INSERT INTO events (ledger, key, at, state, detail) VALUES (?, ?, ?, ?, ?)",
            (self.table, key, now, state.value, detail),
        )

    def events(self, c: sqlite3.Connection, key: str) -> Iterator[sqlite3.Row]:
        yield from c.execute("SELECT * FROM events WHERE ledger = ? AND key = ? ORDER BY id", (self.table, key))
