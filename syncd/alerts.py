"""Alerts: which conditions need an operator after a cycle, told to Slack and/or a JSON webhook once when
each starts and once when it clears.

```
Facts (the caller computes them after a cycle)
  └─ conditions(facts) -> {key: message}               pure
       └─ decide(state, active, now) -> (state, alerts)  pure: one "firing" per new key, one "recovered" per
            │                                             cleared key, nothing while a key stays active
            └─ Notifier.deliver(state, alerts) -> state   HTTP, through an HttpClient per webhook
```

Keys: `dead:<op_key>`, `duplicate:<marker>`, `auth:<service>`, `stale`, `quota:<service>`. A duplicate is an
event, not a state (nothing syncd does makes it go away): it fires once and is forgotten without a
"recovered" message when it is no longer reported.

`AlertState` is small and JSON-serialisable (`to_json`/`from_json`); the caller keeps it in the `meta` table so
that a restart neither repeats nor forgets an alert. Delivery: a webhook POST is not idempotent, so it is sent
once (`idempotent=False`), and an alert that could not be delivered stays in the state's backlog for that
channel and is sent again after the next cycle. Its retry is a state transition, like an op's; a duplicate
alert is harmless, a lost one is not. A failure is logged once (a warning) until the channel works again, and
never raises into the daemon. Every message passes through `redact()`; the webhook URLs are secrets.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal
from urllib.parse import urlsplit

from syncd.config import is_loopback
from syncd.errors import ConfigError, RejectedError, SyncdError, TransientError
from syncd.http import HttpClient, RetryPolicy
from syncd.models import iso_s
from syncd.ratelimit import TokenBucket
from syncd.redact import redact, register_secret

log = logging.getLogger("syncd.alerts")

EVENTS = ("duplicate:",)  # keys that fire once and never "recover"
MAX_MESSAGE = 600  # characters of one alert's message
MAX_BACKLOG = 200  # undelivered alerts kept per channel (the oldest are dropped)
SLACK_LINES = 20  # alerts listed in one Slack message; the rest are counted
REFUSED = (400, 413, 422)  # statuses that reject one message, not the webhook


@dataclass(frozen=True)
class Facts:
    """What the caller knows after a cycle. `auth_failures` maps a service to a sentence naming the credential
    variable to check (never its value); keep a service listed until a later call to it succeeds, since a
    cycle that did not call it proves nothing (`ApiWatch` does that). `quota`: service -> (remaining, limit)
    of the daily allocation. `started_at`: when watching began, used for `stale` before any success."""

    now: float
    dead_ops: Sequence[tuple[str, str]] = ()  # (op_key, reason)
    duplicates: Sequence[str] = ()  # markers reconcile found on more than one project
    auth_failures: Mapping[str, str] = field(default_factory=dict)
    last_success_at: float | None = None
    stale_after_seconds: float = 900.0
    quota: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    quota_warn_fraction: float = 0.8  # of the daily allocation used
    started_at: float | None = None


@dataclass(frozen=True)
class Alert:
    key: str
    kind: Literal["firing", "recovered"]
    message: str
    at: float


@dataclass(frozen=True)
class Since:
    at: float
    message: str


@dataclass
class AlertState:
    active: dict[str, Since] = field(default_factory=dict)
    backlog: dict[str, list[Alert]] = field(default_factory=dict)  # channel -> undelivered, oldest first

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": 1,
                "active": {key: asdict(since) for key, since in sorted(self.active.items())},
                "backlog": {name: [asdict(a) for a in alerts] for name, alerts in self.backlog.items() if alerts},
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str | None) -> AlertState:
        """The state saved by `to_json`; an empty state for None, or (with a warning) for unreadable text: the
        worst that follows is that active conditions alert once more."""
        if not text:
            return cls()
        try:
            raw = json.loads(text)
            return cls(
                active={key: Since(**since) for key, since in raw["active"].items()},
                backlog={name: [Alert(**a) for a in alerts] for name, alerts in raw["backlog"].items()},
            )
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            log.warning("alerts: the saved alert state is unreadable (%s); starting afresh", type(exc).__name__)
            return cls()


def conditions(facts: Facts) -> dict[str, str]:
    """The active conditions, key -> message for the operator (redacted, bounded)."""
    active: dict[str, str] = {}
    for op_key, reason in facts.dead_ops:
        active[f"dead:{op_key}"] = (
            f"op {op_key} is dead and needs a human: {reason}. See 'syncd status', fix the cause, then run "
            "'syncd retry DEAL_ID'."
        )
    for marker in facts.duplicates:
        active[f"duplicate:{marker}"] = (
            f"Asana has more than one project with the marker {marker}. syncd kept the oldest; check the "
            "others by hand and archive the extras."
        )
    for service, sentence in facts.auth_failures.items():
        active[f"auth:{service}"] = sentence
    since = facts.last_success_at if facts.last_success_at is not None else facts.started_at
    if since is not None and facts.now - since > facts.stale_after_seconds:
        what = f"last success {iso_s(facts.last_success_at)}" if facts.last_success_at else "none since syncd started"
        active["stale"] = (
            f"no successful cycle for {duration(facts.now - since)} ({what}); the alert starts after "
            f"{duration(facts.stale_after_seconds)}. See 'syncd status' and the journal for the error."
        )
    for service, (remaining, limit) in facts.quota.items():
        used = limit - remaining
        if limit > 0 and used / limit >= facts.quota_warn_fraction:
            active[f"quota:{service}"] = (
                f"{service}: {used:,} of {limit:,} daily API calls used ({100 * used / limit:.0f}%, warning from "
                f"{100 * facts.quota_warn_fraction:.0f}%). Calls fail once it is spent, until the allocation refills."
            )
    return {key: _clean(message) for key, message in sorted(active.items())}


def decide(state: AlertState, active: Mapping[str, str], now: float) -> tuple[AlertState, list[Alert]]:
    """Compare the active conditions with those already alerted. Pure."""
    alerts: list[Alert] = []
    kept: dict[str, Since] = {}
    for key, message in sorted(active.items()):
        if key in state.active:
            kept[key] = state.active[key]
        else:
            kept[key] = Since(now, message)
            alerts.append(Alert(key, "firing", message, now))
    for key, since in sorted(state.active.items()):
        if key not in active and not key.startswith(EVENTS):
            message = _clean(f"recovered after {duration(now - since.at)}: {since.message}")
            alerts.append(Alert(key, "recovered", message, now))
    return replace(state, active=kept), alerts


def duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 120:
        return f"{seconds} s"
    minutes = seconds // 60
    return f"{minutes} min" if minutes < 120 else f"{minutes // 60} h {minutes % 60} min"


def _clean(message: str) -> str:
    message = redact(message)
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 1] + "…"


# -- what the HTTP layer saw ---------------------------------------------------------------------------------
class ApiWatch:
    """Facts the HTTP hook sees, kept for the whole process: the latest daily quota per service, and which
    services' credentials were rejected and have not answered a call successfully since. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._quota: dict[str, tuple[int, int]] = {}
        self._rejected: dict[str, str] = {}

    def observe(self, service: str, status: int | None, quota: tuple[int, int] | None) -> None:
        """`HttpClient.on_response`: `quota` is the daily allocation as the client's vendor profile read it."""
        with self._lock:
            if quota is not None and status is not None:
                self._quota[service] = quota
            if status is not None and 200 <= status < 300:
                self._rejected.pop(service, None)

    def rejected(self, service: str, sentence: str) -> None:
        """Record an AuthError the engine reported: `sentence` names the variable to check."""
        with self._lock:
            self._rejected[service] = redact(sentence)

    def quota(self) -> dict[str, tuple[int, int]]:
        with self._lock:
            return dict(self._quota)

    def auth_failures(self) -> dict[str, str]:
        with self._lock:
            return dict(self._rejected)


