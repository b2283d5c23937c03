"""Composition: the only place that knows config, environment, secrets and vendor quirks. A loaded config
becomes HTTP clients, a source, a sink, engine settings and monitoring: one `Runtime`.

The CLI imports this module only once it holds the single-instance lock, so a second `syncd` exits 75
without paying for the HTTP stack's imports.
"""

from __future__ import annotations

import dataclasses
import importlib
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from syncd import alerts
from syncd import config as configuration
from syncd.breaker import Breaker
from syncd.hooks import Hooks
from syncd.http import HttpClient, RetryPolicy
from syncd.metrics import Metrics
from syncd.models import CycleReport
from syncd.ratelimit import TokenBucket
from syncd.redact import register_secret
from syncd.runtime import Runtime, Settings
from syncd.sinks.asana import AsanaSink
from syncd.sources import Source
from syncd.store import Store, open_store, read_status
from syncd.store.read import Health


@dataclass
class Monitor:
    """What the process watches beside the cycles: API facts, alert delivery and metrics. After each cycle
    it updates metrics and alerts and saves the health facts that `syncd status` shows."""

    cfg: configuration.Config
    breaker: Breaker
    watch: alerts.ApiWatch = field(default_factory=alerts.ApiWatch)
    notifier: alerts.Notifier | None = None
    metrics: Metrics | None = None
    started_at: float = field(default_factory=time.time)
    store: Store | None = None

    def observe(self, service: str, status: int | None, headers: Mapping[str, str]) -> None:
        self.watch.observe(service, status, headers)
        if self.metrics:
            self.metrics.observe_request(service, status)

    def after_cycle(self, report: CycleReport) -> None:
        assert self.store is not None, "after_cycle runs on a runtime with its store"
        now = time.time()
        status = read_status(self.cfg.state_path, now)
        for service, sentence in report.auth_failures.items():
            self.watch.rejected(service, sentence)
        if self.metrics:
            self.metrics.observe_cycle(report, status)
        facts = alerts.Facts(
            now=now,
            dead_ops=[(d.op_key, d.reason or "no reason recorded") for d in status.dead_ops],
            duplicates=report.duplicates,
            auth_failures=self.watch.auth_failures(),
            last_success_at=status.last_success_at,
            stale_after_seconds=self.cfg.alerts.stale_after_seconds,
            quota=self.watch.quota(),
            quota_warn_fraction=self.cfg.alerts.quota_warn_fraction,
            started_at=self.started_at,
        )
        state = alerts.evaluate(alerts.AlertState.from_json(self.store.get_meta("alerts")), facts, self.notifier)
        self.store.set_meta("alerts", state.to_json())
        health = Health(
            breaker=self.breaker.state(now),
            quota={service: {"remaining": r, "limit": lim} for service, (r, lim) in self.watch.quota().items()},
            next_run_at=now + self.cfg.interval_seconds,
            alerts_firing=tuple(sorted(state.active)),
        )
        self.store.set_meta("health", health.to_json())

    def close(self) -> None:
        if self.notifier:
            self.notifier.close()


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
        self.monitor.store = store
        return Runtime(
            source=self.source,
            sink=self.sink,
            store=store,
            flows=cfg.flows,
            settings=self.settings,
            breaker=self.monitor.breaker,
            hooks=hooks,
            post=self.post,
            after_cycle=self.monitor.after_cycle,
        )


