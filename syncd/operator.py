"""The operator's repairs: `syncd retry` and `syncd backfill`. Both go through the ledger, and every create
is checked against Asana first, so neither can create a duplicate however often it runs. And
`syncd reset-rate`, which forgets the Asana rate learned for a workspace.

While another syncd holds the lock, `retry` and `backfill` leave a request in the inbox (`syncd.store.inbox`)
instead, and the holder applies it at the start of its next cycle (`apply_requests`), under its lock.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from syncd import asana_rate
from syncd.config import state
from syncd.config_values import Config, PostgresState
from syncd.engine import title
from syncd.errors import LockHeld, StoreError
from syncd.flows import Flow, new_op
from syncd.models import Deal, NewOp, Op, State, iso_ms
from syncd.runtime import Runtime, Settings
from syncd.store import Request, SqliteStore, Store
from syncd.store.failures import store_error
from syncd.store.read import alive
from syncd.store.schema import connect


def _flow_of(op: Op, flows: tuple[Flow, ...]) -> Flow | None:
    return next((f for f in flows if op.flow in (f.name, *f.previous_names)), None)


def _render(flow: Flow, deal: Deal, settings: Settings, crm: str, entry: int = 1) -> NewOp:
    return new_op(
        flow, deal, crm=crm, account=settings.account, workspace=settings.workspace, team=settings.team, entry=entry
    )


def _entry(op: Op) -> int:
    _, _, suffix = op.op_key.rpartition("#")
    return int(suffix) if suffix.isdigit() and "#" in op.op_key else 1


def retry(
    store: Store, deal_id: str | None, now: float, settings: Settings, flows: tuple[Flow, ...], crm: str
) -> list[str]:
    """Move a deal's dead ops (every dead op: `deal_id` None) back through reconcile (never a blind re-create).

    The usual fix for a dead op is a config fix, so its body is rendered again from the current config (name,
    notes, fields, destination, template) and the deal's latest recorded version; its marker stays, so the
    next cycle lists the team and POSTs only if no project carries it. A flow no longer configured keeps its
    body with the current destination.
    """
    ops = store.dead_ops(deal_id)
    for op in ops:
        latest = store.latest_version(op.deal_id)
        flow = _flow_of(op, flows)
        if flow is not None and latest is not None:
            same = dataclasses.replace(flow, name=op.flow)  # a renamed flow keeps the op's marker
            fresh = _render(same, Deal.from_values(op.deal_id, *latest), settings, crm, _entry(op))
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


def reset_rate(cfg: Config) -> str:
    """Forget what Asana's 429s taught about the configured workspace; say what was forgotten. Beside a
    running syncd too: a process reads what was learned when it starts."""
    with inbox_store(state(cfg)) as (store, _):
        learned = asana_rate.forget(store, cfg.asana.workspace)
    start = cfg.asana.requests_per_minute or asana_rate.PAID_PER_MINUTE
    if learned is None:
        return f"Nothing was learned for workspace {cfg.asana.workspace}; the next run starts at {start}/min."
    return (
        f"Forgot {learned.per_minute}/min for workspace {cfg.asana.workspace}; the next run starts at {start}/min "
        "and a 429 lowers it again."
    )


def apply_requests(rt: Runtime) -> list[str]:
    """At the start of a cycle, under the lock: what operators asked for while this process held it, one line
    each. Applying one twice is harmless (a retried op is no longer dead; a backfilled op key exists), so a
    crash between a request's effect and its `done` mark costs nothing."""
    lines = []
    for request in rt.store.inbox.pending():
        outcome = _apply(rt, request)
        rt.store.inbox.done(request.id, rt.clock(), outcome)
        lines.append(f"request #{request.id} ({describe(request)}): {outcome}")
    return lines


