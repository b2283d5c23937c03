"""The read side: what `syncd status`, `syncd explain`, metrics and alerts see, as frozen dataclasses.

Read from a read-only connection that needs no lock and no token, so it works beside a running `syncd run`:
the SQLite file, or one account's rows on PostgreSQL (the same SQL, scoped by `Scope`).
Times inside are epoch seconds (or CRM milliseconds); text is made at the edges (`syncd.status_text`).
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from syncd import asana_rate
from syncd.asana_rate import LearnedRate
from syncd.config_values import PostgresState
from syncd.errors import NoStateYet, StoreError
from syncd.models import OP_STATES, State, iso_s
from syncd.store.schema import connect, pending_steps, refuse_empty
from syncd.store.scope import Connection, Scope


@dataclass(frozen=True)
class LastCycle:
    ok: bool
    started_at: float
    finished_at: float
    error: str | None
    interrupted: str | None = None  # the signal that stopped it after its step in progress


@dataclass(frozen=True)
class CycleRun:
    """One row of the cycles table; `ok` and `finished_at` are None for a cycle that never finished."""

    id: int
    started_at: float
    finished_at: float | None
    ok: bool | None
    error: str | None
    deals_seen: int
    created: int
    interrupted: str | None = None  # the signal that stopped it, where the schema records one
    pid: int | None = None  # the process that ran it: a cycle without an end whose process is gone died

    @property
    def outcome(self) -> str:
        """ok, failed, interrupted, running, or died (no end recorded, and its process is gone)."""
        if self.finished_at is None:
            return "running" if self.pid is not None and alive(self.pid) else "died"
        if self.interrupted:
            return "interrupted"
        return "ok" if self.ok else "failed"

    @property
    def seconds(self) -> float | None:
        return None if self.finished_at is None else round(self.finished_at - self.started_at, 1)


@dataclass(frozen=True)
class DeadOp:
    op_key: str
    deal_id: str
    flow: str
    reason: str | None


@dataclass(frozen=True)
class QuarantinedRecord:
    record_id: str | None
    reason: str
    seen_at: float


@dataclass(frozen=True)
class Health:
    """Facts the last cycle's process saved for `status` (`compose.after_cycle`): what only it knew."""

    breaker: str = "closed"
    quota: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    next_run_at: float | None = None
    alerts_firing: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, text: str | None) -> Health:
        raw = json.loads(text) if text else {}
        return cls(
            breaker=raw.get("breaker", "closed"),
            quota=raw.get("quota", {}),
            next_run_at=raw.get("next_run_at"),
            alerts_firing=tuple(raw.get("alerts_firing", ())),
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "breaker": self.breaker,
                "quota": self.quota,
                "next_run_at": self.next_run_at,
                "alerts_firing": list(self.alerts_firing),
            }
        )


def holder_name() -> str:
    """How a PostgreSQL lease names its holder: this host and process."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class LeaseFacts:
    """PostgreSQL: the account's lease as the database sees it. `expires_in` < 0: it ran out that long ago."""

    account: str
    holder: str
    fence: int
    expires_in: float
    clean: bool  # released by a clean stop, with nothing in flight

    @property
    def live(self) -> bool:
        return self.expires_in > 0


