"""Which flows need a baseline of their own, and from when each other flow's deals count as new.

A flow is judged from a known state: at the first cycle every flow gets a baseline (deals that already
match get no project); later, a flow that was added, or whose `when` changed, gets one at its next cycle
(the engine then re-reads the whole CRM for it). A renamed flow is the same flow under `previous_names`.
"""

from __future__ import annotations

from syncd.flows import Flow
from syncd.runtime import Settings
from syncd.store import Store


def plan(
    store: Store, flows: tuple[Flow, ...], settings: Settings, *, dry_run: bool
) -> tuple[dict[str, str], dict[str, int]]:
    """(flows that need a baseline now -> why, and for each other flow the creation time in ms before which
    a deal must have been seen by its baseline: the baseline's time less the delay and the overlap, since a
    deal created just before the baseline may have been outside its window)."""
    if not store.baseline_done():
        return {flow.name: "first cycle" for flow in flows}, {}
    recorded = store.flow_baselines()
    if not recorded and not dry_run:  # a database from before per-flow baselines: its rules are the current ones
        at = store.get_meta("baseline_done") or ""
        store.record_flow_baselines([(f.name, f.rule.source, f"assumed unchanged since {at}") for f in flows], 0.0)
        recorded = store.flow_baselines()
    window = settings.delay_seconds + settings.overlap_seconds
    need, since = {}, {}
    for flow in flows:
        known = next((recorded[n] for n in (flow.name, *flow.previous_names) if n in recorded), None)
        if known is None:
            need[flow.name] = "a new flow"
        elif known[0] != flow.rule.source:
            need[flow.name] = f"its rule changed (was: {known[0]})"
        else:
            since[flow.name] = int((known[1] - window) * 1000)
    return need, since
