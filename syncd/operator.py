"""The operator's repairs: `syncd retry` and `syncd backfill`. Both go through the ledger, so neither can
create a duplicate however often it runs.
"""

from __future__ import annotations

import json

from syncd.engine import title
from syncd.flows import Flow, new_op
from syncd.models import Deal, State, iso_ms
from syncd.runtime import Settings
from syncd.store import Store


def retry(store: Store, deal_id: str, now: float, settings: Settings) -> list[str]:
    """Move a deal's dead ops back through reconcile (never a blind re-create).

    The op becomes `unknown` with a fresh attempt budget, so the next cycle lists the team's projects first
    and POSTs only if no project carries its marker. The marker, name and notes stay frozen; the destination
    (workspace, team) is taken from the current config, because the usual fix for a dead op is a config fix.
    """
    ops = store.dead_ops(deal_id)
    for op in ops:
        body = {**op.body, "workspace": settings.workspace, "team": settings.team}
        store.ops.move(
            op.op_key,
            State.UNKNOWN,
            now,
            "syncd retry: reconcile before any new attempt",
            attempts=0,
            last_attempt_at=0.0,
            body=json.dumps(body),
        )
    return [op.op_key for op in ops]


def backfill(
    store: Store, flows: tuple[Flow, ...], settings: Settings, *, crm: str, since_ms: int, now: float, dry_run: bool
) -> list[str]:
    """Queue projects for deals that already qualified (e.g. before the baseline) and were modified at or
    after `since_ms`. A deal that has an op for the flow is skipped."""
    ops = [
        new_op(
            flow,
            Deal.from_values(deal_id, updated_at_ms, values),
            crm=crm,
            account=settings.account,
            workspace=settings.workspace,
            team=settings.team,
        )
        for flow in flows
        for deal_id, updated_at_ms, values in store.qualifying_without_op(flow.name, since_ms)
    ]
    if not dry_run:
        store.queue_ops(ops, now, f"backfill: qualified before syncd watched (since {iso_ms(since_ms)})")
    return [f"{title(op.body)} (deal {op.deal_id}, flow {op.flow})" for op in ops]
