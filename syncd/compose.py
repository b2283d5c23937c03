"""Composition: a loaded config becomes HTTP clients, a source, a sink and engine settings.

The CLI imports this module only once it holds the single-instance lock, so a second `syncd` exits 75
without paying for the HTTP stack's imports.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit

from syncd import alerts, engine
from syncd import config as configuration
from syncd.breaker import Breaker
from syncd.http import HttpClient, Profile, RetryPolicy
from syncd.metrics import Metrics
from syncd.models import CycleReport
from syncd.ratelimit import TokenBucket
from syncd.redact import register_secret
from syncd.sinks.asana import PROFILE as ASANA
from syncd.sinks.asana import AsanaSink
from syncd.sources import Source, hubspot, pipedrive, salesforce
from syncd.store import Store, read_status


@dataclass
class Parts:
    """What one process needs for its cycles; `syncd run` keeps it so limiters and the breaker persist."""

    source: Source
    sink: AsanaSink
    settings: engine.Settings
    breaker: Breaker
    post: Callable[[str, dict], None] = lambda env, payload: None
    watch: alerts.ApiWatch = field(default_factory=alerts.ApiWatch)
    notifier: alerts.Notifier | None = None
    metrics: Metrics | None = None
    started_at: float = field(default_factory=time.time)


def build(cfg: configuration.Config) -> Parts:
    """Wire the parts from a loaded config. Reads the tokens; raises ConfigError when one is missing."""
    retry = RetryPolicy(
        max_tries=cfg.http.max_tries, max_time=cfg.http.max_time_seconds, base=cfg.http.retry_base_seconds
    )
    timeout = (cfg.http.connect_timeout, cfg.http.read_timeout)

    watch = alerts.ApiWatch()
    metrics = Metrics(stale_after_seconds=cfg.alerts.stale_after_seconds) if cfg.metrics_listen else None

    def observe(service: str, status: int | None, quota: tuple[int, int] | None) -> None:
        watch.observe(service, status, quota)
        if metrics:
            metrics.observe_request(service, status)

    def crm_client(auth_headers: dict[str, str], buckets: dict[str, TokenBucket], profile: Profile) -> HttpClient:
        return HttpClient(
            cfg.crm.kind,
            cfg.crm.base_url,
            auth_headers,
            buckets,
            profile,
            timeout=timeout,
            retry=retry,
            on_response=observe,
        )

    source = build_source(cfg, crm_client)
    asana_http = HttpClient(
        service="asana",
        base_url=cfg.asana.base_url,
        auth_headers={"Authorization": f"Bearer {configuration.read_secret(cfg.asana.token_env)}"},
        buckets={"default": TokenBucket.for_limit(cfg.asana.requests_per_minute, 60.0)},
        profile=ASANA,
        timeout=timeout,
        retry=retry,
        on_response=observe,
    )
    settings = engine.Settings(
        account=cfg.crm.account,
        workspace=cfg.asana.workspace,
        team=cfg.asana.team,
        overlap_seconds=cfg.crm.overlap_seconds,
        delay_seconds=cfg.crm.delay_seconds,
        settle_seconds=cfg.asana.settle_seconds,
        max_attempts=cfg.asana.max_attempts,
        retry_base_seconds=max(cfg.http.retry_base_seconds, 1.0) * 10,
        reconcile=os.environ.get("SYNCD_UNSAFE_BLIND_RETRY") != "1",
    )
    for flow in cfg.flows:
        if flow.notify_env:
            configuration.read_secret(flow.notify_env)  # a missing webhook URL fails now, not mid-cycle
    return Parts(
        source=source,
        sink=AsanaSink(asana_http, workspace=cfg.asana.workspace, team=cfg.asana.team),
        settings=settings,
        breaker=Breaker(threshold=3, cooldown=max(cfg.interval_seconds, 30.0)),
        post=webhook_poster(),
        watch=watch,
        notifier=build_notifier(cfg),
        metrics=metrics,
    )


ClientFactory = Callable[[dict[str, str], dict[str, TokenBucket], Profile], HttpClient]
TOKEN_HINT = "the variable named by [crm] token_env"


def build_source(cfg: configuration.Config, client: ClientFactory) -> Source:
    """The configured CRM's source. `client(auth_headers, buckets, profile)` builds its HTTP client; each builder
    below reads that CRM's secrets and settings from the config, which the sources never see."""
    return SOURCES[cfg.crm.kind](cfg, client)


def hubspot_source(cfg: configuration.Config, client: ClientFactory) -> Source:
    http = client(
        {"Authorization": f"Bearer {configuration.read_secret(cfg.crm.token_env)}"},
        {
            "default": TokenBucket.for_limit(cfg.crm.requests_per_10_seconds, 10.0),
            "search": TokenBucket.for_limit(cfg.crm.search_per_second, 1.0),
        },
        hubspot.PROFILE,
    )
    return hubspot.HubSpotSource(http, cfg.crm_properties, page_size=cfg.crm.page_size, credential_hint=TOKEN_HINT)


