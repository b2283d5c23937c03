"""One cycle: poll the CRM and record what changed, then drive due ops through the state machine.

No click, no APScheduler, no environment: everything arrives in the `Runtime`, so tests and the daemon run
the same code. `rt.hooks.step(name)` is called at each point where a crash would be interesting.

The exactly-once invariant, enforced here: a POST is sent only for an op whose durable state is a freshly
committed `in_flight` (`Ledger.begin`), and an op that was ever `unknown` is POSTed again only after a
complete listing, taken after its settle, found no marker. The settle follows what is known about the failed
request (`TransientError.doubt`, kept with the op): `listing_lag_seconds` when the server was done with it (it
answered, or hung up on the whole request), else `settle_seconds`, which exceeds the read timeout.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from syncd import asana_rate, baselines, effects
from syncd import diff as diffing
from syncd.errors import AuthError, RateLimited, RejectedError, RemoteError, TransientError
from syncd.flows import Flow, new_op, unconfigured
from syncd.journal import cycle_event
from syncd.marker import without_markers
from syncd.models import CycleReport, Op, State
from syncd.progress import Progress
from syncd.runtime import Runtime
from syncd.sinks.asana_fields import Unmapped

log = logging.getLogger("syncd.engine")


def title(body: dict[str, object]) -> str:
    """A project's name for people: without the marker a template instantiation carries in its name."""
    return without_markers(str(body.get("name", "")))


def token_rejected(exc: AuthError) -> AuthError:
    return AuthError(
        f"asana: the token was rejected (401). Check the variable named by [asana] token_env; no project "
        f"is created until it works. ({exc})",
        service="asana",
        status=401,
    )


def _never() -> bool:
    return False


def held_flows(flows: tuple[Flow, ...], paused: frozenset[str]) -> frozenset[str]:
    """The op flow names a cycle creates nothing for: paused (`syncd flow pause`) or `enabled = false` flows,
    under their previous names too. Their deals are still recorded, so a resumed flow misses nothing."""
    held = {f.name for f in flows if not f.enabled} | set(paused)
    return frozenset(held | {old for f in flows if f.name in held for old in f.previous_names})


