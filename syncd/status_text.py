"""What `syncd status` and `syncd explain` print: the read side's dataclasses as text or JSON. Times become
ISO 8601 here, and only here."""

from __future__ import annotations

from typing import Any

from syncd.asana_rate import PAID_PER_MINUTE
from syncd.flows import Flow, unconfigured
from syncd.models import iso_ms, iso_s
from syncd.store.read import CycleRun, History, Status


def status_json(s: Status, flows: tuple[Flow, ...] = ()) -> dict[str, Any]:
    last = s.last_cycle
    return {
        "database": str(s.database),
        "cursor": iso_ms(s.cursor_ms),
        "cursor_age_seconds": s.cursor_age_seconds,
        "baseline_recorded_at": iso_s(s.baseline_recorded_at),
        "last_cycle": None
        if last is None
        else {
            "ok": last.ok,
            "started_at": iso_s(last.started_at),
            "finished_at": iso_s(last.finished_at),
            "error": last.error,
            "interrupted": last.interrupted,
        },
        "last_success_at": iso_s(s.last_success_at),
        "deals": s.deals,
        "ops": {state.value: count for state, count in s.ops.items()},
        "dead_ops": [
            {"op_key": d.op_key, "deal_id": d.deal_id, "flow": d.flow, "reason": d.reason} for d in s.dead_ops
        ],
        "quarantine": s.quarantine,
        "quarantined_records": [
            {"record_id": q.record_id, "reason": q.reason, "seen_at": iso_s(q.seen_at)} for q in s.quarantined_records
        ],
        "healthy": s.healthy,
        "problems": s.problems,
        "breaker": s.health.breaker,
        "quota": dict(s.health.quota),
        "next_run_at": iso_s(s.health.next_run_at),
        "alerts_firing": list(s.health.alerts_firing),
        "asana_rates": {
            r.workspace: {"per_minute": r.per_minute, "learned_at": iso_s(r.learned_at)} for r in s.asana_rates
        },
        "effects": {state.value: count for state, count in s.effects.items()},
        "warnings": unconfigured(s.ledger_flows, flows) if flows else [],
        "paused_flows": list(s.paused_flows),
        "pending_requests": list(s.pending_requests),
        "lease": None
        if s.lease is None
        else {
            "account": s.lease.account,
            "holder": s.lease.holder,
            "fence": s.lease.fence,
            "expires_in_seconds": round(s.lease.expires_in, 1),
            "live": s.lease.live,
        },
    }


def format_status(s: Status, flows: tuple[Flow, ...] = ()) -> str:
    last = s.last_cycle
    age = f" ({s.cursor_age_seconds:.0f}s ago)" if s.cursor_age_seconds is not None else ""
    lines = [
        f"syncd status: {s.database}",
        f"  healthy      {'yes' if s.healthy else 'NO: ' + '; '.join(s.problems)}",
        f"  cursor       {iso_ms(s.cursor_ms) or 'not set (no cycle has recorded a baseline yet)'}{age}",
        f"  last cycle   {'none' if not last else ('ok' if last.ok else 'FAILED')}"
        + (f" (interrupted by {last.interrupted})" if last and last.interrupted else "")
        + (f", finished {iso_s(last.finished_at)}" if last else "")
        + (f": {last.error}" if last and last.error else ""),
        f"  last success {iso_s(s.last_success_at) or 'never'}",
        f"  deals        {s.deals}",
        "  ops          " + " · ".join(f"{state} {count}" for state, count in s.ops.items()),
        f"  quarantine   {s.quarantine} record(s)",
        f"  asana calls  {s.health.breaker}"
        + (" (paused after repeated failures)" if s.health.breaker == "open" else ""),
    ]
    lines += [f"  asana rate   {rate.describe()}" for rate in s.asana_rates] or [
        f"  asana rate   nothing learned: starts at {PAID_PER_MINUTE}/min (Asana's paid plan), lowered by a 429"
    ]
    if s.lease is not None:
        lease = s.lease
        lines.append(
            f"  lease        held by {lease.holder} (fence {lease.fence}), expires in {lease.expires_in:.0f}s"
            if lease.live
            else f"  lease        free: {lease.holder} (fence {lease.fence}) "
            + ("stopped cleanly" if lease.clean else "stopped renewing")
            + f" {-lease.expires_in:.0f}s ago"
        )
    if s.effects:
        lines.append("  follow-ups   " + " · ".join(f"{state} {count}" for state, count in s.effects.items()))
    for service, q in s.health.quota.items():
        lines.append(f"  {service} quota  {q['remaining']:,} of {q['limit']:,} daily calls left")
    if s.health.next_run_at:
        lines.append(f"  next run     {iso_s(s.health.next_run_at)} (if syncd run is running)")
    lines += [f"  ALERT: {key}" for key in s.health.alerts_firing]
    lines += [f"  paused: flow {name} (syncd flow resume {name})" for name in s.paused_flows]
    lines += [f"  request {line}: waits for the next cycle" for line in s.pending_requests]
    lines += [f"  warning: {line}" for line in unconfigured(s.ledger_flows, flows)] if flows else []
    lines += [f"  dead: deal {d.deal_id} (flow {d.flow}): {d.reason}" for d in s.dead_ops]
    lines += [f"  quarantined: record {q.record_id}: {q.reason}" for q in s.quarantined_records]
    return "\n".join(lines)


