"""Which conditions need an operator after a cycle, and what has already been said about them: the half of
alerting that decides. It sends and stores nothing, so that deciding is tested as values in, values out and a
broken webhook cannot change what is decided; `syncd.alerts` delivers it.

```
Facts (the caller computes them after a cycle; ApiWatch keeps what the HTTP layer saw)
  └─ conditions(facts) -> {key: message}               pure
       └─ decide(state, active, now) -> (state, alerts)  pure: one "firing" per new key, one "recovered" per
                                                          cleared key, nothing while a key stays active
```

Keys: `dead:<op_key>`, `duplicate:<marker>`, `auth:<service>`, `stale`, `quota:<service>`. A duplicate is an
event, not a state (nothing syncd does makes it go away): it fires once and is forgotten without a
"recovered" message when it is no longer reported.

`AlertState` is small and JSON-serialisable (`to_json`/`from_json`); the caller keeps it in the `meta` table so
that a restart neither repeats nor forgets an alert. Every message passes through `redact()`.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

from syncd.models import iso_s
from syncd.redact import redact

log = logging.getLogger("syncd.alerts")  # one logger for alerting, deciding and delivering alike

EVENTS = ("duplicate:",)  # keys that fire once and never "recover"
MAX_MESSAGE = 600  # characters of one alert's message


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
