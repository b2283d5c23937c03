"""A tiny loopback HTTP server that the fake CRMs and the fake Asana build on.

Why stdlib and not a web framework: the fakes must start in milliseconds on 127.0.0.1:0, in tests and in
`syncd demo`, with no extra dependency. A fake subclasses `FakeServer` and implements `handle()`, which turns
a parsed `Request` into a `Response`. A `Response` can also ask the transport to misbehave the way real
networks do: drop the connection without answering, or answer late.

This module shares no code with `syncd.sources` or `syncd.sinks`: the fakes are written from the vendors'
documentation so that a misunderstanding of an API in the client is not mirrored here.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import random
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    received_at: float

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    @property
    def bearer(self) -> str | None:
        auth = self.headers.get("authorization", "")
        return auth[7:] if auth.startswith("Bearer ") else None


@dataclass
class Response:
    status: int
    body: Any = None  # JSON-able, or bytes sent as they are
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # close the connection without sending anything
    delay: float = 0.0  # seconds to wait before sending

    def encoded(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body).encode()


class FakeServer:
    """Base of every fake: threading HTTP/1.1 server with keep-alive on 127.0.0.1, port chosen by the OS.

    `clock_offset` shifts the server's idea of "now" (and its `Date` header) against the local clock, to
    test clock skew. `requests` records every request received, in order.
    """

    service = "fake"

    FAULT_KINDS: tuple[str, ...] = ()
    FAULT_ROUTES: tuple[str, ...] = ()

    def __init__(self, seed: int = 0) -> None:
        self.lock = threading.RLock()
        self.requests: list[Request] = []
        self.clock_offset = 0.0
        self.fault_rate = 0.0
        self.fault_kinds: list[str] = list(self.FAULT_KINDS)
        self.faults_injected = 0
        self._rng = random.Random(seed)
        self._faults: list[list[Any]] = []  # [kind, times left, route, params]
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- to override -------------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        raise NotImplementedError

    # -- faults ------------------------------------------------------------------------------------------
    def inject(self, kind: str, times: int = 1, route: str | None = None, **params: Any) -> None:
        """Apply fault `kind` to the next `times` requests on `route` (None: any). Each fake documents its kinds,
        routes and params (`delay=` for "slow", `apply=True` to run the request before spoiling the answer...)."""
        if kind not in self.FAULT_KINDS or route not in (None, *self.FAULT_ROUTES):
            raise ValueError(f"unknown fault kind {kind!r} or route {route!r}")
        with self.lock:
            self._faults.append([kind, times, route, params])

    def reseed(self, seed: int) -> None:
        """Restart the random fault schedule from `seed`, so a failing test's run can be replayed."""
        with self.lock:
            self._rng.seed(seed)

    def _next_fault(self, route: str) -> tuple[str, dict] | None:
        """The fault for this request: a queued one first, else one drawn at `fault_rate`."""
        for fault in self._faults:
            if fault[2] in (None, route):
                fault[1] -= 1
                if fault[1] <= 0:
                    self._faults.remove(fault)
                self.faults_injected += 1
                return fault[0], fault[3]
        if self.fault_rate and self.fault_kinds and self._rng.random() < self.fault_rate:
            self.faults_injected += 1
            return self._rng.choice(self.fault_kinds), {}
        return None

    MALFORMED_BODY = b'{"data": ['  # each fake sets a truncated body in its own API's shape

    def _transport_fault(self, kind: str, params: dict, response: Response | None) -> Response | None:
        """The faults every API can suffer the same way; None for the vendor-specific kinds."""
        if kind == "slow" and response is not None:
            response.delay = float(params.get("delay", 2.0))
            return response
        if kind == "drop":
            return Response(0, drop=True)
        if kind == "malformed_json":
            return Response(200, self.MALFORMED_BODY)
        if kind == "wrong_envelope":
            return Response(200, {"unexpected": True})
        return None

    # -- lifecycle ---------------------------------------------------------------------------------
    def now(self) -> float:
        return time.time() + self.clock_offset

    @property
    def url(self) -> str:
        assert self._httpd is not None, "start() the fake first"
        host, port = self._httpd.server_address[:2]
        if isinstance(host, bytes):
            host = host.decode()
        return f"http://{host}:{port}"

    def start(self) -> Self:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def date_time_string(self, timestamp: float | None = None) -> str:
                return email.utils.formatdate(fake.now() if timestamp is None else timestamp, usegmt=True)

            def _serve(self) -> None:
                split = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
                request = Request(
                    method=self.command,
                    path=split.path,
                    query=query,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                    received_at=time.time(),
                )
                with fake.lock:
                    fake.requests.append(request)
                response = fake.handle(request)
                if response.delay:
                    time.sleep(response.delay)
                if response.drop:
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(2)
                    return
                payload = response.encoded()
                self.send_response(response.status)
                if payload and "Content-Type" not in response.headers:
                    self.send_header("Content-Type", "application/json; charset=utf-8")
                for name, value in response.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                try:
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=self.service, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
