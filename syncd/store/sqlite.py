"""The state database on SQLite (sqlite-utils): one file per account, its lock and its transactions.

One writer: `SqliteStore.open` runs under the single-instance lock (`syncd.lock`), and every write is one
`BEGIN IMMEDIATE` transaction. No HTTP call ever happens inside one. The read side (`syncd status`,
`syncd explain`) is `syncd.store.read`, on a read-only connection that needs no lock.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlite_utils import Database

from syncd import lock
from syncd.errors import StoreError
from syncd.store.failures import is_storage, store_error
from syncd.store.read import reading
from syncd.store.schema import connect, migrations, pending_steps, refuse_empty
from syncd.store.scope import Scope
from syncd.store.tables import Tables


class SqliteStore(Tables):
    """The one writer. `ops` and `effects` are the two ledgers (`syncd.store.ledger`); the statements are
    `syncd.store.tables`'."""

    conn: sqlite3.Connection

    def __init__(self, path: Path, conn: sqlite3.Connection, lock_fd: int | None) -> None:
        self.path, self.conn, self._lock_fd = path, conn, lock_fd
        self.location = path
        self.scope = Scope()
        self.db = Database(conn)
        super().__init__()

    @classmethod
    def open(cls, path: Path, lock_fd: int | None = None) -> SqliteStore:
        """Open for writing under the single-instance lock: taken here (and released by `close`) unless the
        caller passes the descriptor it already holds."""
        owned = lock.acquire(path) if lock_fd is None else None
        try:
            refuse_empty(path)
            store = cls(path, connect(path), owned)
            pending_steps(store.conn, path)
            migrations.apply(store.db)
        except sqlite3.DatabaseError as exc:
            if owned is not None:
                lock.release(owned)
            raise store_error(path, exc) from None
        except StoreError:
            if owned is not None:
                lock.release(owned)
            raise
        return store

    @classmethod
    @contextmanager
    def reading(cls, path: Path) -> Iterator[SqliteStore]:
        """Read-only and without the lock, beside a running syncd: a dry run changes nothing on disk."""
        with reading(path) as (conn, _):
            yield cls(path, conn, None)  # type: ignore[arg-type]  # SQLite: a sqlite3.Connection

    @classmethod
    @contextmanager
    def in_memory(cls) -> Iterator[SqliteStore]:
        """An empty database that never reaches the disk: what a dry run reads before the first cycle."""
        store = cls(Path(":memory:"), connect(Path(":memory:")), None)
        migrations.apply(store.db)
        try:
            yield store
        finally:
            store.conn.close()

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
