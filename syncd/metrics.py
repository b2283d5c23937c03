"""Prometheus metrics and `/healthz` for `syncd run` (`[metrics] listen = "127.0.0.1:9464"`).

`Metrics` owns its own `CollectorRegistry`, not prometheus_client's global one, so tests and processes never
share counters. The engine's caller feeds it: `observe_request` from the HTTP layer's hook (every call to a
CRM, to Asana and to a webhook), `observe_cycle` after each cycle with the `read_status` dict.

    syncd_cycles_total{result="ok"|"failed"}        counter
    syncd_deals_seen_total                          counter
    syncd_api_requests_total{service,status}        counter; status "none" when no response arrived
    syncd_rate_limited_total{service}               counter of 429 answers
    syncd_ops{state}                                gauge, from the ops table
    syncd_cursor_age_seconds                        gauge, now − cursor at scrape time (NaN before a cursor)
    syncd_last_success_timestamp_seconds            gauge, epoch seconds (0 before the first success)
    syncd_up                                        gauge, 1 while /healthz would answer 200
    syncd_leader{account}                           gauge, PostgreSQL: 1 while this process holds the lease
    syncd_takeovers_total                           counter, PostgreSQL: leases taken that another process held
    syncd_fenced_writes_total                       counter, PostgreSQL: writes refused by a stale fence

`/healthz` answers 200 `ok` while the last successful cycle ended less than `stale_after_seconds` ago (or
syncd started less than that ago and none has succeeded yet), else 503 with the reason. Any other path
serves the metrics (`syncd run` serves its status page, `syncd.status_page`, on `/`). `serve` binds exactly
the address it is given: keep it on loopback unless a scraper elsewhere needs it, and then set a token.
"""

from __future__ import annotations

import math
import socket
import threading
import time
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from syncd.errors import ConfigError
from syncd.models import OP_STATES, CycleReport
from syncd.redact import redact

if TYPE_CHECKING:
    from syncd.store.lease import Lease, Taken
    from syncd.store.read import Status

Environ = dict[str, Any]
StartResponse = Callable[..., Any]


