"""Change detection: which deals in a page are new versions, and which flows they newly satisfy. Pure.

A deal's stored version is keyed by modification time: a replayed or older version (the cursor overlap,
a re-anchored query, a page read twice) is not a change. A flow fires when its rule goes from false to true,
or for a deal syncd has never seen once the baseline is recorded. A flow added to the config after a deal was
recorded starts from that deal's current state, like a baseline of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from syncd.flows import Flow
from syncd.models import Deal


@dataclass(frozen=True)
class Stored:
    updated_at_ms: int
    matches: Mapping[str, bool]


@dataclass(frozen=True)
class Change:
    deal: Deal
    matches: dict[str, bool]
    newly: tuple[str, ...]  # names of the flows this version newly satisfies


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
        if before is None:
            newly = () if baseline else tuple(name for name, now in matches.items() if now)
        else:
            newly = tuple(name for name, now in matches.items() if now and before.matches.get(name) is False)
        changes.append(Change(deal, matches, newly))
    return changes
