"""The status page `syncd run` serves on `/` beside `/metrics` and `/healthz` (`[metrics] listen`).

What an operator needs at a glance, read-only: health and its reasons, the flows (paused or not), the last
50 cycles, ops by state with the dead ones and their reasons, quarantine, and a deal search (`/?deal=ID`)
that shows what `syncd explain` prints. It is drawn from the same read side as the CLI (`syncd.store.read`
for the facts, `syncd.status_text` for the explain text), so the page and the commands cannot disagree.

Every string from the database or the CRM is escaped (`html.escape`); the page has no script. With
`[metrics] token_env`, every request to the server (page, metrics and health alike) must carry
`Authorization: Bearer <token>`, else 401; `syncd.config` requires it when `listen` is not loopback.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable
from html import escape
from typing import Any
from urllib.parse import parse_qs

from syncd.errors import StoreError
from syncd.flows import Flow
from syncd.models import iso_ms, iso_s
from syncd.status_text import format_explain
from syncd.store.read import CycleRun, Status, read_cycles, read_history, read_status

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
App = Callable[[Environ, StartResponse], Iterable[bytes]]

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: .5em 0 1.5em; } td, th { border: 1px solid #ccc; padding: 2px 8px; }
th { background: #f3f3f3; text-align: left; } .bad { color: #b00; font-weight: bold; } .ok { color: #070; }
pre { background: #f7f7f7; padding: .8em; white-space: pre-wrap; overflow-wrap: anywhere; }
"""


class StatusPage:
    """Renders the page from the database at `state_path()` for each request; `flows()` and `state_path()`
    are asked every time, so a SIGHUP reload shows at once."""

    def __init__(
        self,
        state_path: Callable[[], Any],
        flows: Callable[[], tuple[Flow, ...]],
        clock: Callable[[], float],
        stale_after_seconds: Callable[[], float | None],
    ) -> None:
        self.state_path, self.flows, self.clock, self.stale_after = state_path, flows, clock, stale_after_seconds

    def render(self, deal: str | None) -> str:
        path = self.state_path()
        try:
            status = read_status(path, self.clock(), self.stale_after())
            body = [self.health(status), self.flow_table(status), self.search(deal)]
            if deal:
                body.append(self.explain(deal))
            body += [self.ops(status), self.quarantine(status), self.cycles()]
        except StoreError as exc:
            body = [f'<p class="bad">{escape(str(exc))}</p>', self.search(deal)]
        return (
            '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>syncd status</title>'
            f"<style>{STYLE}</style></head><body><h1>syncd status</h1>"
            f"<p>Database {escape(str(path))}, read at {escape(iso_s(self.clock()) or '')}.</p>"
            + "".join(body)
            + "</body></html>"
        )

    def health(self, s: Status) -> str:
        if s.healthy:
            verdict = '<p id="health" class="ok">healthy</p>'
        else:
            reasons = "".join(f"<li>{escape(problem)}</li>" for problem in s.problems)
            verdict = f'<p id="health" class="bad">NOT healthy</p><ul id="problems">{reasons}</ul>'
        age = f" ({s.cursor_age_seconds:.0f} s ago)" if s.cursor_age_seconds is not None else ""
        facts = [
            ("cursor", (iso_ms(s.cursor_ms) or "not set") + age),
            ("last success", iso_s(s.last_success_at) or "never"),
            ("deals", s.deals),
            (
                "asana calls",
                s.health.breaker + (" (paused after repeated failures)" if s.health.breaker == "open" else ""),
            ),
            *(
                (f"{service} quota", f"{q['remaining']:,} of {q['limit']:,} daily calls left")
                for service, q in s.health.quota.items()
            ),
            *(("alert firing", key) for key in s.health.alerts_firing),
        ]
        return "<h2>Health</h2>" + verdict + table("facts", ("", ""), facts)

    def flow_table(self, s: Status) -> str:
        paused = set(getattr(s, "paused_flows", ()))  # `syncd flow pause`, where this syncd has it
        rows = [(flow.name, flow_state(flow, paused), flow.rule.source) for flow in self.flows()]
        requests = getattr(s, "pending_requests", ())  # what `retry`/`backfill` left for the next cycle
        waiting = "".join(f"<li>{escape(line)}: waits for the next cycle</li>" for line in requests)
        return (
            "<h2>Flows</h2>" + table("flows", ("flow", "state", "when"), rows) + (f"<ul>{waiting}</ul>" * bool(waiting))
        )

    def search(self, deal: str | None) -> str:
        value = escape(deal or "", quote=True)
        return (
            '<h2>Deal</h2><form method="get" action="/"><label>Deal id <input name="deal" '
            f'value="{value}"></label> <button type="submit">Explain</button></form>'
        )

    def explain(self, deal: str) -> str:
        history = read_history(self.state_path(), deal)
        if not history.versions and not history.ops:
            text = f"syncd has recorded nothing for deal {deal}: it was never polled, or not since it changed."
        else:
            text = format_explain(history, self.flows())
        return f'<pre id="explain">{escape(text)}</pre>'

    def ops(self, s: Status) -> str:
        counts = table("ops", ("state", "ops"), [(state.value, count) for state, count in s.ops.items()])
        if s.effects:
            follow_ups = [(state.value, count) for state, count in s.effects.items()]
            counts += "<h3>Follow-ups (tasks, write-backs, messages)</h3>" + table(
                "effects", ("state", "follow-ups"), follow_ups
            )
        dead = table(
            "dead", ("deal", "flow", "op", "reason"), [(d.deal_id, d.flow, d.op_key, d.reason) for d in s.dead_ops]
        )
        return f"<h2>Ops</h2>{counts}<h3>Dead ops (need a human: syncd retry DEAL)</h3>{dead}"

    def quarantine(self, s: Status) -> str:
        rows = [(q.record_id, q.reason, iso_s(q.seen_at)) for q in s.quarantined_records]
        return f"<h2>Quarantine ({s.quarantine} record(s))</h2>" + table(
            "quarantine", ("record", "reason", "seen"), rows
        )

    def cycles(self) -> str:
        rows = [
            (
                c.id,
                iso_s(c.started_at),
                outcome(c),
                "" if c.finished_at is None else f"{c.finished_at - c.started_at:.1f} s",
                c.deals_seen,
                c.created,
                c.error,
            )
            for c in read_cycles(self.state_path(), 50)
        ]
        head = ("cycle", "started", "outcome", "took", "deals seen", "created", "error")
        return "<h2>Last 50 cycles</h2>" + table("cycles", head, rows)


