"""`syncd run`: one runtime for the life of the process, cycles on the daemon's schedule, SIGHUP reloads,
and the metrics endpoint. The daemon mechanics (scheduler, signals, sd_notify) are `syncd.daemon`.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable

from syncd import compose
from syncd import config as configuration
from syncd.daemon import run_forever
from syncd.engine import Cycle
from syncd.errors import ConfigError
from syncd.hooks import Hooks
from syncd.models import CycleReport
from syncd.operator import apply_requests
from syncd.sources import schema
from syncd.status_page import StatusPage, site
from syncd.store import read_status

log = logging.getLogger("syncd")


def serve(cfg: configuration.Config, load: Callable[[], configuration.Config], lock_fd: int, hooks: Hooks) -> None:
    """Run until SIGTERM. `load()` reads the config file again for SIGHUP."""
    with compose.wired(cfg, lock_fd, hooks) as (rt, monitor):
        schema.verify(rt.source, cfg.flows, cfg.crm.fields)

        def cycle(stopping: threading.Event) -> CycleReport:
            for line in apply_requests(rt):
                log.info("%s", line)
            return Cycle(rt, stopping=stopping.is_set).run()

        def reload() -> None:
            """SIGHUP, between cycles: switch to the config file as it is now if it is valid; a ConfigError
            keeps the running config (logged, and shown in `systemctl status`)."""
            nonlocal cfg, rt, monitor
            new = load()
            if new.state_path != cfg.state_path:
                raise ConfigError(
                    f"{new.path} [state]: path changed to {new.state_path}; this syncd keeps using "
                    f"{cfg.state_path} and its lock. Restart syncd to switch databases."
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
            monitor.metrics.observe_status(read_status(cfg.state_path, time.time()))
            token = configuration.read_secret(cfg.metrics_token_env) if cfg.metrics_token_env else None
            page = StatusPage(
                lambda: cfg.state_path, lambda: cfg.flows, time.time, lambda: cfg.alerts.stale_after_seconds
            )
            server, _ = monitor.metrics.serve(cfg.metrics_listen, site(page, monitor.metrics.app, token))
        rt.store.set_meta("daemon", json.dumps({"pid": os.getpid(), "interval_seconds": cfg.interval_seconds}))
        try:
            run_forever(cycle, cfg.interval_seconds, reload=reload)
        finally:
            rt.store.set_meta("daemon", "null")
            monitor.close()
            if server:
                server.shutdown()
                server.server_close()
