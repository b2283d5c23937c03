"""Alerts fire once per condition, stay quiet while it lasts, say "recovered" when it clears, reach Slack and
a JSON webhook over real HTTP, survive a broken webhook, and never carry a secret."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace

import pytest

from syncd import alerts
from syncd.alerts import Notifier
from syncd.conditions import Alert, AlertState, ApiWatch, Facts, conditions, decide
from syncd.errors import ConfigError
from syncd.http import HttpClient, RetryPolicy
from syncd.ratelimit import TokenBucket
from syncd.redact import register_secret
from syncd.sandbox.webhook import FakeWebhook
from syncd.sinks import asana
from syncd.sources import hubspot_profile, salesforce_profile

T0 = 1_760_000_000.0
SECRET = "xoxb-canary-token-5e1f0a9d"
SLACK_PATH = "/services/T0CANARY/B0CANARY/canary-slack-path-8c2e"
HOOK_PATH = "/hooks/canary-webhook-path-41ad?key=canary-query-77"

QUIET = Facts(now=T0, last_success_at=T0, stale_after_seconds=600)
CONDITIONS = {
    "dead:onboarding:hubspot:default:7": {"dead_ops": [("onboarding:hubspot:default:7", "Asana answered 400")]},
    "auth:asana": {"auth_failures": {"asana": "asana rejected the token (401): check ASANA_TOKEN"}},
    "stale": {"last_success_at": T0 - 3600},
    "quota:hubspot": {"quota": {"hubspot": (1000, 250_000)}, "quota_warn_fraction": 0.9},
}


def fast_client(name: str, origin: str) -> HttpClient:
    bucket = TokenBucket(rate=1000.0, capacity=1000.0, tokens=1000.0)
    return HttpClient(name, origin, {}, {"default": bucket}, timeout=(1.0, 0.5), retry=RetryPolicy(max_tries=1))


@pytest.fixture
def slack() -> Iterator[FakeWebhook]:
    with FakeWebhook(slack=True) as fake:
        yield fake  # type: ignore[misc]


@pytest.fixture
def webhook() -> Iterator[FakeWebhook]:
    with FakeWebhook(slack=False) as fake:
        yield fake  # type: ignore[misc]


@pytest.fixture
def notifier(slack: FakeWebhook, webhook: FakeWebhook) -> Iterator[Notifier]:
    urls = {"slack_url": slack.url + SLACK_PATH, "webhook_url": webhook.url + HOOK_PATH}
    notifier = Notifier(**urls, instance="hubspot/default", make_client=fast_client)
    yield notifier
    notifier.close()


def later(facts: Facts, seconds: float) -> Facts:
    """The same situation `seconds` later (a stale daemon stays as stale)."""
    last = None if facts.last_success_at is None else facts.last_success_at + seconds
    return replace(facts, now=facts.now + seconds, last_success_at=last)


def step(state: AlertState, facts: Facts) -> tuple[AlertState, list[Alert]]:
    """One cycle as the daemon runs it, with the state stored as JSON in between."""
    state, fired = decide(AlertState.from_json(state.to_json()), conditions(facts), facts.now)
    return state, fired


@pytest.mark.parametrize("key", CONDITIONS)
def test_a_condition_fires_once_stays_quiet_and_recovers(key: str) -> None:
    bad = replace(QUIET, **CONDITIONS[key])
    state, fired = step(AlertState(), bad)
    assert [(a.key, a.kind) for a in fired] == [(key, "firing")]
    for minutes in (1, 2, 30):
        state, fired = step(state, later(bad, 60 * minutes))
        assert fired == []
    state, fired = step(state, replace(QUIET, now=T0 + 3600, last_success_at=T0 + 3590))
    assert [(a.key, a.kind) for a in fired] == [(key, "recovered")]
    assert fired[0].message.startswith("recovered after ")
    state, fired = step(state, replace(QUIET, now=T0 + 3660, last_success_at=T0 + 3650))
    assert fired == [] and state.active == {}


def test_a_duplicate_fires_once_and_never_recovers() -> None:
    marker = "[syncd:hubspot:default:7:onboarding]"
    state, fired = step(AlertState(), replace(QUIET, duplicates=[marker]))
    assert [(a.key, a.kind) for a in fired] == [(f"duplicate:{marker}", "firing")]
    state, fired = step(state, later(replace(QUIET, duplicates=[marker]), 60))
    assert fired == []
    state, fired = step(state, replace(QUIET, now=T0 + 120, last_success_at=T0 + 120))
    assert fired == [] and state.active == {}


def test_stale_before_any_success_counts_from_the_start() -> None:
    never = Facts(now=T0, last_success_at=None, stale_after_seconds=600)
    assert conditions(never) == {}  # nothing to measure from
    assert conditions(replace(never, started_at=T0 - 300)) == {}
    stale = conditions(replace(never, started_at=T0 - 900))
    assert list(stale) == ["stale"] and "none since syncd started" in stale["stale"]


def test_quota_warns_only_past_the_fraction() -> None:
    facts = replace(QUIET, quota_warn_fraction=0.8)
    assert conditions(replace(facts, quota={"salesforce": (3001, 15000)})) == {}
    message = conditions(replace(facts, quota={"salesforce": (3000, 15000)}))["quota:salesforce"]
    assert "12,000 of 15,000" in message and "80%" in message


def test_several_conditions_at_once_and_independently() -> None:
    both = replace(QUIET, **CONDITIONS["stale"], **CONDITIONS["auth:asana"])
    state, fired = step(AlertState(), both)
    assert sorted(a.key for a in fired) == ["auth:asana", "stale"]
    state, fired = step(state, later(replace(both, auth_failures={}), 60))
    assert [(a.key, a.kind) for a in fired] == [("auth:asana", "recovered")]
    assert list(state.active) == ["stale"]


def test_slack_and_webhook_bodies_over_http(notifier: Notifier, slack: FakeWebhook, webhook: FakeWebhook) -> None:
    bad = replace(QUIET, **CONDITIONS["dead:onboarding:hubspot:default:7"], **CONDITIONS["auth:asana"])
    state = alerts.evaluate(AlertState(), bad, notifier)
    assert state.backlog == {}
    [text] = slack.texts()
    assert text.startswith("*syncd (hubspot/default)*")
    assert ":rotating_light: FIRING `auth:asana`: asana rejected the token (401): check ASANA_TOKEN" in text
    assert "`dead:onboarding:hubspot:default:7`: op onboarding:hubspot:default:7 is dead" in text
    assert [path for path, _ in slack.delivered] == [SLACK_PATH]
    events = [body for _, body in webhook.delivered]
    assert [(e["event"], e["condition"]) for e in events] == [
        ("firing", "auth:asana"),
        ("firing", "dead:onboarding:hubspot:default:7"),
    ]
    assert events[0] == {
        "event": "firing",
        "condition": "auth:asana",
        "message": "asana rejected the token (401): check ASANA_TOKEN",
        "at": "2025-10-09T08:53:20.000Z",
        "source": "syncd",
        "instance": "hubspot/default",
    }
    assert (webhook.requests[0].path, webhook.requests[0].query) == (
        "/hooks/canary-webhook-path-41ad",
        {"key": "canary-query-77"},
    )

    state = alerts.evaluate(state, later(bad, 60), notifier)  # still active: nothing sent
    assert len(slack.received) == 1 and len(webhook.received) == 2

    alerts.evaluate(state, replace(QUIET, now=T0 + 120, last_success_at=T0 + 120), notifier)
    assert ":white_check_mark: RECOVERED `auth:asana`: recovered after 2 min" in slack.texts()[1]
    assert [(e["event"], e["condition"]) for _, e in webhook.delivered[2:]] == [
        ("recovered", "auth:asana"),
        ("recovered", "dead:onboarding:hubspot:default:7"),
    ]


def test_a_broken_webhook_never_raises_and_the_alert_waits(
    notifier: Notifier, slack: FakeWebhook, webhook: FakeWebhook, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="syncd")
    slack.inject("500", times=2)
    webhook.inject("drop", times=2)
    bad = replace(QUIET, **CONDITIONS["stale"])
    state = alerts.evaluate(AlertState(), bad, notifier)
    assert {name: [a.key for a in left] for name, left in state.backlog.items()} == {
        "slack": ["stale"],
        "webhook": ["stale"],
    }
    state = alerts.evaluate(state, later(bad, 60), notifier)  # fails again: still kept, not doubled
    assert [a.key for a in state.backlog["slack"]] == ["stale"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage().split(" (")[0] for r in warnings] == [
        "alerts: could not post to slack",
        "alerts: could not post to webhook",
    ]  # once per channel, not once per cycle

    state = alerts.evaluate(state, later(bad, 120), notifier)  # works again: the backlog goes out
    assert state.backlog == {}
    assert len(slack.delivered) == 1 and "FIRING `stale`" in slack.texts()[0]
    assert [e["condition"] for _, e in webhook.delivered] == ["stale"]
    assert "alerts: slack works again" in caplog.text


def test_a_webhook_that_stops_answering_costs_one_timeout(notifier: Notifier, webhook: FakeWebhook) -> None:
    webhook.inject("slow", times=1, delay=0.8)
    many = replace(QUIET, dead_ops=[(f"f:hubspot:default:{i}", "400") for i in range(5)])
    state = alerts.evaluate(AlertState(), many, notifier)
    assert len(state.backlog["webhook"]) == 5  # the first timed out; the other four were not tried
    assert len(webhook.received) == 1


def test_a_refused_alert_is_dropped_and_the_rest_go_on(notifier: Notifier, webhook: FakeWebhook) -> None:
    webhook.inject("400")
    two = replace(QUIET, dead_ops=[("f:hubspot:default:1", "400"), ("f:hubspot:default:2", "400")])
    state = alerts.evaluate(AlertState(), two, notifier)
    assert state.backlog == {}
    assert [e["condition"] for _, e in webhook.delivered] == ["dead:f:hubspot:default:2"]


def test_rate_limited_by_slack_retries_after_the_next_cycle(notifier: Notifier, slack: FakeWebhook) -> None:
    slack.inject("429", retry_after=0)
    state = alerts.evaluate(AlertState(), replace(QUIET, **CONDITIONS["stale"]), notifier)
    assert [a.key for a in state.backlog["slack"]] == ["stale"]
    state = alerts.evaluate(state, later(replace(QUIET, **CONDITIONS["stale"]), 60), notifier)
    assert state.backlog == {} and len(slack.texts()) == 1


def test_no_secret_reaches_a_body_or_a_log(
    notifier: Notifier, slack: FakeWebhook, webhook: FakeWebhook, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="syncd")
    register_secret(SECRET)
    leaky = replace(
        QUIET,
        dead_ops=[("f:hubspot:default:1", f"Asana said: token {SECRET} is not allowed")],
        auth_failures={"hubspot": f"hubspot rejected {SECRET}; check HUBSPOT_TOKEN"},
    )
    state = alerts.evaluate(AlertState(), leaky, notifier)
    slack.inject("500")
    webhook.inject("404")
    alerts.evaluate(state, replace(QUIET, now=T0 + 60), notifier)  # recovered messages fail: logged
    sent = repr([body for _, body in slack.received + webhook.received])
    for canary in (SECRET, "canary-slack-path", "canary-webhook-path", "canary-query"):
        assert canary not in sent
        assert canary not in caplog.text
        assert canary not in state.to_json()
    assert "[redacted]" in slack.texts()[0]


def test_slack_markup_in_a_message_is_escaped(notifier: Notifier, slack: FakeWebhook) -> None:
    alerts.evaluate(AlertState(), replace(QUIET, dead_ops=[("k", "<!channel> & <https://x|y>")]), notifier)
    assert "&lt;!channel&gt; &amp; &lt;https://x|y&gt;" in slack.texts()[0]


def test_the_default_client_posts_to_slack(slack: FakeWebhook) -> None:
    notifier = Notifier(slack_url=slack.url + "/services/T/B/default")
    try:
        assert notifier.send([Alert("stale", "firing", "no cycle", T0)]) == {}
    finally:
        notifier.close()
    assert slack.texts() == ["*syncd*\n:rotating_light: FIRING `stale`: no cycle"]


def test_state_round_trips_and_survives_garbage(caplog: pytest.LogCaptureFixture) -> None:
    state, fired = step(AlertState(), replace(QUIET, **CONDITIONS["stale"]))
    state = replace(state, backlog={"slack": fired})
    assert AlertState.from_json(state.to_json()) == state
    assert AlertState.from_json(None) == AlertState()
    assert AlertState.from_json("{not json") == AlertState()
    assert "unreadable" in caplog.text


@pytest.mark.parametrize(
    "url",
    ["http://hooks.example.com/x", "ftp://127.0.0.1/x", "https://user:pw@hooks.example.com/x", "hooks.example.com"],
)
def test_a_webhook_url_must_be_https_except_loopback(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        alerts.check_url(url, "config.toml [alerts] slack_webhook_env = SLACK_WEBHOOK_URL")
    assert "hooks.example.com" not in str(caught.value) and "pw" not in str(caught.value)
    assert str(caught.value).startswith("config.toml [alerts] slack_webhook_env = SLACK_WEBHOOK_URL: ")


def test_https_and_loopback_urls_are_accepted() -> None:
    for url in ("https://hooks.slack.com/services/T/B/x", "http://127.0.0.1:8080/hook", "http://localhost/h"):
        assert alerts.check_url(url, "[alerts]") == url


def test_quota_and_rejected_credentials_from_what_the_http_layer_saw() -> None:
    watch = ApiWatch()
    daily = {"X-HubSpot-RateLimit-Daily": "250000", "X-HubSpot-RateLimit-Daily-Remaining": "9"}
    watch.observe("hubspot", 200, hubspot_profile.PROFILE.daily_quota(daily))
    watch.observe(
        "salesforce", 200, salesforce_profile.PROFILE.daily_quota({"Sforce-Limit-Info": "api-usage=14000/15000"})
    )
    watch.observe("asana", 200, asana.PROFILE.daily_quota({"X-Other": "1"}))
    assert watch.quota() == {"hubspot": (9, 250_000), "salesforce": (1000, 15000)}
    watch.rejected("asana", "asana rejected the token (401): check ASANA_TOKEN")
    watch.observe("asana", None, None)  # no answer proves nothing
    watch.observe("hubspot", 200, None)  # another service's success proves nothing either
    assert watch.auth_failures() == {"asana": "asana rejected the token (401): check ASANA_TOKEN"}
    watch.observe("asana", 201, None)
    assert watch.auth_failures() == {}


def test_a_long_retry_after_never_stalls_the_cycle(slack: FakeWebhook) -> None:
    notifier = Notifier(slack_url=slack.url + "/services/T/B/default")
    try:
        slack.inject("429", retry_after=3600)
        state = alerts.evaluate(AlertState(), replace(QUIET, **CONDITIONS["stale"]), notifier)
        state = alerts.evaluate(state, later(replace(QUIET, **CONDITIONS["stale"]), 60), notifier)  # no sleep
    finally:
        notifier.close()
    assert [a.key for a in state.backlog["slack"]] == ["stale"]
    assert len(slack.received) == 1  # the second delivery waited in the backlog, not in the cycle
