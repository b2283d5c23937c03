"""The state on PostgreSQL (psycopg 3, the `syncd[postgres]` extra): the same tables, ledger and read side as
SQLite, with every row keyed by account, for several hosts and many accounts on one database.

One writer per account, by lease (`syncd.store.lease`) instead of `flock`: every write is one transaction that
first renews the lease under this process's fencing number, so a process that lost its lease cannot write.
No HTTP call ever happens inside a transaction.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from syncd.config_values import PostgresState
from syncd.errors import NoStateYet, StoreError
from syncd.store.lease import Lease, Taken
from syncd.store.pg_schema import PgConnection, connect, migrate
from syncd.store.scope import Scope
from syncd.store.tables import Tables

log = logging.getLogger("syncd.store")


def unreachable(state: PostgresState, exc: psycopg.Error) -> StoreError:
    return StoreError(
        f"Could not use the PostgreSQL database {state.shown} ({type(exc).__name__}: {exc}). Check that the "
        "server is up, the URL ([state] url or url_env) and the password (PGPASSWORD, PGPASSFILE or the URL)."
    )


class PgView(Tables):
    """One account's rows without its lease: what `syncd --dry-run` reads, and where a command beside the lease
    holder leaves a request (`syncd.store.inbox`), in a plain transaction: a request changes no ledger row."""

    conn: PgConnection
    greatest = "GREATEST"

    def __init__(self, state: PostgresState, conn: PgConnection) -> None:
        self.state, self.conn, self.account = state, conn, state.account
        self.location = state
        self.scope = Scope(state.account)
        super().__init__()

    @contextmanager
    def write(self) -> Iterator[PgConnection]:
        try:
            with self.conn.raw.transaction():
                yield self.conn
        except psycopg.OperationalError as exc:
            raise unreachable(self.state, exc) from None

    def check_lease(self) -> None:
        raise StoreError("A view without the lease sends nothing.")

    def lease_holder(self) -> str | None:
        """Who holds the account's lease now (host:pid), None when nobody does."""
        row = self._rows("SELECT holder FROM leases WHERE expires_at > now(){a}").fetchone()
        return None if row is None else str(row[0])

    def close(self) -> None:
        self.conn.close()


class PgStore(PgView):
    """The one writer of one account: the statements of `syncd.store.tables`, each write fenced by the lease."""

    recovered = "found in_flight by the lease holder: the process that committed it died or lost its lease mid-call"

    def __init__(self, state: PostgresState, conn: PgConnection, lease: Lease) -> None:
        self.lease = lease
        self.taken: Taken | None = None
        super().__init__(state, conn)

    @classmethod
    def open(cls, state: PostgresState, *, settle_seconds: float, post_seconds: float) -> PgStore:
        """Connect, migrate and take the lease (`LockHeld` when another holds it). After a takeover, wait
        until `settle_seconds` after the previous lease's expiry, renewing, before returning."""
        try:
            conn = connect(state.url)
        except psycopg.Error as exc:
            raise unreachable(state, exc) from None
        try:
            migrate(conn)
            store = cls(state, conn, Lease(state.url, state.account, state.lease_seconds, post_seconds, state.shown))
            taken = store.taken = store.lease.acquire(conn, settle_seconds)
        except BaseException as exc:
            conn.close()
            if isinstance(exc, psycopg.Error):
                raise unreachable(state, exc) from None
            raise
        store.lease.start_heartbeat()
        taken.announce(state.account)
        if taken.wait_seconds > 0:
            time.sleep(taken.wait_seconds)
        return store

    def close(self) -> None:
        self.lease.stop_heartbeat()
        try:
            with self.conn.raw.transaction():
                self.lease.release(self.conn)
        except psycopg.Error as exc:
            log.warning("could not release the lease (%s); it expires by itself", exc)
        self.conn.close()

    @contextmanager
    def write(self) -> Iterator[PgConnection]:
        """One transaction that first renews the lease under this process's fence (`LeaseLost` otherwise)."""
        try:
            with self.conn.raw.transaction():
                self.lease.renew(self.conn)
                yield self.conn
        except psycopg.OperationalError as exc:
            raise unreachable(self.state, exc) from None

    def check_lease(self) -> None:
        """Before each POST: `LeaseLost` unless the request can end before the lease does."""
        self.lease.check(self.conn)


@contextmanager
def beside(state: PostgresState, *, readonly: bool) -> Iterator[PgView]:
    """A view of the account beside its lease holder: read-only (dry runs), or for leaving a request.
    `NoStateYet`, before yielding, when syncd's tables do not exist yet."""
    try:
        conn = connect(state.url, application="syncd status" if readonly else "syncd request")
        exists = conn.execute("SELECT to_regclass('requests') IS NOT NULL").fetchone()[0]  # type: ignore[index]
    except psycopg.Error as exc:
        raise unreachable(state, exc) from None
    if not exists:
        conn.close()
        raise NoStateYet(f"There is no syncd state in {state.shown} yet. Run 'syncd once' to create it.")
    view = PgView(state, conn)
    try:
        if readonly:
            with conn.raw.transaction():
                conn.execute("SET TRANSACTION READ ONLY")
                yield view
        else:
            yield view
    except psycopg.Error as exc:
        raise unreachable(state, exc) from None
    finally:
        view.close()


@contextmanager
def read_only(state: PostgresState) -> Iterator[PgConnection]:
    """A connection in one read-only transaction, for `syncd status` and `explain`: no lease needed."""
    try:
        conn = connect(state.url, application="syncd status")
    except psycopg.Error as exc:
        raise unreachable(state, exc) from None
    try:
        with conn.raw.transaction():
            conn.execute("SET TRANSACTION READ ONLY")
            yield conn
    except psycopg.errors.UndefinedTable:
        raise NoStateYet(f"There is no syncd state in {state.shown} yet. Run 'syncd once' to create it.") from None
    except psycopg.Error as exc:
        raise unreachable(state, exc) from None
    finally:
        conn.close()
