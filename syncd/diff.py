"""Change detection: which deals in a page are new versions, and which flows they newly satisfy. Pure.

A deal's stored version is keyed by modification time: a replayed or older version (the cursor overlap,
a re-anchored query, a page read twice) is not a change. A flow fires when its rule goes from false to true,
or for a deal syncd has never seen once the baseline is recorded. A flow added to the config after a deal was
recorded starts from that deal's current state, like a baseline of its own. `entries` counts how often a deal
entered each rule (the baseline's qualifying deals count as entered once), which names the op of a
`per_entry` flow.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from syncd.flows import Flow
from syncd.models import Deal


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


def diff(deals: Iterable[Deal], stored: Mapping[str, Stored], flows: Iterable[Flow], *, baseline: bool) -> list[Change]:
    flows = tuple(flows)
    changes = []
    for deal in newest(deals):
        before = stored.get(deal.id)
        if before is not None and before.updated_at_ms >= deal.updated_at_ms:
            continue
        matches = {flow.name: flow.matches(deal) for flow in flows}
        entries = dict(before.entries) if before is not None else {}
        for name, now in matches.items():
            was = None if before is None else before.matches.get(name)
            if now and was is not True:
                entries[name] = entries.get(name, 0) + 1
        if before is None:
            newly = () if baseline else tuple(name for name, now in matches.items() if now)
        else:
            newly = tuple(name for name, now in matches.items() if now and before.matches.get(name) is False)
        changes.append(Change(deal, matches, newly, entries))
    return changes
