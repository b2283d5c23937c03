"""`syncd history`: the recent cycles as they were recorded, read-only beside a running syncd.

A cycle row is written when the cycle starts and completed when it ends, so a row without an end is a cycle
still running ("running"), or one whose process died ("died": `kill -9`, a crash, a power loss), told apart by
whether the pid it recorded is still alive.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from syncd.store.read import alive, reading


@dataclass(frozen=True)
class CycleRow:
    id: int
    started_at: float
    finished_at: float | None
    ok: bool | None
    error: str | None
    deals_seen: int
    created: int
    interrupted: str | None
    pid: int | None = None

    @property
    def outcome(self) -> str:
        if self.finished_at is None:
            return "running" if self.pid is not None and alive(self.pid) else "died"
        if self.interrupted:
            return "interrupted"
        return "ok" if self.ok else "failed"

    @property
    def seconds(self) -> float | None:
        return None if self.finished_at is None else round(self.finished_at - self.started_at, 1)


def read_cycles(path: Path, limit: int) -> list[CycleRow]:
    """The newest `limit` cycles, newest first."""
    with reading(path) as conn:
        rows = conn.execute(
            """SELECT id, started_at, finished_at, ok, error, deals_seen, created, interrupted, pid FROM cycles
               ORDER BY id DESC LIMIT ?""",
            (limit,),
        ).fetchall()
    return [CycleRow(r[0], r[1], r[2], None if r[3] is None else bool(r[3]), r[4], r[5], r[6], r[7]) for r in rows]
