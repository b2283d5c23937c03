"""A fake webhook receiver: a Slack incoming webhook, or any endpoint that takes a JSON POST.

Written from Slack's incoming-webhook documentation: a POST of a JSON object with `text` answers `200` with
the plain-text body `ok`; a body that is not JSON answers `400 invalid_payload`, one without `text` (or
`blocks`) `400 no_text`; a revoked URL `404 no_service`; too many messages `429` with `Retry-After`. The generic
mode accepts any JSON and answers `200 ok` too (many receivers answer text).

`received` records every POST as (path, parsed JSON body or None), faults included; `delivered` only those
answered 2xx. `inject(kind, times)` makes the next `times` POSTs misbehave: "500", "400" (this payload is
refused), "404" (the URL was revoked), "429", "drop" (close the connection unanswered) or "slow" (answer
after `delay` seconds).
"""

from __future__ import annotations

import json
from typing import Any

from syncd.sandbox.server import FakeServer, Request, Response

KINDS = ("500", "400", "404", "429", "drop", "slow")


def _text(status: int, body: str, **headers: str) -> Response:
    return Response(status, body.encode(), {"Content-Type": "text/plain; charset=utf-8", **headers})


class FakeWebhook(FakeServer):
    service = "webhook"

    def __init__(self, *, slack: bool = True) -> None:
        super().__init__()
        self.slack = slack
        self.received: list[tuple[str, Any]] = []
        self.delivered: list[tuple[str, Any]] = []
        self._faults: list[list[Any]] = []  # [kind, times left, params]

    def inject(self, kind: str, times: int = 1, route: str | None = None, **params: Any) -> None:
        """Make the next `times` POSTs misbehave; `retry_after` (429) and `delay` (slow) are optional. Every POST
        is one route, so `route` must stay None."""
        if kind not in KINDS:
            raise ValueError(f"unknown fault {kind!r}; use one of {', '.join(KINDS)}")
        if route is not None:
            raise ValueError(f"unknown fault route {route!r}; the webhook has one route, leave it None")
        with self.lock:
            self._faults.append([kind, times, params])

    def texts(self) -> list[str]:
        """The `text` of every delivered Slack message."""
        with self.lock:
            return [body["text"] for _, body in self.delivered if isinstance(body, dict) and "text" in body]

    def handle(self, request: Request) -> Response:
        if request.method != "POST":
            return _text(405, "invalid_method")
        try:
            body = json.loads(request.body)
        except ValueError:
            body = None
        with self.lock:
            self.received.append((request.path, body))
            fault = self._take_fault()
        response = self._fault(fault) if fault else self._answer(body)
        if 200 <= response.status < 300 and not response.drop:
            with self.lock:
                self.delivered.append((request.path, body))
        return response

    def _answer(self, body: Any) -> Response:
        if not isinstance(body, dict):
            return _text(400, "invalid_payload")
        if self.slack and not (body.get("text") or body.get("blocks")):
            return _text(400, "no_text")
        return _text(200, "ok")

    def _take_fault(self) -> tuple[str, dict[str, Any]] | None:
        if not self._faults:
            return None
        entry = self._faults[0]
        entry[1] -= 1
        if entry[1] <= 0:
            self._faults.pop(0)
        return entry[0], entry[2]

    def _fault(self, fault: tuple[str, dict[str, Any]]) -> Response:
        kind, params = fault
        if kind == "drop":
            return Response(0, drop=True)
        if kind == "slow":
            response = _text(200, "ok")
            response.delay = float(params.get("delay", 2.0))
            return response
        if kind == "429":
            return _text(429, "rate_limited", **{"Retry-After": str(params.get("retry_after", 1))})
        if kind == "400":
            return _text(400, "invalid_payload")
        if kind == "404":
            return _text(404, "no_service")
        return _text(500, "rollup_error")