def describe(request: Request) -> str:
    args = request.args
    if request.kind == "retry":
        return f"retry deal {args['deal']}" if args.get("deal") else "retry --all"
    return f"backfill --since {iso_ms(args['since_ms'])}" + (f" --flow {args['flow']}" if args.get("flow") else "")


def _apply(rt: Runtime, request: Request) -> str:
    args, now = request.args, rt.clock()
    if request.kind == "retry":
        keys = retry(rt.store, args.get("deal"), now, rt.settings, rt.flows, rt.source.kind)
        return f"{len(keys)} dead op(s) sent back through reconcile" if keys else "no dead op any more"
    flows = tuple(f for f in rt.flows if args.get("flow") in (None, f.name))
    if not flows:
        return f"not applied: no flow is named {args['flow']!r} in the config any more"
    done = backfill(rt.store, flows, rt.settings, crm=rt.source.kind, since_ms=args["since_ms"], now=now, dry_run=False)
    unjudged = f"; {len(done.unjudged)} deal(s) cannot be judged (see 'syncd backfill --dry-run')" * bool(done.unjudged)
    return f"queued {len(done.queued)} project(s)" + unjudged


@contextmanager
def inbox_store(where: Path | PostgresState) -> Iterator[tuple[Store, bool]]:
    """The store for a command that only writes a request, a pause or a fact: under the lock when it is free
    (False), else beside its holder (True). On SQLite, beside means a connection without the lock whose one
    short `BEGIN IMMEDIATE` transaction the `busy_timeout` queues behind the holder's; on PostgreSQL, always
    beside the lease (a request changes no ledger row), busy while a live holder has the lease."""
    if isinstance(where, PostgresState):
        from syncd.store.postgres import beside

        with beside(where, readonly=False) as pg:
            yield pg, pg.lease_holder() is not None
        return
    path = where
    try:
        store = SqliteStore.open(path)
    except LockHeld:
        pass
    else:
        try:
            yield store, False
        finally:
            store.close()
        return
    try:
        probe = connect(path, readonly=True)
        has_inbox = probe.execute("SELECT 1 FROM sqlite_master WHERE name = 'requests'").fetchone()
        probe.close()
    except sqlite3.DatabaseError as exc:
        raise store_error(path, exc) from None
    if not has_inbox:
        raise StoreError(
            f"The syncd holding {path}.lock runs an older schema, without requests. Nothing was recorded: upgrade "
            "and restart it (systemctl restart syncd), then run this command again."
        )
    beside_holder = SqliteStore(path, connect(path), None)
    try:
        yield beside_holder, True
    finally:
        beside_holder.close()


def when_applied(store: Store, now: float) -> str:
    """When the lock holder applies a request: at the start of its next cycle, from its interval and its last
    cycle (`syncd run` records its pid and interval in `meta`)."""
    daemon = json.loads(store.get_meta("daemon") or "null")
    here = daemon and daemon.get("host", socket.gethostname()) == socket.gethostname()
    if not daemon or (here and not alive(daemon["pid"])):
        return (
            "Another syncd (a 'syncd once' or another command) holds the lock; the next 'syncd once' or "
            "'syncd run' applies it when its cycle starts."
        )
    interval = float(daemon["interval_seconds"])
    started, finished = store.last_cycle_times()
    host = "" if here else f" on {daemon['host']}"
    holder = f"'syncd run' (pid {daemon['pid']}{host}) applies it at the start of its next cycle"
    if started is None:
        return f"{holder}, within {interval:g}s."
    due, every = started + interval, f"a cycle every {interval:g}s"
    if finished is None and due <= now:
        return f"{holder}, as soon as the cycle in progress ends ({every}; it started {_hms(started)})."
    if due <= now:
        return f"{holder}, which is due now ({every})."
    last = f"the last started {_hms(started)}" if finished is not None else f"the one in progress {_hms(started)}"
    return f"{holder}, about {_hms(due)} at the latest (in {due - now:.0f}s; {every}, {last})."


def _hms(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%H:%M:%SZ")
