"""`HttpClient` against a scripted loopback server: the vendor profile's hooks, Retry-After, retries, `sent=`,
error text and redaction. The clock and sleep are injected: waits are recorded, never slept."""

from __future__ import annotations

import email.utils
import random
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from syncd.errors import AuthError, QuotaExhausted, RateLimited, RejectedError, TransientError
from syncd.http import HttpClient, RetryPolicy
from syncd.profile import GENERIC, Profile, QuotaPause
from syncd.ratelimit import TokenBucket
from syncd.sandbox.server import FakeServer, Request, Response
from syncd.sinks import asana
from syncd.sources import hubspot_profile, pipedrive, salesforce_profile

WALL = 1_760_000_000.0  # the injected epoch clock
TOKEN = "canary-http-token-7f3e1b"


class Scripted(FakeServer):
    """Answers with the queued responses in order, then 200 {"ok": true}."""

    service = "scripted"

    def __init__(self) -> None:
        super().__init__()
        self.script: list[Response] = []

    def handle(self, request: Request) -> Response:
        with self.lock:
            return self.script.pop(0) if self.script else Response(200, {"ok": True})


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def server() -> Iterator[Scripted]:
    with Scripted() as fake:
        assert isinstance(fake, Scripted)
        yield fake


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_client(clock: Clock) -> Iterator[Any]:
    clients: list[HttpClient] = []

    def make(base_url: str, profile: Profile = GENERIC, **kwargs: Any) -> HttpClient:
        client = HttpClient(
            "vendor",
            base_url,
            {"Authorization": f"Bearer {TOKEN}"},
            {"default": TokenBucket(rate=1.0, capacity=100.0, tokens=100.0)},  # no proactive waits
            profile,
            timeout=kwargs.pop("timeout", (1.0, 2.0)),
            retry=RetryPolicy(max_tries=3, base=0.0),
            clock=clock,
            sleep=clock.sleep,
            wall=lambda: WALL,
            rng=random.Random(0),
            **kwargs,
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


SPENT = {"X-Budget-Left": "0", "X-Budget-Reset": "7"}


def budget_pause(headers: Any) -> float | None:
    return float(headers["X-Budget-Reset"]) if headers.get("X-Budget-Left") == "0" else None


def test_the_profiles_pause_holds_the_bucket_before_the_next_request(
    server: Scripted, make_client: Any, clock: Clock
) -> None:
    client = make_client(server.url, Profile(pause_seconds=budget_pause))
    server.script = [Response(200, {"n": 1}, headers=SPENT)]
    client.call("GET", "/a")
    assert clock.slept == []
    client.call("GET", "/b")
    assert clock.slept == [7.0]
    assert [r.path for r in server.requests] == ["/a", "/b"]


def test_the_generic_profile_reads_no_vendor_headers(server: Scripted, make_client: Any, clock: Clock) -> None:
    client = make_client(server.url)
    headers = {**SPENT, "X-HubSpot-RateLimit-Remaining": "0", "x-ratelimit-remaining": "0"}
    server.script = [Response(200, {}, headers=headers)]
    client.call("GET", "/a")
    client.call("GET", "/b")
    assert clock.slept == []


def test_on_response_gets_the_profiles_daily_quota_and_none_without_an_answer(
    server: Scripted, make_client: Any
) -> None:
    seen: list[tuple[str, int | None, tuple[int, int] | None]] = []
    profile = Profile(daily_quota=lambda h: (int(h["X-Left"]), 100) if "X-Left" in h else None)
    client = make_client(server.url, profile, on_response=lambda *args: seen.append(args))
    server.script = [Response(200, {}, headers={"X-Left": "42"}), Response(200, {})]
    client.call("GET", "/a")
    client.call("GET", "/b")
    refused = make_client(f"http://127.0.0.1:{closed_port()}", profile, on_response=lambda *args: seen.append(args))
    with pytest.raises(TransientError):
        refused.call("POST", "/c", idempotent=False)
    assert seen == [("vendor", 200, (42, 100)), ("vendor", 200, None), ("vendor", None, None)]


@pytest.mark.parametrize(
    ("retry_after", "waited"),
    [("3", 3.0), (email.utils.formatdate(WALL + 30, usegmt=True), 30.0)],
    ids=["seconds", "http-date"],
)
def test_retry_after_is_waited_in_the_bucket_then_the_read_is_retried(
    server: Scripted, make_client: Any, clock: Clock, retry_after: str, waited: float
) -> None:
    pauses: list[float] = []
    client = make_client(server.url, on_pause=pauses.append)
    server.script = [Response(429, {"message": "slow down"}, headers={"Retry-After": retry_after})]
    assert client.call("GET", "/a").data == {"ok": True}
    assert clock.slept == [pytest.approx(waited)]
    assert pauses == [pytest.approx(WALL + waited)]
    assert len(server.requests) == 2


def test_a_retry_after_longer_than_max_wait_ends_the_call_without_sending_again(
    server: Scripted, make_client: Any, clock: Clock
) -> None:
    client = make_client(server.url, max_wait=60.0)
    server.script = [Response(429, {}, headers={"Retry-After": "3600"})]
    with pytest.raises(RateLimited) as caught:
        client.call("GET", "/a")
    assert caught.value.retry_after == pytest.approx(3600)
    assert clock.slept == [] and len(server.requests) == 1


def test_a_5xx_is_retried_for_an_idempotent_call(server: Scripted, make_client: Any) -> None:
    client = make_client(server.url)
    server.script = [Response(500, {"message": "oops"}), Response(503, {"message": "busy"})]
    assert client.call("GET", "/a").data == {"ok": True}
    assert len(server.requests) == 3


def test_a_5xx_is_never_retried_for_a_non_idempotent_call(server: Scripted, make_client: Any) -> None:
    client = make_client(server.url)
    server.script = [Response(500, {"message": "oops"})]
    with pytest.raises(TransientError) as caught:
        client.call("POST", "/projects", json={"name": "x"}, idempotent=False)
    assert caught.value.status == 500 and caught.value.sent is True
    assert len(server.requests) == 1


def test_a_read_timeout_may_have_been_sent(server: Scripted, make_client: Any) -> None:
    client = make_client(server.url, timeout=(1.0, 0.1))
    server.script = [Response(200, {}, delay=0.5)]
    with pytest.raises(TransientError, match=r"no response from .* within 0\.1s") as caught:
        client.call("POST", "/projects", idempotent=False)
    assert caught.value.sent is True


def test_a_refused_connection_was_not_sent(make_client: Any) -> None:
    client = make_client(f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(TransientError, match="connection failed") as caught:
        client.call("POST", "/projects", idempotent=False)
    assert caught.value.sent is False


def test_error_text_and_rate_limits_come_from_the_profile(server: Scripted, make_client: Any) -> None:
    profile = Profile(
        error_text=lambda status, body: f"vendor says {body['problem']}" if isinstance(body, dict) else str(body),
        is_rate_limit=lambda status, text: status == 403 and "TOO_MANY" in text,
    )
    client = make_client(server.url, profile)
    server.script = [Response(400, {"problem": "bad field"}), Response(403, {"problem": "TOO_MANY calls"})]
    with pytest.raises(RejectedError, match=r"answered 400: vendor says bad field$"):
        client.call("GET", "/a")
    with pytest.raises(RateLimited, match=r"answered 403: vendor says TOO_MANY calls$") as caught:
        client.call("GET", "/b", idempotent=False)
    assert caught.value.retry_after is None


def spent_for_an_hour(status: int, headers: Any, body: Any, now: float) -> QuotaPause | None:
    return QuotaPause(3600.0, "the vendor's daily quota is spent") if body == {"quota": "day"} else None


def test_a_spent_quota_is_not_retried_and_pauses_every_bucket_until_a_wall_clock_end(
    server: Scripted, make_client: Any, clock: Clock
) -> None:
    pauses: list[float] = []
    client = make_client(server.url, Profile(quota_spent=spent_for_an_hour), on_pause=pauses.append, max_wait=7200)
    client.buckets["search"] = TokenBucket(rate=1.0, capacity=100.0, tokens=100.0)
    server.script = [Response(429, {"quota": "day"})]
    with pytest.raises(QuotaExhausted, match=r"daily quota is spent; vendor calls pause until .* UTC") as caught:
        client.call("GET", "/a")
    assert isinstance(caught.value, RateLimited) and caught.value.retry_after == 3600.0
    assert len(server.requests) == 1 and clock.slept == []  # no retry, even with max_wait above the pause
    assert pauses == [WALL + 3600.0]  # the engine saves it: a restarted process honours it too
    assert not client.ready("default") and not client.ready("search")


def test_within_a_quota_pause_a_call_sends_nothing(server: Scripted, make_client: Any, clock: Clock) -> None:
    client = make_client(server.url, Profile(quota_spent=spent_for_an_hour))
    server.script = [Response(429, {"quota": "day"})]
    with pytest.raises(QuotaExhausted):
        client.call("GET", "/a")
    with pytest.raises(RateLimited, match="resuming next cycle") as caught:
        client.call("GET", "/b")
    assert caught.value.retry_after == pytest.approx(3600.0)
    assert len(server.requests) == 1 and clock.slept == []
    clock.now += 3600.0
    assert client.call("GET", "/c").data == {"ok": True}  # the pause over, one request asks again


def test_a_rate_limit_that_is_no_quota_is_still_retried(server: Scripted, make_client: Any) -> None:
    client = make_client(server.url, Profile(quota_spent=spent_for_an_hour))
    server.script = [Response(429, {"quota": "ten seconds"})]
    assert client.call("GET", "/a").data == {"ok": True}
    assert len(server.requests) == 2


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ({"error": "invalid_grant", "error_description": "expired refresh token"}, "expired refresh token"),
        ({"message": "Not found"}, "Not found"),
        (b"upstream down", "upstream down"),
        (b"", "Bad Request"),
    ],
)
def test_the_generic_profile_reads_standard_error_bodies(
    server: Scripted, make_client: Any, body: Any, text: str
) -> None:
    client = make_client(server.url)
    server.script = [Response(400, body, headers={"Content-Type": "text/plain"} if isinstance(body, bytes) else {})]
    with pytest.raises(RejectedError) as caught:
        client.call("GET", "/a")
    assert str(caught.value).endswith(f"answered 400: {text}")


