"""One active syncd per account on PostgreSQL, fenced (DESIGN.md §4): a row in `leases` per account.

- **Acquire**: take the row when it is free or expired (by the database's clock), with the fencing number
  one higher than before. Held by another: `LockHeld` (exit 75), or a standby's wait.
- **Renew**: inside every write transaction (so the one that commits `in_flight` too), and from a heartbeat
  thread on its own connection between cycles. A write under a stale fence fails (`LeaseLost`) and rolls back.
- **Before each POST**: at least `post_seconds` (connect + read timeout + a margin) must be left, so a request
  the holder sends ends before anyone else may send.
- **Take over**: the previous holder's `in_flight` rows may have been sent; the new holder sends nothing until
  `settle_seconds` after the previous lease's expiry (not needed after a clean release, which records that
  nothing was in flight), then lists before it creates. A holder that stops cleanly expires its lease at once;
  one on this host whose process is gone is taken over at once, with no wait: it sends nothing more, and each
  op it left `in_flight` waits its own settle after its attempt, by this host's clock, exactly as on SQLite
  after a `kill -9`. (The wait after an expiry exists because the previous holder may be on another host,
  whose clock wrote `last_attempt_at`.)
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from syncd.errors import LeaseLost, LockHeld
from syncd.store.pg_schema import PgConnection, connect
from syncd.store.read import holder_name

log = logging.getLogger("syncd.lease")


def dead_here(holder: str) -> bool:
    """A holder on this host whose process is gone (`kill -9`, a crash): its lease may be taken now instead of
    when it expires, as the kernel frees a dead process's `flock`. Taking it early is safe even if the name is
    wrong (another pid namespace): the fence stops the other process's writes and its next request."""
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


@dataclass(frozen=True)
class Taken:
    fence: int
    wait_seconds: float  # until the previous lease's expiry + settle; 0 after a clean release or the first lease
    previous: str | None

    def announce(self, account: str) -> None:
        """What the journal says on taking `account`'s lease (README "Run on several hosts")."""
        if self.wait_seconds > 0:
            log.warning(
                "took over the lease on account %r from %s (fence %d): its requests may still land, so nothing "
                "is sent for %.1fs",
                account,
                self.previous,
                self.fence,
                self.wait_seconds,
            )
        else:
            after = f" after {self.previous}" if self.previous else ""
            log.info("took the lease on account %r (fence %d)%s", account, self.fence, after)