@dataclass(frozen=True)
class Status:
    database: Path | str  # the SQLite file, or the PostgreSQL database and account (no password)
    now: float
    cursor_ms: int | None
    baseline_recorded_at: float | None
    last_cycle: LastCycle | None
    last_success_at: float | None
    deals: int
    ops: Mapping[State, int]
    dead_ops: tuple[DeadOp, ...]
    quarantine: int
    quarantined_records: tuple[QuarantinedRecord, ...]
    effects: Mapping[State, int]
    health: Health
    stale_after_seconds: float | None = None  # [alerts] stale_after_minutes: no success for longer is unhealthy
    unfinished_since_success: int = 0  # cycles started after the last success that never finished
    died: tuple[tuple[float, int], ...] = ()  # (started_at, pid) of unfinished cycles newer than the last
    #                                             finished one whose process is gone (kill -9, a crash)
    ledger_flows: tuple[str, ...] = ()  # every flow name that has ops
    paused_flows: tuple[str, ...] = ()  # `syncd flow pause`
    pending_requests: tuple[str, ...] = ()  # what `retry`/`backfill` left for the lock holder's next cycle
    asana_rates: tuple[LearnedRate, ...] = ()  # what Asana's 429s revealed, per workspace
    lease: LeaseFacts | None = None  # PostgreSQL only

    @property
    def cursor_age_seconds(self) -> float | None:
        return None if self.cursor_ms is None else round(self.now - self.cursor_ms / 1000, 1)

    @property
    def problems(self) -> list[str]:
        problems = []
        if self.last_cycle is None:
            problems.append("no cycle has finished yet")
        elif not self.last_cycle.ok:
            problems.append("the last cycle failed")
        stale = self.stale_after_seconds
        if stale is not None and self.last_success_at is not None and self.now - self.last_success_at > stale:
            unfinished = self.unfinished_since_success
            why = f"; {unfinished} cycle(s) started since and did not finish" if unfinished else ""
            problems.append(f"no successful cycle for {self.now - self.last_success_at:.0f}s (limit {stale:g}s){why}")
        for started_at, pid in self.died:
            problems.append(
                f"the cycle started {iso_s(started_at)} never finished: its process (pid {pid}) is gone (killed or "
                "crashed); the next run recovers what it had in flight"
            )
        if self.ops[State.DEAD]:
            problems.append(f"{self.ops[State.DEAD]} dead op(s) need a human")
        lease = self.lease
        if lease is not None and not lease.live and not lease.clean:
            problems.append(
                f"no live holder: the lease of {lease.holder} (fence {lease.fence}) ran out {-lease.expires_in:.0f}s "
                "ago without a clean stop; start syncd on a host (a standby takes over by itself)"
            )
        if self.effects.get(State.DEAD):
            problems.append(f"{self.effects[State.DEAD]} dead follow-up(s) (task, write-back, message) need a human")
        return problems

    @property
    def healthy(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class Event:
    at: float
    state: State
    detail: str | None


@dataclass(frozen=True)
class OpHistory:
    op_key: str
    flow: str
    state: State
    marker: str
    attempts: int
    asana_gid: str | None
    asana_url: str | None
    last_error: str | None
    events: tuple[Event, ...]

    @property
    def posts_sent(self) -> int:
        """Every create request sent, each one committed `in_flight` first; `attempts` is what counts toward
        `max_attempts`, which a 429 does not spend and `syncd retry` resets."""
        return sum(1 for e in self.events if e.state == State.IN_FLIGHT)


@dataclass(frozen=True)
class Version:
    updated_at_ms: int
    values: Mapping[str, Any]
    matches: Mapping[str, bool]
    newly: tuple[str, ...]
    recorded_at: float


@dataclass(frozen=True)
class FlowBaseline:
    flow: str
    rule: str
    at: float
    reason: str


@dataclass(frozen=True)
class History:
    """Everything syncd knows about one deal: its versions, its ops and their state history, and the
    baselines its flows got (the rule each version after them was judged by)."""

    deal_id: str
    versions: tuple[Version, ...]
    ops: tuple[OpHistory, ...]
    baselines: tuple[FlowBaseline, ...] = ()
    quarantined: tuple[QuarantinedRecord, ...] = ()  # why the CRM's record of this deal could not be read


def alive(pid: int) -> bool:
    """Whether process `pid` exists on this host (a process of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def ran_here(state: Path | PostgresState, lease: LeaseFacts | None, pid: int) -> bool:
    """Whether `pid` names a process on this host: always beside a SQLite file; on PostgreSQL, when the
    account's lease was last held by that pid on this host (a pid elsewhere says nothing here)."""
    return isinstance(state, Path) or (lease is not None and lease.holder == f"{socket.gethostname()}:{pid}")


@contextmanager
def reading(state: Path | PostgresState) -> Iterator[tuple[Connection, Scope]]:
    """A read-only connection and the rows that are this store's; a database that cannot be read is a
    `StoreError` with a sentence."""
    if isinstance(state, PostgresState):
        from syncd.store.postgres import read_only

        with read_only(state) as pg:
            yield pg, Scope(state.account)
        return
    if not state.exists():
        raise NoStateYet(f"There is no syncd database at {state} yet. Run 'syncd once' to create it.")
    refuse_empty(state)
    conn: sqlite3.Connection | None = None
    try:
        conn = connect(state, readonly=True)
        if behind := pending_steps(conn, state):
            raise StoreError(
                f"{state} was written by an older syncd ({behind} schema step(s) behind this one). The next "
                "'syncd once' or 'syncd run' upgrades it in place; until then it cannot be read."
            )
        yield conn, Scope()
    except (sqlite3.DatabaseError, ValueError) as exc:  # ValueError: a damaged row (JSON, a state)
        raise StoreError(f"Could not read {state} ({exc}). Is it a syncd database?") from None
    finally:
        if conn is not None:
            conn.close()


def read_status(state: Path | PostgresState, now: float, stale_after_seconds: float | None = None) -> Status:
    """What `syncd status` shows. Needs no lock and no token."""
    with reading(state) as (conn, s):
        return status_on(conn, s, state, now, stale_after_seconds)


@dataclass(frozen=True)
class Watched:
    """The part of `Status` the alerts watch after every cycle: two statements instead of all of them."""

    dead_ops: tuple[DeadOp, ...]
    last_success_at: float | None


def watched_on(conn: Connection, s: Scope) -> Watched:
    """`Watched` on a connection already open (a store's own: `Store.watched`)."""
    dead = conn.execute(
        f"SELECT op_key, deal_id, flow, last_error FROM ops WHERE state = 'dead'{s.and_} ORDER BY op_key", s.params
    )
    success = conn.execute(f"SELECT max(finished_at) FROM cycles WHERE ok = 1{s.and_}", s.params).fetchone()
    return Watched(tuple(DeadOp(r[0], r[1], r[2], r[3]) for r in dead), success[0] if success else None)


def status_on(
    conn: Connection, s: Scope, state: Path | PostgresState, now: float, stale_after_seconds: float | None
) -> Status:
    """`read_status` on a connection already open: a store's own, so that the process that writes the state
    reads it without a connection of its own (`Store.status`)."""

    def one(sql: str, *params: Any) -> Any:
        return conn.execute(sql.format(w=s.where, a=s.and_), (*params, *s.params))

    cursor = one("SELECT value_ms FROM cursors WHERE name = 'crm'{a}").fetchone()
    last = one("SELECT * FROM cycles WHERE finished_at IS NOT NULL{a} ORDER BY id DESC LIMIT 1").fetchone()
    ops = dict.fromkeys(OP_STATES, 0) | {
        State(r[0]): r[1] for r in one("SELECT state, count(*) FROM ops{w} GROUP BY state")
    }
    recent = one("SELECT record_id, reason, seen_at FROM quarantine{w} ORDER BY id DESC LIMIT 20")
    baseline = one("SELECT value FROM meta WHERE key = 'baseline_done'{a}").fetchone()
    health = one("SELECT value FROM meta WHERE key = 'health'{a}").fetchone()
    watched = watched_on(conn, s)
    success = watched.last_success_at
    lease = None
    if isinstance(state, PostgresState):
        held = one(
            "SELECT holder, fence, extract(epoch FROM expires_at - now())::float8, clean FROM leases{w}"
        ).fetchone()
        lease = LeaseFacts(state.account, held[0], held[1], held[2], held[3]) if held else None
    return Status(
        database=state.shown if isinstance(state, PostgresState) else state,
        now=now,
        cursor_ms=cursor[0] if cursor else None,
        baseline_recorded_at=datetime.fromisoformat(baseline[0]).timestamp() if baseline else None,
        last_cycle=LastCycle(
            bool(last["ok"]), last["started_at"], last["finished_at"], last["error"], last["interrupted"]
        )
        if last
        else None,
        last_success_at=success,
        deals=one("SELECT count(*) FROM deals{w}").fetchone()[0],
        ops=ops,
        dead_ops=watched.dead_ops,
        quarantine=one("SELECT count(*) FROM quarantine{w}").fetchone()[0],
        quarantined_records=tuple(QuarantinedRecord(r[0], r[1], r[2]) for r in recent),
        effects={State(r[0]): r[1] for r in one("SELECT state, count(*) FROM effects{w} GROUP BY state")},
        health=Health.from_json(health[0] if health else None),
        stale_after_seconds=stale_after_seconds,
        ledger_flows=tuple(r[0] for r in one("SELECT DISTINCT flow FROM ops{w} ORDER BY flow")),
        lease=lease,
        paused_flows=tuple(r[0] for r in one("SELECT flow FROM flow_pauses{w} ORDER BY flow")),
        pending_requests=tuple(
            f"#{r[0]} {r[1]} {r[2]}" for r in one("SELECT id, kind, args FROM requests WHERE done_at IS NULL{a}")
        ),
        died=tuple(
            (r[0], r[1])
            for r in one(
                """SELECT started_at, pid FROM cycles WHERE finished_at IS NULL AND pid IS NOT NULL{a}
                   AND id > coalesce((SELECT max(id) FROM cycles WHERE finished_at IS NOT NULL{a}), 0)""",
                *s.params,
            )
            if ran_here(state, lease, r[1]) and not alive(r[1])
        ),
        asana_rates=tuple(
            rate
            for r in one("SELECT key, value FROM meta WHERE key LIKE ?{a} ORDER BY key", asana_rate.PREFIX + "%")
            if (rate := asana_rate.parse(r[0].removeprefix(asana_rate.PREFIX), r[1])) is not None
        ),
        unfinished_since_success=one(
            "SELECT count(*) FROM cycles WHERE finished_at IS NULL AND started_at > ?{a}", success or 0.0
        ).fetchone()[0],
    )


def read_history(state: Path | PostgresState, deal_id: str) -> History:
    """`syncd explain`: every recorded version of one deal, and each of its ops with its events."""
    with reading(state) as (conn, s):

        def rows(sql: str, *params: Any) -> list[Any]:
            return conn.execute(sql.format(w=s.where, a=s.and_), (*params, *s.params)).fetchall()

        versions = tuple(
            Version(
                r["updated_at_ms"],
                json.loads(r["properties"]),
                json.loads(r["matches"]),
                tuple(json.loads(r["newly"])),
                r["recorded_at"],
            )
            for r in rows("SELECT * FROM deal_versions WHERE deal_id = ?{a} ORDER BY updated_at_ms, id", deal_id)
        )
        ops = tuple(
            OpHistory(
                op_key=op["op_key"],
                flow=op["flow"],
                state=State(op["state"]),
                marker=op["marker"],
                attempts=op["attempts"],
                asana_gid=op["asana_gid"],
                asana_url=op["asana_url"],
                last_error=op["last_error"],
                events=tuple(
                    Event(e["at"], State(e["state"]), e["detail"])
                    for e in rows("SELECT * FROM events WHERE ledger = 'ops' AND key = ?{a} ORDER BY id", op["op_key"])
                ),
            )
            for op in rows("SELECT * FROM ops WHERE deal_id = ?{a} ORDER BY op_key", deal_id)
        )
        baselines = tuple(
            FlowBaseline(r[0], r[1], r[2], r[3]) for r in rows("SELECT flow, rule, at, reason FROM flow_baselines{w}")
        )
        quarantined = tuple(
            QuarantinedRecord(r[0], r[1], r[2])
            for r in rows(
                "SELECT record_id, reason, seen_at FROM quarantine WHERE record_id = ?{a} ORDER BY id", deal_id
            )
        )
    return History(deal_id, versions, ops, baselines, quarantined)


def read_cycles(state: Path | PostgresState, limit: int = 50) -> tuple[CycleRun, ...]:
    """The most recent `limit` cycles, newest first, finished or not (the status page's history)."""
    with reading(state) as (conn, s):
        rows = conn.execute(f"SELECT * FROM cycles{s.where} ORDER BY id DESC LIMIT ?", (*s.params, limit)).fetchall()
    return tuple(
        CycleRun(
            r["id"],
            r["started_at"],
            r["finished_at"],
            None if r["ok"] is None else bool(r["ok"]),
            r["error"],
            r["deals_seen"],
            r["created"],
            r["interrupted"],
            r["pid"],
        )
        for r in rows
    )
