"""The exactly-once ledger: one state machine, two tables (`ops` for projects, `effects` for follow-ups).

Both follow DESIGN.md §3 with the same states, the same event log and the same invariant: a request is sent
only for a row whose durable state is a freshly committed `in_flight` (`begin` returns True), and every
transition writes an event in the same transaction. The only difference is the name of the end state
(`created` for a project, `done` for a follow-up). The SQL is the same on both backends: `?` placeholders,
and a `Scope` that limits every statement to one account's rows on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

from syncd.models import State
from syncd.store.scope import EVERY_ROW, Connection, Scope

Writer = Callable[[], AbstractContextManager[Connection]]
ERROR_STATES = (State.UNKNOWN, State.DEAD)


class Ledger:
    """Transitions of one table's rows. `write()` opens one write transaction on the store (SQLite: `BEGIN
    IMMEDIATE`; PostgreSQL: one that also renews the lease and fails on a stale fence)."""

    def __init__(
        self, write: Writer, table: str, key: str, done: State, request: str, scope: Scope = EVERY_ROW
    ) -> None:
        self._write, self.table, self.key, self.done, self.scope = write, table, key, done, scope
        self.request = request  # what `begin` precedes, for the event log

    def begin(self, key: str, now: float) -> bool:
        """Commit `in_flight` (attempts + 1) before the request. False when the row is no longer pending."""
        with self._write() as c:
            cur = c.execute(
                f"""UPDATE {self.table} SET state = 'in_flight', attempts = attempts + 1, last_attempt_at = ?,
                    updated_at = ?, doubt = NULL WHERE {self.key} = ? AND state = 'pending'{self.scope.and_}""",
                (now, now, key, *self.scope.params),
            )
            if cur.rowcount == 1:
                self.event(c, key, now, State.IN_FLIGHT, f"committed before {self.request}")
            return cur.rowcount == 1

    def move(self, key: str, state: State, now: float, detail: str, **fields: Any) -> None:
        """One transition with its event. `last_error` is the detail of an `unknown` or `dead` row and is
        cleared otherwise, unless `fields` sets it."""
        with self._write() as c:
            self.move_in(c, key, state, now, detail, **fields)

    def move_in(self, c: Connection, key: str, state: State, now: float, detail: str, **fields: Any) -> None:
        """`move` inside a transaction the caller holds."""
        columns: dict[str, Any] = {"state": state.value, "updated_at": now}
        columns["last_error"] = detail if state in ERROR_STATES else None
        columns.update(fields)
        sets = ", ".join(f"{name} = ?" for name in columns)
        c.execute(
            f"UPDATE {self.table} SET {sets} WHERE {self.key} = ?{self.scope.and_}",
            (*columns.values(), key, *self.scope.params),
        )
        self.event(c, key, now, state, detail)

    def recover_in_flight(
        self, c: Connection, now: float, why: str = "found in_flight at startup: the last run died mid-call"
    ) -> int:
        """At startup: a row left `in_flight` by a process that died (or lost its lease) may or may not have
        been sent."""
        rows = c.execute(
            f"SELECT {self.key} FROM {self.table} WHERE state = 'in_flight'{self.scope.and_}", self.scope.params
        )
        keys = [r[0] for r in rows]
        for key in keys:
            self.move_in(c, key, State.UNKNOWN, now, why, doubt="crash")
        return len(keys)

    def event(self, c: Connection, key: str, now: float, state: State, detail: str) -> None:
        s = self.scope
        c.execute(
            f"INSERT INTO events (ledger, key, at, state, detail{s.column}) VALUES (?, ?, ?, ?, ?{s.mark})",
            (self.table, key, now, state.value, detail, *s.params),
        )

    def events(self, c: Connection, key: str) -> Iterator[Any]:
        yield from c.execute(
            f"SELECT * FROM events WHERE ledger = ? AND key = ?{self.scope.and_} ORDER BY id",
            (self.table, key, *self.scope.params),
        )
