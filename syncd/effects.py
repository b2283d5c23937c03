"""Follow-up side effects of a created project, each exactly once, in order: finishing a template
instantiation, creating tasks, writing the project URL back to the CRM deal, and a Slack message.

Each effect is a row in `effects`, frozen with its project op, and run only once every earlier effect of the
same project is done. The rules per kind, from what each API offers:
- template: follow the instantiation job; when it succeeded, write the notes (with the marker) and what
  instantiation cannot set (owner, color, due date, custom fields) by one PUT, which is idempotent. A failed
  job makes the effect dead: the half-made project needs a human.
- task: like a project. `in_flight` is committed before the POST; an ambiguous outcome is `unknown` until
  Asana is asked for the task by its external gid (`GET /tasks/external:<gid>`), after the settle delay.
- writeback: a PATCH of one property to one value is idempotent, so it is simply retried until it lands. The
  write bumps the deal's modification time; the next poll sees a version whose rule result did not change,
  which queues nothing: no loop.
- notify: a Slack webhook has no way to ask "did you get it?". An ambiguous outcome is not resent (at most
  once) and is marked dead with that reason, so a human can look.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from syncd.errors import AuthError, RateLimited, RejectedError, RemoteError, TransientError
from syncd.models import CycleReport, Effect, State
from syncd.runtime import Runtime

log = logging.getLogger("syncd.effects")
JOB_POLL_SECONDS = 5.0


def run(rt: Runtime, report: CycleReport, stopping: Callable[[], bool]) -> None:
    """Run every due follow-up; each pass runs the next effect of every project, while that makes progress."""
    seen: set[tuple[str, State]] = set()
    settle = rt.settings.settle_seconds
    while batch := [e for e in rt.store.due_effects(rt.clock(), settle) if (e.effect_key, e.state) not in seen]:
        for effect in batch:
            seen.add((effect.effect_key, effect.state))
            if stopping() or not rt.breaker.allows(rt.clock()):
                return
            try:
                FollowUp(rt, effect, report).run()
            except AuthError:
                raise
            except RejectedError as exc:  # a follow-up call (job status, notes, task lookup) refused
                rt.store.effects.move(effect.effect_key, State.DEAD, rt.clock(), str(exc))
                report.dead.append(f"{effect.effect_key}: {exc}")
            except RemoteError as exc:
                report.errors.append(f"{effect.effect_key}: {exc}")


class FollowUp:
    """One due effect, driven one step through the ledger."""

    def __init__(self, rt: Runtime, effect: Effect, report: CycleReport) -> None:
        self.rt, self.effect, self.report = rt, effect, report
        self.ledger, self.key = rt.store.effects, effect.effect_key

    def move(self, state: State, detail: str, **fields: object) -> None:
        self.ledger.move(self.key, state, self.rt.clock(), detail, **fields)

    def dead(self, detail: str) -> None:
        self.move(State.DEAD, detail)
        self.report.dead.append(f"{self.key}: {detail}")

    def run(self) -> None:
        kind, state = self.effect.kind, self.effect.state
        if kind == "template":
            self.template()
        elif kind == "writeback":
            self.writeback()
        elif kind == "notify" and state == State.UNKNOWN:
            self.move(
                State.DEAD,
                "the Slack message may or may not have been delivered; it is not resent (Slack cannot be asked)",
            )
        elif kind == "task" and state == State.UNKNOWN and self.task_found():
            return
        else:
            self.send()

    def template(self) -> None:
        rt, effect = self.rt, self.effect
        status = rt.sink.job_status(effect.job_gid) if effect.job_gid else "succeeded"
        if status in ("not_started", "in_progress"):
            self.move(State.PENDING, f"template job {status}", next_attempt_at=rt.clock() + JOB_POLL_SECONDS)
        elif status == "succeeded":
            project = rt.sink.update_project(effect.asana_gid, dict(effect.body))  # one PUT: notes and the rest
            rt.store.ops.move(
                effect.op_key,
                State.CREATED,
                rt.clock(),
                "template job succeeded; notes written",
                asana_gid=effect.asana_gid,
                asana_url=project.url,
            )
            self.move(State.DONE, "notes written")
        else:
            self.move(State.DEAD, f"template job {status}: project {effect.asana_gid} is half-made")
            self.report.dead.append(f"{self.key}: template job {status}")

    def writeback(self) -> None:
        effect = self.effect
        try:
            self.rt.source.write_back(effect.deal_id, effect.body["property"], effect.asana_url or effect.asana_gid)
        except RejectedError as exc:
            self.move(State.DEAD, f"the CRM refused the write-back: {exc}")
            self.report.dead.append(f"{self.key}: {exc}")
            return
        except TransientError as exc:
            self.move(State.PENDING, str(exc), next_attempt_at=self.rt.clock() + 30)
            return
        self.move(State.DONE, "written back to the CRM")

    def task_found(self) -> bool:
        """After an ambiguous task POST: Asana's word on whether the task exists (else it is pending again)."""
        body = self.effect.body
        marker = body["notes"].rsplit("\n", 1)[-1]
        found = self.rt.sink.find_task(body["external"]["gid"], self.effect.asana_gid, marker)
        if found:
            self.move(State.DONE, f"reconcile found task {found}", result=found)
            return True
        self.move(State.PENDING, "reconcile: no task with this external gid")
        return False

    def send(self) -> None:
        """A task POST or a Slack message: `in_flight` committed first, never retried blindly."""
        rt, effect, kind = self.rt, self.effect, self.effect.kind
        if not self.ledger.begin(self.key, rt.clock()):
            return
        rt.hooks.step("after_effect_inflight_commit")
        if not rt.hooks.skip_lease_check:
            rt.store.check_lease()
        try:
            if kind == "task":
                result: str | None = rt.sink.create_task(effect.asana_gid, effect.body)
            else:
                text = effect.body["text"].replace("{project_url}", effect.asana_url or effect.asana_gid)
                rt.post(effect.body["webhook_env"], {"text": text})
                result = None
        except RateLimited as exc:
            wait = exc.retry_after if exc.retry_after is not None else 30.0
            self.move(State.PENDING, str(exc), next_attempt_at=rt.clock() + wait, attempts=effect.attempts)
            return
        except TransientError as exc:
            rt.breaker.failure(rt.clock())
            self.move(State.UNKNOWN if exc.sent else State.PENDING, str(exc), next_attempt_at=rt.clock() + 30)
            return
        except (RejectedError, AuthError) as exc:
            if isinstance(exc, AuthError) and kind == "task":
                self.move(State.PENDING, str(exc), attempts=effect.attempts)
                raise
            self.dead(str(exc))
            return
        rt.breaker.success()
        rt.hooks.step("after_effect_post")
        self.move(State.DONE, "sent", result=result)
