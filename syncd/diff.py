"""Change detection: which deals in a page are new versions, and which flows they newly satisfy. Pure.

A deal's stored version is keyed by modification time: a replayed or older version (the cursor overlap,
a re-anchored query, a page read twice) is not a change. A flow fires when its rule goes from false to true,
or for a deal first seen after the flow's baseline. A flow being baselined (`baselining`: all flows at the
first cycle; later a flow that was added or whose `when` changed) never fires: every deal, changed or not,
is judged by it and remembered, so that later changes fire from a known state. A deal first seen after a
baseline but created before it (restored from the recycle bin, or hidden from the baseline's read) is
treated as existing. `entries` counts how often a deal entered each rule (a baseline's qualifying deals
count as entered once), which names the op of a `per_entry` flow. A renamed flow reads its state under its
previous names.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from syncd.flows import Flow
from syncd.models import Deal

T = TypeVar("T")


@dataclass(frozen=True)
class Stored:
    updated_at_ms: int
    matches: Mapping[str, bool]
    entries: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Change:
    deal: Deal
    matches: dict[str, bool]
    newly: tuple[str, ...]  # names of the flows this version newly satisfies
    entries: dict[str, int] = field(default_factory=dict)  # per flow: how many times the deal entered the rule


def newest(deals: Iterable[Deal]) -> list[Deal]:
    """One version per deal id, the newest, in first-seen order."""
    by_id: dict[str, Deal] = {}
    for deal in deals:
        seen = by_id.get(deal.id)
        if seen is None or deal.updated_at_ms > seen.updated_at_ms:
            by_id[deal.id] = deal
    return list(by_id.values())


def _recorded(flow: Flow, table: Mapping[str, T]) -> T | None:
    """What the deal's row holds for `flow`, under its name or, before a rename, one of its previous names."""
    for name in (flow.name, *flow.previous_names):
        if name in table:
            return table[name]
    return None


def diff(
    deals: Iterable[Deal],
    stored: Mapping[str, Stored],
    flows: Iterable[Flow],
    *,
    baselining: Collection[str] = (),
    baseline_at_ms: Mapping[str, int] | None = None,
) -> list[Change]:
    """`baseline_at_ms`: per flow, when its baseline was recorded (a deal created before it is not new)."""
    flows, since = tuple(flows), baseline_at_ms or {}
    changes = []
    for deal in newest(deals):
        before = stored.get(deal.id)
        newer = before is None or deal.updated_at_ms > before.updated_at_ms
        if not newer and not baselining:
            continue
        matches: dict[str, bool] = {}
        entries: dict[str, int] = {}
        newly: list[str] = []
        for flow in flows:
            was = None if before is None else _recorded(flow, before.matches)
            count = (None if before is None else _recorded(flow, before.entries)) or 0
            if not newer and flow.name not in baselining:
                if was is not None:
                    matches[flow.name], entries[flow.name] = was, count
                continue
            now = flow.matches(deal)
            matches[flow.name] = now
            entries[flow.name] = count + (1 if now and was is not True else 0)
            if not now or flow.name in baselining or was is True:
                continue
            if was is False or (before is None and not _existed(deal, since.get(flow.name))):
                newly.append(flow.name)
        changes.append(Change(deal, matches, tuple(newly), {k: v for k, v in entries.items() if v}))
    return changes


def _existed(deal: Deal, baseline_at_ms: int | None) -> bool:
    """A deal first seen now that the CRM says was created before the flow's baseline."""
    return baseline_at_ms is not None and deal.created_at_ms is not None and deal.created_at_ms < baseline_at_ms
