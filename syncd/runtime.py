"""The runtime: everything one process needs for its cycles, built once by `syncd.compose` and handed to
the engine (`syncd.engine.Cycle`), the follow-ups (`syncd.effects`) and the operator commands.

`syncd run` keeps one runtime for its life, so the rate limiters, the breaker and the store persist between
cycles. Tests build one over the fakes with an injected clock, and arm `Hooks` to crash at a named step or
to switch reconcile off for the negative control; the product never reads a test switch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from syncd.breaker import Breaker
from syncd.directory import Directory
from syncd.flows import Flow
from syncd.hooks import Hooks
from syncd.models import CycleReport
from syncd.sinks.asana import AsanaSink
from syncd.sources import Source
from syncd.store import Store


@dataclass(frozen=True)
class Settings:
    account: str
    workspace: str
    team: str
    overlap_seconds: float
    delay_seconds: float
    settle_seconds: float
    max_attempts: int
    retry_base_seconds: float = 30.0
    listing_lag_seconds: float | None = None  # the settle of a create the server was done with (None: settle_seconds)


def _no_post(webhook_env: str, payload: dict[str, Any]) -> None:
    return None


def _no_report(report: CycleReport) -> None:
    return None


def _nothing() -> None:
    return None


@dataclass
class Runtime:
    """`post(webhook_env, payload)` sends a flow's Slack message; `after_cycle(report)` updates metrics,
    alerts and the health facts `syncd status` shows (never called for a dry run)."""

    source: Source
    sink: AsanaSink
    store: Store
    flows: tuple[Flow, ...]
    settings: Settings
    breaker: Breaker = field(default_factory=Breaker)
    clock: Callable[[], float] = time.time
    hooks: Hooks = field(default_factory=Hooks)
    post: Callable[[str, dict[str, Any]], None] = _no_post
    after_cycle: Callable[[CycleReport], None] = _no_report
    before_cycle: Callable[[], None] = _nothing
    directory: Directory = field(default_factory=Directory)  # what this process knows exists in Asana
