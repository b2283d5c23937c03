"""`syncd run --accounts DIR`: one process, a worker of the fleet, serves its fair share of many CRM accounts on
one PostgreSQL database (issue 15). The accounts of DIR: `syncd.accounts`.

Every `lease_seconds / 3` (the shortest of DIR's), the worker's **beat**, on a connection of its own:

1. upserts its heartbeat in `workers` (host:pid, now(), how many accounts it holds); a worker is live while
   its `seen_at` is less than `lease_seconds` old;
2. renews **all** the leases it holds in one statement (`syncd.store.lease.renew_all`). An account it asked
   for and did not get back was lost (another worker took it, its fence is stale): its cycles stop at once,
   as a `LeaseLost` stops `syncd run`, and its runtime is dropped without touching its rows;
3. fair share = ceil(accounts in DIR / live workers). Below it, it takes free or expired leases (through
   `Lease.acquire`: the fence, the settle after a takeover, a dead holder on this host) until it holds its
   share; above it (a worker joined), it hands back its surplus, cleanly: `Lease.release` of each account
   once its cycle in progress has finished. No worker takes beyond its share, so the fleet
   settles without thrashing.

Each held account has its own `Runtime`, built by `syncd.compose` as for `syncd run` (its own rate limiters,
breaker, cursor, baseline), and its own schedule: a cycle every `[schedule] interval_seconds`, sooner when an op
falls due (`syncd.daemon.early`). Cycles run in a pool of `CYCLE_THREADS` threads. The bound: a cycle is
started within one scheduling step (0.1 s) of falling due while fewer than `CYCLE_THREADS` other accounts'
cycles are running; so one slow or failing account (a CRM that times out, retries, answers 500) delays
nobody else's cycle unless `CYCLE_THREADS` accounts are slow at once. A step's duration is bounded by the HTTP
timeouts and retries, as in `syncd run`.

Connections: one per thread that uses the database (the beat's, and one per pool thread), never one per
account: `CYCLE_THREADS + 1` for any number of accounts, plus the short read-only one `syncd status` facts
open after each cycle. Every write of an account's `PgStore` still renews its lease under its fence inside the
write's transaction, and every POST is preceded by the lease check, exactly as in `syncd run`.

systemd hears READY once the worker runs, STATUS= "N of M accounts held (fair share K, W live workers)" after
each beat, and WATCHDOG=1 while the beat runs (a stuck account's cycle does not stop it: that is the point).
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import psycopg

from syncd import compose, notify
from syncd import config as configuration
from syncd.accounts import Account, metrics_endpoint
from syncd.compose.monitor import Monitor
from syncd.daemon import early, signals
from syncd.engine import Cycle
from syncd.errors import ConfigError, LeaseLost, LockHeld, SyncdError
from syncd.hooks import Hooks
from syncd.metrics import Metrics
from syncd.operator import apply_requests
from syncd.runtime import Runtime
from syncd.sources import schema
from syncd.status_page import bearer
from syncd.store.lease import Lease, dead_here, renew_all
from syncd.store.pg_schema import PgConnection, PgRow, connect, migrate
from syncd.store.postgres import PgStore
from syncd.store.read import holder_name

log = logging.getLogger("syncd.fleet")
CYCLE_THREADS = 8  # accounts whose cycles run at once (and PostgreSQL connections, plus one for the beat)
SCHEDULE_STEP = 0.1  # seconds between looks for due cycles


class Connections:
    """One PostgreSQL connection per thread, opened when the thread first needs it, opened again when broken."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._local = threading.local()
        self._all: list[psycopg.Connection[PgRow]] = []
        self._lock = threading.Lock()

    def mine(self) -> psycopg.Connection[PgRow]:
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.broken:
            conn = connect(self.url, application="syncd worker").raw
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()


class Borrowed(PgConnection):
    """A `PgConnection` that is the calling thread's connection: what each account's store writes through."""

    def __init__(self, connections: Connections) -> None:
        self.connections = connections

    @property
    def raw(self) -> psycopg.Connection[PgRow]:
        return self.connections.mine()

    @raw.setter
    def raw(self, conn: psycopg.Connection[PgRow]) -> None:
        raise AttributeError("a borrowed connection is the calling thread's")

    def close(self) -> None:
        """The connection is the thread's, not the account's."""


