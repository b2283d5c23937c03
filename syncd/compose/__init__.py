"""Composition: the only place that knows config, environment, secrets and vendor quirks. A loaded config
becomes HTTP clients, a source, a sink, engine settings and monitoring: one `Runtime`.

The CLI imports this module only once it holds the single-instance lock, so a second `syncd` exits 75
without paying for the HTTP stack's imports.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from syncd import config as configuration
from syncd.asana_rate import FREE_PER_MINUTE, PAID_PER_MINUTE
from syncd.breaker import Breaker
from syncd.compose.monitor import Monitor, build_notifier, webhook_poster
from syncd.compose.sources import build_source
from syncd.config_values import PostgresState
from syncd.errors import ConfigError, LockHeld
from syncd.hooks import Hooks
from syncd.http import HttpClient, RetryPolicy
from syncd.metrics import Metrics
from syncd.profile import Profile
from syncd.ratelimit import TokenBucket
from syncd.runtime import Runtime, Settings
from syncd.sinks.asana import PROFILE as ASANA
from syncd.sinks.asana import READY_FOR, AsanaSink
from syncd.sources import Source
from syncd.store import Store, open_store, view

__all__ = ["Monitor", "Wiring", "dry_runtime", "rewire", "runtime", "settings", "wire", "wired"]


@dataclass
class Wiring:
    """A runtime without its store yet: built first, so a missing token fails before the database is
    touched."""

    source: Source
    sink: AsanaSink
    settings: Settings
    monitor: Monitor
    post: Callable[[str, dict[str, Any]], None]

    def runtime(self, cfg: configuration.Config, store: Store, hooks: Hooks) -> Runtime:
        self.monitor.store, self.monitor.clock = store, hooks.clock
        return Runtime(
            source=self.source,
            sink=self.sink,
            store=store,
            flows=cfg.flows,
            settings=self.settings,
            breaker=self.monitor.breaker,
            hooks=hooks,
            clock=hooks.clock,
            post=self.post,
            after_cycle=self.monitor.after_cycle,
            before_cycle=self.monitor.before_cycle,
        )


def wire(cfg: configuration.Config, previous: Monitor | None = None) -> Wiring:
    """Clients, source, sink and settings from a loaded config. Reads the tokens; raises ConfigError when one
    is missing. A reload passes the `previous` monitor: its breaker, API facts and metrics live on."""
    configuration.require_tokens(cfg)
    retry = RetryPolicy(
        max_tries=cfg.http.max_tries, max_time=cfg.http.max_time_seconds, base=cfg.http.retry_base_seconds
    )
    timeout = (cfg.http.connect_timeout, cfg.http.read_timeout)
    notifier = build_notifier(cfg)
    if previous is not None:
        monitor = dataclasses.replace(previous, cfg=cfg, notifier=notifier)
    else:
        breaker = Breaker(threshold=3, cooldown=max(cfg.interval_seconds, 30.0))
        metrics = Metrics(stale_after_seconds=cfg.alerts.stale_after_seconds) if cfg.metrics_listen else None
        monitor = Monitor(cfg, breaker, notifier=notifier, metrics=metrics)

    def crm_client(auth_headers: dict[str, str], buckets: dict[str, TokenBucket], profile: Profile) -> HttpClient:
        return HttpClient(
            cfg.crm.kind,
            cfg.crm.base_url,
            auth_headers,
            buckets,
            profile,
            timeout=timeout,
            retry=retry,
            on_response=monitor.observe,
        )

    source = build_source(cfg, crm_client)
    asana_http = HttpClient(
        service="asana",
        base_url=cfg.asana.base_url,
        auth_headers={"Authorization": f"Bearer {configuration.read_secret(cfg.asana.token_env)}"},
        buckets={"default": asana_bucket(cfg.asana.requests_per_minute)},
        profile=ASANA,
        timeout=timeout,
        retry=retry,
        on_response=monitor.observe,
    )
    for flow in cfg.flows:
        if flow.notify_env:
            configuration.read_secret(flow.notify_env)  # a missing webhook URL fails now, not mid-cycle
    sink = AsanaSink(
        asana_http,
        workspace=cfg.asana.workspace,
        team=cfg.asana.team,
        enable=(*READY_FOR, *cfg.asana.enable_changes),
        disable=cfg.asana.disable_changes,
        oauth=cfg.asana.auth == "oauth",
    )
    return Wiring(source, sink, settings(cfg), monitor, webhook_poster())


def settings(cfg: configuration.Config) -> Settings:
    """The engine's settings: no secret among them, so `backfill --dry-run` renders bodies without tokens."""
    return Settings(
        account=cfg.crm.account,
        workspace=cfg.asana.workspace,
        team=cfg.asana.team,
        overlap_seconds=cfg.crm.overlap_seconds,
        delay_seconds=cfg.crm.delay_seconds,
        settle_seconds=cfg.asana.settle_seconds,
        listing_lag_seconds=cfg.asana.listing_lag_seconds,
        max_attempts=cfg.asana.max_attempts,
        retry_base_seconds=max(cfg.http.retry_base_seconds, 1.0) * 10,
    )