class Metrics:
    def __init__(self, *, stale_after_seconds: float = 900.0, clock: Callable[[], float] = time.time) -> None:
        # Imported here so that config.py can check `listen` with `parse_listen` without loading it.
        from prometheus_client import CollectorRegistry, Counter, Gauge, make_wsgi_app

        self.stale_after_seconds, self.clock = stale_after_seconds, clock
        self.started_at = clock()
        self._lock = threading.Lock()
        self._last_success: float | None = None
        self._cursor_at: float | None = None
        self._last_error: str | None = None
        self.registry = r = CollectorRegistry()
        self.cycles = Counter("syncd_cycles_total", "Cycles run, by result.", ["result"], registry=r)
        self.deals_seen = Counter("syncd_deals_seen_total", "Deals read from the CRM (re-reads count).", registry=r)
        self.requests = Counter(
            "syncd_api_requests_total",
            "HTTP calls, by service and status (none: no answer).",
            ["service", "status"],
            registry=r,
        )
        self.rate_limited = Counter("syncd_rate_limited_total", "429 answers, by service.", ["service"], registry=r)
        self.ops = Gauge("syncd_ops", "Ops by state.", ["state"], registry=r)
        cursor_age = Gauge("syncd_cursor_age_seconds", "Seconds between now and the CRM cursor.", registry=r)
        last_success = Gauge(
            "syncd_last_success_timestamp_seconds", "When the last successful cycle ended (epoch).", registry=r
        )
        self.leader = Gauge(
            "syncd_leader",
            "PostgreSQL: 1 while this process holds the account's lease, else 0.",
            ["account"],
            registry=r,
        )
        self.takeovers = Counter(
            "syncd_takeovers_total",
            "PostgreSQL: leases this process took that another process held before (expired, dead or handed back).",
            registry=r,
        )
        self.fenced_writes = Counter(
            "syncd_fenced_writes_total", "PostgreSQL: writes refused because this process's fence is stale.", registry=r
        )
        up = Gauge("syncd_up", "1 while /healthz answers 200, else 0.", registry=r)
        for result in ("ok", "failed"):
            self.cycles.labels(result)
        for state in OP_STATES:
            self.ops.labels(state).set(0)
        cursor_age.set_function(self._cursor_age)
        last_success.set_function(lambda: self._last_success or 0.0)
        up.set_function(lambda: 1.0 if self.health()[0] else 0.0)
        self._metrics_app: Callable[[Environ, StartResponse], Iterable[bytes]] = make_wsgi_app(self.registry)

    # -- observations ----------------------------------------------------------------------------------
    def observe_request(self, service: str, status: int | None) -> None:
        self.requests.labels(service, "none" if status is None else str(status)).inc()
        if status == 429:
            self.rate_limited.labels(service).inc()

    def observe_cycle(self, report: CycleReport, status: Status) -> None:
        self.cycles.labels("failed" if report.errors else "ok").inc()
        self.deals_seen.inc(report.deals_seen)
        self.observe_status(status)

    def took(self, lease: Lease, taken: Taken) -> None:
        """This process took `lease` (`syncd run`, or one account of a fleet): it leads the account, a lease
        another process held before counts as a takeover, and each write its fence refuses from now on counts."""
        lease.on_fenced = self.fenced_writes.inc
        self.leader.labels(lease.account).set(1)
        if taken.previous:
            self.takeovers.inc()

    def observe_account_cycle(self, report: CycleReport, now: float) -> None:
        """`syncd run --accounts`: one account's cycle; /healthz follows the last success of any account."""
        self.cycles.labels("failed" if report.errors else "ok").inc()
        self.deals_seen.inc(report.deals_seen)
        if not report.errors:
            with self._lock:
                self._last_success = now

    def observe_status(self, status: Status) -> None:
        """Take the gauges from `read_status` (also at startup, before the first cycle)."""
        for state, count in status.ops.items():
            self.ops.labels(state.value).set(count)
        if status.lease is not None:
            from syncd.store.read import holder_name

            held = status.lease.live and status.lease.holder == holder_name()
            self.leader.labels(status.lease.account).set(1 if held else 0)
        last = status.last_cycle
        with self._lock:
            self._last_success = status.last_success_at
            self._cursor_at = None if status.cursor_ms is None else status.cursor_ms / 1000
            self._last_error = None if last is None or last.ok else redact(str(last.error))[:300]

    # -- reading ---------------------------------------------------------------------------------------
    def health(self) -> tuple[bool, str]:
        now = self.clock()
        with self._lock:
            last, error = self._last_success, self._last_error
        limit = self.stale_after_seconds
        if last is not None and now - last <= limit:
            return True, "ok"
        if last is None and now - self.started_at <= limit:
            return True, "ok"
        since = (
            f"for {now - last:.0f}s" if last is not None else f"since syncd started {now - self.started_at:.0f}s ago"
        )
        reason = f"no successful cycle {since} (limit {limit:g}s)"
        return False, reason + (f"; last error: {error}" if error else "")

    def text(self) -> str:
        from prometheus_client import generate_latest

        return generate_latest(self.registry).decode()

    def _cursor_age(self) -> float:
        with self._lock:
            cursor = self._cursor_at
        return math.nan if cursor is None else self.clock() - cursor

    # -- serving ---------------------------------------------------------------------------------------
    def app(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz":
            ok, reason = self.health()
            body = (reason + "\n").encode()
            headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
            start_response("200 OK" if ok else "503 Service Unavailable", headers)
            return [body]
        return self._metrics_app(environ, start_response)

    def serve(
        self, listen: str, app: Callable[[Environ, StartResponse], Iterable[bytes]] | None = None
    ) -> tuple[WSGIServer, threading.Thread]:
        """Serve `app` (default: `self.app`; `syncd run` puts the status page in front of it) on `listen`
        ("host:port", "[::1]:port"; port 0 picks a free one) from a daemon thread. Stop it with
        `server.shutdown(); server.server_close()`."""
        host, port = parse_listen(listen)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        server_class = type("MetricsServer", (_Server,), {"address_family": family})
        try:
            server: WSGIServer = make_server(
                host, port, app or self.app, server_class=server_class, handler_class=_Handler
            )
        except OSError as exc:
            raise ConfigError(
                f"[metrics] listen = {listen!r}: cannot listen there ({exc.strerror or exc}). Pick a free port "
                "or an address of this machine."
            ) from None
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="metrics")
        thread.daemon = True
        thread.start()
        return server, thread


def parse_listen(value: str, where: str = "[metrics] listen") -> tuple[str, int]:
    """("host", port) from "host:port" or "[v6]:port", or ConfigError with a sentence."""
    host, sep, port = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f'{where} = {value!r} must look like "127.0.0.1:9464" (host:port).')
    return host, int(port)


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Handler(WSGIRequestHandler):
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass
