"""One cycle: poll the CRM and record what changed, then drive due ops through the state machine.

No click, no APScheduler, no environment: everything arrives as arguments, so tests and the daemon run the
same code. `step(name)` is called at each point where a crash would be interesting; the CLI wires it to
`SYNCD_CRASH_AT` for the reliability tests, everyone else passes nothing.

The exactly-once invariant, enforced here: a POST is sent only for an op whose durable state is a freshly
committed `in_flight` (`Store.begin_attempt`), and an op that was ever `unknown` is POSTed again only after a
complete listing, taken at least `settle_seconds` after its last attempt, found no marker.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

from syncd import diff as diffing
from syncd import effects
from syncd.breaker import Breaker
from syncd.errors import AuthError, RateLimited, RejectedError, RemoteError, TransientError
from syncd.flows import Flow, new_op
from syncd.models import CycleReport, Deal, Op, iso_ms
from syncd.sinks.asana import MARKER, AsanaSink
from syncd.sources import Source
from syncd.store import Store

log = logging.getLogger("syncd.engine")


@dataclass(frozen=True)
class Settings:
    account: str
    workspace: str
    team: str
    overlap_seconds: float
    delay_seconds: float
    settle_seconds: float
    max_attempts: int
    retry_base_seconds: float = 30.0
    reconcile: bool = True  # False only for the reliability suite's negative control: blind retries duplicate


def run_once(
    source: Source,
    sink: AsanaSink,
    store: Store,
    flows: tuple[Flow, ...],
    settings: Settings,
    *,
    clock: Callable[[], float],
    dry_run: bool = False,
    step: Callable[[str], None] = lambda name: None,
    stopping: Callable[[], bool] = lambda: False,
    breaker: Breaker | None = None,
    post: Callable[[str, dict], None] = lambda env, payload: None,
) -> CycleReport:
    """One cycle. `breaker` guards Asana; pass the same one to every cycle of a process (`syncd run`).
    `post(webhook_env, payload)` sends a flow's Slack message (see `syncd.effects`)."""
    report = CycleReport(dry_run=dry_run)
    breaker = breaker or Breaker()
    for http in (source.http, sink.http):
        http.pause_until_wall(store.pause(http.service))
        if not dry_run:
            http.on_pause = lambda until, service=http.service: store.save_pause(service, until)
    if not dry_run:
        store.recover_in_flight(clock())
    cycle = None if dry_run else store.start_cycle(clock())
    asana_failed: list[RemoteError] = []

    def drain() -> None:
        """Between pages, create due projects while Asana's bucket has a token now, so a big poll and its
        creates share the wall clock instead of waiting one for the other. Never sleeps, never reconciles."""
        if asana_failed:
            return
        try:
            for op in store.due_ops(clock(), settings.settle_seconds):
                if op.state != "pending" or not sink.http.ready() or not breaker.allows(clock()) or stopping():
                    return
                attempt(sink, store, op, settings, report, clock=clock, step=step, breaker=breaker)
        except RemoteError as exc:
            asana_failed.append(exc)

    try:
        poll(
            source,
            store,
            flows,
            settings,
            report,
            clock=clock,
            dry_run=dry_run,
            step=step,
            stopping=stopping,
            after_page=drain,
        )
    except AuthError as exc:
        sentence = (
            f"{exc.service} rejected the credentials ({exc.status}): check {source.credential_hint} and its read "
            f"access to deals. {exc}"
        )
        report.errors.append(sentence)
        report.auth_failures[exc.service] = sentence
    except RemoteError as exc:
        report.errors.append(f"polling {exc.service} stopped; the cursor stays where it was: {exc}")
    if not dry_run:
        try:
            if asana_failed:
                raise asana_failed[0]
            execute(sink, store, settings, report, clock=clock, step=step, stopping=stopping, breaker=breaker)
            effects.run(
                store,
                sink,
                source,
                post,
                report,
                clock=clock,
                settle_seconds=settings.settle_seconds,
                breaker=breaker,
                stopping=stopping,
                step=step,
            )
        except RemoteError as exc:
            report.errors.append(str(exc))
            if isinstance(exc, AuthError):
                report.auth_failures[exc.service] = str(exc)
        report.cursor_ms = store.cursor()
        store.finish_cycle(
            cycle or 0,
            clock(),
            ok=not report.errors,
            error="; ".join(report.errors) or None,
            deals_seen=report.deals_seen,
            created=len(report.created),
        )
    return report