def history_json(h: History) -> dict[str, Any]:
    return {
        "deal_id": h.deal_id,
        "versions": [
            {
                "updated_at": iso_ms(v.updated_at_ms),
                "values": dict(v.values),
                "matches": dict(v.matches),
                "newly": list(v.newly),
                "recorded_at": iso_s(v.recorded_at),
            }
            for v in h.versions
        ],
        "ops": [
            {
                "op_key": op.op_key,
                "flow": op.flow,
                "state": op.state.value,
                "marker": op.marker,
                "attempts": op.attempts,
                "posts_sent": op.posts_sent,
                "asana_gid": op.asana_gid,
                "asana_url": op.asana_url,
                "last_error": op.last_error,
                "events": [{"at": iso_s(e.at), "state": e.state.value, "detail": e.detail} for e in op.events],
            }
            for op in h.ops
        ],
        "baselines": [{"flow": b.flow, "rule": b.rule, "at": iso_s(b.at), "reason": b.reason} for b in h.baselines],
        "quarantined": [{"reason": q.reason, "seen_at": iso_s(q.seen_at)} for q in h.quarantined],
    }


def format_explain(h: History, flows: tuple[Flow, ...]) -> str:
    name = h.versions[-1].values.get("name") if h.versions else None
    lines = [f"Deal {h.deal_id}{f' ({name})' if name else ''}: {len(h.versions)} version(s) recorded"]
    lines += [
        f"  QUARANTINED {iso_s(q.seen_at)}: {q.reason}. The CRM's record could not be read, so no rule judged it; "
        "fix the record in the CRM and its next change is read again."
        for q in h.quarantined
    ]
    for v in h.versions:
        verdicts = ", ".join(
            f"{name} {'TRUE' if ok else 'false'}{' (entered the rule)' if name in v.newly else ''}"
            for name, ok in v.matches.items()
        )
        lines.append(
            f"  {iso_ms(v.updated_at_ms)}  stage={v.values.get('stage')!r} amount={v.values.get('amount')!r}"
            f"  -> {verdicts}"
        )
    for b in h.baselines:
        if b.at > 0:
            lines.append(f"Flow {b.flow}: baseline recorded {iso_s(b.at)} ({b.reason}); rule: {b.rule}")
    if h.versions:
        latest = h.versions[-1].values
        for flow in flows:
            verdict = "true" if flow.rule.evaluate(latest) else "false"
            lines.append(f"Flow {flow.name}: when {flow.rule.source}  -> {verdict} for the latest version")
            lines += [f"    {line}" for line in flow.rule.explain(latest)]
        if len(h.versions) == 1 and not h.ops:
            lines.append(
                "  (A deal first seen already matching during the baseline gets no project: see 'syncd backfill'.)"
            )
    for op in h.ops:
        where = f" project {op.asana_gid} {op.asana_url or ''}" if op.asana_gid else ""
        budget = f"; {op.attempts} counted toward max_attempts" if op.attempts != op.posts_sent else ""
        lines.append(f"Op {op.op_key}: {op.state}{where} (create requests sent: {op.posts_sent}{budget})")
        lines += [f"    {iso_s(e.at)}  {e.state:<9} {e.detail}" for e in op.events]
    if not h.ops:
        lines.append("No op: no flow went from false to true for this deal after the baseline.")
    return "\n".join(lines)


def cycles_json(rows: tuple[CycleRun, ...]) -> list[dict[str, Any]]:
    return [
        {
            "id": r.id,
            "started_at": iso_s(r.started_at),
            "finished_at": iso_s(r.finished_at),
            "outcome": r.outcome,
            "seconds": r.seconds,
            "deals_seen": r.deals_seen,
            "created": r.created,
            "interrupted": r.interrupted,
            "error": r.error,
        }
        for r in rows
    ]


def format_history(rows: tuple[CycleRun, ...]) -> str:
    """One line per cycle, newest first: when, outcome, counts, duration, and the error of a failed one."""
    if not rows:
        return "No cycle recorded yet: run 'syncd once' or 'syncd run'."
    lines = []
    for r in rows:
        took = f"{r.seconds:g}s" if r.seconds is not None else "no end recorded"
        why = f" by {r.interrupted}" if r.interrupted else ""
        line = f"#{r.id}  {iso_s(r.started_at)}  {r.outcome}{why}  {r.deals_seen} deals, {r.created} created, {took}"
        lines.append(line + (f"\n      error: {r.error}" if r.error else ""))
    return "\n".join(lines)


def format_quarantine(s: Status) -> str:
    if not s.quarantine:
        return "Nothing is quarantined."
    lines = [f"{s.quarantine} record(s) quarantined (the newest {len(s.quarantined_records)}):"]
    lines += [f"  record {q.record_id}  {iso_s(q.seen_at)}  {q.reason}" for q in s.quarantined_records]
    lines.append(
        "Fix a record in the CRM and its next change is read again; 'syncd quarantine --clear ID' forgets one."
    )
    return "\n".join(lines)