def asana_bucket(cap: int | None) -> TokenBucket:
    """Asana's limit is the workspace's plan's: start at the operator's cap, else at the paid plan's rate, and
    learn from the first 429 (`syncd.asana_rate`); nothing learned ever raises the rate above the cap."""
    return TokenBucket.for_limit(cap or PAID_PER_MINUTE, 60.0, learn_floor=FREE_PER_MINUTE)


@contextmanager
def runtime(cfg: configuration.Config, lock_fd: int | None = None, hooks: Hooks | None = None) -> Iterator[Runtime]:
    """The runtime for one process, its store open under the lock (`lock_fd`: already held by the caller)."""
    with wired(cfg, lock_fd, hooks) as (rt, _):
        yield rt


@contextmanager
def wired(
    cfg: configuration.Config,
    lock_fd: int | None = None,
    hooks: Hooks | None = None,
    standby: Callable[[LockHeld], None] | None = None,
) -> Iterator[tuple[Runtime, Monitor]]:
    """`runtime`, and its monitor for the daemon (metrics server, reloads). With `standby`, a PostgreSQL lease
    held by another process is waited for (`standby(why)` between tries) instead of raising `LockHeld`."""
    wiring = wire(cfg)
    while True:
        try:
            store = open_store(
                configuration.state(cfg),
                lock_fd,
                settle_seconds=cfg.asana.settle_seconds,
                post_seconds=cfg.http.lease_needed,
            )
            break
        except LockHeld as exc:
            if standby is None:
                raise
            standby(exc)
    try:
        claim(store, cfg)
        if wiring.monitor.metrics and isinstance(configuration.state(cfg), PostgresState):
            from syncd.store.postgres import PgStore

            assert isinstance(store, PgStore) and store.taken is not None
            wiring.monitor.metrics.took(store.lease, store.taken)
        yield wiring.runtime(cfg, store, hooks or Hooks()), wiring.monitor
    finally:
        store.close()
        wiring.monitor.close()


@contextmanager
def dry_runtime(cfg: configuration.Config, hooks: Hooks | None = None) -> Iterator[Runtime]:
    """A runtime for `--dry-run`: the database as it is, read-only and without the lock (an empty one in
    memory when there is none yet), so that a dry run creates and changes nothing on disk."""
    wiring = wire(cfg)
    try:
        with view(configuration.state(cfg)) as store:
            claim(store, cfg, record=False)
            yield wiring.runtime(cfg, store, hooks or Hooks())
    finally:
        wiring.monitor.close()


def claim(store: Store, cfg: configuration.Config, *, record: bool = True) -> None:
    """The database knows whose state it holds (CRM kind, account, API host; no secrets) and refuses another's
    config before any request: two portals in one database would share deal ids and skip a baseline."""
    mine = {"crm": cfg.crm.kind, "account": cfg.crm.account, "host": urlsplit(cfg.crm.base_url).hostname or ""}
    recorded = store.get_meta("identity")
    if recorded is None:
        if record:
            store.set_meta("identity", json.dumps(mine, sort_keys=True))
        return
    theirs = json.loads(recorded)
    if theirs != mine:
        raise ConfigError(
            f"{cfg.path} [state] path: {configuration.state(cfg)} holds the state of {theirs['crm']} account "
            f"{theirs['account']!r} at {theirs['host']}, not of this config's [crm] account = {cfg.crm.account!r} "
            f"({cfg.crm.kind} at {mine['host']}). Give each CRM account its own [state] path (a new one starts "
            "with a baseline), or set [crm] account back."
        )


def rewire(rt: Runtime, monitor: Monitor, cfg: configuration.Config) -> tuple[Runtime, Monitor]:
    """The same store, breaker and metrics with everything else from a new config (SIGHUP)."""
    wiring = wire(cfg, monitor)
    return dataclasses.replace(wiring.runtime(cfg, rt.store, rt.hooks), directory=rt.directory), wiring.monitor