def salesforce_source(cfg: configuration.Config, client: ClientFactory) -> Source:
    client_id = configuration.read_secret(cfg.crm.client_id_env)
    client_secret = configuration.read_secret(cfg.crm.client_secret_env)
    refresh_token = configuration.read_secret(cfg.crm.refresh_token_env)
    http = client({}, {"default": TokenBucket.for_limit(cfg.crm.requests_per_10_seconds, 10.0)}, salesforce.PROFILE)
    return salesforce.SalesforceSource(
        http,
        cfg.crm_properties,
        client_id=client_id,
        client_secret=client_secret,
        refresh_token=refresh_token,
        api_version=cfg.crm.api_version,
        fields=cfg.crm.fields,
        page_size=cfg.crm.page_size,
        stop_percent=cfg.crm.api_usage_stop_percent,
        credential_hint="the variables named by [crm] client_id_env, client_secret_env, refresh_token_env",
    )


def pipedrive_source(cfg: configuration.Config, client: ClientFactory) -> Source:
    """The token goes in the `x-api-token` header, never the URL. Pipedrive's burst limit is per rolling 2 s
    (Lite 20, Growth 40, …); `requests_per_10_seconds` = 5x that, and the bucket spaces requests evenly."""
    http = client(
        {"x-api-token": configuration.read_secret(cfg.crm.token_env)},
        {"default": TokenBucket.for_limit(cfg.crm.requests_per_10_seconds, 10.0)},
        pipedrive.PROFILE,
    )
    return pipedrive.PipedriveSource(http, cfg.crm_properties, page_size=cfg.crm.page_size, credential_hint=TOKEN_HINT)


SOURCES: dict[str, Callable[[configuration.Config, ClientFactory], Source]] = {
    "hubspot": hubspot_source,
    "salesforce": salesforce_source,
    "pipedrive": pipedrive_source,
}


def webhook_poster() -> Callable[[str, dict], None]:
    """`post(env_name, payload)`: POST JSON once to the webhook URL held in that variable (a secret), for a
    flow's [flow.notify]. The same checks and client as the alert channels (`syncd.alerts`)."""
    clients: dict[str, tuple[HttpClient, str]] = {}

    def post(env: str, payload: dict) -> None:
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
    urls = {}
    for key, name, env in (
        ("slack_url", "slack_webhook_env", cfg.alerts.slack_webhook_env),
        ("webhook_url", "webhook_url_env", cfg.alerts.webhook_url_env),
    ):
        if env:
            urls[key] = alerts.check_url(configuration.read_secret(env), f"{cfg.path} [alerts] {name} = {env}")
    return alerts.Notifier(**urls, instance=f"{cfg.crm.kind}/{cfg.crm.account}") if urls else None


def after_cycle(cfg: configuration.Config, store: Store, parts: Parts, report: CycleReport) -> None:
    """Metrics, alerts and the health facts `syncd status` shows, after every cycle (never for a dry run)."""
    if report.dry_run:
        return
    now = time.time()
    status = read_status(cfg.state_path, now)
    for service, sentence in report.auth_failures.items():
        parts.watch.rejected(service, sentence)
    if parts.metrics:
        parts.metrics.observe_cycle(report, status)
    last = status["last_success_at"]
    facts = alerts.Facts(
        now=now,
        dead_ops=[(d["op_key"], d["reason"] or "no reason recorded") for d in status["dead_ops"]],
        duplicates=report.duplicates,
        auth_failures=parts.watch.auth_failures(),
        last_success_at=datetime.fromisoformat(last).timestamp() if last else None,
        stale_after_seconds=cfg.alerts.stale_after_seconds,
        quota=parts.watch.quota(),
        quota_warn_fraction=cfg.alerts.quota_warn_fraction,
        started_at=parts.started_at,
    )
    state = alerts.evaluate(alerts.AlertState.from_json(store.get_meta("alerts")), facts, parts.notifier)
    store.set_meta("alerts", state.to_json())
    health = {
        "breaker": parts.breaker.state(now),
        "quota": {service: {"remaining": r, "limit": lim} for service, (r, lim) in parts.watch.quota().items()},
        "next_run_at": now + cfg.interval_seconds,
        "alerts_firing": sorted(state.active),
    }
    store.set_meta("health", json.dumps(health))


def crash_hook() -> Callable[[str], None]:
    """`SYNCD_CRASH_AT=name[:n]` kills the process with SIGKILL the n-th time it reaches step `name`.
    For the reliability tests: it lets them crash at each step of the state machine on purpose."""
    spec = os.environ.get("SYNCD_CRASH_AT", "")
    name, _, nth = spec.partition(":")
    remaining = [int(nth or 1)]

    def step(reached: str) -> None:
        if reached == name:
            remaining[0] -= 1
            if remaining[0] <= 0:
                os.kill(os.getpid(), signal.SIGKILL)

    return step


def one_cycle(
    cfg: configuration.Config,
    store: Store,
    parts: Parts | None = None,
    *,
    dry_run: bool = False,
    stopping: Callable[[], bool] = lambda: False,
) -> CycleReport:
    parts = parts or build(cfg)
    return engine.run_once(
        parts.source,
        parts.sink,
        store,
        cfg.flows,
        parts.settings,
        clock=time.time,
        dry_run=dry_run,
        step=crash_hook(),
        stopping=stopping,
        breaker=parts.breaker,
        post=parts.post,
    )


@contextmanager
def locked_store(cfg: configuration.Config, lock_fd: int | None = None) -> Iterator[Store]:
    store = Store.open(cfg.state_path, lock_fd)
    try:
        yield store
    finally:
        store.close()