def flow_state(flow: Flow, paused: set[str]) -> str:
    if not getattr(flow, "enabled", True):  # `[[flow]] enabled = false`, where this syncd has it
        return "off (enabled = false)"
    return f"paused (syncd flow resume {flow.name})" if flow.name in paused else "active"


def outcome(c: CycleRun) -> str:
    if c.interrupted:
        return f"interrupted ({c.interrupted})"
    return "running or did not finish" if c.ok is None else "ok" if c.ok else "FAILED"


def table(name: str, head: tuple[str, ...], rows: Iterable[tuple[object, ...]]) -> str:
    cells = "".join(
        "<tr>" + "".join(f"<td>{escape('' if cell is None else str(cell))}</td>" for cell in row) + "</tr>"
        for row in rows
    )
    header = "".join(f"<th>{escape(h)}</th>" for h in head)
    return f'<table id="{name}"><tr>{header}</tr>{cells or f"<tr><td colspan={len(head)}>none</td></tr>"}</table>'


def site(page: StatusPage, metrics: App, token: str | None) -> App:
    """The server's one WSGI app: the bearer token (when set) on every request, `/` the page, the rest
    `metrics` (`/metrics`, `/healthz`)."""

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") not in ("", "/"):
            return metrics(environ, start_response)
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return answer(
                start_response, "405 Method Not Allowed", "the status page is read-only\n", [("Allow", "GET, HEAD")]
            )
        deal = parse_qs(environ.get("QUERY_STRING", "")).get("deal", [""])[0].strip() or None
        html = page.render(deal)
        return answer(start_response, "200 OK", html, [("Content-Type", "text/html; charset=utf-8")])

    return bearer(app, token)


def bearer(app: App, token: str | None) -> App:
    """`app` behind `Authorization: Bearer <token>` (401 without it); `app` itself when there is no token."""
    if not token:
        return app
    expected = f"Bearer {token}".encode()

    def guarded(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        given = str(environ.get("HTTP_AUTHORIZATION", "")).encode()
        if not hmac.compare_digest(given, expected):
            return answer(
                start_response,
                "401 Unauthorized",
                "a bearer token is required\n",
                [("WWW-Authenticate", 'Bearer realm="syncd"')],
            )
        return app(environ, start_response)

    return guarded


def answer(start_response: StartResponse, status: str, text: str, headers: list[tuple[str, str]]) -> list[bytes]:
    body = text.encode()
    if not any(name == "Content-Type" for name, _ in headers):
        headers = [("Content-Type", "text/plain; charset=utf-8"), *headers]
    start_response(
        status,
        [
            *headers,
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
            ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"),
        ],
    )
    return [body]