class Cycle:
    """One cycle over a runtime. `stopping()` is asked between pages and between ops (SIGTERM)."""

    def __init__(
        self,
        rt: Runtime,
        *,
        dry_run: bool = False,
        stopping: Callable[[], bool] = _never,
        poll: bool = True,
        stopped_by: Callable[[], str | None] = lambda: "a stop signal",
    ) -> None:
        """`poll=False`: only drive due ops (what `retry` and `backfill` queued), reading nothing new.
        `stopped_by()`: what to record as having interrupted the cycle when `stopping()` was true at its end."""
        self.rt, self.store, self.stopping, self.polls, self.stopped_by = rt, rt.store, stopping, poll, stopped_by
        self.report = CycleReport(dry_run=dry_run, polled=poll)
        self._asana_failed: list[RemoteError] = []
        self._seen: set[str] = set()
        self.held = held_flows(rt.flows, rt.store.inbox.paused())

    def run(self) -> CycleReport:
        rt, store, report = self.rt, self.store, self.report
        for http in (rt.source.http, rt.sink.http):
            http.pause_until_wall(store.pause(http.service))
            if not report.dry_run:
                http.on_pause = lambda until, service=http.service: store.save_pause(service, until)
        asana_rate.apply(rt.sink.http, store, rt.settings.workspace, rt.clock, learn=not report.dry_run)
        if report.dry_run:
            self._poll()
            report.cursor_ms = store.cursor()
            return report
        store.recover_in_flight(rt.clock())
        cycle = store.start_cycle(rt.clock())
        rt.before_cycle()
        report.warnings += [
            f"flow {f.name} is {'paused' if f.enabled else 'off (enabled = false)'}: its deals are recorded, its "
            "projects wait until it is resumed"
            for f in rt.flows
            if f.name in self.held
        ]
        if self.polls:
            self._poll()
        try:
            if self._asana_failed:
                raise self._asana_failed[0]
            self.execute()
            effects.run(rt, report, self.stopping)
        except RemoteError as exc:
            report.errors.append(str(exc))
            if isinstance(exc, AuthError):
                report.auth_failures[exc.service] = str(exc)
        report.cursor_ms = store.cursor()
        report.interrupted = self.stopped_by() if self.stopping() else None
        due_at = store.next_due(rt.settings.settle_seconds, rt.settings.listing_lag_seconds, self.held)
        report.next_due_in = None if due_at is None else due_at - rt.clock()
        store.finish_cycle(
            cycle,
            rt.clock(),
            ok=not report.errors,
            error="; ".join(report.errors) or None,
            deals_seen=report.deals_seen,
            created=len(report.created),
            interrupted=report.interrupted,
        )
        rt.after_cycle(report)
        log.log(*cycle_event(report))
        return report

    # -- poll and record -------------------------------------------------------------------------------
    def _poll(self) -> None:
        try:
            self.poll()
        except AuthError as exc:
            sentence = (
                f"{exc.service} rejected the credentials ({exc.status}): check {self.rt.source.credential_hint} "
                f"and its read access to deals. {exc}"
            )
            self.report.errors.append(sentence)
            self.report.auth_failures[exc.service] = sentence
        except RemoteError as exc:
            self.report.errors.append(f"polling {exc.service} stopped; the cursor stays where it was: {exc}")

    def poll(self) -> None:
        rt, store, report = self.rt, self.store, self.report
        settings, by_name = rt.settings, {flow.name: flow for flow in rt.flows}
        need, since_ms = baselines.plan(store, rt.flows, rt.settings, dry_run=report.dry_run)
        report.warnings += unconfigured(store.ledger_flows(), rt.flows)
        report.baseline = not store.baseline_done()
        report.rebaselined = {} if report.baseline else need
        cursor = store.cursor()
        start = None if cursor is None or need else cursor - int(settings.overlap_seconds * 1000)
        progress = Progress("baseline" if report.baseline else "poll", rt.clock)
        for page in rt.source.pages(start, int(settings.delay_seconds * 1000)):
            report.pages += 1
            self._seen.update(d.id for d in page.deals)  # re-anchored queries and the overlap re-read deals
            report.deals_seen = len(self._seen)
            progress.page(report.pages, report.deals_seen)
            report.quarantined += len(page.quarantined)
            stored = store.stored_deals(d.id for d in page.deals)
            changes = diffing.diff(page.deals, stored, rt.flows, baselining=need, baseline_at_ms=since_ms)
            report.deals_changed += len(changes)
            ops = [
                new_op(
                    by_name[name],
                    change.deal,
                    crm=rt.source.kind,
                    account=settings.account,
                    workspace=settings.workspace,
                    team=settings.team,
                    entry=change.entries.get(name, 1) if by_name[name].refire == "per_entry" else 1,
                )
                for change in changes
                for name in change.newly
            ]
            if report.dry_run:
                report.ops_queued += len(ops)
                report.would_create += [title(op.body) for op in ops if op.flow not in self.held]
                continue
            rt.hooks.step("before_page_commit")
            report.ops_queued += store.record_page(changes, ops, page.quarantined, page.cursor_ms, rt.clock())
            rt.hooks.step("after_page_commit")
            if self.stopping():
                return
            self.drain()
        progress.done(report.pages, report.deals_seen)
        if report.dry_run:
            return
        if report.baseline:
            store.mark_baseline_done(rt.clock())
        if need:
            store.record_flow_baselines([(n, by_name[n].rule.source, why) for n, why in need.items()], rt.clock())

    def drain(self) -> None:
        """Between pages, create due projects while Asana's bucket has a token now, so a big poll and its
        creates share the wall clock instead of waiting one for the other. Never sleeps, never reconciles."""
        rt = self.rt
        if self._asana_failed:
            return
        try:
            for op in self.due():
                if op.state != State.PENDING or not rt.sink.http.ready() or not rt.breaker.allows(rt.clock()):
                    return
                if self.stopping():
                    return
                self.attempt(op)
        except RemoteError as exc:
            self._asana_failed.append(exc)

    # -- execute: reconcile, then attempt --------------------------------------------------------------
    def due(self) -> list[Op]:
        settings = self.rt.settings
        return self.store.due_ops(self.rt.clock(), settings.settle_seconds, settings.listing_lag_seconds, self.held)

    def paused(self) -> bool:
        breaker = self.rt.breaker
        if breaker.allows(self.rt.clock()):
            return False
        self.report.errors.append(
            f"asana: calls paused for {breaker.cooldown:g}s after {breaker.failures} failures in a row; "
            "waiting ops spend no attempts"
        )
        return True

    def execute(self) -> None:
        rt, store = self.rt, self.store
        due = self.due()
        if not due or self.paused():
            return
        unknown = [op for op in due if op.state == State.UNKNOWN]
        if unknown and not rt.hooks.blind_retry:
            self.reconcile(unknown)
        else:
            for op in unknown:
                store.ops.move(op.op_key, State.PENDING, rt.clock(), "UNSAFE: blind retry without reconcile")
        for op in self.due():
            if self.stopping() or self.paused():
                return
            if op.state == State.PENDING:
                self.attempt(op)

    def team(self, op: Op) -> str:
        """The team the op's project is created in (frozen in its body): where its marker must be looked for."""
        return op.team or self.rt.settings.team

    def list_team(self, team: str) -> None:
        """One complete listing of `team`, now, into the directory. Raises RemoteError: a failed listing
        proves nothing."""
        rt = self.rt
        try:
            by_marker = rt.sink.projects_by_marker(team, on_page=self.stopping)
        except TransientError:
            rt.breaker.failure(rt.clock())
            raise
        except AuthError as exc:
            if exc.status == 401:
                raise token_rejected(exc) from exc
            raise
        rt.breaker.success()
        rt.directory.load(team, by_marker)

    def reconcile(self, ops: list[Op]) -> None:
        """Decide each `unknown` op from a complete listing, taken now, of the team it was sent to. A failed
        listing proves nothing: stay `unknown`."""
        rt, report = self.rt, self.report
        for team in sorted({self.team(op) for op in ops}):
            try:
                self.list_team(team)
            except AuthError:
                raise
            except RemoteError as exc:
                report.errors.append(f"reconcile postponed, the project listing failed: {exc}")
                return
        for op in ops:
            report.reconciled += 1
            if self.adopt(op, "reconcile found the marker"):
                report.created.append(f"{title(op.body)} (found by reconcile)")
            elif op.attempts >= rt.settings.max_attempts:
                self._dead(op, f"no project after {op.attempts} attempts; check Asana, then 'syncd retry'")
            else:
                self.store.ops.move(
                    op.op_key, State.PENDING, rt.clock(), "reconcile: a complete listing has no such marker"
                )

    def adopt(self, op: Op, why: str) -> bool:
        """Record the project the directory knows for `op` (by its marker or an alias), if there is one."""
        found = self.rt.directory.find(self.team(op), (op.marker, *op.aliases))
        if not found:
            return False
        project = found[0]
        detail = f"{why} in project {project.gid}"
        if len(found) > 1:
            others = ", ".join(p.gid for p in found[1:])
            detail += f"; DUPLICATES found too ({others}): keep the oldest and check the others by hand"
            log.error("duplicate projects for %s: %s and %s", op.marker, project.gid, others)
            self.report.duplicates.append(op.marker)
        now = self.rt.clock()
        seen = {"last_attempt_at": now} if op.last_attempt_at is None else {}  # asked Asana, sent nothing
        self.store.ops.move(op.op_key, State.CREATED, now, detail, asana_gid=project.gid, asana_url=project.url, **seen)
        return True

    def _dead(self, op: Op, detail: str) -> None:
        self.store.ops.move(op.op_key, State.DEAD, self.rt.clock(), detail)
        self.report.dead.append(f"{op.op_key}: {detail}")

    def attempt(self, op: Op) -> None:
        rt, ledger, clock = self.rt, self.store.ops, self.rt.clock
        if op.attempts >= rt.settings.max_attempts:
            self._dead(op, f"gave up after {op.attempts} attempts; fix the cause, then 'syncd retry {op.deal_id}'")
            return
        team = self.team(op)
        if not rt.directory.knows(team) and not rt.hooks.blind_retry:
            try:
                self.list_team(team)  # check before create: the ledger may have gone back in time
            except (RejectedError, AuthError) as exc:
                if isinstance(exc, AuthError) and exc.status == 401:
                    raise
                self._dead(op, f"Asana refused the listing of team {team}, so nothing is created there: {exc}")
                return
        if not rt.hooks.blind_retry and self.adopt(op, "check before create: the marker is already"):
            self.report.created.append(f"{title(op.body)} (already in Asana)")
            return
        if not ledger.begin(op.op_key, clock()):
            return
        rt.hooks.step("after_inflight_commit")
        if not rt.hooks.skip_lease_check:
            self.store.check_lease()  # PostgreSQL: the request must end before the lease can
        job_gid = None
        try:
            if "template" in op.body:
                project, job_gid = rt.sink.instantiate(op.body)
            else:
                project = rt.sink.create_project(op.body)
        except RateLimited as exc:
            wait = exc.retry_after if exc.retry_after is not None else rt.settings.retry_base_seconds
            until = clock() + wait
            ledger.move(
                op.op_key, State.PENDING, clock(), f"rate limited: {exc}", attempts=op.attempts, next_attempt_at=until
            )
            return
        except TransientError as exc:
            rt.breaker.failure(clock())
            if exc.sent:
                ledger.move(op.op_key, State.UNKNOWN, clock(), f"outcome unknown ({exc.doubt}): {exc}", doubt=exc.doubt)
            else:
                backoff = rt.settings.retry_base_seconds * 2 ** min(op.attempts, 6)
                ledger.move(op.op_key, State.PENDING, clock(), f"not sent: {exc}", next_attempt_at=clock() + backoff)
            rt.hooks.step("after_failed_post")
            return
        except AuthError as exc:
            if exc.status == 403:
                self._dead(op, f"Asana refused (403): {exc}")
                return
            ledger.move(op.op_key, State.PENDING, clock(), f"credentials rejected: {exc}", attempts=op.attempts)
            raise token_rejected(exc) from exc
        except RejectedError as exc:
            self._dead(op, str(exc) if isinstance(exc, Unmapped) else f"Asana rejected the request: {exc}")
            return
        rt.breaker.success()
        rt.hooks.step("after_post")
        detail = f"created project {project.gid}" + (f" (template job {job_gid})" if job_gid else "")
        ledger.move(
            op.op_key, State.CREATED, clock(), detail, asana_gid=project.gid, asana_url=project.url, job_gid=job_gid
        )
        rt.directory.add(team, op.marker, project)
        self.report.created.append(f"{title(op.body)} -> {project.url or project.gid}")
        rt.hooks.step("after_created_commit")