@dataclass
class Held:
    """An account whose lease this worker holds."""

    account: Account
    store: PgStore
    rt: Runtime
    monitor: Monitor
    due_at: float  # monotonic: when its next cycle may start (after a takeover: once the settle has passed)
    stopping: threading.Event = field(default_factory=threading.Event)
    running: bool = False
    verified: bool = False  # the CRM's fields checked against the flows (in its first cycle, off the beat)
    leaving: bool = False  # handed back once its cycle in progress ends
    lost: bool = False


class Worker:
    def __init__(self, accounts: list[Account], hooks: Hooks, metrics: Metrics | None = None) -> None:
        self.accounts, self.hooks, self.metrics = accounts, hooks, metrics
        self.url = accounts[0].state.url
        self.seconds = min(a.state.lease_seconds for a in accounts)
        self.name = holder_name()
        self.connections = Connections(self.url)
        self.conn = Borrowed(self.connections)
        self.pool = ThreadPoolExecutor(max_workers=CYCLE_THREADS, thread_name_prefix="syncd-account")
        self.held: dict[str, Held] = {}
        self.refused: set[str] = set()  # accounts whose runtime could not be built: not taken again
        self.lock = threading.Lock()
        self.share, self.live = len(accounts), 1
        if metrics:
            for account in accounts:
                metrics.leader.labels(account.name).set(0)

    # -- the beat -----------------------------------------------------------------------------------------
    def beat(self) -> None:
        c = self.conn
        with self.lock:
            mine = {a: (h.store.lease.fence, h.store.lease.seconds) for a, h in self.held.items() if not h.lost}
        c.execute(
            """INSERT INTO workers (worker, seen_at, accounts) VALUES (?, now(), ?)
               ON CONFLICT (worker) DO UPDATE SET seen_at = excluded.seen_at, accounts = excluded.accounts""",
            (self.name, len(mine)),
        )
        kept = renew_all(c, mine)
        for account in set(mine) - kept:
            self.lose(account, "its lease was not renewed: another worker holds it or its fence is stale")
        row = c.execute(
            "SELECT count(*) FROM workers WHERE seen_at > now() - make_interval(secs => ?)", (self.seconds,)
        ).fetchone()
        self.live = max(1, int(row[0]) if row else 0)
        self.share = math.ceil(len(self.accounts) / self.live)
        with self.lock:
            count = len([h for h in self.held.values() if not h.lost])
            leaving = any(h.leaving for h in self.held.values())
        if count < self.share:
            self.take(self.share - count)
        elif count > self.share and not leaving:
            self.hand_back(count - self.share)
        notify.status(self.status_line())

    def status_line(self) -> str:
        with self.lock:
            count = len(self.held)
        return (
            f"{count} of {len(self.accounts)} accounts held (fair share {self.share}, {self.live} live "
            f"worker{'s' if self.live != 1 else ''})"
        )

    def take(self, wanted: int) -> None:
        """Free or expired leases (or a dead holder's on this host), up to `wanted`, for at most one beat's
        length: however many are free, the leases already held are renewed again before any can expire."""
        deadline = time.monotonic() + self.seconds / 3
        names = [a.name for a in self.accounts]
        busy = {
            str(r[0])
            for r in self.conn.execute(
                "SELECT account, holder FROM leases WHERE expires_at > now() AND account = ANY(?)", (names,)
            )
            if not dead_here(str(r[1]))
        }
        with self.lock:
            skip = set(self.held) | busy | self.refused
        for account in self.accounts:
            if wanted <= 0 or time.monotonic() > deadline:
                return
            if account.name not in skip:
                try:
                    self.take_one(account)
                except LockHeld:
                    continue  # another worker was quicker
                wanted -= 1

    def take_one(self, account: Account) -> None:
        cfg = replace(account.cfg, metrics_listen=None)  # the worker serves one metrics endpoint for all
        lease = Lease(self.url, account.name, account.state.lease_seconds, cfg.http.lease_needed, account.state.shown)
        with self.conn.raw.transaction():
            taken = lease.acquire(self.conn, cfg.asana.settle_seconds)
        store = PgStore(account.state, self.conn, lease)
        store.taken = taken
        try:
            wiring = compose.wire(cfg)
            compose.claim(store, cfg)
        except SyncdError as exc:
            log.error("account %r (%s): %s; this worker leaves it alone", account.name, account.path, exc)
            self.refused.add(account.name)
            with self.conn.raw.transaction():
                lease.release(self.conn)
            return
        if self.metrics:
            self.metrics.took(lease, taken)
        rt = wiring.runtime(cfg, store, self.hooks)
        taken.announce(account.name)
        with self.lock:
            self.held[account.name] = Held(account, store, rt, wiring.monitor, time.monotonic() + taken.wait_seconds)

    def hand_back(self, surplus: int) -> None:
        """The `surplus` accounts above the fair share, the last of DIR's order this worker holds: each released
        after its cycle in progress. All at once, so a fleet of many accounts balances within a beat or two;
        no thrashing, as no worker takes beyond its own share."""
        with self.lock:
            names = sorted((a for a, h in self.held.items() if not h.lost), reverse=True)[:surplus]
            going = [self.held[name] for name in names]
            for held in going:
                held.leaving = True
            idle = [h for h in going if not h.running]
        log.info(
            "handing back %d account(s) (%s): %d held, fair share %d of %d accounts over %d live workers",
            len(going),
            ", ".join(repr(h.account.name) for h in going[:5]) + (", ..." if len(going) > 5 else ""),
            len(self.held),
            self.share,
            len(self.accounts),
            self.live,
        )
        for held in idle:
            self.drop(held)

    def reload(self, accounts: list[Account]) -> None:
        """SIGHUP with DIR read again (and valid): the folder's accounts from now on. A held account whose file
        is gone or changed is handed back cleanly once its cycle in progress ends; the next beat takes the
        changed ones again under their new config (no settle: the release was clean), and the new ones."""
        if accounts[0].state.url != self.url:
            raise ConfigError(
                f"{accounts[0].path} [state]: the database changed; this worker keeps using "
                f"{self.accounts[0].state.shown} and its leases. Restart it to switch databases."
            )
        fresh = {a.name: a for a in accounts}
        with self.lock:
            self.accounts = accounts
            self.seconds = min(a.state.lease_seconds for a in accounts)
            self.refused.clear()  # a config that could not be served gets another chance
            going = [h for n, h in self.held.items() if not h.lost and fresh.get(n) != h.account]
            for held in going:
                held.leaving = True
            idle = [h for h in going if not h.running]
        for held in going:
            gone = "left the folder" if held.account.name not in fresh else "changed"
            log.info("account %r %s: handing it back after its cycle in progress", held.account.name, gone)
        for held in idle:
            self.drop(held)
        if self.metrics:
            for account in accounts:
                self.metrics.leader.labels(account.name).set(1 if account.name in self.held else 0)

    def lose(self, account: str, why: str) -> None:
        with self.lock:
            held = self.held.get(account)
            if held is None or held.lost:
                return
            held.lost = True
            held.stopping.set()
            idle = not held.running
        log.error("lost the lease on account %r: %s; its cycles stopped", account, why)
        if idle:
            self.drop(held)

    def drop(self, held: Held) -> None:
        """Forget an account: released cleanly when it is handed back, untouched when it was lost."""
        name = held.account.name
        if held.leaving and not held.lost:
            try:
                with self.conn.raw.transaction():
                    held.store.lease.release(self.conn)
                log.info("handed back account %r (fence %d)", name, held.store.lease.fence)
            except psycopg.Error as exc:
                log.warning("could not release the lease on account %r (%s); it expires by itself", name, exc)
        held.monitor.close()
        with self.lock:
            self.held.pop(name, None)
        if self.metrics:
            self.metrics.leader.labels(name).set(0)

    # -- the cycles -----------------------------------------------------------------------------------------
    def start_due(self, now: float) -> None:
        with self.lock:
            due = [h for h in self.held.values() if not (h.running or h.leaving or h.lost) and h.due_at <= now]
            for held in due:
                held.running = True
        for held in due:
            self.pool.submit(self.cycle, held)

    def cycle(self, held: Held) -> None:
        """One cycle of one account, in a pool thread. Its failures are its own."""
        name, cfg = held.account.name, held.account.cfg
        wait = cfg.interval_seconds
        try:
            if not held.verified:
                schema.verify(held.rt.source, cfg.flows, cfg.crm.fields)
                held.verified = True
            for line in apply_requests(held.rt):
                log.info("account %r: %s", name, line)
            report = Cycle(held.rt, stopping=held.stopping.is_set).run()
            if self.metrics:
                self.metrics.observe_account_cycle(report, time.time())
            wait = early(report, cfg.interval_seconds) or cfg.interval_seconds
        except LeaseLost as exc:
            self.lose(name, str(exc))  # still running: dropped below
        except SyncdError as exc:
            log.error("account %r: the cycle failed: %s", name, exc)
        except Exception:
            log.exception("account %r: the cycle crashed; the next one runs on schedule", name)
        with self.lock:
            held.running = False
            held.due_at = time.monotonic() + wait
            gone = held.leaving or held.lost
        if gone:
            self.drop(held)

    # -- the process --------------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """The beat and the schedule, until `stop`; then a clean stop: every lease released, the heartbeat
        removed, so the other workers take the accounts at once."""
        migrate(self.conn)
        watchdog = notify.watchdog_timeout()
        next_beat = 0.0
        while not stop.is_set():
            now = time.monotonic()
            if now >= next_beat:
                try:
                    self.beat()
                    if watchdog:
                        notify.watchdog()
                except psycopg.Error as exc:
                    log.warning("the beat failed (%s); trying again in %.1fs", exc, self.seconds / 3)
                except Exception:
                    log.exception("the beat crashed; trying again in %.1fs", self.seconds / 3)
                next_beat = now + self.seconds / 3
            self.start_due(now)
            stop.wait(max(0.0, min(next_beat - time.monotonic(), SCHEDULE_STEP)))
        with self.lock:
            for held in self.held.values():
                held.stopping.set()
        self.pool.shutdown(wait=True)
        for held in list(self.held.values()):
            held.leaving = not held.lost
            self.drop(held)
        try:
            self.conn.execute("DELETE FROM workers WHERE worker = ?", (self.name,))
        except psycopg.Error as exc:
            log.warning("could not remove this worker's heartbeat (%s); it goes stale by itself", exc)
        self.connections.close()


def checked(accounts: list[Account], endpoint: tuple[str, str | None] | None) -> list[Account]:
    """Accounts read again on SIGHUP, or ConfigError when their `[metrics]` is not the endpoint served."""
    if (now := metrics_endpoint(accounts)) != endpoint:
        raise ConfigError(
            f"[metrics] is now {now!r}, but this worker serves {endpoint!r}; restart it to change the endpoint."
        )
    return accounts


def serve(load: Callable[[], list[Account]], hooks: Hooks) -> None:
    """`syncd run --accounts DIR` until SIGTERM/SIGINT. `load()` reads DIR; again on SIGHUP (`Worker.reload`),
    where a folder that does not load is logged and the running accounts are kept."""
    accounts = load()
    endpoint = metrics_endpoint(accounts)
    metrics = Metrics(stale_after_seconds=min(a.cfg.alerts.stale_after_seconds for a in accounts)) if endpoint else None
    worker = Worker(accounts, hooks, metrics)
    server = None
    if metrics and endpoint:
        listen, token_env = endpoint
        token = configuration.read_secret(token_env) if token_env else None
        server = metrics.serve(listen, bearer(metrics.app, token))[0]
    stop = threading.Event()
    beat = threading.Thread(target=worker.run, args=(stop,), name="syncd-beat")
    with signals(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as next_signal:
        beat.start()
        notify.ready()
        log.info(
            "syncd worker %s running: %d accounts in the folder, up to %d cycles at once, a beat every %.1fs",
            worker.name,
            len(accounts),
            CYCLE_THREADS,
            worker.seconds / 3,
        )
        while (signum := next_signal()) == signal.SIGHUP:
            try:
                worker.reload(checked(load(), endpoint))
                log.info("received SIGHUP: the folder's %d accounts are served from now on", len(worker.accounts))
            except ConfigError as exc:
                log.error("received SIGHUP, but the folder cannot be used: %s; the running accounts are kept", exc)
        log.info("received %s: finishing the cycles in progress, then handing back every lease", signum)
        notify.stopping()
        stop.set()
        beat.join()
    if server:
        server.shutdown()
        server.server_close()
    log.info("syncd worker stopped")