def test_the_token_is_redacted_from_errors(server: Scripted, make_client: Any) -> None:
    client = make_client(server.url)
    server.script = [Response(401, {"message": f"token {TOKEN} is not valid"})]
    with pytest.raises(AuthError) as caught:
        client.call("GET", "/a?api_token=also-secret-in-url")
    message = str(caught.value)
    assert TOKEN not in message and "also-secret-in-url" not in message
    assert "token [redacted] is not valid" in message
    assert server.requests[0].headers["authorization"] == f"Bearer {TOKEN}"


# -- the vendors' profiles read what their documentation says -------------------------------------------------
@pytest.mark.parametrize(
    ("profile", "headers", "pause"),
    [
        (
            hubspot_profile.PROFILE,
            {"X-HubSpot-RateLimit-Remaining": "0", "X-HubSpot-RateLimit-Interval-Milliseconds": "10000"},
            10,
        ),
        (hubspot_profile.PROFILE, {"X-HubSpot-RateLimit-Remaining": "0"}, 1),
        (hubspot_profile.PROFILE, {"X-HubSpot-RateLimit-Remaining": "3"}, None),
        (pipedrive.PROFILE, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "5"}, 5),
        (pipedrive.PROFILE, {"X-RateLimit-Remaining": "0"}, 2),
        (salesforce_profile.PROFILE, {"Sforce-Limit-Info": "api-usage=10/10"}, None),
        (asana.PROFILE, {"x-ratelimit-remaining": "0"}, None),
    ],
)
def test_vendor_pauses(profile: Profile, headers: dict[str, str], pause: float | None) -> None:
    assert profile.pause_seconds(headers) == pause