def title(body: dict) -> str:
    """A project's name for people: without the marker a template instantiation carries in its name."""
    return MARKER.sub("", str(body.get("name", ""))).strip()


def poll(
    source: Source,
    store: Store,
    flows: tuple[Flow, ...],
    settings: Settings,
    report: CycleReport,
    *,
    clock: Callable[[], float],
    dry_run: bool,
    step: Callable[[str], None],
    stopping: Callable[[], bool],
    after_page: Callable[[], None] = lambda: None,
) -> None:
    cursor = store.cursor()
    report.baseline = not store.baseline_done()
    since = None if cursor is None else cursor - int(settings.overlap_seconds * 1000)
    for page in source.pages(since, int(settings.delay_seconds * 1000)):
        report.pages += 1
        report.deals_seen += len(page.deals)
        report.quarantined += len(page.quarantined)
        stored = store.stored_deals(d.id for d in page.deals)
        changes = diffing.diff(page.deals, stored, flows, baseline=report.baseline)
        report.deals_changed += len(changes)
        by_name = {flow.name: flow for flow in flows}
        ops = [
            new_op(
                by_name[name],
                change.deal,
                crm=source.kind,
                account=settings.account,
                workspace=settings.workspace,
                team=settings.team,
                entry=change.entries.get(name, 1) if by_name[name].refire == "per_entry" else 1,
            )
            for change in changes
            for name in change.newly
        ]
        if dry_run:
            report.would_create += [title(op.body) for op in ops]
            continue
        step("before_page_commit")
        report.ops_queued += store.record_page(changes, ops, page.quarantined, page.cursor_ms, clock())
        step("after_page_commit")
        if stopping():
            return
        after_page()
    if report.baseline and not dry_run:
        store.mark_baseline_done(clock())


def execute(
    sink: AsanaSink,
    store: Store,
    settings: Settings,
    report: CycleReport,
    *,
    clock: Callable[[], float],
    step: Callable[[str], None],
    stopping: Callable[[], bool],
    breaker: Breaker,
) -> None:
    def paused() -> bool:
        if breaker.allows(clock()):
            return False
        report.errors.append(
            f"asana: calls paused for {breaker.cooldown:g}s after {breaker.failures} failures in a row; "
            "waiting ops spend no attempts"
        )
        return True

    due = store.due_ops(clock(), settings.settle_seconds)
    if not due or paused():
        return
    unknown = [op for op in due if op.state == "unknown"]
    if unknown and settings.reconcile:
        reconcile(sink, store, unknown, settings, report, clock=clock, breaker=breaker)
    elif unknown:
        for op in unknown:
            store.transition(op.op_key, "pending", clock(), "UNSAFE: blind retry without reconcile")
    for op in store.due_ops(clock(), settings.settle_seconds):
        if stopping() or paused():
            return
        if op.state == "pending":
            attempt(sink, store, op, settings, report, clock=clock, step=step, breaker=breaker)


def reconcile(
    sink: AsanaSink,
    store: Store,
    ops: list[Op],
    settings: Settings,
    report: CycleReport,
    *,
    clock: Callable[[], float],
    breaker: Breaker,
) -> None:
    """Decide each `unknown` op from one complete listing. A failed listing proves nothing: stay `unknown`."""
    try:
        by_marker = sink.projects_by_marker()
    except AuthError:
        raise
    except RemoteError as exc:
        if isinstance(exc, TransientError):
            breaker.failure(clock())
        report.errors.append(f"reconcile postponed, the project listing failed: {exc}")
        return
    breaker.success()
    now = clock()
    for op in ops:
        found = by_marker.get(op.marker, [])
        report.reconciled += 1
        if found:
            project = found[0]
            detail = f"reconcile found the marker in project {project.gid}"
            if len(found) > 1:
                others = ", ".join(p.gid for p in found[1:])
                detail += f"; DUPLICATES found too ({others}): keep the oldest and check the others by hand"
                log.error("duplicate projects for %s: %s and %s", op.marker, project.gid, others)
                report.duplicates.append(op.marker)
            store.transition(op.op_key, "created", now, detail, asana_gid=project.gid, asana_url=project.url)
            report.created.append(f"{title(op.body)} (found by reconcile)")
        elif op.attempts >= settings.max_attempts:
            detail = f"no project after {op.attempts} attempts; check Asana, then 'syncd retry'"
            store.transition(op.op_key, "dead", now, detail)
            report.dead.append(f"{op.op_key}: {detail}")
        else:
            store.transition(op.op_key, "pending", now, "reconcile: a complete listing has no such marker")


