"""Follow-up side effects of a created project, each exactly once, in order: finishing a template
instantiation, creating tasks, writing the project URL back to the CRM deal, and a Slack message.

Each effect is a row in `effects`, frozen with its project op, and run only once every earlier effect of the
same project is done. The rules per kind, from what each API offers:
- template: follow the instantiation job; when it succeeded, write the notes (with the marker) by PUT, which
  is idempotent. A failed job makes the effect dead: the half-made project needs a human.
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
from typing import Any, Protocol

from syncd.breaker import Breaker
from syncd.errors import AuthError, RateLimited, RejectedError, RemoteError, TransientError
from syncd.models import CycleReport
from syncd.sinks.asana import AsanaSink
from syncd.store import Store

log = logging.getLogger("syncd.effects")
JOB_POLL_SECONDS = 5.0


class WriteBack(Protocol):
    def write_back(self, deal_id: str, prop: str, value: str) -> None: ...


def run(
    store: Store,
    sink: AsanaSink,
    crm: WriteBack,
    post: Callable[[str, dict[str, Any]], None],
    report: CycleReport,
    *,
    clock: Callable[[], float],
    settle_seconds: float,
    breaker: Breaker,
    stopping: Callable[[], bool],
    step: Callable[[str], None] = lambda name: None,
) -> None:
    seen: set[tuple[str, str]] = set()
    while batch := [e for e in store.due_effects(clock(), settle_seconds) if (e["effect_key"], e["state"]) not in seen]:
        for effect in batch:  # each pass runs the next effect of every project; loop while that makes progress
            seen.add((effect["effect_key"], effect["state"]))
            if stopping() or not breaker.allows(clock()):
                return
            key = effect["effect_key"]
            try:
                _run_one(store, sink, crm, post, effect, report, clock=clock, breaker=breaker, step=step)
            except AuthError:
                raise
            except RejectedError as exc:  # a follow-up call (job status, notes, task lookup) refused
                store.effect_transition(key, "dead", clock(), str(exc))
                report.dead.append(f"{key}: {exc}")
            except RemoteError as exc:
                report.errors.append(f"{key}: {exc}")


def _run_one(
    store: Store,
    sink: AsanaSink,
    crm: WriteBack,
    post: Callable[[str, dict[str, Any]], None],
    effect: dict[str, Any],
    report: CycleReport,
    *,
    clock: Callable[[], float],
    breaker: Breaker,
    step: Callable[[str], None],
) -> None:
    key, kind, body, gid = effect["effect_key"], effect["kind"], effect["body"], effect["asana_gid"]
    if kind == "template":
        status = sink.job_status(effect["job_gid"]) if effect["job_gid"] else "succeeded"
        if status in ("not_started", "in_progress"):
            store.effect_transition(
                key, "pending", clock(), f"template job {status}", next_attempt_at=clock() + JOB_POLL_SECONDS
            )
        elif status == "succeeded":
            project = sink.update_project(gid, {"name": body["name"], "notes": body["notes"]})
            store.transition(
                effect["op_key"],
                "created",
                clock(),
                "template job succeeded; notes written",
                asana_gid=gid,
                asana_url=project.url,
            )
            store.effect_transition(key, "done", clock(), None)
        else:
            store.effect_transition(key, "dead", clock(), f"template job {status}: project {gid} is half-made")
            report.dead.append(f"{key}: template job {status}")
        return
    if kind == "writeback":
        try:
            crm.write_back(effect["deal_id"], body["property"], effect["asana_url"] or gid)
        except RejectedError as exc:
            store.effect_transition(key, "dead", clock(), f"the CRM refused the write-back: {exc}")
            report.dead.append(f"{key}: {exc}")
            return
        except TransientError as exc:
            store.effect_transition(key, "pending", clock(), str(exc), next_attempt_at=clock() + 30)
            return
        store.effect_transition(key, "done", clock(), None)
        return
    if kind == "task" and effect["state"] == "unknown":
        marker = body["notes"].rsplit("\n", 1)[-1]
        found = sink.find_task(body["external"]["gid"], gid, marker)
        if found:
            store.effect_transition(key, "done", clock(), None, result=found)
            return
        store.effect_transition(key, "pending", clock(), "reconcile: no task with this external gid")
        effect = {**effect, "state": "pending"}
    if kind == "notify" and effect["state"] == "unknown":
        store.effect_transition(
            key,
            "dead",
            clock(),
            "the Slack message may or may not have been delivered; it is not resent (Slack cannot be asked)",
        )
        return
    if not store.begin_effect(key, clock()):
        return
    step("after_effect_inflight_commit")
    try:
        if kind == "task":
            result = sink.create_task(gid, body)
        else:
            text = body["text"].replace("{project_url}", effect["asana_url"] or gid)
            post(body["webhook_env"], {"text": text})
            result = None
    except RateLimited as exc:
        wait = exc.retry_after if exc.retry_after is not None else 30.0
        store.effect_transition(
            key, "pending", clock(), str(exc), next_attempt_at=clock() + wait, attempts=effect["attempts"]
        )
        return
    except TransientError as exc:
        breaker.failure(clock())
        state = "unknown" if exc.sent else "pending"
        store.effect_transition(key, state, clock(), str(exc), next_attempt_at=clock() + 30)
        return
    except (RejectedError, AuthError) as exc:
        if isinstance(exc, AuthError) and kind == "task":
            store.effect_transition(key, "pending", clock(), str(exc), attempts=effect["attempts"])
            raise
        store.effect_transition(key, "dead", clock(), str(exc))
        report.dead.append(f"{key}: {exc}")
        return
    breaker.success()
    step("after_effect_post")
    store.effect_transition(key, "done", clock(), None, result=result)
