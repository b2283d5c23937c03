"""Alerts and metrics wired into real runs: a dead op alerts once and recovers; the daemon serves metrics."""

from __future__ import annotations

import json
import socket
import urllib.request

import pytest

from syncd.sandbox.webhook import FakeWebhook

from conftest import Syncd, qualify, running_daemon


@pytest.fixture
def hook():
    fake = FakeWebhook(slack=False).start()
    yield fake
    fake.stop()


def test_a_dead_op_alerts_once_then_recovers_after_retry(syncd: Syncd, hook: FakeWebhook) -> None:
    (syncd.workdir / ".env").write_text(f"ALERT_WEBHOOK={hook.url}/alerts/secret-path-123\n")
    syncd.config(alerts={"webhook_url_env": "ALERT_WEBHOOK"}, asana={"team": "1299999999999999"})
    (deal,) = qualify(syncd, 1)
    syncd("once")
    syncd("once")
    fired = [body for _, body in hook.delivered if body["event"] == "firing"]
    assert [b["condition"] for b in fired] == [f"dead:onboarding:hubspot:default:{deal}"]
    assert "secret-path-123" not in json.dumps(fired)
    status = json.loads(syncd("status", "--json").stdout)
    assert status["alerts_firing"] == [f"dead:onboarding:hubspot:default:{deal}"]
    syncd.config(alerts={"webhook_url_env": "ALERT_WEBHOOK"})
    syncd.ok("retry", deal)
    assert [b["event"] for _, b in hook.delivered] == ["firing", "recovered"]


def test_credentials_rejected_alerts_and_names_the_variable(syncd: Syncd, hook: FakeWebhook) -> None:
    (syncd.workdir / ".env").write_text(f"ALERT_WEBHOOK={hook.url}/a\n")
    syncd.config(alerts={"webhook_url_env": "ALERT_WEBHOOK"})
    syncd("once", HUBSPOT_TOKEN="pat-wrong-value-0000")
    (body,) = [b for _, b in hook.delivered]
    assert body["condition"] == "auth:hubspot" and "token_env" in body["message"]
    assert "pat-wrong-value-0000" not in json.dumps(body)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> str:
    """The daemon's /metrics text; empty while it does not answer yet."""
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return ""


def test_the_daemon_serves_prometheus_metrics_and_healthz(syncd: Syncd) -> None:
    port = free_port()
    syncd.config(metrics={"listen": f"127.0.0.1:{port}"}, schedule={"interval_seconds": 1})
    qualify(syncd, 2)
    with running_daemon(syncd.start("run"), until=lambda: 'syncd_ops{state="created"} 2.0' in scrape(port)):
        text = scrape(port)
        health = urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
    assert 'syncd_ops{state="created"} 2.0' in text
    assert 'syncd_api_requests_total{service="asana",status="201"}' in text
    assert "syncd_cycles_total" in text and "syncd_cursor_age_seconds" in text
    assert health.status == 200


def test_a_daemon_that_takes_the_lease_after_another_counts_a_takeover_and_leads(pg_syncd: Syncd) -> None:
    port = free_port()
    pg_syncd.ok("once")  # the account's first holder, released cleanly when it ends
    pg_syncd.config(metrics={"listen": f"127.0.0.1:{port}"}, schedule={"interval_seconds": 1})
    with running_daemon(pg_syncd.start("run"), until=lambda: "syncd_cycles_total" in scrape(port)):
        text = scrape(port)
    assert "syncd_takeovers_total 1.0" in text
    assert 'syncd_leader{account="default"} 1.0' in text
    assert "syncd_fenced_writes_total 0.0" in text