@pytest.mark.parametrize(
    ("profile", "headers", "quota"),
    [
        (
            hubspot_profile.PROFILE,
            {"X-HubSpot-RateLimit-Daily": "250000", "X-HubSpot-RateLimit-Daily-Remaining": "9"},
            (9, 250_000),
        ),
        (hubspot_profile.PROFILE, {"X-HubSpot-RateLimit-Daily": "x", "X-HubSpot-RateLimit-Daily-Remaining": "9"}, None),
        (salesforce_profile.PROFILE, {"Sforce-Limit-Info": "api-usage=14000/15000"}, (1000, 15_000)),
        (salesforce_profile.PROFILE, {"sforce-limit-info": "api-usage=16000/15000"}, (0, 15_000)),
        (pipedrive.PROFILE, {"x-daily-requests-left": "5"}, None),
        (asana.PROFILE, {"Sforce-Limit-Info": "api-usage=1/2"}, None),
    ],
)
def test_vendor_daily_quotas(profile: Profile, headers: dict[str, str], quota: tuple[int, int] | None) -> None:
    assert profile.daily_quota(headers) == quota


@pytest.mark.parametrize(
    ("profile", "status", "body", "text"),
    [
        (
            hubspot_profile.PROFILE,
            400,
            {"message": "There was a problem", "errors": [{"message": "no such property"}]},
            "no such property",
        ),
        (
            hubspot_profile.PROFILE,
            401,
            {"status": "error", "message": "Authentication credentials not found"},
            "Authentication credentials not found",
        ),
        (
            salesforce_profile.PROFILE,
            403,
            [{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "TotalRequests Limit exceeded."}],
            "REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded.",
        ),
        (
            salesforce_profile.PROFILE,
            400,
            {"error": "invalid_grant", "error_description": "expired access/refresh token"},
            "expired access/refresh token",
        ),
        (
            pipedrive.PROFILE,
            401,
            {"success": False, "error": "unauthorized access", "error_info": "Please check"},
            "unauthorized access",
        ),
        (
            asana.PROFILE,
            400,
            {"errors": [{"message": "team: Missing input", "help": "..."}, {"message": "name: too long"}]},
            "team: Missing input; name: too long",
        ),
        (asana.PROFILE, 502, "Bad Gateway", "Bad Gateway"),
    ],
)
def test_vendor_error_text(profile: Profile, status: int, body: Any, text: str) -> None:
    assert profile.error_text(status, body) == text