def wire(cfg: configuration.Config, previous: Monitor | None = None) -> Wiring:
    """Clients, source, sink and settings from a loaded config. Reads the tokens; raises ConfigError when one
    is missing. A reload passes the `previous` monitor: its breaker, API facts and metrics live on."""
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

    def crm_client(auth_headers: dict[str, str], buckets: dict[str, TokenBucket]) -> HttpClient:
        return HttpClient(
            cfg.crm.kind,
            cfg.crm.base_url,
            auth_headers,
            buckets,
            timeout=timeout,
            retry=retry,
            on_response=monitor.observe,
        )

    source: Source = importlib.import_module(f"syncd.sources.{cfg.crm.kind}").from_config(cfg, crm_client)
    asana_http = HttpClient(
        service="asana",
        base_url=cfg.asana.base_url,
        auth_headers={"Authorization": f"Bearer {configuration.read_secret(cfg.asana.token_env)}"},
        buckets={"default": TokenBucket.for_limit(cfg.asana.requests_per_minute, 60.0)},
        timeout=timeout,
        retry=retry,
        on_response=monitor.observe,
    )
    for flow in cfg.flows:
        if flow.notify_env:
            configuration.read_secret(flow.notify_env)  # a missing webhook URL fails now, not mid-cycle
    settings = Settings(
        account=cfg.crm.account,
        workspace=cfg.asana.workspace,
        team=cfg.asana.team,
        overlap_seconds=cfg.crm.overlap_seconds,
        delay_seconds=cfg.crm.delay_seconds,
        settle_seconds=cfg.asana.settle_seconds,
        max_attempts=cfg.asana.max_attempts,
        retry_base_seconds=max(cfg.http.retry_base_seconds, 1.0) * 10,
    )
    sink = AsanaSink(asana_http, workspace=cfg.asana.workspace, team=cfg.asana.team)
    return Wiring(source, sink, settings, monitor, webhook_poster())


@contextmanager
def runtime(cfg: configuration.Config, lock_fd: int | None = None, hooks: Hooks | None = None) -> Iterator[Runtime]:
    """The runtime for one process, its store open under the lock (`lock_fd`: already held by the caller)."""
    with wired(cfg, lock_fd, hooks) as (rt, _):
        yield rt


@contextmanager
def wired(
    cfg: configuration.Config, lock_fd: int | None = None, hooks: Hooks | None = None
) -> Iterator[tuple[Runtime, Monitor]]:
    """`runtime`, and its monitor for the daemon (metrics server, reloads)."""
    wiring = wire(cfg)
    store = open_store(cfg.state_path, lock_fd)
    try:
        yield wiring.runtime(cfg, store, hooks or Hooks()), wiring.monitor
    finally:
        store.close()
        wiring.monitor.close()


def rewire(rt: Runtime, monitor: Monitor, cfg: configuration.Config) -> tuple[Runtime, Monitor]:
    """The same store, breaker and metrics with everything else from a new config (SIGHUP)."""
    wiring = wire(cfg, monitor)
    return dataclasses.replace(wiring.runtime(cfg, rt.store, rt.hooks), clock=rt.clock), wiring.monitor


def webhook_poster() -> Callable[[str, dict[str, Any]], None]:
    """`post(env_name, payload)`: POST JSON once to the webhook URL held in that variable (a secret), for a
    flow's [flow.notify]. The same checks and client as the alert channels (`syncd.alerts`)."""
    clients: dict[str, tuple[HttpClient, str]] = {}

    def post(env: str, payload: dict[str, Any]) -> None:
        if env not in clients:
            url = alerts.check_url(configuration.read_secret(env), f"[flow.notify] slack_webhook_env = {env}")
            parts = urlsplit(url)
            origin = f"{parts.scheme}://{parts.netloc}"
            path = url[len(origin) :] or "/"
            register_secret(path)  # the path of a Slack webhook is the secret: never logged
            clients[env] = (alerts.webhook_client("webhook", origin), path)
        client, path = clients[env]
        client.call("POST", path, json=payload, idempotent=False)

    return post


def build_notifier(cfg: configuration.Config) -> alerts.Notifier | None:
    def url(name: str, env: str | None) -> str | None:
        return alerts.check_url(configuration.read_secret(env), f"{cfg.path} [alerts] {name} = {env}") if env else None

    slack = url("slack_webhook_env", cfg.alerts.slack_webhook_env)
    webhook = url("webhook_url_env", cfg.alerts.webhook_url_env)
    if not slack and not webhook:
        return None
    return alerts.Notifier(slack_url=slack, webhook_url=webhook, instance=f"{cfg.crm.kind}/{cfg.crm.account}")