# -- delivery ------------------------------------------------------------------------------------------------
def check_url(url: str, where: str) -> str:
    """A webhook URL, validated: https, or http to a loopback address (the sandbox). The message never shows
    the URL: it is a secret."""
    parts = urlsplit(url.strip())
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ConfigError(f"{where}: the webhook URL has a port that is not a number. Copy the URL again.") from None
    if parts.username is not None or parts.password is not None:
        raise ConfigError(f"{where}: the webhook URL must not contain a user name or password.")
    host = parts.hostname
    if not host or not (parts.scheme == "https" or (parts.scheme == "http" and is_loopback(host))):
        raise ConfigError(
            f"{where}: the webhook URL must be an https:// URL (http:// is allowed only for 127.0.0.1/localhost, "
            "e.g. the sandbox). The value is not shown because it is a secret."
        )
    return url.strip()


def webhook_client(service: str, origin: str) -> HttpClient:
    """The default client for one webhook: short timeouts, no HTTP-level retries (see the module docstring)."""
    bucket = TokenBucket(rate=1.0, capacity=5.0, tokens=5.0)  # Slack: about one message a second per webhook
    retry = RetryPolicy(max_tries=1)
    # max_wait: a long Retry-After ends the call (the alert waits in the backlog) instead of stalling the cycle
    return HttpClient(service, origin, {}, {"default": bucket}, timeout=(3.0, 10.0), retry=retry, max_wait=5.0)


@dataclass
class _Channel:
    name: str
    client: HttpClient
    path: str
    failing: bool = False


