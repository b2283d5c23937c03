"""Alert delivery: what `syncd.conditions` decided, told to Slack and/or a JSON webhook once when each
condition starts and once when it clears. It is the half of alerting that does I/O (it posts, remembers
which channel is failing, and logs), apart from the pure half that decides.

```
evaluate(state, facts, notifier) -> state
  ├─ conditions(facts), decide(...)           syncd.conditions: pure
  └─ Notifier.deliver(state, alerts) -> state  HTTP, through an HttpClient per webhook
```

A webhook POST is not idempotent, so it is sent once (`idempotent=False`), and an alert that could not be
delivered stays in the state's backlog for that channel and is sent again after the next cycle. Its retry is a
state transition, like an op's; a duplicate alert is harmless, a lost one is not. A failure is logged once (a
warning) until the channel works again, and never raises into the daemon. Every message passes through
`redact()`; the webhook URLs are secrets.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from syncd.conditions import Alert, AlertState, Facts, conditions, decide
from syncd.config import is_loopback
from syncd.errors import ConfigError, RejectedError, SyncdError, TransientError
from syncd.http import HttpClient, RetryPolicy
from syncd.models import iso_s
from syncd.ratelimit import TokenBucket
from syncd.redact import redact, register_secret

log = logging.getLogger("syncd.alerts")

MAX_BACKLOG = 200  # undelivered alerts kept per channel (the oldest are dropped)
SLACK_LINES = 20  # alerts listed in one Slack message; the rest are counted
REFUSED = (400, 413, 422)  # statuses that reject one message, not the webhook


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
