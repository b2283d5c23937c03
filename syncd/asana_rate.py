"""The request rate Asana allows a workspace, as learned from its answers and kept in the database.

Why: Asana's limit depends on the workspace's plan (150 requests a minute on free plans, 1,500 on paid ones)
and no endpoint says which plan a workspace is on. syncd starts at the paid rate, and the first 429 with
`Retry-After` reveals the real limit (`syncd.ratelimit.TokenBucket.learn`). That limit is stored per
workspace in `meta`, so every later process starts at it: a free workspace sees one 429 for the life of the
database. `[asana] requests_per_minute`, when set, is a cap on top. `syncd reset-rate` forgets what was
learned (after a plan change); the next process starts at the paid rate again.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from syncd.models import iso_s

if TYPE_CHECKING:  # `syncd status` reads what was learned without importing the HTTP stack
    from syncd.http import HttpClient

PAID_PER_MINUTE = 1500  # where an unknown workspace starts
FREE_PER_MINUTE = 150  # the smallest documented limit: a 429 after fewer requests says nothing about the plan
PREFIX = "asana_rate:"


class Meta(Protocol):
    def get_meta(self, key: str) -> str | None: ...
    def set_meta(self, key: str, value: str) -> None: ...


@dataclass(frozen=True)
class LearnedRate:
    workspace: str
    per_minute: int
    learned_at: float

    def describe(self) -> str:
        return (
            f"{self.per_minute}/min for workspace {self.workspace}, learned from a 429 at "
            f"{iso_s(self.learned_at)} (after a plan change: 'syncd reset-rate')"
        )


def key(workspace: str) -> str:
    return PREFIX + workspace


def parse(workspace: str, value: str | None) -> LearnedRate | None:
    if value is None:
        return None
    data = json.loads(value)
    return LearnedRate(workspace, int(data["per_minute"]), float(data["learned_at"]))


def load(store: Meta, workspace: str) -> LearnedRate | None:
    return parse(workspace, store.get_meta(key(workspace)))


def save(store: Meta, workspace: str, per_minute: int, now: float) -> None:
    store.set_meta(key(workspace), json.dumps({"per_minute": per_minute, "learned_at": now}))


class Forgetting(Meta, Protocol):
    def delete_meta(self, key: str) -> bool: ...


def forget(store: Forgetting, workspace: str) -> LearnedRate | None:
    """`syncd reset-rate`: what was learned for `workspace` (None if nothing), now forgotten."""
    learned = load(store, workspace)
    store.delete_meta(key(workspace))
    return learned


def apply(http: HttpClient, store: Meta, workspace: str, clock: Callable[[], float], *, learn: bool) -> None:
    """Before a cycle: hold the client to what was learned for `workspace`; when `learn`, store what its next
    429 reveals."""
    learned = load(store, workspace)
    if learned is not None:
        for bucket in http.buckets.values():
            bucket.limit_to(learned.per_minute)
    if learn:
        http.on_limit = lambda per_minute: save(store, workspace, per_minute, clock())
