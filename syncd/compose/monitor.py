"""What the process watches beside the cycles: API facts, alert delivery, metrics, and the health facts that
`syncd status` shows; plus the poster for flows' Slack messages, which shares the alert channels' client."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from syncd import alerts, conditions
from syncd import config as configuration
from syncd.breaker import Breaker
from syncd.http import HttpClient
from syncd.metrics import Metrics
from syncd.models import CycleReport
from syncd.redact import register_secret
from syncd.store import Store
from syncd.store.read import Health, Watched


@dataclass
class Monitor:
    """What the process watches beside the cycles: API facts, alert delivery and metrics. After each cycle
    it updates metrics and alerts and saves the health facts that `syncd status` shows."""

    cfg: configuration.Config
    breaker: Breaker
    watch: conditions.ApiWatch = field(default_factory=conditions.ApiWatch)
    notifier: alerts.Notifier | None = None
    metrics: Metrics | None = None
    started_at: float = field(default_factory=time.time)
    store: Store | None = None
    clock: Callable[[], float] = time.time
    _watched: Watched | None = field(default=None, repr=False)  # read by the last `after_cycle`
    _saved: str | None = field(default=None, repr=False)  # the alert state as last read or saved

    def observe(self, service: str, status: int | None, quota: tuple[int, int] | None) -> None:
        """`HttpClient.on_response` for every client: quota as the client's vendor profile read it."""
        self.watch.observe(service, status, quota)
        if self.metrics:
            self.metrics.observe_request(service, status)

    def before_cycle(self) -> None:
        """The alert conditions as `syncd status` sees them, at the start of a cycle too: cycles that are
        killed before they finish never reach `after_cycle`, and must still make the stale alert fire.

        What the previous cycle's `after_cycle` read stands in for a second read: between two cycles only
        this process writes the ledger. A cycle that did not reach `after_cycle` leaves nothing to reuse."""
        watched, self._watched = self._watched or self._store().watched(), None
        self._alerts(self.clock(), watched, [])

    def after_cycle(self, report: CycleReport) -> None:
        now = self.clock()
        store = self._store()
        for service, sentence in report.auth_failures.items():
            self.watch.rejected(service, sentence)
        if self.metrics:
            status = store.status(now, self.cfg.alerts.stale_after_seconds)
            self.metrics.observe_cycle(report, status)
            self._watched = Watched(status.dead_ops, status.last_success_at)
        else:
            self._watched = store.watched()
        state = self._alerts(now, self._watched, report.duplicates)
        health = Health(
            breaker=self.breaker.state(now),
            quota={service: {"remaining": r, "limit": lim} for service, (r, lim) in self.watch.quota().items()},
            next_run_at=now + self.cfg.interval_seconds,
            alerts_firing=tuple(sorted(state.active)),
        )
        store.set_meta("health", health.to_json())

    def _alerts(self, now: float, watched: Watched, duplicates: list[str]) -> conditions.AlertState:
        """Evaluate and deliver; the state is saved only when it changed (read once, then kept here)."""
        facts = conditions.Facts(
            now=now,
            dead_ops=[(d.op_key, d.reason or "no reason recorded") for d in watched.dead_ops],
            duplicates=duplicates,
            auth_failures=self.watch.auth_failures(),
            last_success_at=watched.last_success_at,
            stale_after_seconds=self.cfg.alerts.stale_after_seconds,
            quota=self.watch.quota(),
            quota_warn_fraction=self.cfg.alerts.quota_warn_fraction,
            started_at=self.started_at,
        )
        store = self._store()
        if self._saved is None:
            self._saved = store.get_meta("alerts") or ""
        state = alerts.evaluate(conditions.AlertState.from_json(self._saved), facts, self.notifier)
        if (text := state.to_json()) != self._saved:
            store.set_meta("alerts", text)
            self._saved = text
        return state

    def _store(self) -> Store:
        assert self.store is not None, "the monitor runs on a runtime with its store"
        return self.store

    def close(self) -> None:
        if self.notifier:
            self.notifier.close()


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
