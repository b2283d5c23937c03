"""The operator's repairs: `syncd retry` and `syncd backfill`. Both go through the ledger, and every create
is checked against Asana first, so neither can create a duplicate however often it runs. And
`syncd reset-rate`, which forgets the Asana rate learned for a workspace.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from syncd import asana_rate
from syncd.config_values import Config
from syncd.engine import title
from syncd.flows import Flow, new_op
from syncd.models import Deal, NewOp, Op, State, iso_ms
from syncd.runtime import Settings
from syncd.store import Store, open_store


def _flow_of(op: Op, flows: tuple[Flow, ...]) -> Flow | None:
    return next((f for f in flows if op.flow in (f.name, *f.previous_names)), None)


def _render(flow: Flow, deal: Deal, settings: Settings, crm: str, entry: int = 1) -> NewOp:
    return new_op(
        flow, deal, crm=crm, account=settings.account, workspace=settings.workspace, team=settings.team, entry=entry
    )


def _entry(op: Op) -> int:
    _, _, suffix = op.op_key.rpartition("#")
    return int(suffix) if suffix.isdigit() and "#" in op.op_key else 1


def retry(store: Store, deal_id: str, now: float, settings: Settings, flows: tuple[Flow, ...], crm: str) -> list[str]:
    """Move a deal's dead ops back through reconcile (never a blind re-create).

    The usual fix for a dead op is a config fix, so its body is rendered again from the current config (name,
    notes, fields, destination, template) and the deal's latest recorded version; its marker stays, so the
    next cycle lists the team and POSTs only if no project carries it. A flow no longer configured keeps its
    body with the current destination.
    """
    ops = store.dead_ops(deal_id)
    latest = store.latest_version(deal_id)
    for op in ops:
        flow = _flow_of(op, flows)
        if flow is not None and latest is not None:
            same = dataclasses.replace(flow, name=op.flow)  # a renamed flow keeps the op's marker
            fresh = _render(same, Deal.from_values(deal_id, *latest), settings, crm, _entry(op))
            body = fresh.body if fresh.marker == op.marker else {**op.body, "team": settings.team}
            if fresh.marker == op.marker:
                store.replace_effects(op.op_key, fresh.effects, now)
        else:
            body = {**op.body, "workspace": settings.workspace, "team": settings.team}
        store.ops.move(
            op.op_key,
            State.UNKNOWN,
            now,
            "syncd retry: the body rendered from the current config; reconcile before any new attempt",
            attempts=0,
            last_attempt_at=0.0,
            body=json.dumps(body),
        )
    return [op.op_key for op in ops]


@dataclass(frozen=True)
class Backfill:
    queued: list[str]  # "<project name> (deal <id>, flow <name>)"
    unjudged: list[str]  # deals a rule cannot be judged on: it names a property never fetched for them


def backfill(
    store: Store,
    flows: tuple[Flow, ...],
    settings: Settings,
    *,
    crm: str,
    since_ms: int,
    now: float,
    dry_run: bool,
) -> Backfill:
    """Queue projects for deals that qualify by the **current** rules on their latest recorded versions and
    were modified at or after `since_ms` (e.g. won before the baseline). A deal with an op for the flow, under
    any of its names, is skipped."""
    ops, unjudged = [], []
    for flow in flows:
        for deal_id, updated_at_ms, values in store.deals_without_op((flow.name, *flow.previous_names), since_ms):
            if missing := sorted(name for name in flow.rule.names if name not in values):
                unjudged.append(f"deal {deal_id}, flow {flow.name}: never fetched {', '.join(missing)}")
                continue
            if flow.rule.evaluate(values):
                ops.append(_render(flow, Deal.from_values(deal_id, updated_at_ms, values), settings, crm))
    if not dry_run:
        store.queue_ops(ops, now, f"backfill: qualified before syncd watched (since {iso_ms(since_ms)})")
    return Backfill([f"{title(op.body)} (deal {op.deal_id}, flow {op.flow})" for op in ops], unjudged)


def reset_rate(cfg: Config, lock_fd: int) -> str:
    """Forget what Asana's 429s taught about the configured workspace; say what was forgotten."""
    store = open_store(cfg.state_path, lock_fd)
    try:
        learned = asana_rate.forget(store, cfg.asana.workspace)
    finally:
        store.close()
    start = cfg.asana.requests_per_minute or asana_rate.PAID_PER_MINUTE
    if learned is None:
        return f"Nothing was learned for workspace {cfg.asana.workspace}; the next run starts at {start}/min."
    return (
        f"Forgot {learned.per_minute}/min for workspace {cfg.asana.workspace}; the next run starts at {start}/min "
        "and a 429 lowers it again."
    )