class Lease:
    """This process's lease on `account`. `seconds`: how long it lasts without renewal."""

    def __init__(self, url: str, account: str, seconds: float, post_seconds: float, where: str) -> None:
        self.url, self.account, self.seconds, self.post_seconds = url, account, seconds, post_seconds
        self.where = where  # the database, for messages (no password)
        self.holder, self.fence = holder_name(), 0
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self.on_fenced: Callable[[], None] | None = None  # a renewal refused by a stale fence (metrics)

    def acquire(self, c: PgConnection, settle_seconds: float) -> Taken:
        row = c.execute(
            """INSERT INTO leases (account, holder, fence, acquired_at, expires_at)
               VALUES (?, ?, 1, now(), now() + make_interval(secs => ?))
               ON CONFLICT (account) DO UPDATE SET holder = excluded.holder, fence = leases.fence + 1,
                   acquired_at = now(), expires_at = excluded.expires_at, previous_holder = leases.holder,
                   previous_expiry = leases.expires_at, previous_clean = leases.clean, clean = FALSE
               WHERE leases.expires_at <= now()
               RETURNING fence, previous_holder, previous_clean,
                   extract(epoch FROM now() - previous_expiry)::float8 AS expired_for""",
            (self.account, self.holder, self.seconds),
        ).fetchone()
        if row is None:
            other = c.execute(
                "SELECT holder, fence, extract(epoch FROM expires_at - now())::float8 FROM leases WHERE account = ?",
                (self.account,),
            ).fetchone()
            holder, fence, left = (other[0], other[1], other[2]) if other else ("another syncd", 0, self.seconds)
            if dead_here(holder):
                row = c.execute(
                    """UPDATE leases SET holder = ?, fence = fence + 1, acquired_at = now(),
                           expires_at = now() + make_interval(secs => ?), previous_holder = holder,
                           previous_expiry = now(), previous_clean = clean, clean = FALSE
                       WHERE account = ? AND fence = ?
                       RETURNING fence, previous_holder, previous_clean, NULL::float8 AS expired_for""",
                    (self.holder, self.seconds, self.account, fence),
                ).fetchone()
        if row is None:
            raise LockHeld(
                f"Another syncd ({holder}) holds the lease on account {self.account!r} in {self.where} for "
                f"{max(left, 0):.0f}s more. This run did nothing; the next one will pick up the work."
            )
        self.fence = int(row["fence"])
        clean, expired_for = row["previous_clean"], row["expired_for"]
        wait = 0.0 if clean or expired_for is None else max(0.0, settle_seconds - expired_for)
        return Taken(self.fence, wait, row["previous_holder"])

    def renew(self, c: PgConnection) -> None:
        """Inside a write transaction: extend the lease, or fail the transaction when the fence is stale."""
        row = c.execute(
            """UPDATE leases SET expires_at = now() + make_interval(secs => ?)
               WHERE account = ? AND fence = ? RETURNING fence""",
            (self.seconds, self.account, self.fence),
        ).fetchone()
        if row is None:
            if self.on_fenced is not None:
                self.on_fenced()
            raise self.lost()

    def check(self, c: PgConnection) -> None:
        """Before a POST: enough of the lease must be left for the request to end before it expires."""
        row = c.execute(
            "SELECT extract(epoch FROM expires_at - now())::float8 FROM leases WHERE account = ? AND fence = ?",
            (self.account, self.fence),
        ).fetchone()
        left = 0.0 if row is None else float(row[0])
        if left < self.post_seconds:
            raise self.lost(f" ({left:.1f}s left, a request needs {self.post_seconds:g}s)")

    def lost(self, why: str = "") -> LeaseLost:
        return LeaseLost(
            f"This syncd ({self.holder}) lost its lease on account {self.account!r} in {self.where}{why}: "
            "another one holds it or may take it over, so this one stopped before sending or writing anything "
            "more. Its in-flight request, if any, is reconciled by the holder."
        )

    def release(self, c: PgConnection) -> None:
        """A clean stop: expire the lease now, recording whether anything was left in flight."""
        c.execute(
            """UPDATE leases SET expires_at = now(),
                   clean = NOT EXISTS (SELECT 1 FROM ops WHERE account = ? AND state = 'in_flight')
                       AND NOT EXISTS (SELECT 1 FROM effects WHERE account = ? AND state = 'in_flight')
               WHERE account = ? AND fence = ?""",
            (self.account, self.account, self.account, self.fence),
        )

    # -- the heartbeat: renewals between cycles, on a connection of its own ---------------------------------
    def start_heartbeat(self) -> None:
        self._beat = threading.Thread(target=self._heartbeat, name="syncd-lease", daemon=True)
        self._beat.start()

    def stop_heartbeat(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=5)

    def _heartbeat(self) -> None:
        conn: PgConnection | None = None
        while not self._stop.wait(self.seconds / 3):
            try:
                conn = conn or connect(self.url, application="syncd lease")
                with conn.raw.transaction():
                    self.renew(conn)
            except LeaseLost as exc:
                log.error("%s", exc)
                break
            except psycopg.Error as exc:
                log.warning("could not renew the lease (%s); trying again in %.0fs", exc, self.seconds / 3)
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()


def renew_all(c: PgConnection, fences: dict[str, tuple[int, float]]) -> set[str]:
    """Renew every lease one process holds in one statement (`syncd run --accounts`): `fences` maps each account
    to (its fence, its lease_seconds). Returns the accounts renewed; one missing was lost (a stale fence)."""
    if not fences:
        return set()
    accounts = list(fences)
    rows = c.execute(
        """UPDATE leases SET expires_at = now() + make_interval(secs => held.seconds)
           FROM unnest(?::text[], ?::bigint[], ?::float8[]) AS held(account, fence, seconds)
           WHERE (leases.account, leases.fence) = (held.account, held.fence)
           RETURNING leases.account""",
        (accounts, [fences[a][0] for a in accounts], [fences[a][1] for a in accounts]),
    )
    return {str(row[0]) for row in rows}
