"""The one HTTP layer: every call to a CRM, to the project sink or to a webhook goes through `HttpClient.call`.

Its contract:
- one `requests.Session` per service (keep-alive), `trust_env=False`, no redirects, `(connect, read)`
  timeouts on every call, the token only in a header and only to the configured origin;
- proactive rate limiting (a `TokenBucket` per bucket name) and reactive limiting (429/`Retry-After`, and a
  vendor's own limit headers, read by its `Profile`, pause the bucket); a learning bucket lowers its rate to
  what a 429 with `Retry-After` reveals, and `on_limit` is told, so the limit can outlive the process;
- a spent daily or other long quota (the profile's `quota_spent`: HubSpot's `DAILY` 429, Salesforce's 403
  `REQUEST_LIMIT_EXCEEDED`) raises `QuotaExhausted` at once, never retried, and pauses every bucket of the
  service; `on_pause` is told the wall-clock end, so a restarted process honours it too;
- `requests` exceptions and error statuses become syncd's own (see `syncd.errors`), with redacted text;
- idempotent calls retry transient errors with `backoff` (full jitter; a `Retry-After` is honoured exactly,
  through the bucket pause, never jittered below). Non-idempotent calls (creating a project) are never
  retried here: their retry is a state transition in the ops table;
- one log line per call.

This module knows standard HTTP only. What a vendor's answers mean beyond it (its limit and quota headers, the
shape of its error bodies, an error status that means "too many requests") is a `Profile` (`syncd.profile`),
defined next to that vendor's client code and handed to `HttpClient`; the default, `GENERIC`, reads only
standard things.
"""

from __future__ import annotations

import http.client
import logging
import random
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import backoff
import requests
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from syncd.errors import AuthError, QuotaExhausted, RateLimited, RejectedError, RemoteError, TransientError
from syncd.profile import GENERIC, Profile, parse_date, parse_retry_after
from syncd.profile import QuotaPause as QuotaPause
from syncd.ratelimit import TokenBucket
from syncd.redact import redact, redact_url, register_secret

log = logging.getLogger("syncd.http")


@dataclass(frozen=True)
class RetryPolicy:
    max_tries: int = 5
    max_time: float = 120.0
    base: float = 0.5
    cap: float = 30.0


@dataclass(frozen=True)
class Form:
    """A form-encoded request body (OAuth token endpoints); any other body is sent as JSON."""

    fields: Mapping[str, str] = field(repr=False)


RATE_LIMITED = (429, 423, 477)  # statuses that always mean "slow down"


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    data: Any
    server_time: float | None  # from the Date header, epoch seconds


