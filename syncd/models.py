"""The values that flow between modules: deals read from a CRM, ops to perform in Asana, and reports.

Frozen dataclasses, no I/O. Times are epoch milliseconds (`*_ms`, CRM modification times, which must keep
their precision) or epoch seconds (`float`, everything syncd schedules itself).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from syncd.marker import Identity


class State(StrEnum):
    """Where an op (a project) or an effect (a follow-up) stands in the exactly-once state machine
    (DESIGN.md §3). An op ends `created`, an effect `done`; everything else is shared."""

    PENDING = "pending"
    IN_FLIGHT = "in_flight"
    UNKNOWN = "unknown"
    CREATED = "created"
    DONE = "done"
    DEAD = "dead"


OP_STATES = (State.PENDING, State.IN_FLIGHT, State.UNKNOWN, State.CREATED, State.DEAD)
EFFECT_STATES = (State.PENDING, State.IN_FLIGHT, State.UNKNOWN, State.DONE, State.DEAD)


def iso_ms(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_s(seconds: float | None) -> str | None:
    return None if seconds is None else iso_ms(int(seconds * 1000))


@dataclass(frozen=True)
class Deal:
    """One version of a CRM deal, normalised. `properties` holds the raw CRM values by their own names."""

    id: str
    updated_at_ms: int
    name: str | None = None
    stage: str | None = None
    amount: float | None = None
    close_date: str | None = None
    pipeline: str | None = None
    owner: str | None = None
    properties: Mapping[str, Any] = field(default_factory=dict)
    created_at_ms: int | None = None  # when the CRM created the deal (None: the CRM did not say)
    merged_ids: tuple[str, ...] = ()  # deals the CRM merged into this one

    @classmethod
    def from_values(cls, deal_id: str, updated_at_ms: int, values: Mapping[str, Any]) -> Deal:
        """Rebuild a deal from what the store recorded (`values()` of the version it saw)."""
        return cls(
            id=deal_id,
            updated_at_ms=updated_at_ms,
            name=values.get("name"),
            stage=values.get("stage"),
            amount=values.get("amount"),
            close_date=values.get("close_date"),
            pipeline=values.get("pipeline"),
            owner=values.get("owner"),
            properties=values,
            created_at_ms=values.get("created_at_ms"),
            merged_ids=tuple(values.get("merged_ids") or ()),
        )

    def values(self) -> dict[str, Any]:
        """What `when` and the project templates see: raw properties, then the normalised names."""
        values = dict(self.properties)
        values.update(
            id=self.id,
            name=self.name,
            stage=self.stage,
            amount=self.amount,
            close_date=self.close_date,
            pipeline=self.pipeline,
            owner=self.owner,
            updated_at=iso_ms(self.updated_at_ms),
        )
        if self.created_at_ms is not None:
            values["created_at_ms"] = self.created_at_ms
        if self.merged_ids:
            values["merged_ids"] = list(self.merged_ids)
        return values


@dataclass(frozen=True)
class Quarantined:
    """A record the CRM sent that syncd could not use. `excerpt` is a bounded copy for the operator."""

    record_id: str | None
    reason: str
    excerpt: str


@dataclass(frozen=True)
class Page:
    """One page of a poll. `cursor_ms` is the new cursor once this page is recorded: every deal modified
    before it (within this window) is in `deals` or in an earlier page."""

    deals: list[Deal]
    quarantined: list[Quarantined]
    cursor_ms: int


@dataclass(frozen=True)
class NewEffect:
    """A follow-up side effect of a project (a task, the CRM write-back, a Slack message), frozen with its op
    and executed once the project exists."""

    effect_key: str
    kind: str
    body: dict[str, Any]


@dataclass(frozen=True)
class NewOp:
    """An intent to create one project, frozen when the deal newly qualifies."""

    op_key: str
    flow: str
    deal_id: str
    marker: str
    body: dict[str, Any]
    effects: tuple[NewEffect, ...] = ()
    aliases: tuple[Identity, ...] = ()  # the same project under another name (a renamed flow, a merged deal)


@dataclass(frozen=True)
class Op:
    """An op as the ledger holds it: one project for one (flow, account, deal[, entry])."""

    op_key: str
    flow: str
    deal_id: str
    state: State
    marker: str
    body: dict[str, Any]
    attempts: int
    next_attempt_at: float
    last_attempt_at: float | None
    asana_gid: str | None
    asana_url: str | None
    last_error: str | None
    aliases: tuple[str, ...] = ()  # markers under which the same project may exist (see `flows.aliases`)
    team: str | None = None  # the team the project is (or was) created in: where to look for its marker


@dataclass(frozen=True)
class Effect:
    """A due follow-up of a created project, with what it needs to know about that project."""

    effect_key: str
    op_key: str
    kind: str
    state: State
    body: dict[str, Any]
    attempts: int
    deal_id: str
    asana_gid: str
    asana_url: str | None
    job_gid: str | None


@dataclass(frozen=True)
class Project:
    gid: str
    url: str | None
    name: str | None = None
    notes: str | None = None
    created_at: str | None = None


@dataclass
class CycleReport:
    """What one cycle did; `summary()` is what `syncd once` prints."""

    baseline: bool = False
    pages: int = 0
    deals_seen: int = 0
    deals_changed: int = 0
    quarantined: int = 0
    ops_queued: int = 0
    created: list[str] = field(default_factory=list)
    reconciled: int = 0
    dead: list[str] = field(default_factory=list)
    would_create: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    cursor_ms: int | None = None
    dry_run: bool = False
    duplicates: list[str] = field(default_factory=list)  # markers reconcile found on more than one project
    auth_failures: dict[str, str] = field(default_factory=dict)  # service -> sentence naming the variable
    rebaselined: dict[str, str] = field(default_factory=dict)  # flow -> why it got a baseline of its own
    warnings: list[str] = field(default_factory=list)  # what an operator should fix, though nothing failed
    polled: bool = True  # False: `retry` or `backfill` drove the ops it queued and read nothing new
    interrupted: str | None = None  # the signal that stopped the cycle after its step in progress
    next_due_in: float | None = None  # seconds until the soonest waiting op falls due (`syncd run` may cycle then)

    @property
    def ok(self) -> bool:
        return not self.errors and not self.dead

    def summary(self) -> str:
        lines = []
        if self.baseline and self.errors and not self.dry_run:
            lines.append(
                f"Baseline not recorded: {self.deals_seen} deals were read before the error below; the next run "
                "records it."
            )
        elif self.baseline:
            done = "would be recorded" if self.dry_run else "recorded"
            lines.append(
                f"Baseline {done}: {self.deals_seen} deals. Deals that already qualify get no project; "
                "syncd acts on changes from now on."
            )
        elif self.polled:
            lines.append(
                f"Polled {self.pages} page(s): {self.deals_seen} deals seen, {self.deals_changed} changed, "
                f"{self.ops_queued} newly qualifying, {self.quarantined} quarantined."
            )
        done = "would be recorded" if self.dry_run else "recorded"
        lines += [
            f"Flow {name}: baseline {done} ({why}): deals that already match get no project; "
            "'syncd backfill' creates them if they should have one."
            for name, why in self.rebaselined.items()
        ]
        lines += [f"Would create: {name}" for name in self.would_create]
        lines += [f"Created: {name}" for name in self.created]
        if self.reconciled:
            lines.append(f"Reconciled {self.reconciled} op(s) whose outcome was unknown.")
        lines += [f"Dead (needs a human): {line}" for line in self.dead]
        lines += [f"Warning: {line}" for line in self.warnings]
        lines += [f"Error: {line}" for line in self.errors]
        if self.interrupted:
            lines.append(
                f"Interrupted by {self.interrupted}: the step in progress finished and is recorded; the next run "
                "goes on from here."
            )
        stays = " (a dry run does not move it)" if self.dry_run and self.cursor_ms is not None else ""
        lines.append(f"Cursor: {iso_ms(self.cursor_ms) or 'not set'}{stays}")
        return "\n".join(lines)