def attempt(
    sink: AsanaSink,
    store: Store,
    op: Op,
    settings: Settings,
    report: CycleReport,
    *,
    clock: Callable[[], float],
    step: Callable[[str], None],
    breaker: Breaker,
) -> None:
    if op.attempts >= settings.max_attempts:
        detail = f"gave up after {op.attempts} attempts; fix the cause, then 'syncd retry {op.deal_id}'"
        store.transition(op.op_key, "dead", clock(), detail)
        report.dead.append(f"{op.op_key}: {detail}")
        return
    if not store.begin_attempt(op.op_key, clock()):
        return
    step("after_inflight_commit")
    job_gid = None
    try:
        if "template" in op.body:
            project, job_gid = sink.instantiate(op.body)
        else:
            project = sink.create_project(op.body)
    except RateLimited as exc:
        wait = exc.retry_after if exc.retry_after is not None else settings.retry_base_seconds
        store.transition(
            op.op_key, "pending", clock(), f"rate limited: {exc}", attempts=op.attempts, next_attempt_at=clock() + wait
        )
        return
    except TransientError as exc:
        breaker.failure(clock())
        if exc.sent:
            store.transition(op.op_key, "unknown", clock(), f"outcome unknown: {exc}")
        else:
            backoff = settings.retry_base_seconds * 2 ** min(op.attempts, 6)
            store.transition(op.op_key, "pending", clock(), f"not sent: {exc}", next_attempt_at=clock() + backoff)
        step("after_failed_post")
        return
    except AuthError as exc:
        if exc.status == 403:
            store.transition(op.op_key, "dead", clock(), f"Asana refused (403): {exc}")
            report.dead.append(f"{op.op_key}: {exc}")
            return
        store.transition(op.op_key, "pending", clock(), f"credentials rejected: {exc}", attempts=op.attempts)
        raise AuthError(
            f"asana: the token was rejected (401). Check the variable named by [asana] token_env; no project "
            f"is created until it works. ({exc})",
            service="asana",
            status=401,
        ) from exc
    except RejectedError as exc:
        store.transition(op.op_key, "dead", clock(), f"Asana rejected the request: {exc}")
        report.dead.append(f"{op.op_key}: {exc}")
        return
    breaker.success()
    step("after_post")
    detail = f"created project {project.gid}" + (f" (template job {job_gid})" if job_gid else "")
    store.transition(
        op.op_key, "created", clock(), detail, asana_gid=project.gid, asana_url=project.url, job_gid=job_gid
    )
    report.created.append(f"{title(op.body)} -> {project.url or project.gid}")
    step("after_created_commit")


def retry(store: Store, deal_id: str, now: float, settings: Settings) -> list[str]:
    """Operator command: move a deal's dead ops back through reconcile (never a blind re-create).

    The op becomes `unknown` with a fresh attempt budget, so the next cycle lists the team's projects first
    and POSTs only if no project carries its marker. The marker, name and notes stay frozen; the destination
    (workspace, team) is taken from the current config, because the usual fix for a dead op is a config fix.
    """
    ops = store.dead_ops(deal_id)
    for op in ops:
        body = {**op.body, "workspace": settings.workspace, "team": settings.team}
        store.transition(
            op.op_key,
            "unknown",
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
    """Operator command: queue projects for deals that already qualified (e.g. before the baseline) and
    were modified at or after `since_ms`. Through the same ledger as everything else: a deal that has an op
    for the flow is skipped, so a backfill can never create a duplicate, however often it runs."""
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