@dataclass
class HttpClient:
    service: str
    base_url: str
    auth_headers: dict[str, str] = field(repr=False)
    buckets: dict[str, TokenBucket]
    profile: Profile = GENERIC
    timeout: tuple[float, float] = (5.0, 30.0)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    wall: Callable[[], float] = time.time  # epoch seconds: HTTP dates and pauses that outlive the process
    rng: random.Random = field(default_factory=random.Random)
    max_wait: float = 60.0  # longest rate-limit wait taken inside a call
    on_pause: Callable[[float], None] | None = None  # told the wall-clock end of a server-ordered pause
    on_limit: Callable[[int], None] | None = None  # told the per-window limit a 429 revealed (a learning bucket)
    # every call: (service, status or None when there was no answer, the profile's daily quota or None)
    on_response: Callable[[str, int | None, tuple[int, int] | None], None] | None = None

    def __post_init__(self) -> None:
        for value in self.auth_headers.values():
            register_secret(value.removeprefix("Bearer "))
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.headers.update({"Accept": "application/json", "User-Agent": "syncd/0.1"})
        self._origin = urlsplit(self.base_url)[:2]

    def close(self) -> None:
        self.session.close()

    def ready(self, bucket: str = "default") -> bool:
        """True when a call on `bucket` would go out now, without waiting for the rate limiter."""
        return (self.buckets.get(bucket) or self.buckets["default"]).available(self.clock())

    def retarget(self, base_url: str, auth_headers: dict[str, str]) -> None:
        """Point the client at another origin with new credentials (e.g. the instance URL and access token an
        OAuth refresh returns). The caller has validated `base_url`."""
        for value in auth_headers.values():
            register_secret(value.removeprefix("Bearer "))
        self.base_url, self.auth_headers = base_url.rstrip("/"), auth_headers
        self._origin = urlsplit(self.base_url)[:2]

    def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        bucket: str = "default",
        idempotent: bool = True,
        expect: Callable[[Any], str | None] | None = None,
    ) -> Reply:
        """Send one request (retrying transient failures when `idempotent`); return the parsed 2xx reply.

        `expect(data)` returns what is wrong with a 2xx body (or None): a wrong envelope is a transient error,
        retried like an unparsable body, and never reaches the caller."""
        url = self._url(path)

        def send(*args: Any) -> Reply:
            reply = self._send(*args)
            problem = expect(reply.data) if expect else None
            if problem:
                raise self._transient(f"{redact_url(url)} answered {reply.status} with {problem}", True, reply.status)
            return reply

        if not idempotent:
            return send(method, url, params, json, bucket)
        retrying = backoff.on_exception(
            self._waits,
            TransientError,
            max_tries=self.retry.max_tries,
            max_time=self.retry.max_time,
            jitter=None,
            on_backoff=self._log_retry,
            giveup=lambda exc: (
                isinstance(exc, QuotaExhausted)
                or (isinstance(exc, RateLimited) and (exc.retry_after or 0) > self.max_wait)
            ),
            logger=None,
        )
        return retrying(send)(method, url, params, json, bucket)

    # -- internals -----------------------------------------------------------------------------------
    def _url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            if urlsplit(path)[:2] != self._origin:
                raise RejectedError(f"{self.service}: refusing to follow a link to another host", service=self.service)
            return path
        return self.base_url + path

    def _waits(self) -> Generator[float, BaseException | None, None]:
        """backoff's wait generator: it is sent each exception. A rate limit waits in the bucket instead."""
        attempt = 0
        exc = yield 0.0
        while True:
            if isinstance(exc, RateLimited) and exc.retry_after is not None:
                wait = 0.0  # the bucket is paused until Retry-After has elapsed
            else:
                wait = self.rng.uniform(0, min(self.retry.cap, self.retry.base * 2**attempt))
                if isinstance(exc, RateLimited):
                    wait = max(wait, self.retry.base)
            attempt += 1
            exc = yield wait

    def _log_retry(self, details: Any) -> None:
        exc = details.get("exception")
        log.warning("%s: retrying in %.1fs after attempt %d: %s", self.service, details["wait"], details["tries"], exc)

    def _send(self, method: str, url: str, params: Mapping[str, Any] | None, body: Any, bucket: str) -> Reply:
        limiter = self.buckets.get(bucket) or self.buckets["default"]
        wait = limiter.reserve(self.clock())
        if wait > self.max_wait:
            limiter.give_back()  # nothing is sent
            # A long server-ordered pause ends the call instead of stalling the cycle (and the watchdog):
            # nothing was sent; POSTs stay pending, reads resume next cycle.
            raise RateLimited(
                f"{self.service}: asked to wait {wait:.0f}s before the next request; resuming next cycle",
                service=self.service,
                status=None,
                retry_after=wait,
            )
        if wait > 0:
            log.debug("%s: waiting %.2fs for the %s rate limit before %s", self.service, wait, bucket, method)
            self.sleep(wait)
        started = self.clock()
        shown = redact_url(url)
        response: requests.Response | None = None
        try:
            response = self.session.request(
                method,
                url,
                params=params,
                json=None if isinstance(body, Form) else body,
                data=body.fields if isinstance(body, Form) else None,
                headers=self.auth_headers,
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.ConnectTimeout as exc:
            raise self._transient(f"could not connect to {shown} within {self.timeout[0]:g}s", False) from exc
        except requests.ReadTimeout as exc:
            message = f"no response from {shown} within {self.timeout[1]:g}s"
            raise self._transient(message, True, doubt="timeout") from exc
        except requests.ConnectionError as exc:
            sent = not _never_connected(exc)
            what = "connection failed" if not sent else "connection lost before the response"
            doubt = "reset" if sent and _closed_by_server(exc) else "lost"
            raise self._transient(f"{what} ({shown})", sent, doubt=doubt) from exc
        except requests.RequestException as exc:
            raise self._transient(f"request to {shown} failed: {type(exc).__name__}", True) from exc
        finally:
            if self.on_response is not None:
                if response is None:
                    self.on_response(self.service, None, None)
                else:
                    self.on_response(self.service, response.status_code, self.profile.daily_quota(response.headers))
        ms = (self.clock() - started) * 1000
        log.info("%s %s %s -> %d in %.0f ms", self.service, method, shown, response.status_code, ms)
        self._observe_limits(response, limiter)
        return self._reply(response, shown)

    def _transient(
        self, message: str, sent: bool, status: int | None = None, doubt: str | None = None
    ) -> TransientError:
        text = f"{self.service}: {redact(message)}"
        return TransientError(text, service=self.service, status=status, sent=sent, doubt=doubt)

    def _observe_limits(self, response: requests.Response, limiter: TokenBucket) -> None:
        h = response.headers
        now = self.clock()
        pause = self.profile.pause_seconds(h)
        if pause is not None:
            limiter.pause_until(now + pause)
        if response.status_code in RATE_LIMITED or (response.status_code == 503 and "Retry-After" in h):
            retry_after = parse_retry_after(h.get("Retry-After"), self.wall())
            if retry_after is not None:
                limiter.pause_until(now + retry_after)
                if self.on_pause:
                    self.on_pause(self.wall() + retry_after)
                learned = limiter.learn(now)
                if learned is not None:
                    log.warning(
                        "%s: a %d after %d requests in %gs: that is this account's limit; staying below it",
                        self.service,
                        response.status_code,
                        learned,
                        limiter.window,
                    )
                    if self.on_limit:
                        self.on_limit(learned)

    def _pause_service(self, seconds: float) -> None:
        """Hold every bucket for `seconds` (a quota is the service's, not one endpoint's) and tell `on_pause`."""
        until = self.clock() + seconds
        for limiter in self.buckets.values():
            limiter.pause_until(until)
        if self.on_pause:
            self.on_pause(self.wall() + seconds)

    def pause_until_wall(self, until: float) -> None:
        """Honour a pause a previous process was told about (its `on_pause`), in every bucket."""
        remaining = until - self.wall()
        if remaining > 0:
            for limiter in self.buckets.values():
                limiter.pause_until(self.clock() + remaining)

    def _reply(self, response: requests.Response, shown: str) -> Reply:
        status = response.status_code
        server_time = parse_date(response.headers.get("Date"))
        if 200 <= status < 300:
            try:
                data = response.json() if response.content else None
            except ValueError:
                if "json" in response.headers.get("Content-Type", "json"):
                    raise self._transient(
                        f"{shown} answered {status} with a body that is not JSON", True, status
                    ) from None
                data = response.text  # a webhook's plain "ok"
            return Reply(status, response.headers, data, server_time)
        try:
            body = response.json()
        except ValueError:
            body = response.text or response.reason or "no body"
        detail = redact(self.profile.error_text(status, body))[:300]
        message = f"{self.service}: {shown} answered {status}: {detail}"
        quota = self.profile.quota_spent(status, response.headers, body, server_time or self.wall())
        if quota is not None:
            self._pause_service(quota.seconds)
            resume = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.wall() + quota.seconds))
            raise QuotaExhausted(
                f"{message.rstrip('.')}. {quota.limit}; {self.service} calls pause until {resume}",
                service=self.service,
                status=status,
                retry_after=quota.seconds,
            )
        if status in RATE_LIMITED or self.profile.is_rate_limit(status, detail):
            retry_after = parse_retry_after(response.headers.get("Retry-After"), self.wall())
            raise RateLimited(message, service=self.service, status=status, retry_after=retry_after)
        if status in (401, 403):
            raise AuthError(message, service=self.service, status=status)
        if status >= 500 or status == 408:
            raise self._transient(message.removeprefix(f"{self.service}: "), True, status)
        if status >= 400:
            raise RejectedError(message, service=self.service, status=status)
        raise RemoteError(f"{message} (unexpected redirect or status)", service=self.service, status=status)


def _closed_by_server(exc: BaseException) -> bool:
    """True when the server hung up on a request it had taken whole: it closed the connection (`RemoteDisconnected`)
    or reset it while syncd waited for the status line. Found anywhere in the exception's arguments (requests
    wraps urllib3's ProtocolError, which wraps http.client's)."""
    seen: list[BaseException] = [exc]
    while seen:
        current = seen.pop()
        if isinstance(current, http.client.RemoteDisconnected | ConnectionResetError):
            return True
        seen += [arg for arg in current.args if isinstance(arg, BaseException)]
    return False


def _never_connected(exc: requests.ConnectionError) -> bool:
    """True when the connection was never established, so the request cannot have been sent."""
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, NewConnectionError | ConnectTimeoutError)
