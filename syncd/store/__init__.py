"""The state: what syncd has seen (deals, the cursor), what it intends and did (the ledger), what it skipped
(quarantine), and how its cycles went.

`Store` is the narrow interface the engine, the effects and the operator commands use; `SqliteStore`
(`syncd.store.sqlite`) is the embedded implementation, `PgStore` (`syncd.store.postgres`, the `syncd[postgres]`
extra, imported only when configured) the one for several hosts. The read side is `syncd.store.read`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from syncd.config_values import PostgresState
from syncd.diff import Change, Stored
from syncd.errors import NoStateYet
from syncd.models import Effect, NewEffect, NewOp, Op, Quarantined, State
from syncd.store.inbox import Inbox, Request
from syncd.store.ledger import Ledger
from syncd.store.read import History, Status, Watched, read_history, read_status
from syncd.store.sqlite import SqliteStore

__all__ = ["History", "Inbox", "Request", "SqliteStore", "Status", "Store", "open_store", "read_history", "read_status"]


class Store(Protocol):
    ops: Ledger
    effects: Ledger
    inbox: Inbox

    def close(self) -> None: ...
    def check_lease(self) -> None: ...
    def status(self, now: float, stale_after_seconds: float | None = None) -> Status: ...
    def watched(self) -> Watched: ...
    def get_meta(self, key: str) -> str | None: ...
    def set_meta(self, key: str, value: str) -> None: ...
    def delete_meta(self, key: str) -> bool: ...
    def baseline_done(self) -> bool: ...
    def mark_baseline_done(self, now: float) -> None: ...
    def flow_baselines(self) -> dict[str, tuple[str, float]]: ...
    def record_flow_baselines(self, baselines: list[tuple[str, str, str]], now: float) -> None: ...
    def pause(self, service: str) -> float: ...
    def save_pause(self, service: str, until: float) -> None: ...
    def cursor(self) -> int | None: ...
    def stored_deals(self, ids: Iterable[str]) -> dict[str, Stored]: ...
    def record_page(
        self, changes: list[Change], ops: list[NewOp], quarantined: list[Quarantined], cursor_ms: int, now: float
    ) -> int: ...
    def queue_ops(self, ops: list[NewOp], now: float, detail: str) -> int: ...
    def recover_in_flight(self, now: float) -> int: ...
    def due_ops(
        self,
        now: float,
        settle_seconds: float,
        settle_done_seconds: float | None = None,
        held: frozenset[str] = ...,
    ) -> list[Op]: ...
    def next_due(
        self, settle_seconds: float, settle_done_seconds: float | None = None, held: frozenset[str] = ...
    ) -> float | None: ...
    def dead_ops(self, deal_id: str | None) -> list[Op]: ...
    def ledger_flows(self) -> list[str]: ...
    def op_count(self, state: State) -> int: ...
    def deals_without_op(self, flows: tuple[str, ...], since_ms: int) -> list[tuple[str, int, dict[str, Any]]]: ...
    def replace_effects(self, op_key: str, effects: tuple[NewEffect, ...], now: float) -> None: ...
    def latest_version(self, deal_id: str) -> tuple[int, dict[str, Any]] | None: ...
    def due_effects(self, now: float, settle_seconds: float) -> list[Effect]: ...
    def last_cycle_times(self) -> tuple[float | None, float | None]: ...
    def start_cycle(self, now: float) -> int: ...
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
    ) -> None: ...


def open_store(
    state: Path | PostgresState, lock_fd: int | None = None, *, settle_seconds: float = 0.0, post_seconds: float = 0.0
) -> Store:
    """The writer: for `[state] path` under the single-instance lock, or for one account on PostgreSQL under
    its lease (`LockHeld` while another process holds it). `post_seconds`: how much of the lease a request
    needs; `settle_seconds`: how long after a previous holder's expiry nothing may be sent."""
    if isinstance(state, PostgresState):
        from syncd.store.postgres import PgStore

        return PgStore.open(state, settle_seconds=settle_seconds, post_seconds=post_seconds)
    return SqliteStore.open(state, lock_fd)


@contextmanager
def view(state: Path | PostgresState) -> Iterator[Store]:
    """The state as it is, read-only and without the lock or the lease (a dry run, a command beside a running
    syncd): an empty SQLite database in memory when there is no file yet, so nothing is created on disk."""
    if isinstance(state, PostgresState):
        from syncd.store.postgres import beside

        try:
            with beside(state, readonly=True) as pg:
                yield pg
            return
        except NoStateYet:  # no tables yet: nothing recorded, as with no SQLite file
            pass
    with SqliteStore.reading(state) if isinstance(state, Path) and state.exists() else SqliteStore.in_memory() as store:
        yield store