class Notifier:
    """Posts alerts to Slack (`{"text": ...}`, one message per delivery) and/or a generic JSON webhook (one
    POST per alert: `{"event", "condition", "message", "at", "source", "instance"}`)."""

    def __init__(
        self,
        *,
        slack_url: str | None = None,
        webhook_url: str | None = None,
        instance: str = "",
        make_client: Callable[[str, str], HttpClient] = webhook_client,
    ) -> None:
        self.instance = instance
        self.channels: list[_Channel] = []
        for name, url in (("slack", slack_url), ("webhook", webhook_url)):
            if url:
                url = check_url(url, f"[alerts] {name} URL")
                parts = urlsplit(url)
                path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
                register_secret(url)
                if len(path) >= 16:  # long enough to carry a token; a short path is not worth hiding
                    register_secret(path)
                self.channels.append(_Channel(name, make_client(name, f"{parts.scheme}://{parts.netloc}"), path))

    def close(self) -> None:
        for channel in self.channels:
            channel.client.close()

    def deliver(self, state: AlertState, alerts: Sequence[Alert]) -> AlertState:
        """Send the backlog and then `alerts` on every channel; return the state with what is still undelivered."""
        backlog: dict[str, list[Alert]] = {}
        for channel in self.channels:
            queue = [*state.backlog.get(channel.name, []), *alerts]
            if len(queue) > MAX_BACKLOG:
                log.warning("alerts: %s backlog full; dropping the %d oldest", channel.name, len(queue) - MAX_BACKLOG)
                queue = queue[-MAX_BACKLOG:]
            if left := self._send(channel, queue):
                backlog[channel.name] = left
        return replace(state, backlog=backlog)

    def send(self, alerts: Sequence[Alert]) -> dict[str, list[Alert]]:
        """Send `alerts` on every channel; return what each could not deliver."""
        return {c.name: left for c in self.channels if (left := self._send(c, list(alerts)))}

    def _send(self, channel: _Channel, queue: list[Alert]) -> list[Alert]:
        if not queue:
            return []
        batches = [queue] if channel.name == "slack" else [[a] for a in queue]
        for i, batch in enumerate(batches):
            body = self._slack(batch) if channel.name == "slack" else self._event(batch[0])
            try:
                _post(channel.client, channel.path, body)
            except RejectedError as exc:
                if exc.status in REFUSED:  # this message, not the channel: sending it again would not help
                    log.warning(
                        "alerts: %s refused %d alert(s), dropped: %s", channel.name, len(batch), redact(str(exc))
                    )
                    continue
                return self._failed(channel, exc, batches[i:])
            except SyncdError as exc:
                return self._failed(channel, exc, batches[i:])  # one failure per delivery, never one per alert
        if channel.failing:
            log.info("alerts: %s works again", channel.name)
            channel.failing = False
        return []

    @staticmethod
    def _failed(channel: _Channel, exc: SyncdError, batches: list[list[Alert]]) -> list[Alert]:
        undelivered = [a for batch in batches for a in batch]
        level = logging.DEBUG if channel.failing else logging.WARNING
        what = "alerts: could not post to %s (%s); %d alert(s) kept to send after the next cycle"
        log.log(level, what, channel.name, redact(str(exc)), len(undelivered))
        channel.failing = True
        return undelivered

    def _slack(self, alerts: list[Alert]) -> dict[str, Any]:
        name = f"syncd ({self.instance})" if self.instance else "syncd"
        lines = [f"*{name}*"]
        for alert in alerts[:SLACK_LINES]:
            mark = ":rotating_light: FIRING" if alert.kind == "firing" else ":white_check_mark: RECOVERED"
            lines.append(f"{mark} `{alert.key}`: {alert.message}")
        if len(alerts) > SLACK_LINES:
            lines.append(f"…and {len(alerts) - SLACK_LINES} more; see 'syncd status'.")
        text = redact("\n".join(lines))
        return {"text": text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")}

    def _event(self, alert: Alert) -> dict[str, Any]:
        return {
            "event": alert.kind,
            "condition": redact(alert.key),
            "message": redact(alert.message),
            "at": iso_s(alert.at),
            "source": "syncd",
            "instance": self.instance,
        }


def _post(client: HttpClient, path: str, body: dict[str, Any]) -> None:
    try:
        client.call("POST", path, json=body, idempotent=False)
    except TransientError as exc:
        if exc.status is not None and 200 <= exc.status < 300:
            return  # delivered: a receiver that labels a plain answer as JSON still took the alert
        raise


def evaluate(state: AlertState, facts: Facts, notifier: Notifier | None) -> AlertState:
    """The whole step after a cycle: conditions, deduplication, delivery. Returns the state to save."""
    state, alerts = decide(state, conditions(facts), facts.now)
    return notifier.deliver(state, alerts) if notifier else replace(state, backlog={})