def test_only_salesforce_calls_a_403_request_limit_exceeded_a_rate_limit() -> None:
    assert salesforce_profile.PROFILE.is_rate_limit(403, "REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded.")
    assert not salesforce_profile.PROFILE.is_rate_limit(403, "INSUFFICIENT_ACCESS: no")
    assert not GENERIC.is_rate_limit(403, "REQUEST_LIMIT_EXCEEDED")


HOUR = 1_760_000_400.0  # a full UTC hour (epoch seconds divisible by 3600)
DAILY = {"status": "error", "message": "You have reached your daily limit.", "errorType": "RATE_LIMIT"}
DAILY |= {"correlationId": "c033cdaa-2c40-4a64-ae48-b4cec88dad24", "policyName": "DAILY", "requestId": "3d3e"}
TOTAL = [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
CONCURRENT = [{"message": "ConcurrentPerOrgLongTxn Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]


@pytest.mark.parametrize(
    ("profile", "status", "body", "now", "pause"),
    [
        (hubspot_profile.PROFILE, 429, DAILY, HOUR + 600, 3000 + 30),  # until the next full UTC hour, 30 s past it
        (hubspot_profile.PROFILE, 429, DAILY, HOUR - 1, 1 + 30),
        (hubspot_profile.PROFILE, 429, DAILY, HOUR, 3600 + 30),
        (hubspot_profile.PROFILE, 429, {**DAILY, "policyName": "TEN_SECONDLY_ROLLING"}, HOUR, None),
        (hubspot_profile.PROFILE, 429, {**DAILY, "policyName": "SECONDLY"}, HOUR, None),
        (hubspot_profile.PROFILE, 400, DAILY, HOUR, None),
        (hubspot_profile.PROFILE, 429, "You have reached your daily limit.", HOUR, None),
        (salesforce_profile.PROFILE, 403, TOTAL, HOUR, 1800),
        (
            salesforce_profile.PROFILE,
            403,
            [{"message": "other words", "errorCode": "REQUEST_LIMIT_EXCEEDED"}],
            HOUR,
            1800,
        ),
        (salesforce_profile.PROFILE, 403, CONCURRENT, HOUR, None),
        (salesforce_profile.PROFILE, 403, [{"message": "no", "errorCode": "INSUFFICIENT_ACCESS"}], HOUR, None),
        (salesforce_profile.PROFILE, 400, TOTAL, HOUR, None),
        (GENERIC, 429, DAILY, HOUR, None),
        (asana.PROFILE, 403, TOTAL, HOUR, None),
    ],
)
def test_vendor_quotas_spent(profile: Profile, status: int, body: Any, now: float, pause: float | None) -> None:
    spent = profile.quota_spent(status, {}, body, now)
    assert (spent and spent.seconds) == pause


def closed_port() -> int:
    """A loopback port nothing listens on: connecting to it is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
