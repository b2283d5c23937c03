"""`syncd run`: one runtime for the life of the process, cycles on the daemon's schedule, SIGHUP reloads,
and the metrics endpoint. The daemon mechanics (scheduler, signals, sd_notify) are `syncd.daemon`.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable

from syncd import compose, notify
from syncd import config as configuration
from syncd.daemon import run_forever
from syncd.engine import Cycle
from syncd.errors import ConfigError, LeaseLost, LockHeld
from syncd.hooks import Hooks
from syncd.models import CycleReport
from syncd.operator import apply_requests
from syncd.sources import schema
from syncd.status_page import StatusPage, site
from syncd.store import read_status

log = logging.getLogger("syncd")
STANDBY_PAUSE_SECONDS = 0.5  # between tries for a lease another process holds: one cheap statement each


class Standby:
    """PostgreSQL: another syncd holds this account's lease. Wait and try again: `syncd run` takes over by
    itself once that lease expires. systemd hears READY (a standby is started, not stuck starting), STATUS=
    standby, and watchdog pings; the journal hears it once."""

    def __init__(self) -> None:
        self.since: float | None = None

    def __call__(self, held: LockHeld) -> None:
        if self.since is None:
            self.since = time.monotonic()
            log.info("standby: %s", held)
            notify.ready()
        notify.status(f"standby: {held}")
        notify.watchdog()
        time.sleep(STANDBY_PAUSE_SECONDS)


def serve(
    cfg: configuration.Config, load: Callable[[], configuration.Config], lock_fd: int | None, hooks: Hooks
) -> None:
    """Run until SIGTERM. `load()` reads the config file again for SIGHUP. A holder that loses its lease
    stops at once and raises `LeaseLost` (exit 75): systemd starts it again, as a standby."""
    lost: list[LeaseLost] = []
    with compose.wired(cfg, lock_fd, hooks, Standby()) as (rt, monitor):
        schema.verify(rt.source, cfg.flows, cfg.crm.fields)

        def cycle(stopping: threading.Event) -> CycleReport:
            try:
                for line in apply_requests(rt):
                    log.info("%s", line)
                return Cycle(rt, stopping=stopping.is_set).run()
            except LeaseLost as exc:
                log.error("%s", exc)
                lost.append(exc)
                signal.raise_signal(signal.SIGTERM)  # the daemon's own way out: stop, as on SIGTERM
                return CycleReport(errors=[str(exc)])

        def reload() -> None:
            """SIGHUP, between cycles: switch to the config file as it is now if it is valid; a ConfigError
            keeps the running config (logged, and shown in `systemctl status`)."""
            nonlocal cfg, rt, monitor
            new = load()
            if configuration.state(new) != configuration.state(cfg):
                raise ConfigError(
                    f"{new.path} [state]: the database changed; this syncd keeps using the one it started with "
                    "and its lock or lease. Restart syncd to switch databases."
                )
            new_rt, new_monitor = compose.rewire(rt, monitor, new)
            schema.verify(new_rt.source, new.flows, new.crm.fields)  # a bad name keeps the running config
            if new.interval_seconds != cfg.interval_seconds:
                log.warning(
                    "[schedule] interval_seconds changed to %g; it takes effect when syncd restarts",
                    new.interval_seconds,
                )
            cfg, rt, monitor = new, new_rt, new_monitor

        server = None
        if monitor.metrics and cfg.metrics_listen:
            monitor.metrics.observe_status(read_status(configuration.state(cfg), time.time()))
            token = configuration.read_secret(cfg.metrics_token_env) if cfg.metrics_token_env else None
            page = StatusPage(
                lambda: configuration.state(cfg), lambda: cfg.flows, time.time, lambda: cfg.alerts.stale_after_seconds
            )
            server, _ = monitor.metrics.serve(cfg.metrics_listen, site(page, monitor.metrics.app, token))
        rt.store.set_meta(
            "daemon",
            json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "interval_seconds": cfg.interval_seconds}),
        )
        try:
            run_forever(cycle, cfg.interval_seconds, reload=reload)
        finally:
            rt.store.set_meta("daemon", "null")
            monitor.close()
            if server:
                server.shutdown()
                server.server_close()
    if lost:
        raise lost[0]
